"""galmet.figures: each figure builds from real data, with the expected axes, and saves.

Figures 1-3 use real data as it comes: the bundled demo cutouts and the paper's published
test-set predictions. Figures 5-6 need mass and metallicity of the same galaxies, which no
bundled real table has together; they are drawn from real masses (gz-photometry) and real
published metallicities paired row by row - a check of the plotting, not of the science.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import QuadMesh
from PIL import Image

from galmet import captions, figures, metrics
from galmet.targets import MASS, METALLICITY, TARGETS

Z, M = TARGETS[METALLICITY], TARGETS[MASS]

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "resources" / "reference"


@pytest.fixture(scope="module")
def published() -> pd.DataFrame:
    return pd.read_csv(REF / "predictions_128px.csv", dtype={"objID": str})


@pytest.fixture(scope="module")
def mass_rows(published):
    gz = pd.read_csv(ROOT / "tests" / "data" / "gz_photometry.csv")
    m = gz["stellar_mass"].to_numpy()[:2000]
    m = np.where(m > 0, m, np.nan)  # -9999 = missing: must not break the figures
    resid = (published["prediction"] - published["oh_p50"]).to_numpy()
    return {"mass": m, "mass_pred": m + 2.5 * resid[:2000],
            "z_true": published["oh_p50"].to_numpy()[:2000],
            "z_pred": published["prediction"].to_numpy()[:2000]}


def _png_ok(fig, tmp_path, name):
    out = figures.save_figure(fig, [tmp_path / f"{name}.png", tmp_path / f"{name}.pdf"])
    png = np.asarray(Image.open(out[0]).convert("L"))
    assert png.shape[0] > 300 and png.shape[1] > 300
    assert png.std() > 10  # not blank
    assert out[1].read_bytes().startswith(b"%PDF")
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_fig1_examples_demo_cutouts(demo_catalog, tmp_path, published):
    cat = demo_catalog.head(40).reset_index(drop=True)
    images = np.stack([np.asarray(Image.open(ROOT / "resources" / "demo" / "images" /
                                             f"{o}.jpg").convert("RGB")) for o in cat["objID"]])
    cat["prediction"] = cat["oh_p50"] + (published["prediction"] - published["oh_p50"])[:40]
    fig = figures.fig1_examples(images, cat, n=5, seed=1)
    axes = fig.axes
    assert len(axes) == 35
    ylabels = [ax.get_ylabel() for ax in axes if ax.get_ylabel()]
    assert ylabels == ["lowest\npredicted", "lowest\ntrue", "highest\npredicted", "highest\ntrue",
                       "most\nunder-predicted", "most\nover-predicted", "random"]
    assert all(len(ax.images) == 1 for ax in axes)
    texts = [t.get_text() for t in axes[0].texts]
    lowest = cat["prediction"].min()
    assert any(f"{lowest:.2f}" in t for t in texts)
    _png_ok(fig, tmp_path, "fig1")
    with pytest.raises(ValueError, match="table rows"):
        figures.fig1_examples(images[:3], cat)


def test_select_examples_by_hand():
    t = np.array([8.0, 9.0, 8.5, 8.7, np.nan])
    p = np.array([8.3, 8.8, 8.5, 9.0, 7.0])
    s = figures.select_examples(t, p, n=2)
    assert s["lowest_pred"].tolist() == [0, 2]
    assert s["highest_true"].tolist() == [1, 3]
    assert s["most_under"].tolist() == [1, 2]  # residuals -0.2, 0.0
    assert s["most_over"].tolist() == [0, 3]  # +0.3 then +0.3: stable order
    assert 4 not in np.concatenate(list(s.values()))  # the NaN row is never chosen


def test_fig2_histograms_published(published, tmp_path):
    fig = figures.fig2_histograms(published["oh_p50"], published["prediction"])
    (ax,) = fig.axes
    assert ax.get_xlabel() == "12 + log(O/H) [dex]"
    assert "FD" in ax.get_ylabel() and "dex" in ax.get_ylabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "12.6% > 9.1" in labels[0] and "6.5% > 9.1" in labels[1]
    # the bins are Freedman-Diaconis bins of the pooled values
    both = np.concatenate([published["oh_p50"], published["prediction"]])
    expected = np.histogram_bin_edges(both, bins="fd")
    assert len(ax.patches[1].get_path().vertices) > 0
    assert f"{np.diff(expected).mean():.3f}" in ax.get_ylabel()
    _png_ok(fig, tmp_path, "fig2")


def test_fig3_scatter_published(published, tmp_path):
    ref = pd.read_csv(REF / "predictions_64px.csv")
    fig = figures.fig3_scatter(published["oh_p50"], published["prediction"],
                               reference=(ref["oh_p50"], ref["prediction"]))
    main, top = fig.axes[0], fig.axes[1]
    assert main.get_xlabel() == Z.label_true and main.get_ylabel() == Z.label_pred
    assert top.get_ylabel() == "scatter [dex]"
    assert {t.get_text() for t in main.get_legend().get_texts()} >= {"one-to-one", "running median"}
    stats = " ".join(t.get_text() for t in main.texts)
    assert "N = 20,466" in stats and "RMSE = 0.085 dex" in stats and "NMAD = 0.065 dex" in stats
    inset = next(a for a in main.child_axes if "predicted" in a.get_xlabel())  # the residuals
    assert "dex" in inset.get_xlabel() and len(inset.patches) > 0
    # upper panel: binned RMSE with marker size by count, as metrics.binned_statistics
    rmse_points = top.collections[0]
    b = metrics.binned_statistics(published["oh_p50"], published["prediction"], bin_width=0.1,
                                  min_count=5)
    np.testing.assert_allclose(rmse_points.get_offsets()[:, 1], b["rmse"])
    sizes = rmse_points.get_sizes()
    assert sizes[b["n"].to_numpy().argmax()] == sizes.max()
    assert any("published" in t.get_text() for t in top.get_legend().get_texts())
    # 20,466 galaxies: dense pixels shaded, every galaxy of the other pixels a point
    points = _galaxies(main).get_offsets()
    dense = next(c for c in main.collections if isinstance(c, QuadMesh)).get_array()
    assert dense.count() > 0 and dense.min() >= figures.DENSE_MIN
    assert len(points) + dense.sum() == 20_466
    _png_ok(fig, tmp_path, "fig3")


def _galaxies(ax):
    return next(c for c in ax.collections if c.get_label().startswith("galaxies"))


def _bbox(artist, fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    return artist.get_window_extent(canvas.get_renderer())


def test_fig3_draws_every_galaxy_of_a_small_sample_and_keeps_keys_off_the_data(published, tmp_path):
    """The demo's 78 test galaxies, its outliers among them: each one a point, none hidden by a
    grey scale that starts at white; the legends, statistics and size key beside the panels."""
    sub = published.sample(78, random_state=1)
    t, p = sub["oh_p50"].to_numpy().copy(), sub["prediction"].to_numpy().copy()
    t[:3], p[:3] = [8.13, 8.29, 8.46], [8.56, 8.70, 8.80]  # the demo's outliers
    fig = figures.fig3_scatter(t, p)
    main, top = fig.axes[0], fig.axes[1]
    points = _galaxies(main).get_offsets()
    assert len(points) == 78 and not any(isinstance(c, QuadMesh) for c in main.collections)
    for xy in [(8.13, 8.56), (8.29, 8.70), (8.46, 8.80)]:
        assert np.isclose(points, xy).all(axis=1).any()
    _png_ok(fig, tmp_path, "fig3_small")  # draws: the extents below are the saved layout's
    right = _bbox(main, fig).x1
    assert _bbox(main.get_legend(), fig).x0 > right and _bbox(top.get_legend(), fig).x0 > right
    stats = next(t for t in main.texts if t.get_text().startswith("N = 78"))
    assert _bbox(stats, fig).x0 > right
    key = [t.get_text() for t in top.get_legend().get_texts()]
    assert any(k.endswith("galaxies / bin") for k in key)  # the marker sizes are keyed
    sizes = [h.get_markersize() for h in top.get_legend().legend_handles[-2:]]
    assert sizes[0] < sizes[1]


def test_fig3_draws_absurd_values_on_the_border_and_counts_them(published):
    t = published["oh_p50"].to_numpy()[:50].copy()
    p = published["prediction"].to_numpy()[:50].copy()
    p[0] = -9999.0  # a missing value coded as a number
    fig = figures.fig3_scatter(t, p)
    main = fig.axes[0]
    assert main.get_ylim()[0] > 7  # the axes are not stretched to -9999
    labels = [x.get_text() for x in main.get_legend().get_texts()]
    assert "1 beyond the axes (on the border)" in labels
    border = [c for c in main.collections if c.get_label().startswith("1 beyond")][0].get_offsets()
    assert border[0][1] == pytest.approx(main.get_ylim()[0])


def test_fig4_resolution_with_baselines_and_published(tmp_path):
    mdir = tmp_path / "metrics"
    mdir.mkdir()
    for res in (128, 64, 32, 16):  # the published metrics, as the reference rule writes them
        df = pd.read_csv(REF / f"predictions_{res}px.csv", dtype={"objID": str})
        m = {"resolution": res, **metrics.evaluate_table(df)}
        (mdir / f"published-{res}px.json").write_text(json.dumps(m))
    this = metrics.evaluate_table(pd.read_csv(REF / "predictions_32px.csv", dtype={"objID": str}))
    (mdir / "resnet18-32px-seed0.json").write_text(json.dumps(this))
    base = [{"name": "constant", "status": "ok", "reason": None,
             "test": {"n": 10, "rmse": 0.2, "nmad": 0.15}},
            {"name": "rf_gri", "status": "skipped", "reason": "no magnitudes", "test": {"n": 0}}]
    bpaths = []
    for b in base:
        p = tmp_path / f"{b['name']}.json"
        p.write_text(json.dumps(b))
        bpaths.append(p)
    cnn, bl, pub, table = captions.resolution_results(
        [mdir / "resnet18-32px-seed0.json"], bpaths, sorted(mdir.glob("published-*.json")))
    assert cnn["resolution"].tolist() == [32] and len(pub) == 4 and bl == [
        {"name": "constant", "rmse": 0.2, "nmad": 0.15, "n": 10}]
    assert "no magnitudes" in table["note"].tolist()
    fig = figures.fig4_resolution(cnn, bl, published=pub)
    top, bottom = fig.axes
    assert top.get_ylabel() == "RMSE [dex]" and bottom.get_ylabel() == "NMAD [dex]"
    assert bottom.get_xlabel() == "image resolution [pixels]"
    assert [t.get_text() for t in bottom.get_xticklabels()] == ["16", "32", "64", "128"]
    legend = [t.get_text() for t in top.get_legend().get_texts()]
    assert legend[:3] == ["CNN, this run (20,466 test galaxies)",
                          "CNN, published (Wu & Boada 2019; their test set, 20,466 galaxies)",
                          "constant (0.200 ± 0.045, 10 test galaxies)"]  # 0.2 / sqrt(2 * 10)
    assert legend[3].startswith("bars: 1σ sampling error")
    pub_line = [ln for ln in top.get_lines() if ln.get_label().startswith("CNN, published")][0]
    assert pub_line.get_ydata()[-1] == pytest.approx(0.0849, abs=5e-4)  # 128 px
    _png_ok(fig, tmp_path, "fig4")


def test_fig4_error_bars_sampling_and_seed_spread(tmp_path):
    """Each model carries its 1-sigma sampling error; seeds at one resolution their spread."""
    cnn = pd.DataFrame({"resolution": [32, 32, 32, 64], "rmse": [0.16, 0.17, 0.18, 0.14],
                        "nmad": [0.12, 0.13, 0.14, 0.11], "n": [78, 78, 78, 78]})
    fig = figures.fig4_resolution(cnn)
    top = fig.axes[0]
    bars = [c for c in top.containers if c.has_yerr]
    sampling = bars[0].lines[2][0].get_segments()  # one vertical segment per model
    assert len(sampling) == 4
    lo, hi = sampling[3][:, 1]
    assert hi - lo == pytest.approx(2 * 0.14 / np.sqrt(2 * 78))
    seeds = bars[1].lines[2][0].get_segments()  # the 32 px seeds: mean ± their standard deviation
    assert len(seeds) == 1
    assert seeds[0][1, 1] - seeds[0][0, 1] == pytest.approx(2 * np.std([0.16, 0.17, 0.18], ddof=1))
    labels = [t.get_text() for t in top.get_legend().get_texts()]
    assert labels[0] == "CNN, this run (78 test galaxies)"
    assert labels[-1] == "wide bars: 1σ spread of the seeds"
    _png_ok(fig, tmp_path, "fig4_seeds")


def test_loss_curve_in_the_target_unit():
    log = pd.DataFrame({"epoch": [1, 2, 3], "stage": [1, 2, 2], "train_rmse": [0.5, 0.3, 0.2],
                        "valid_rmse": [0.4, 0.3, 0.25]})
    assert figures.loss_curve(log, unit="dex").axes[0].get_ylabel() == "RMSE [dex]"
    assert figures.loss_curve(log).axes[0].get_ylabel() == "RMSE"  # a bare column: no unit


def _texts(fig) -> list[str]:
    """Every text a figure shows: axis labels, titles, legends, free text."""
    out = [fig._suptitle.get_text()] if fig._suptitle is not None else []
    for ax in fig.axes:
        out += [ax.get_xlabel(), ax.get_ylabel(), ax.get_title(), *(t.get_text() for t in ax.texts)]
        if ax.get_legend() is not None:
            out += [t.get_text() for t in ax.get_legend().get_texts()]
    return [t for t in out if t]


def test_figures_label_a_target_in_its_registered_unit(monkeypatch):
    """A target in Jy, without a threshold: every axis of Figures 1-4 and of the risk-coverage
    figure is in Jy, none says dex, and Figure 2 marks no threshold."""
    from galmet.targets import Target

    monkeypatch.setitem(TARGETS, "flux_x", Target("flux_x", "flux", unit="Jy"))
    rng = np.random.default_rng(0)
    t = rng.normal(10, 1, 300)
    p = t + rng.normal(0, 0.2, 300)
    f3 = figures.fig3_scatter(t, p, target="flux_x")
    assert (f3.axes[0].get_xlabel(), f3.axes[0].get_ylabel()) == ("true flux [Jy]", "predicted flux [Jy]")
    assert f3.axes[1].get_ylabel() == "scatter [Jy]"
    f2 = figures.fig2_histograms(t, p, target="flux_x")
    assert f2.axes[0].get_xlabel() == "flux [Jy]" and f2.axes[0].get_ylabel().endswith(" Jy, FD)")
    assert not f2.axes[0].lines and not any("%" in x for x in _texts(f2))  # no threshold line, no fraction
    cnn = pd.DataFrame({"resolution": [16, 32], "rmse": [0.3, 0.2], "nmad": [0.25, 0.15], "n": [300, 300]})
    f4 = figures.fig4_resolution(cnn, target="flux_x")
    assert [ax.get_ylabel() for ax in f4.axes] == ["RMSE [Jy]", "NMAD [Jy]"]
    f_rc = figures.fig_risk_coverage([{"fraction": 0.5, "rmse": 0.1}, {"fraction": 1.0, "rmse": 0.2}],
                                     target="flux_x")
    assert f_rc.axes[0].get_ylabel() == "RMSE [Jy]"
    images = np.zeros((20, 16, 16, 3), np.uint8)
    f1 = figures.fig1_examples(images, pd.DataFrame({"flux_x": t[:20], "prediction": p[:20]}), truth="flux_x", n=2)
    assert f1._suptitle.get_text().endswith("values in Jy")
    for fig in (f1, f2, f3, f4, f_rc):
        assert not [x for x in _texts(fig) if "dex" in x]
    # the metallicity figures are as before: 9.1 dex marked on Figure 2, dex on Figure 3
    z2 = figures.fig2_histograms(t - 1, p - 1)
    assert z2.axes[0].lines and "% > 9.1" in _texts(z2)[-1]
    assert figures.fig3_scatter(t - 1, p - 1).axes[1].get_ylabel() == "scatter [dex]"


def test_fig5_mass_route(mass_rows, tmp_path):
    r = mass_rows
    fig = figures.fig5_mass(r["mass"], r["mass_pred"], r["z_true"], z_pred=r["z_pred"])
    left, right = fig.axes[:2]
    assert left.get_xlabel() == M.label_true
    assert left.get_ylabel() == M.label_pred
    assert right.get_xlabel() == Z.label_true and "Tremonti" in right.get_ylabel()
    assert "direct CNN" in right.texts[0].get_text()
    n_valid = int(np.isfinite(r["mass"]).sum())
    assert f"N = {n_valid:,}" in left.texts[0].get_text()
    _png_ok(fig, tmp_path, "fig5")


def test_fig6_mzr(mass_rows, tmp_path):
    r = mass_rows
    fig = figures.fig6_mzr(r["mass"], r["z_pred"], r["z_true"])
    left, right, top_left, top_right = fig.axes[:4]
    assert top_left.get_title() == "predicted MZR" and top_right.get_title() == "empirical MZR"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]  # one legend, below the panels
    assert "Tremonti et al. (2004)" in legend and "$\\pm$0.10 dex (dashed)" in legend
    assert "scatter of the relation (0.10 dex)" in legend
    for ax, top in ((left, top_left), (right, top_right)):
        assert ax.get_xlabel() == M.label_true
        tremonti = [ln for ln in ax.get_lines() if ln.get_label() == "Tremonti et al. (2004)"][0]
        x = tremonti.get_xdata()
        assert x.min() >= 8.5 and x.max() <= 11.5  # drawn only where the fit holds
        # the upper panel: scatter about the curve per mass bin, beside the relation's own 0.10 dex
        assert top.get_ylabel().startswith("scatter about") and top.collections
        assert [ln.get_ydata()[0] for ln in top.get_lines()] == [0.10]
    assert left.get_ylabel() == r"$Z_{\rm pred}$ [dex]"
    # N and the scatter about the curve are the MZR table's (galmet.mzr.mzr_summary), all galaxies
    from galmet.mzr import mzr_summary

    ok = np.isfinite(r["mass"]) & np.isfinite(r["z_pred"]) & np.isfinite(r["z_true"])
    _, numbers = mzr_summary(r["mass"][ok], r["z_pred"][ok], r["z_true"][ok])
    assert f"RMS about Tremonti = {numbers['pred_rmse_about_tremonti']:.3f} dex" in left.texts[0].get_text()
    assert f"N = {numbers['n']:,}" in right.texts[0].get_text()
    _png_ok(fig, tmp_path, "fig6")


def test_fig5_has_upper_panels_and_the_relations_ceiling(mass_rows):
    """Figure 5, as Figure 3: binned RMSE and NMAD above each panel; the highest metallicity the
    Tremonti relation gives (which caps Z_MZR) is marked."""
    r = mass_rows
    fig = figures.fig5_mass(r["mass"], r["mass_pred"], r["z_true"], z_pred=r["z_pred"])
    _, right, top_left, top_right = fig.axes[:4]
    assert top_left.get_ylabel() == "scatter [dex]" and top_left.collections
    assert "RMSE, direct CNN" in [ln.get_label() for ln in top_right.get_lines()]
    ceiling = [ln for ln in right.get_lines() if ln.get_label().startswith("highest $Z$ of the relation")]
    assert ceiling and abs(ceiling[0].get_ydata()[0] - 9.134) < 1e-3


def test_save_figure_refuses_unknown_format(published, tmp_path):
    fig = figures.fig2_histograms(published["oh_p50"][:100], published["prediction"][:100])
    with pytest.raises(ValueError, match="unsupported"):
        figures.save_figure(fig, tmp_path / "x.jpg")


class _Namedlist(dict):
    """Enough of snakemake's Namedlist for the scripts: attributes, get, and iteration."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, key):
        if isinstance(key, int):
            return list(self.values())[key]
        return dict.__getitem__(self, key)


