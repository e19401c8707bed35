"""Catalog reading and cleaning on real rows, an MPA-JHU-shaped FITS fixture, and sharding."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pandas as pd
import pytest

from galmet.catalog import (
    CatalogError,
    build_catalog,
    clean_catalog,
    keep_columns,
    read_any_table,
    read_mpajhu,
    shard_of,
    write_shards,
)
from galmet.tables import IdError
from tests.conftest import DEMO, ROOT

GZ = ROOT / "tests" / "data" / "gz_photometry.csv"
GZ_COLUMNS = {"id": "objID", "redshift": "z", **{f"mag_{b}": f"modelMag_{b}" for b in "ugriz"}}


def test_demo_catalog_skips_absent_cuts(tmp_path):
    report = build_catalog({"source": "table", "path": str(DEMO / "catalog.csv"), "cuts": "paper"},
                           tmp_path / "clean.parquet", tmp_path / "report.json")
    clean = pd.read_parquet(tmp_path / "clean.parquet")
    raw = pd.read_csv(DEMO / "catalog.csv", dtype={"objID": str})
    assert clean.objID.dtype == "int64"
    assert sorted(clean.objID) == sorted(int(x) for x in raw.objID)  # exact 64-bit ids
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk == report and set(report) == {"rows_in", "rows_out", "dropped", "skipped_cuts", "conflicts"}
    assert report["rows_in"] == report["rows_out"] == 400
    for cut in ("mag_range", "u_minus_r", "zErr_range", "z_min", "petroMag_r_max", "unreliable"):
        assert cut in report["skipped_cuts"]


def test_each_configured_target_is_range_checked_from_the_registry():
    """Rows outside a configured target's registered valid range are dropped with a reason; a
    configured target the catalog lacks is an error naming it, not a silent drop."""
    df = pd.DataFrame({
        "objID": np.arange(1, 7, dtype="int64"),
        "oh_p50": [8.9, 8.8, 5.9, 10.6, 9.0, 8.5],
        "lgm_tot_p50": [10.0, -1.0, 10, 10, 13.5, 9.5],  # MPA-JHU's -1: no mass
    })
    clean, rep = clean_catalog(df, cuts="none", targets=["oh_p50", "lgm_tot_p50"])
    assert rep["dropped"]["bad_oh_p50"] == 2 and rep["dropped"]["bad_lgm_tot_p50"] == 2
    assert clean.objID.tolist() == [1, 6]
    _, only_oh = clean_catalog(df, cuts="none", targets=["oh_p50"])  # an unconfigured target: not checked
    assert only_oh["rows_out"] == 4 and "bad_lgm_tot_p50" not in only_oh["dropped"]
    with pytest.raises(CatalogError, match=r"no column 'lgm_tot_p50'.*config key targets.*catalog.columns"):
        clean_catalog(df.drop(columns="lgm_tot_p50"), cuts="none", targets=["oh_p50", "lgm_tot_p50"])


def test_every_registered_target_column_is_kept(tmp_path, monkeypatch):
    """A column registered in galmet.targets is read and kept whatever its case; the demo catalog
    loses no row to the registered ranges."""
    from galmet.targets import TARGETS, Target

    assert set(TARGETS) <= set(keep_columns())
    monkeypatch.setitem(TARGETS, "flux_x", Target("flux_x", "flux", unit="Jy", valid=(0.0, 100.0)))
    raw = pd.read_csv(DEMO / "catalog.csv", dtype={"objID": str}).iloc[:6]
    raw["FLUX_X"] = [1.0, 2.0, -3.0, 4.0, 500.0, 6.0]
    raw.to_csv(tmp_path / "c.csv", index=False)
    rep = build_catalog({"source": "table", "path": str(tmp_path / "c.csv"), "cuts": "none"},
                        tmp_path / "clean.parquet", tmp_path / "r.json", targets=["oh_p50", "flux_x"])
    clean = pd.read_parquet(tmp_path / "clean.parquet")
    assert list(clean.columns) == ["objID", "oh_p50", "flux_x"]
    assert rep["dropped"]["bad_flux_x"] == 2 and sorted(clean.flux_x) == [1.0, 2.0, 4.0, 6.0]
    demo = build_catalog({"source": "table", "path": str(DEMO / "catalog.csv"), "cuts": "paper"},
                         tmp_path / "demo.parquet", tmp_path / "demo.json", targets=["oh_p50"])
    assert demo["rows_out"] == 400 and demo["dropped"]["bad_oh_p50"] == 0


def test_float_damaged_ids_are_refused():
    with pytest.raises(IdError, match=r"gz_photometry.csv.*'objID'.*end in 000"):
        read_any_table(GZ, GZ_COLUMNS)


def test_float_ids_are_refused(tmp_path):
    df = pd.DataFrame({"objID": [1.237648702973411443e18, 1.2376487e18], "oh_p50": [8.9, 9.0]})
    df.to_parquet(tmp_path / "f.parquet")
    with pytest.raises(IdError, match="floating point"):
        read_any_table(tmp_path / "f.parquet")
    (tmp_path / "s.csv").write_text("objID,oh_p50\n1237648702973411443,8.9\n1.2376487e+18,9.0\n")
    with pytest.raises(IdError, match=r"row 2 of column 'objID'"):
        read_any_table(tmp_path / "s.csv")


def gz_rows() -> pd.DataFrame:
    """The real Galaxy Zoo rows with their float-damaged ids replaced by distinct made-up ids."""
    raw = pd.read_csv(GZ).drop(columns=["id"])
    raw.insert(0, "objID", 1237648700000000001 + 7 * np.arange(len(raw), dtype=np.int64))
    return raw


def test_cleaning_real_rows_counts_every_drop(tmp_path):
    raw = gz_rows()
    raw.to_csv(tmp_path / "gz.csv", index=False)
    df = read_any_table(tmp_path / "gz.csv", GZ_COLUMNS)
    assert df.objID.dtype == "int64" and df.objID.iloc[0] == 1237648700000000001
    clean, rep = clean_catalog(df, cuts="paper")
    assert rep["rows_in"] == len(raw) and rep["rows_out"] == len(clean)
    assert rep["rows_in"] - rep["rows_out"] == sum(rep["dropped"].values())
    # missing values in these real rows: empty redshifts; magnitudes empty, 0 or -9999.
    # Each dropped row counts once, for the first bad column (z, then u, g, r, i, z mags).
    assert rep["dropped"]["bad_z"] == raw.redshift.isna().sum() > 0
    ok = raw[raw.redshift.notna()]
    mags = ok[[f"mag_{b}" for b in "ugriz"]]
    holes = (mags.isna() | (mags == 0) | (mags <= -999)).any(axis=1)
    assert holes.sum() >= 20
    bad = sum(v for k, v in rep["dropped"].items() if k.startswith("bad_modelMag"))
    assert bad == holes.sum()
    ok = ok[~holes]
    # the cuts, recomputed independently on the remaining rows
    in_range = ((ok[mags.columns] > 10) & (ok[mags.columns] < 25)).all(axis=1)
    assert rep["dropped"]["mag_range"] == (~in_range).sum()
    ok = ok[in_range]
    ur = ok.mag_u - ok.mag_r
    assert rep["dropped"]["u_minus_r"] == (~((ur > 0) & (ur < 6))).sum()
    ok = ok[(ur > 0) & (ur < 6)]
    assert rep["dropped"]["z_min"] == (ok.redshift <= 0.02).sum() > 0
    assert len(clean) == (ok.redshift > 0.02).sum()
    assert set(rep["skipped_cuts"]) >= {"zErr_range", "petroMag_r_max", "unreliable", "bad_oh_p50"}
    assert clean.objID.is_unique and clean.modelMag_r.between(10, 25).all()


def test_cleaning_ids_and_labels():
    df = pd.DataFrame({
        "objID": np.array([5, 5, -1, 7, 8, 9, 10], dtype="int64"),
        "oh_p50": [8.9, 8.8, 8.7, -9999.0, np.nan, 9.0, 8.5],
        "reliable": [1, 1, 1, 1, 1, 0, 1],
        "lgm_tot_p50": [10.0, 10, 10, 10, 10, 10, -9999.0],
    })
    df.loc[1, "oh_p50"] = 8.9  # row 1 repeats row 0 whole
    clean, rep = clean_catalog(df, cuts="none")
    assert rep["dropped"] == {"bad_objID": 1, "duplicate_objID": 1, "conflicting_objID": 0, "unreliable": 1,
                              "bad_oh_p50": 2}
    assert clean.objID.tolist() == [5, 10] and clean.oh_p50.tolist() == [8.9, 8.5]
    assert np.isnan(clean.lgm_tot_p50.iloc[1])  # a sentinel nothing checks becomes missing
    assert "reliable" not in clean


def test_duplicates_identical_dropped_with_a_count_conflicting_named_and_dropped(caplog):
    """A repeated row is dropped and counted; an objID with rows that disagree (the metallicity
    9.111 against 8.500) is dropped whole, and the warning and the report name its id and values."""
    df = pd.DataFrame({
        "objID": np.array([11, 11, 11, 12, 12, 13], dtype="int64"),
        "oh_p50": [8.7, 8.7, 8.7, 9.111, 8.5, 8.9],
        "specObjID": np.array([1, 1, 1, 2, 3, 4], dtype="int64"),
    })
    with caplog.at_level("INFO", logger="galmet.catalog"):
        clean, rep = clean_catalog(df, cuts="none")
    assert clean.objID.tolist() == [11, 13]
    assert rep["dropped"]["duplicate_objID"] == 2 and rep["dropped"]["conflicting_objID"] == 2
    assert rep["conflicts"] == [{"objID": 12, "values": {"oh_p50": [9.111, 8.5], "specObjID": [2, 3]}}]
    warning = next(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "objID 12: oh_p50 9.111 vs 8.5, specObjID 2 vs 3" in warning
    assert "2 repeated row(s)" in caplog.text
    json.dumps(rep, allow_nan=False)  # the report is written as strict JSON


def test_empty_id_in_csv_is_a_bad_objid(tmp_path):
    (tmp_path / "c.csv").write_text("objID,oh_p50\n1237648702973411443,8.9\n,9.0\n")
    clean, rep = clean_catalog(read_any_table(tmp_path / "c.csv"))
    assert rep["dropped"]["bad_objID"] == 1 and clean.objID.tolist() == [1237648702973411443]


def _write_fits(path, cols: dict):
    from astropy.table import Table

    Table(cols).write(path, format="fits", overwrite=True)


@pytest.fixture
def mpajhu(tmp_path):
    """Six MPA-JHU rows (the DR7 files' column names) and a photometry table matching five."""
    n = 6
    plate, mjd, fiber = np.array([266] * n), np.array([51630] * n), np.arange(1, n + 1)
    _write_fits(tmp_path / "gal_info.fit", {
        "PLATEID": plate.astype(np.int16), "MJD": mjd.astype(np.int32),
        "FIBERID": fiber.astype(np.int16), "RA": np.linspace(140, 141, n),
        "DEC": np.linspace(0, 1, n), "Z": [0.05, 0.06, 0.01, 0.07, 0.08, 0.09],
        "Z_ERR": [1e-5, 2e-5, 1e-5, 1e-5, 1e-5, 1e-5], "RELIABLE": [1, 1, 1, 0, 1, 1],
        "SPECOBJID": np.array(["75094092974587904"] * n),
        "PHOTOID": np.zeros((n, 5), np.int32)})
    _write_fits(tmp_path / "fiboh.fits", {
        "MEDIAN": [8.9, -9999.0, 8.8, 9.0, 8.7, 8.6], "P16": [8.8] * n, "P84": [9.0] * n})
    _write_fits(tmp_path / "totlgm.fit", {"MEDIAN": [10.1, 10.2, 10.3, 10.4, 10.5, 10.6]})
    ids = np.array([1237648702973411443, 1237648702994383943, 1237648704043942146,
                    1237648720689102920, 1237648720701751375], dtype=np.int64)
    phot = pd.DataFrame({
        "objID": ids, "plate": 266, "mjd": 51630, "fiberID": [1, 2, 3, 4, 5],
        "specObjID": ids + 1, "ra": np.linspace(140, 141, n)[:5] + 1e-5,
        "dec": np.linspace(0, 1, n)[:5],
        **{f"modelMag_{b}": [18.0, 17.5, 17.0, 16.9, 16.5] for b in "griz"},
        "modelMag_u": [19.0, 19.5, 19.0, 18.0, 18.2],
        "petroMag_r": [17.0, 16.8, 17.2, 16.9, 18.5], "petroR90_r": [5.0, 6.0, 7.0, 8.0, 9.0]})
    phot.to_csv(tmp_path / "phot.csv", index=False)
    return {"gal_info": str(tmp_path / "gal_info.fit"), "fiboh": str(tmp_path / "fiboh.fits"),
            "totlgm": str(tmp_path / "totlgm.fit"), "photometry": str(tmp_path / "phot.csv")}


def test_mpajhu_fits_join_and_clean(tmp_path, mpajhu):
    rep = build_catalog({"source": "mpajhu-fits", "mpajhu": mpajhu, "cuts": "paper"},
                        tmp_path / "c.parquet", tmp_path / "r.json")
    clean = pd.read_parquet(tmp_path / "c.parquet")
    # row 1: oh -9999; row 2: z < 0.02; row 3: reliable 0; row 4: petroMag_r 18.5; row 5: no phot
    assert rep["dropped"] == {"no_photometry": 1, "bad_objID": 0, "duplicate_objID": 0,
                              "conflicting_objID": 0, "unreliable": 1, "bad_oh_p50": 1,
                              "bad_modelMag_u": 0, "bad_modelMag_g": 0, "bad_modelMag_r": 0,
                              "bad_modelMag_i": 0, "bad_modelMag_z": 0, "bad_z": 0,
                              "bad_zErr": 0, "bad_petroMag_r": 0, "mag_range": 0,
                              "u_minus_r": 0, "zErr_range": 0, "z_min": 1, "petroMag_r_max": 1}
    assert (rep["rows_in"], rep["rows_out"]) == (6, 1)
    row = clean.iloc[0]
    assert row.objID == 1237648702973411443 and row.specObjID == 1237648702973411444
    assert (row.oh_p50, row.lgm_tot_p50, row.z) == (8.9, 10.1, 0.05)
    assert row.ra == pytest.approx(140 + 1e-5)  # the photometric position wins
    assert clean.objID.dtype == "int64" and clean.specObjID.dtype == "int64"


def test_mpajhu_mismatched_files(tmp_path, mpajhu):
    _write_fits(tmp_path / "short.fits", {"MEDIAN": [8.9, 9.0]})
    with pytest.raises(CatalogError, match=r"fiboh.*2 rows but gal_info has 6"):
        read_mpajhu({**mpajhu, "fiboh": str(tmp_path / "short.fits")})
    with pytest.raises(CatalogError, match="catalog.mpajhu.photometry"):
        read_mpajhu({**mpajhu, "photometry": None})


def test_shards_are_stable_and_rewritten_only_when_changed(tmp_path):
    ids = 1237648700000000001 + 13 * np.arange(300, dtype=np.int64)
    assert (shard_of(ids, 4) == shard_of(ids[::-1], 4)[::-1]).all()
    assert shard_of([1237648702973411443], 7)[0] == shard_of(np.array([1237648702973411443]), 7)[0]
    counts = np.bincount(shard_of(ids, 4), minlength=4)
    assert counts.min() > 40  # spread over all shards
    df = pd.DataFrame({"objID": ids, "oh_p50": np.linspace(8, 9, 300)})
    d = tmp_path / "shards"
    idx = write_shards(df, d, 4, tmp_path / "index.json")
    assert idx["shards"] == ["0", "1", "2", "3"] and sorted(idx["changed"]) == idx["shards"]
    old = {p.name: p.stat().st_mtime_ns for p in d.glob("*.parquet")}
    time.sleep(0.01)
    new_id = np.int64(1237648799999999999)
    grown = pd.concat([df, pd.DataFrame({"objID": [new_id], "oh_p50": [8.5]})])
    idx = write_shards(grown, d, 4, tmp_path / "index.json")
    target = str(shard_of([new_id], 4)[0])
    assert idx["changed"] == [target]
    now = {p.name: p.stat().st_mtime_ns for p in d.glob("*.parquet")}
    assert [k for k in old if now[k] != old[k]] == [f"{target}.parquet"]
    back = pd.concat(pd.read_parquet(d / f"{s}.parquet") for s in idx["shards"])
    assert sorted(back.objID) == sorted(grown.objID) and back.objID.dtype == "int64"
    write_shards(grown, d, 2)
    assert sorted(p.name for p in d.glob("*.parquet")) == ["0.parquet", "1.parquet"]
    assert json.loads((tmp_path / "index.json").read_text())["rows"][target] > 0
    assert os.path.exists(tmp_path / "index.json")
