"""One prediction path: `galmet predict`, the infer target's shard step and the notebook API run
the same folder (good cutouts, one of another size, and the bad-file corpus of test_domain) through
the library's path (galmet.inputs -> galmet.predict) and give the same rows and the same skip
reasons; a folder whose images are all refused gives nothing, the same way for all three."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import galmet
from galmet.cli import main as galmet_main
from galmet.imaging import read_image
from galmet.infer import predict_shard
from galmet.inputs import list_directory, objid_from_name
from tests.conftest import DEMO
from tests.test_api import tiny_calibrated_ensemble
from tests.test_domain import bad_files

IMAGES = DEMO / "images"
COLUMNS = ["objID", "prediction", "p2p5", "p16", "p84", "p97p5", "domain_p", "in_domain"]
RESIZED = 900000000000000100  # a good cutout of another size (100 x 100 px): predicted after re-binning


@pytest.fixture(scope="module")
def model_path(demo_catalog, tmp_path_factory):
    """A calibrated ensemble (intervals, TTA over 2 views) with a domain block: every column."""
    return tiny_calibrated_ensemble(tmp_path_factory.mktemp("onepath") / "model.pt", demo_catalog)


def good_folder(folder: Path, n: int = 5) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    good = sorted(IMAGES.glob("*.jpg"))[:n]
    for p in good:
        shutil.copy(p, folder / p.name)
    shutil.copy(IMAGES / "cutouts.json", folder / "cutouts.json")
    return good


def log_reasons(path: Path) -> dict[str, str]:
    """{file name: reason} of a `galmet predict` log."""
    log = pd.read_csv(path, sep="\t", comment="#", dtype=str, keep_default_na=False)
    return {Path(p).name: r for p, r in zip(log["path"], log["reason"])}


def three_ways(model_path, folder: Path, tmp: Path, name: str):
    """(CLI rc, CLI table or None, CLI reasons), (infer table, infer reasons), (API frame, API reasons)."""
    out = tmp / f"{name}.parquet"
    rc = galmet_main(["predict", "--model", str(model_path), "--images", str(folder), "--out", str(out),
                      "--device", "cpu"])
    cli = pd.read_parquet(out) if out.exists() else None
    # the infer target's shard: a catalog row (objID, path) for every image file of the folder; a
    # name without an objID gets objID 0, which the catalog rules refuse as bad_objid
    names, _ = list_directory(folder)
    shard = tmp / f"{name}-shard.parquet"
    pd.DataFrame({"objID": np.array([objid_from_name(n) or 0 for n in names], np.int64),
                  "path": [str(folder / n) for n in names]}).to_parquet(shard)
    stats = predict_shard(shard, *_loaded(model_path), tmp / f"{name}-infer.parquet", tmp / f"{name}-skipped.csv",
                          tta=2, model_path=model_path)
    inf = pd.read_parquet(tmp / f"{name}-infer.parquet")
    sk = pd.read_csv(tmp / f"{name}-skipped.csv", dtype=str, keep_default_na=False)
    assert stats["n_skipped"] == len(sk)
    api = galmet.load_model(model_path, device="cpu").predict(folder, as_frame=True)
    api_reasons = {Path(s["path"]).name: s["reason"] for s in api.attrs["skipped"]}
    return ((rc, cli, log_reasons(tmp / f"{name}.parquet.log")),
            (inf, {Path(p).name: r for p, r in zip(sk["path"], sk["reason"])}), (api, api_reasons))


_MODELS: dict = {}


def _loaded(path):
    from galmet.modelfile import load

    if path not in _MODELS:
        _MODELS[path] = load(path, "cpu")
    return _MODELS[path]


def test_the_three_entry_points_give_the_same_rows_and_the_same_skips(model_path, tmp_path):
    folder = tmp_path / "mixed"
    good = good_folder(folder)
    big = np.asarray(Image.fromarray(read_image(good[0])).resize((100, 100)))
    Image.fromarray(big).save(folder / f"{RESIZED}.jpg", quality=95)
    codes = bad_files(folder, read_image(good[0])[None])
    (rc, cli, cli_reasons), (inf, inf_reasons), (api, api_reasons) = three_ways(model_path, folder, tmp_path, "m")
    assert rc == 0
    expected = sorted([int(p.stem) for p in good] + [RESIZED])
    for table in (cli, inf, api):
        assert sorted(table["objID"].tolist()) == expected and table["objID"].dtype == np.int64
    assert list(cli.columns) == COLUMNS and list(api.columns) == COLUMNS
    assert list(inf.columns) == COLUMNS  # the shard's table; gather adds model and galmet_version
    cli, inf, api = (t.set_index("objID").loc[expected] for t in (cli, inf, api))
    for other in (inf, api):
        for col in COLUMNS[1:-1]:
            np.testing.assert_allclose(other[col].to_numpy(np.float64), cli[col].to_numpy(np.float64),
                                       atol=1e-6, err_msg=col)
        assert other["in_domain"].tolist() == cli["in_domain"].tolist()
    assert np.all((cli["p16"] <= cli["prediction"]) & (cli["prediction"] <= cli["p84"]))
    # the same files skipped, with the same reasons, by all three
    assert {n: r.split(":")[0] for n, r in cli_reasons.items()} == codes
    assert api_reasons == cli_reasons
    images = {n: r for n, r in cli_reasons.items() if n != "notes.txt"}  # a catalog lists image files only
    assert inf_reasons == images


def test_a_folder_of_refused_images_gives_nothing_the_same_way(model_path, tmp_path):
    folder = tmp_path / "grey"
    good = good_folder(folder, 3)
    for p in good:  # every image grayscale: what crashed the API ("cannot reshape array of size 0")
        Image.fromarray(read_image(p)[..., 1]).save(folder / p.name)
    (rc, cli, cli_reasons), (inf, inf_reasons), (api, api_reasons) = three_ways(model_path, folder, tmp_path, "g")
    assert rc == 1 and cli is None  # the command: exit 1, no table, the reasons in its log
    assert len(inf) == 0 and list(inf.columns) == COLUMNS  # the shard: an empty table (gather needs one)
    assert len(api) == 0 and list(api.columns) == COLUMNS  # the API: an empty table
    assert set(cli_reasons) == {p.name for p in good}
    assert all(r.startswith("not_colour: a single-channel image") for r in cli_reasons.values())
    assert inf_reasons == cli_reasons == api_reasons


def test_predict_keeps_catalog_columns_and_evaluate_scores_the_fits_table(model_path, demo_catalog, tmp_path,
                                                                            capsys):
    """galmet predict --catalog --keep oh_p50 writes the truth beside the prediction (with its unit),
    and galmet evaluate scores the FITS table it wrote, its truth column found in the provenance."""
    from galmet.tables import read_astropy, read_table

    folder = tmp_path / "images"
    good = good_folder(folder, 6)
    ids = [int(p.stem) for p in good]
    cat = demo_catalog.set_index("objID").loc[ids].reset_index()[["objID", "oh_p50"]]
    cat["lgm_tot_p50"], cat["z"] = np.linspace(9.5, 10.5, len(cat)), 0.1  # another target's column, and one not kept
    cat["label"] = [f'galaxy "{i}", field A' for i in range(len(cat))]  # text with a comma and quotes
    cat.loc[len(cat)] = [900000000000000200, 8.9, 10.1, 0.1, "x"]  # no image: skipped, its truth not written
    cat["objID"] = cat["objID"].astype(np.int64)
    cat.to_csv(tmp_path / "cat.csv", index=False)
    out = tmp_path / "preds.fits"
    args = ["predict", "--model", str(model_path), "--catalog", str(tmp_path / "cat.csv"), "--images", str(folder),
            "--out", str(out), "--device", "cpu", "--chunk-size", "4"]
    assert galmet_main([*args, "--keep", "oh_p50,lgm_tot_p50"]) == 0
    t = read_astropy(out)
    assert t.colnames[:4] == ["objID", "oh_p50", "lgm_tot_p50", "prediction"]
    assert str(t["oh_p50"].unit) == "dex" and "dex" in str(t["lgm_tot_p50"].unit)
    from astropy.io import fits

    head = fits.getheader(out, 1)
    assert head["TTYPE2"] == "oh_p50" and head["TCOMM2"].startswith("catalog (true) value")
    assert head["TARGET"] == "oh_p50" and head["TCOMM3"].startswith("catalog value: total stellar mass")
    got = read_table(out)
    assert got["objID"].tolist() == ids and got["objID"].dtype == np.int64
    np.testing.assert_allclose(got["oh_p50"], cat["oh_p50"][:6])
    capsys.readouterr()
    assert galmet_main(["evaluate", str(out), "--json", str(tmp_path / "m.json")]) == 0
    text = capsys.readouterr().out
    assert "oh_p50 against prediction" in text and "  n                6" in text
    assert "68% interval (p16-p84): coverage" in text
    # CSV: text columns quoted as CSV quotes them, numbers with their decimals, chunk after chunk
    assert galmet_main([*args[:-5], str(tmp_path / "preds.csv"), *args[-4:], "--keep", "label,oh_p50"]) == 0
    csv = pd.read_csv(tmp_path / "preds.csv")
    assert list(csv.columns[:4]) == ["objID", "label", "oh_p50", "prediction"]
    assert csv["label"].tolist() == cat["label"][:6].tolist()
    np.testing.assert_allclose(csv["oh_p50"], cat["oh_p50"][:6], atol=1e-4)
    # a column the catalog does not have is named, with the catalog's columns
    assert galmet_main([*args, "--keep", "oh_p84"]) == 2
    assert "--keep oh_p84: not a column of" in capsys.readouterr().err


def test_out_of_domain_rows_and_the_refusal_are_the_same_through_all_three(model_path, tmp_path, capsys):
    """No option given: the model's own alpha everywhere. Real cutouts beside noise and blank-sky
    images: the same rows out of the domain (in_domain false, prediction kept, interval bounds
    empty) through the command, the infer shard and the API, each counting them; an alpha the
    model's calibration cannot reach is refused by all three, naming the smallest usable value."""
    from galmet.domain import DomainAlphaError, default_alpha, smallest_alpha
    from galmet.shifts import shift

    folder = tmp_path / "shifted"
    good = good_folder(folder, 6)
    x = np.stack([read_image(p) for p in good])
    odd = {900000000000000300 + i: img for i, img in
           enumerate(np.concatenate([shift("noise", x[:2], seed=1), shift("blank_sky", x[2:4], seed=1)]))}
    for oid, img in odd.items():
        Image.fromarray(img).save(folder / f"{oid}.jpg", quality=95)
    (rc, cli, _), (inf, _), (api, _) = three_ways(model_path, folder, tmp_path, "s")
    assert rc == 0
    meta = _loaded(model_path)[1]
    alpha = default_alpha(meta["domain"])
    assert alpha == 0.05 and api.attrs["domain_alpha"] == alpha
    ids = sorted(cli["objID"].tolist())
    cli, inf, api_rows = (t.set_index("objID").loc[ids] for t in (cli, inf, api))
    out = ~cli["in_domain"]
    assert set(odd) <= set(cli.index[out])  # noise and blank sky are out of the domain
    for t in (cli, inf, api_rows):
        assert (~t["in_domain"]).tolist() == out.tolist()
        assert t.loc[out, ["p2p5", "p16", "p84", "p97p5"]].isna().all().all()  # no interval out of the domain
        assert t.loc[~out, ["p2p5", "p16", "p84", "p97p5"]].notna().all().all()
        assert t["prediction"].notna().all() and (t.loc[out, "domain_p"] < alpha).all()
    k = int(out.sum())
    line = f"{k} of {len(ids)} predicted images are out of the model's domain (domain_p < 0.05)"
    assert line in (tmp_path / "s.parquet.log").read_text() and api.attrs["n_out_of_domain"] == k
    # an unreachable alpha: refused the same way by all three
    n = int(meta["domain"]["n"])
    bad, fix = 1 / (n + 1), f"{smallest_alpha(n):g} or more"
    capsys.readouterr()
    assert galmet_main(["predict", "--model", str(model_path), "--images", str(folder), "--out",
                        str(tmp_path / "r.csv"), "--domain-alpha", str(bad)]) == 2
    assert f"use --domain-alpha {fix}" in capsys.readouterr().err and not (tmp_path / "r.csv").exists()
    with pytest.raises(DomainAlphaError, match=f"use domain_alpha= {fix}"):
        galmet.load_model(model_path, domain_alpha=bad)
    with pytest.raises(DomainAlphaError, match=f"use infer.domain_alpha {fix}"):
        predict_shard(tmp_path / "s-shard.parquet", *_loaded(model_path), tmp_path / "r.parquet", tta=2,
                      alpha=bad)


def test_an_out_of_domain_row_in_csv_has_empty_interval_cells(model_path, tmp_path):
    folder = tmp_path / "noise"
    good = good_folder(folder, 1)
    from galmet.shifts import shift

    Image.fromarray(shift("noise", read_image(good[0])[None], seed=2)[0]).save(folder / "900000000000000400.jpg")
    out = tmp_path / "p.csv"
    assert galmet_main(["predict", "--model", str(model_path), "--images", str(folder), "--out", str(out)]) == 0
    lines = {line.split(",")[0]: line for line in out.read_text().splitlines()[1:]}
    noise = lines["900000000000000400"].split(",")
    assert noise[2:6] == ["", "", "", ""] and noise[-1] == "false" and float(noise[1]) > 0
    assert all(cell for cell in lines[good[0].stem].split(","))