def _run_script(name, tmp_path, **parts):
    import runpy
    from types import SimpleNamespace

    ns = SimpleNamespace(**{k: _Namedlist(v) for k, v in parts.items()})
    ns.log = [str(tmp_path / f"{name}.log")]
    ns.threads = 1
    for key in ("params", "wildcards"):
        if not hasattr(ns, key):
            setattr(ns, key, _Namedlist())
    runpy.run_path(str(ROOT / "workflow" / "scripts" / f"{name}.py"),
                   init_globals={"snakemake": ns})


def test_mass_figure_scripts_on_prepared_results(mass_rows, tmp_path):
    """mzr_mass_route.py, mzr_table.py and figure_mass.py, figure_mzr.py (Figures 5 and 6) from
    the files the workflow writes."""
    r = mass_rows
    ids = np.arange(1, len(r["mass"]) + 1, dtype="int64")
    catalog = pd.DataFrame({"objID": ids, "oh_p50": r["z_true"], "lgm_tot_p50": r["mass"]})
    catalog.to_parquet(tmp_path / "clean.parquet")
    test = catalog[np.isfinite(catalog["lgm_tot_p50"])].iloc[::2]
    mass = pd.DataFrame({"objID": test["objID"], "lgm_tot_p50": test["lgm_tot_p50"],
                         "prediction": r["mass_pred"][test.index]})
    z = pd.DataFrame({"objID": test["objID"], "oh_p50": test["oh_p50"],
                      "prediction": r["z_pred"][test.index]})
    mass.to_parquet(tmp_path / "mass.parquet")
    z.to_parquet(tmp_path / "z.parquet")
    out = tmp_path / "out"
    route_inputs = {"mass": str(tmp_path / "mass.parquet"), "direct": str(tmp_path / "z.parquet"),
                    "catalog": str(tmp_path / "clean.parquet")}
    model = {"model": "resnet18-16px-seed0"}
    _run_script("mzr_mass_route", tmp_path, input=route_inputs,
                output={"numbers": str(out / "mass_route.json")}, wildcards=model)
    _run_script("figure_mass", tmp_path, input={**route_inputs, "numbers": str(out / "mass_route.json")},
                output={"png": str(out / "fig5.png"), "others": [str(out / "fig5.pdf")]},
                wildcards=model)
    route = json.loads((out / "mass_route.json").read_text())
    assert route["mzr"]["n"] == route["direct"]["n"] == route["mass"]["n"] == len(test)
    assert route["direct"]["rmse"] == pytest.approx(
        metrics.rmse(z["prediction"] - z["oh_p50"]))
    assert (out / "fig5.png").stat().st_size > 10_000 and (out / "fig5.pdf").is_file()
    mzr_inputs = {"predictions": str(tmp_path / "z.parquet"), "catalog": str(tmp_path / "clean.parquet")}
    _run_script("mzr_table", tmp_path, input=mzr_inputs,
                output={"numbers": str(out / "mzr.json"), "table": str(out / "mzr.csv")},
                wildcards=model)
    _run_script("figure_mzr", tmp_path, input={**mzr_inputs, "numbers": str(out / "mzr.json")},
                output={"png": str(out / "fig6.png"), "others": []}, wildcards=model)
    table = pd.read_csv(out / "mzr.csv")
    assert table["n"].sum() == len(test)
    assert {"median_pred", "median_true", "rmse_pred", "rmse_true", "tremonti"} <= set(table)
    numbers = json.loads((out / "mzr.json").read_text())
    assert numbers["n"] == len(test) and numbers["pred_rmse_about_tremonti"] > 0
    assert (out / "fig6.png").stat().st_size > 10_000


