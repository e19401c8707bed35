"""The Snakemake report, opened in headless Chromium: every figure is in it, captioned with its
numbers, and renders (the screenshot is not blank).

Runs the real workflow on a tiny configuration (40 real galaxies of the bundled sample, 16 px,
one epoch; the published 16 px predictions as the reference) in a temporary directory, builds
``results/report.html``, then shows figures through the report's own viewer (its ``app.setView``,
as a click on a result does) and screenshots them. Needs Debian's chromium: skipped without it,
except under CI=true, where it fails.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from .conftest import DEMO, ROOT, skip_or_fail

pytestmark = pytest.mark.chromium

N_GALAXIES = 40
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser", "/usr/bin/chromium"):
        path = shutil.which(name)
        if path:
            return path
    skip_or_fail("chromium is not installed (apt-get install chromium)")


def run_snakemake(workdir, *args, timeout=900):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory",
           str(workdir), "--configfile", str(workdir / "config.yaml"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-6000:]}")
    return proc


def report_results(html: str) -> dict:
    """The report's table of results: path -> {caption, data_uri, labels, ...}."""
    start = html.index('<script id="results">')
    start = html.index("var results = ", start) + len("var results = ")
    end = html.index("</script>", start)
    return json.loads(html[start:end].strip().rstrip(";"))


def screenshot(chromium, html_path, png_path, tmp_path):
    profile = tmp_path / f"profile-{png_path.stem}"
    cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1400,1000",
           "--virtual-time-budget=15000", f"--screenshot={png_path}", html_path.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert png_path.is_file(), f"chromium wrote no screenshot:\n{proc.stderr[-3000:]}"
    return np.asarray(Image.open(png_path).convert("RGB")).astype(np.int16)


def show_result(html: str, path: str) -> str:
    """The report, opening on result ``path`` as the viewer shows it after a click."""
    script = (
        "<script>window.addEventListener('load', function () { setTimeout(function () {"
        f"var p = {json.dumps(path)}; var r = results[p];"
        "app.setView({content: 'img', contentPath: r.data_uri, resultPath: p});"
        "}, 300); });</script>"
    )
    head, tag, tail = html.rpartition("</body>")  # the page's own closing tag, not one in its JS
    assert tag, "no </body> in the report"
    return head + script + tag + tail


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    chromium = chromium_binary()
    workdir = tmp_path_factory.mktemp("report")
    catalog = pd.read_csv(DEMO / "catalog.csv", dtype={"objID": "string"}).iloc[:N_GALAXIES]
    (workdir / "images").mkdir()
    for oid in catalog["objID"]:
        shutil.copy(DEMO / "images" / f"{oid}.jpg", workdir / "images" / f"{oid}.jpg")
    catalog.to_csv(workdir / "catalog.csv", index=False)
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["catalog"]["path"] = str(workdir / "catalog.csv")
    cfg["cutouts"]["local_dir"] = str(workdir / "images")
    cfg["resolutions"] = [16]
    cfg["seeds"] = [0]
    cfg["ensemble"] = {"resolution": 16, "seeds": [0, 1]}
    cfg["survey"] = {"cycles": [1]}  # its row on the landing page
    cfg["split"]["fractions"] = {"train": 0.3, "valid": 0.5, "test": 0.2}  # >= 19 galaxies to calibrate 95%
    cfg["train"]["batch_size"] = 16
    cfg["train"]["stage2"] = {**cfg["train"].get("stage2", {}), "cycles": [1]}
    cfg["figures"] = {"formats": ["png"]}
    cfg["baselines"] = {"names": ["constant", "rf_gri"]}  # rf_gri: skipped, no photometry
    cfg["reference"] = {"resolutions": [16]}
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))
    run_snakemake(workdir, "--cores", "2", "--resources", "gpu=1")
    run_snakemake(workdir, "--cores", "1", "--report", "results/report.html")
    html_path = workdir / "results" / "report.html"
    return {"dir": workdir, "chromium": chromium, "html_path": html_path,
            "html": html_path.read_text()}


