"""Tables with units and provenance (galmet.tables): FITS, ECSV, VOTable, and Parquet/CSV metadata."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import astropy.units as u
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from astropy.io import fits
from astropy.table import Table

from galmet.cli import main as galmet_main
from galmet.imaging import block_average, read_image
from galmet.modelfile import load as load_model
from galmet.modelfile import save as save_model
from galmet.tables import (
    IdError,
    column_info,
    file_sha256,
    iter_table_chunks,
    read_table,
    read_votable_infos,
    sidecar_path,
    table_columns,
)
from galmet.targets import TARGETS
from galmet.train import train_model

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "resources" / "demo" / "images"
IMAGES_BLOCK = {"source": "skyserver", "provider": "skyserver", "survey": "SDSS", "layer": None,
                "data_release": "DR14", "bands": ["i", "r", "g"], "scale": "adaptive",
                "scale_rule": "0.024 * petroR90_r arcsec/px", "size": [128, 128]}
BIG_ID = 1237648702973411443  # 19 digits: not exact in a float64


@pytest.fixture(scope="module")
def model_path(demo_catalog, tmp_path_factory):
    """A small model really trained (1 epoch, 16 px, 16 demo galaxies) with a domain block, the
    images block of SkyServer cutouts and a calibration block, as a calibrated ensemble has."""
    ids = demo_catalog["objID"].to_numpy()[:20]
    x = block_average(np.stack([read_image(IMAGES / f"{i}.jpg") for i in ids]), 16)
    y = demo_catalog["oh_p50"].to_numpy(np.float32)[:20]
    out = tmp_path_factory.mktemp("model")
    params = {"arch": "resnet18", "pretrained": "none", "batch_size": 8, "stage2": {"cycles": [1]},
              "num_threads": 1, "device": "cpu"}
    train_model(x[:16], y[:16], x[16:], y[16:], params, out, {"seed": 0, "target": "oh_p50", "tta": 8})
    model, meta = load_model(out / "model.pt")
    scores = sorted(np.random.default_rng(0).uniform(0.2, 3.0, 40).tolist())
    meta = {**meta, "images": IMAGES_BLOCK, "calibration": {
        "method": "split conformal, score |y - mean| / spread", "split": "valid", "n": 40, "tta": 8,
        "spread": "std of members x TTA views", "scores": scores}}
    path = out / "resnet18-16px-seed0" / "model.pt"
    path.parent.mkdir()
    save_model(path, model, meta)
    return path


@pytest.fixture
def image_dir(demo_catalog, tmp_path):
    d = tmp_path / "images"
    d.mkdir()
    for i in demo_catalog["objID"].to_numpy()[:4]:
        shutil.copy(IMAGES / f"{i}.jpg", d / f"{i}.jpg")
    return d


def _predict(model_path, image_dir, out, *more) -> None:
    assert galmet_main(["predict", "--model", str(model_path), "--images", str(image_dir), "--out", str(out),
                        *more]) == 0


def test_every_format_carries_units_and_provenance(model_path, image_dir, tmp_path):
    outs = {ext: tmp_path / f"pred.{ext}" for ext in ("csv", "parquet", "fits", "ecsv", "vot")}
    for out in outs.values():
        _predict(model_path, image_dir, out, "--levels", "0.9")
    sha = file_sha256(model_path)
    cols = ["objID", "prediction", "p2p5", "p5", "p16", "p84", "p95", "p97p5", "domain_p", "in_domain"]
    ref = pd.read_parquet(outs["parquet"])
    assert list(ref.columns) == cols and ref["objID"].dtype == np.int64

    # Parquet: schema metadata (JSON under "galmet") and each field's unit
    schema = pq.read_schema(outs["parquet"])
    doc = json.loads(schema.metadata[b"galmet"])
    prov = doc["provenance"]
    assert prov["model"] == "resnet18-16px-seed0" and prov["model_sha256"] == sha and prov["target"] == "oh_p50"
    assert prov["images"]["bands"] == ["i", "r", "g"] and prov["images"]["survey"] == "SDSS"
    assert prov["calibration"] == {"method": "split conformal, score |y - mean| / spread", "split": "valid",
                                   "n": 40, "levels": [0.68, 0.9, 0.95]}
    assert prov["tta"] == 8 and prov["domain_alpha"] == 0.05 and prov["date"].startswith("20")  # the model's
    assert schema.field("p16").metadata[b"unit"] == b"dex"
    assert doc["columns"]["prediction"]["unit"] == "dex" and doc["columns"]["domain_p"]["unit"] == ""

    # CSV: the table as before (4 decimals), everything else in the sidecar
    side = json.loads(sidecar_path(outs["csv"]).read_text())
    assert side["provenance"]["model_sha256"] == sha and side["columns"]["p97p5"]["unit"] == "dex"
    csv = pd.read_csv(outs["csv"], dtype={"objID": str})
    assert list(csv.columns) == cols
    np.testing.assert_allclose(csv["prediction"], ref["prediction"].round(4), atol=1e-12)

    # FITS: a valid header (keywords <= 8 chars, values fit), int64 ids, TUNIT/TCOMM, provenance keywords
    with fits.open(outs["fits"]) as hdul:
        hdul.verify("exception")
        h = hdul[1].header
        assert hdul[1].columns["objID"].format == "K"
    assert h["MODELSHA"] == sha and h["TARGET"] == "oh_p50" and h["SURVEY"] == "SDSS" and h["BANDS"] == "i,r,g"
    assert h["IMSIZE"] == "128x128" and h["CAL_N"] == 40 and h["LEVELS"] == "0.68,0.9,0.95" and h["TTA"] == 8
    assert h["DOMALPHA"] == 0.05 and h["TUNIT2"] == "dex" and "interval" in h["TCOMM3"]
    with pytest.warns(u.UnitsWarning):  # dex is no FITS unit: astropy keeps the string
        t = Table.read(outs["fits"])
    assert str(t["p84"].unit) == "dex" and u.Unit(str(t["p84"].unit)) == u.dex

    # ECSV: real astropy units, descriptions and the provenance as meta
    e = Table.read(outs["ecsv"])
    assert e["prediction"].unit == u.dex and e["domain_p"].unit is None and e["in_domain"].dtype == bool
    assert "12 + log(O/H)" in e["prediction"].description and e.meta["model_sha256"] == sha
    assert e.meta["images"]["bands"] == ["i", "r", "g"] and e.meta["calibration"]["n"] == 40

    # VOTable: FIELD units and descriptions, INFO elements
    v = Table.read(outs["vot"])
    assert str(v["p5"].unit) == "dex" and v["objID"].dtype == np.int64 and "90% interval" in v["p5"].description
    infos = read_votable_infos(outs["vot"])
    assert infos["model_sha256"] == sha and infos["images.bands"] == ["i", "r", "g"] and infos["tta"] == 8

    for tab in (t, e, v):  # the same numbers in every format
        assert list(tab.colnames) == cols and list(tab["objID"]) == ref["objID"].tolist()
        np.testing.assert_array_equal(np.asarray(tab["p2p5"]), ref["p2p5"].to_numpy())
        np.testing.assert_array_equal(np.asarray(tab["in_domain"]), ref["in_domain"].to_numpy())


def test_registered_units_are_astropy_units():
    for name, target in TARGETS.items():
        units, desc = column_info(name, ["objID", name, "prediction", "p16", "spread", "domain_p", "in_domain"])
        assert u.Unit(units["prediction"]) == u.Unit(units["p16"]) == u.Unit(target.table_unit)
        assert units["objID"] == units["domain_p"] == units["in_domain"] == ""
        assert all(desc.values())
    assert u.Unit(TARGETS["lgm_tot_p50"].table_unit) == u.dex(u.solMass)


def _catalog(ids) -> Table:
    return Table({"objID": np.asarray(ids, dtype=np.int64), "ra": [10.0, 11.0], "dec": [1.0, 2.0],
                  "path": ["a/1.jpg", "b/2.jpg"]})


@pytest.mark.parametrize("ext", ["fits", "ecsv", "vot"])
def test_catalogs_in_astropy_formats_keep_ids_exact(tmp_path, ext):
    path = tmp_path / f"cat.{ext}"
    _catalog([BIG_ID, BIG_ID + 1]).write(path, format={"vot": "votable"}.get(ext))
    assert table_columns(path) == ["objID", "ra", "dec", "path"]
    df = read_table(path)
    assert df["objID"].dtype == np.int64 and df["objID"].tolist() == [BIG_ID, BIG_ID + 1]
    assert df["path"].tolist() == ["a/1.jpg", "b/2.jpg"]
    chunks = list(iter_table_chunks(path, ["objID", "path"], 1))
    assert [c["objID"].tolist() for c in chunks] == [[BIG_ID], [BIG_ID + 1]]
    bad = _catalog([BIG_ID, BIG_ID + 1])
    bad["objID"] = bad["objID"].astype(float)
    bad_path = tmp_path / f"bad.{ext}"
    bad.write(bad_path, format={"vot": "votable"}.get(ext))
    with pytest.raises(IdError, match=rf"bad\.{ext}: column 'objID' was stored as floating point"):
        read_table(bad_path)


def test_predict_and_download_read_astropy_catalogs(model_path, image_dir, tmp_path, capsys):
    from galmet.catalog import read_any_table

    ids = sorted(int(p.stem) for p in image_dir.glob("*.jpg"))[:2]
    cat = Table({"objID": np.asarray(ids, np.int64), "path": [str(image_dir / f"{i}.jpg") for i in ids]})
    cat.write(tmp_path / "cat.vot", format="votable")
    _predict(model_path, image_dir, tmp_path / "p.ecsv")  # every image
    assert galmet_main(["predict", "--model", str(model_path), "--catalog", str(tmp_path / "cat.vot"),
                        "--out", str(tmp_path / "c.fits")]) == 0
    got = Table.read(tmp_path / "c.fits", unit_parse_strict="silent")
    assert list(got["objID"]) == ids
    every = Table.read(tmp_path / "p.ecsv")
    every.add_index("objID")
    np.testing.assert_allclose(np.asarray(got["prediction"]), [every.loc[i]["prediction"] for i in ids])
    # the workflow's catalog.source: table reads ECSV and VOTable (ids exact)
    Table({"objID": np.asarray([BIG_ID], np.int64), "oh_p50": [8.9]}).write(tmp_path / "c.ecsv")
    assert read_any_table(tmp_path / "c.ecsv")["objID"].tolist() == [BIG_ID]
    # a float objID column is refused by the command, naming the file
    Table({"objID": [float(BIG_ID)], "path": ["x.jpg"]}).write(tmp_path / "f.fits")
    assert galmet_main(["predict", "--model", str(model_path), "--catalog", str(tmp_path / "f.fits"),
                        "--out", str(tmp_path / "f.csv")]) == 2
    assert "f.fits: column 'objID' was stored as floating point" in capsys.readouterr().err


@pytest.mark.parametrize("ext", ["fits", "ecsv"])
def test_infer_gathers_into_astropy_formats(model_path, image_dir, tmp_path, ext):
    from galmet.infer import gather, predict_shard

    model, meta = load_model(model_path)
    ids = sorted(int(p.stem) for p in image_dir.glob("*.jpg"))
    parts = []
    for k, part in enumerate((ids[:2], ids[2:])):
        shard = tmp_path / f"shard{k}.parquet"
        pd.DataFrame({"objID": part, "path": [str(image_dir / f"{i}.jpg") for i in part]}).to_parquet(shard)
        parts.append(tmp_path / f"part{k}.parquet")
        predict_shard(shard, model, meta, parts[-1], model_path=model_path, tta=8)
    assert gather(parts, tmp_path / "all.parquet", model="oh_p50/mine", version="9.9") == len(ids)
    assert gather(parts, tmp_path / f"all.{ext}", model="oh_p50/mine", version="9.9") == len(ids)
    ref = pd.read_parquet(tmp_path / "all.parquet")
    doc = json.loads(pq.read_schema(tmp_path / "all.parquet").metadata[b"galmet"])
    assert doc["provenance"]["model"] == "oh_p50/mine" and doc["provenance"]["tta"] == 8
    t = Table.read(tmp_path / f"all.{ext}", **({"unit_parse_strict": "silent"} if ext == "fits" else {}))
    assert list(t["objID"]) == ids and list(t["model"]) == ["oh_p50/mine"] * len(ids)
    np.testing.assert_array_equal(np.asarray(t["p97p5"]), ref["p97p5"].to_numpy())
    if ext == "fits":
        assert t.meta["MODEL"] == "oh_p50/mine" and t.meta["MODELSHA"] == file_sha256(model_path)
    else:
        assert t.meta["model"] == "oh_p50/mine" and t["prediction"].unit == u.dex


def test_ecsv_written_in_slices_reads_back_whole(tmp_path, monkeypatch):
    import galmet.tables as tables

    monkeypatch.setattr(tables, "ECSV_SLICE", 2)  # 5 rows: a header and three slices
    df = pd.DataFrame({"objID": np.arange(BIG_ID, BIG_ID + 5, dtype=np.int64), "prediction": [8.1, 8.2, 8.3, 8.4, 8.5],
                       "in_domain": [True, False, True, True, False], "model": ["a b"] * 5})
    tables.write_table(df, tmp_path / "t.ecsv", *column_info("oh_p50", df.columns), meta={"model": "m"})
    t = Table.read(tmp_path / "t.ecsv")
    assert t["objID"].tolist() == df["objID"].tolist() and t["prediction"].tolist() == df["prediction"].tolist()
    assert t["in_domain"].tolist() == df["in_domain"].tolist() and t["model"].tolist() == ["a b"] * 5
    assert t["prediction"].unit == u.dex and t.meta == {"model": "m"}
    tables.write_table(df.iloc[:0], tmp_path / "empty.ecsv", meta={"model": "m"})  # no rows: still a table
    assert len(Table.read(tmp_path / "empty.ecsv")) == 0


def test_download_cutouts_reads_a_fits_catalog(tmp_path, capsys):
    from tests.conftest import DEMO
    from tests.fakesky import FakeSky, made_up_catalog

    cat, images = made_up_catalog(DEMO / "images", 3)
    t = Table.from_pandas(cat[["objID", "ra", "dec", "petroR90_r"]].astype({"objID": "int64"}))
    t.write(tmp_path / "cat.fits")
    with FakeSky(cat, images) as sky:
        assert galmet_main(["download-cutouts", "--catalog", str(tmp_path / "cat.fits"), "--base-url", sky.base_url,
                            "--no-progress", "--out", str(tmp_path / "o")]) == 0
    assert sorted(p.stem for p in (tmp_path / "o").glob("*.jpg")) == sorted(str(i) for i in cat["objID"])
    t["objID"] = t["objID"].astype(float)
    t.write(tmp_path / "float.fits")
    assert galmet_main(["download-cutouts", "--catalog", str(tmp_path / "float.fits"), "--base-url", "http://x",
                        "--no-progress", "--out", str(tmp_path / "o2")]) == 1
    assert "float.fits: column 'objID' was stored as floating point" in capsys.readouterr().err


def test_predict_help_lists_the_formats_and_what_they_cost(capsys):
    with pytest.raises(SystemExit):
        galmet_main(["predict", "--help"])
    text = capsys.readouterr().out
    for word in (".csv", ".parquet", ".fits", ".ecsv", ".vot", "meta.json", "TUNITn", "MODELSHA", "in memory",
                 "dex(solMass)"):
        assert word in text


def test_a_votable_catalog_is_checked_for_the_target_columns_at_start(tmp_path):
    import yaml

    from galmet.config import ConfigError, check_inputs, load_config

    Table({"objID": np.asarray([BIG_ID], np.int64), "oh_p50": [8.9]}).write(tmp_path / "cat.vot", format="votable")
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["catalog"]["path"] = str(tmp_path / "cat.vot")
    raw["cutouts"]["local_dir"] = str(IMAGES)
    raw["targets"] = ["oh_p50", "lgm_tot_p50"]
    with pytest.raises(ConfigError, match=r"lgm_tot_p50 not in the columns of catalog.path .*cat.vot"):
        check_inputs(load_config(raw))
    raw["targets"] = ["oh_p50"]
    check_inputs(load_config(raw))


def test_infer_splits_a_fits_catalog(tmp_path):
    from galmet.infer import split_catalog

    ids = [BIG_ID, BIG_ID + 1, BIG_ID + 2]
    Table({"objID": np.asarray(ids, np.int64), "path": ["a/1.jpg", "", "c/3.jpg"]}).write(tmp_path / "cat.fits")
    shards = [tmp_path / "s0.parquet", tmp_path / "s1.parquet"]
    assert split_catalog(tmp_path / "cat.fits", shards, images_dir="imgs", chunk_size=2) == [2, 1]
    got = pd.concat([pd.read_parquet(s) for s in shards])
    assert got["objID"].tolist() == ids and got["path"].tolist() == ["a/1.jpg", f"imgs/{BIG_ID + 1}.jpg", "c/3.jpg"]