def test_uncertainty_figures_and_intervals_on_figures_3_and_6(published, mass_rows, tmp_path):
    from galmet import conformal, uncertainty

    rng = np.random.default_rng(0)
    y, pred = published["oh_p50"].to_numpy()[:2000], published["prediction"].to_numpy()[:2000]
    spread = 0.05 + 0.05 * rng.uniform(size=len(y))
    scores = conformal.calibration_scores(y[:1000], pred[:1000], spread[:1000])
    u = uncertainty.score_intervals(y[1000:], pred[1000:], spread[1000:], scores)
    fig = figures.fig_calibration(u["calibration"], u["pit"], u["n"], title="t")
    left, right = fig.axes
    assert left.get_xlabel() == "nominal coverage" and right.get_xlabel() == "PIT"
    observed = [ln for ln in left.get_lines() if ln.get_label() == "observed (test)"][0]
    np.testing.assert_allclose(observed.get_ydata(), [r["observed"] for r in u["calibration"]])
    assert sum(p.get_height() for p in right.containers[0]) == u["n"]
    _png_ok(fig, tmp_path, "calibration")
    fig = figures.fig_risk_coverage(u["risk_coverage"])
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(), [r["rmse"] for r in u["risk_coverage"]])
    _png_ok(fig, tmp_path, "risk")
    cols = conformal.interval_columns(pred, spread, scores)
    fig = figures.fig3_scatter(y, pred, intervals=(cols["p16"], cols["p84"]))
    assert "68% interval (300 shown)" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "68% half-width" in [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    r = mass_rows
    z16, z84 = r["z_pred"] - 0.1, r["z_pred"] + 0.1
    fig = figures.fig6_mzr(r["mass"], r["z_pred"], r["z_true"], intervals=(z16, z84))
    assert any(c.get_label().startswith("68% interval") for c in fig.axes[0].containers)
    _png_ok(fig, tmp_path, "fig6_intervals")


def test_fig7_saliency_maps_beside_cutouts(demo_catalog, tmp_path, published):
    cat = demo_catalog.head(24).reset_index(drop=True)
    images = np.stack([np.asarray(Image.open(ROOT / "resources" / "demo" / "images" /
                                             f"{o}.jpg").convert("RGB")) for o in cat["objID"]])
    cat["prediction"] = cat["oh_p50"] + (published["prediction"] - published["oh_p50"])[:24]
    maps = np.random.default_rng(0).normal(size=(24, 16, 16)).astype(np.float32)
    fig = figures.fig7_saliency(images, maps, cat, n=3, method="gradcam layer2")
    assert len(fig.axes) == 4 * 3 * 2 + 1  # and the colour bar
    ylabels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert ylabels == ["lowest\npredicted", "highest\npredicted", "most\nunder-predicted", "most\nover-predicted"]
    shown = fig.axes[1].images[0].get_array()
    assert shown.shape == (16, 16) and shown.min() >= 0  # magnitudes
    assert len(fig.axes[1].patches) == 1  # the central circle of the science statement
    _png_ok(fig, tmp_path, "fig7")
    with pytest.raises(ValueError, match="table rows"):
        figures.fig7_saliency(images[:3], maps, cat)


def test_fig7_shows_no_rings_or_frames_made_by_upsampling():
    """A Grad-CAM map whose cells alternate in sign, upsampled bilinearly as captum does: its
    |upsampled map| has dark rings at every sign change; Figure 7 takes the magnitude per cell of
    the layer (uniform here) and masks the edge cells that saw the convolutions' zero padding."""
    import torch

    cells = np.where(np.indices((8, 8)).sum(axis=0) % 2, 1.0, -1.0)  # a checkerboard of +-1
    up = torch.nn.functional.interpolate(torch.tensor(cells)[None, None], size=(64, 64), mode="bilinear")[0, 0]
    signed = up.numpy()
    assert np.abs(signed).min() < 0.1 * np.abs(signed).max()  # the rings of |upsampled map|
    shown = figures.saliency_display(signed, cells=8)
    assert shown.shape == (8, 8)
    assert shown.mask[0].all() and shown.mask[-1].all() and shown.mask[:, 0].all() and shown.mask[:, -1].all()
    inner = shown[1:-1, 1:-1]
    assert inner.count() == 36 and np.allclose(inner, 1.0)  # one magnitude everywhere: no ring
    assert figures.saliency_display(signed).shape == (64, 64)  # a map made at the input's resolution


def test_fig7_grad_cam_maps_on_the_layer_grid_with_a_colour_bar(demo_catalog, published):
    cat = demo_catalog.head(24).reset_index(drop=True)
    images = np.zeros((24, 64, 64, 3), np.uint8)
    cat["prediction"] = cat["oh_p50"] + (published["prediction"] - published["oh_p50"])[:24]
    maps = np.random.default_rng(0).normal(size=(24, 64, 64)).astype(np.float32)
    fig = figures.fig7_saliency(images, maps, cat, n=2, method="gradcam layer2", layer="layer2")
    shown = fig.axes[1].images[0].get_array()
    assert shown.shape == (8, 8) and shown.mask[0].all() and shown.max() == pytest.approx(1.0)
    colourbar = fig.axes[-1]
    assert "|map| / its maximum" in colourbar.get_xlabel() and "masked" in colourbar.get_xlabel()
    assert "8 x 8 grid of layer2" in fig._suptitle.get_text()