FIGURES = [
    "results/figures/oh_p50/resnet18-16px-seed0/fig1_examples.png",
    "results/figures/oh_p50/resnet18-16px-seed0/fig2_histograms.png",
    "results/figures/oh_p50/resnet18-16px-seed0/fig3_scatter.png",
    "results/figures/oh_p50/fig4_resolution.png",
    "results/reference/figures/published-16px/fig2_histograms.png",
    "results/reference/figures/published-16px/fig3_scatter.png",
    "results/figures/oh_p50/resnet18-16px-seeds0-1/calibration.png",
    "results/figures/oh_p50/resnet18-16px-seeds0-1/risk_coverage.png",
    "results/figures/oh_p50/resnet18-16px-seeds0-1/fig3_scatter.png",
]


def test_every_figure_and_table_is_in_the_report_with_its_numbers(report):
    results = report_results(report["html"])
    arch = yaml.safe_load((report["dir"] / "config.yaml").read_text())["train"]["arch"]
    expected = [p.replace("resnet18", arch) for p in FIGURES]
    expected += ["results/tables/oh_p50/scatter_vs_resolution.csv"]
    missing = [p for p in expected if p not in results]
    assert not missing, f"not in the report: {missing}; it has {sorted(results)}"
    for path in expected:
        assert results[path]["data_uri"].startswith("data:"), path
    metrics = json.loads((report["dir"] / "results" / "metrics" / "oh_p50" /
                          f"{arch}-16px-seed0.json").read_text())
    caption3 = results[expected[2]]["caption"]
    assert f"RMSE = {metrics['rmse']:.3f} dex" in caption3
    assert f"N = {metrics['n']} galaxies" in caption3
    published = results["results/reference/figures/published-16px/fig3_scatter.png"]["caption"]
    assert "N = 20466 galaxies" in published and "RMSE = 0.104 dex" in published
    caption4 = re.sub(r"<[^>]+>", "", results["results/figures/oh_p50/fig4_resolution.png"]["caption"])
    assert "published 16 px: RMSE 0.104, NMAD 0.080 dex" in caption4
    assert "baseline constant: RMSE" in caption4 and "baseline rf_gri: skipped" in caption4
    unc = json.loads((report["dir"] / "results" / "uncertainty" / "oh_p50" /
                      f"{arch}-16px-seeds0-1.json").read_text())
    calibration = re.sub(r"\s+", " ", results[expected[6]]["caption"])
    assert f"intervals contain {100 * unc['coverage68']:.1f}% of the truths" in calibration
    assert f"calibrated on {unc['n_calibration']} validation galaxies" in calibration
    assert f"{unc['rmse_confident_half']:.3f} dex" in results[expected[7]]["caption"]
    assert "68% interval" in results[expected[8]]["caption"]
    overlap = [p for p in results if p.startswith("results/reference/overlap/")]
    assert overlap and "0 galaxies in common" in re.sub(r"<[^>]+>", "",
                                                         results[overlap[0]]["caption"])


def _content(shot):
    """The result pane, right of the report's navigation bar."""
    return shot[:, 300:, :]


@pytest.mark.parametrize("figure", [FIGURES[0], FIGURES[2], FIGURES[3]])
def test_figures_render_in_chromium(report, figure, tmp_path):
    results = report_results(report["html"])
    arch = yaml.safe_load((report["dir"] / "config.yaml").read_text())["train"]["arch"]
    figure = figure.replace("resnet18", arch)
    page = tmp_path / "view.html"
    page.write_text(show_result(report["html"], figure))
    shot = _content(screenshot(report["chromium"], page, tmp_path / "figure.png", tmp_path))
    landing = _content(screenshot(report["chromium"], report["html_path"],
                                  tmp_path / "landing.png", tmp_path))
    # the figure is drawn: a varied picture, not a blank pane or a broken-image icon
    not_white = (shot < 235).any(axis=2).mean()
    assert not_white > 0.01, f"{figure}: only {not_white:.1%} of the pane is drawn"
    assert np.abs(shot - landing).mean() > 5, "the view did not change from the landing page"
    for colour, least in SIGNATURES[figure.rsplit("/", 1)[1]]:
        share = _share(shot, colour)
        assert share > least, f"{figure}: {share:.3%} of the pane has colour {colour}"
    assert results[figure]["caption"]


# colours each figure must show (matplotlib's C0 blue, C1 orange, C3 red, the grey 2-D histogram;
# the dark sky of the cutouts) and the least share of the pane they cover: text or a broken image has none of them
SIGNATURES = {
    "fig1_examples.png": [((0, 0, 0), 0.10)],
    "fig3_scatter.png": [((214, 39, 40), 0.0005), ((128, 128, 128), 0.001)],
    "fig4_resolution.png": [((31, 119, 180), 0.0002), ((255, 127, 14), 0.0002)],
}


def _share(shot, colour, tol=40):
    return (np.abs(shot - np.array(colour)).max(axis=2) < tol).mean()


def test_broken_figure_is_detected(report, tmp_path):
    """The checks above can fail: a figure whose data is broken does not pass them."""
    html = report["html"]
    results = report_results(html)
    path = next(iter(p for p in results if p.endswith("fig3_scatter.png")))
    page = tmp_path / "broken.html"
    broken = show_result(html, path).replace(
        "contentPath: r.data_uri", "contentPath: 'data:image/png;base64,AAAA'")
    page.write_text(broken)
    shot = _content(screenshot(report["chromium"], page, tmp_path / "broken.png", tmp_path))
    assert all(_share(shot, c) <= least for c, least in SIGNATURES["fig3_scatter.png"])


def _landing_html(html: str) -> str:
    """The report's landing page (the workflow description), as the report's script holds it."""
    start = html.index("var workflow_desc = ") + len("var workflow_desc = ")
    return json.JSONDecoder().raw_decode(html[start:])[0]


def test_landing_page_opens_on_the_results(report, tmp_path):
    """What ran, and every model's, baseline's and published test numbers with their noise."""
    arch = yaml.safe_load((report["dir"] / "config.yaml").read_text())["train"]["arch"]
    metrics = json.loads((report["dir"] / "results" / "metrics" / "oh_p50" /
                          f"{arch}-16px-seed0.json").read_text())
    constant = json.loads((report["dir"] / "results" / "baselines" / "oh_p50" / "constant.json").read_text())
    error = metrics["rmse"] / np.sqrt(2 * metrics["n"])
    expected = [f"{arch}-16px-seed0", f"{metrics['rmse']:.3f}\u00a0±\u00a0{error:.3f}", f"{metrics['nmad']:.3f}",
                f"{constant['test']['rmse']:.3f}", "published 16 px", "0.104\u00a0±\u00a00.001",
                "rf_gri (baseline)", "skipped", "at 16 px", f"{arch}-16px-seeds0-1", "coverage 68/95"]
    survey = json.loads((report["dir"] / "results" / "uncertainty" / "oh_p50" /
                         f"{arch}-16px-seeds0-1-survey.json").read_text())
    expected += [f"{arch}-16px-seeds0-1-survey", f"{survey['coverage68']:.2f}\u00a0/\u00a0{survey['coverage95']:.2f}"]
    text = re.sub(r"[ \n]+", " ", html.unescape(re.sub(r"<[^>]+>", " ", _landing_html(report["html"]))))
    for piece in expected:
        assert piece in text, f"{piece!r} not on the landing page"
    # and the browser shows them: the DOM after the report's scripts ran
    proc = subprocess.run([report["chromium"], *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'p'}",
                           "--virtual-time-budget=15000", "--dump-dom", report["html_path"].as_uri()],
                          capture_output=True, text=True, timeout=180)
    dom = html.unescape(re.sub(r"<[^>]+>", " ", proc.stdout))
    assert "galmet: metallicity from SDSS images" in dom
    assert f"{metrics['rmse']:.3f}\u00a0±\u00a0{error:.3f}" in dom
