"""Survey-scale inference (galmet.infer, workflow/rules/infer.smk) on the bundled demo images."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from galmet import __version__
from galmet.imaging import read_image, to_resolution
from galmet.infer import InferError, gather, predict_shard, split_catalog
from galmet.modelfile import images_block
from galmet.modelfile import load as load_model
from galmet.predict import predict_images
from tests.conftest import DEMO, EXPERIMENT, ROOT
from tests.untrained import write_untrained_model

RES = 16


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return write_untrained_model(tmp_path_factory.mktemp("model") / "oh_p50" / "resnet18-16px-seed0" / "model.pt",
                                 res=RES)


@pytest.fixture(scope="module")
def model(model_file):
    return load_model(model_file, "cpu")


def _ids(demo_catalog, n):
    return demo_catalog["objID"].head(n).tolist()


def test_split_catalog_contiguous_shards_and_paths(tmp_path, demo_catalog):
    ids = _ids(demo_catalog, 10)
    paths = [str(DEMO / "images" / f"{i}.jpg") if k % 2 else "" for k, i in enumerate(ids)]
    cat = tmp_path / "cat.csv"
    pd.DataFrame({"objID": [str(i) for i in ids], "path": paths, "z": 0.1}).to_csv(cat, index=False)
    outs = [tmp_path / f"s{k}.parquet" for k in range(3)]
    counts = split_catalog(cat, outs, images_dir="/imgs", chunk_size=3)
    assert counts == [4, 4, 2]
    got = pd.concat([pd.read_parquet(p) for p in outs], ignore_index=True)
    assert got["objID"].dtype == np.int64 and got["objID"].tolist() == ids
    for k, (oid, p) in enumerate(zip(got["objID"], got["path"])):
        assert p == (paths[k] if k % 2 else f"/imgs/{oid}.jpg")


def test_split_catalog_more_shards_than_rows_and_errors(tmp_path, demo_catalog):
    cat = tmp_path / "cat.parquet"
    pd.DataFrame({"objID": np.array(_ids(demo_catalog, 2), dtype=np.int64)}).to_parquet(cat)
    outs = [tmp_path / f"s{k}.parquet" for k in range(4)]
    assert split_catalog(cat, outs, cache_dir=str(DEMO / "images")) == [1, 1, 0, 0]
    assert pq.read_table(outs[3]).num_rows == 0
    with pytest.raises(InferError, match="no infer.images_dir"):
        split_catalog(cat, [tmp_path / "x.parquet"])
    bad = tmp_path / "bad.csv"
    bad.write_text("id,path\n1,a.jpg\n")
    with pytest.raises(InferError, match="no objID column"):
        split_catalog(bad, [tmp_path / "y.parquet"], images_dir=".")


def test_predict_shard_streams_skips_and_matches_direct_prediction(tmp_path, demo_catalog, model):
    net, meta = model
    ids = _ids(demo_catalog, 12)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes((DEMO / "images" / f"{ids[0]}.jpg").read_bytes()[:200])
    rows = [(i, str(DEMO / "images" / f"{i}.jpg")) for i in ids]
    rows.insert(5, (42, str(broken)))
    rows.insert(7, (43, str(tmp_path / "missing.jpg")))
    shard = tmp_path / "shard.parquet"
    pd.DataFrame(rows, columns=["objID", "path"]).to_parquet(shard)

    direct = predict_images(net, meta, np.stack([to_resolution(read_image(DEMO / "images" / f"{i}.jpg"), RES)
                                                 for i in ids]), tta=1)
    results = {}
    for chunk in (5, 100):
        out, skipped = tmp_path / f"p{chunk}.parquet", tmp_path / f"s{chunk}.csv"
        stats = predict_shard(shard, net, meta, out, skipped, tta=1, batch_size=4, chunk_size=chunk)
        assert stats["n_in"] == 14 and stats["n_predicted"] == 12 and stats["n_skipped"] == 2
        df = pd.read_parquet(out)
        assert df["objID"].tolist() == ids
        results[chunk] = df["prediction"].to_numpy()
        sk = pd.read_csv(skipped)
        assert sorted(sk["objID"]) == [42, 43] and sk["reason"].str.len().min() > 0
    np.testing.assert_allclose(results[5], results[100], atol=1e-6)
    np.testing.assert_allclose(results[100], direct, atol=1e-6)
    tta4 = predict_shard(shard, net, meta, tmp_path / "tta.parquet", tta=4, batch_size=4, chunk_size=5)
    assert tta4["n_predicted"] == 12
    assert not np.allclose(pd.read_parquet(tmp_path / "tta.parquet")["prediction"], results[5])


def test_gather_keeps_order_and_adds_model_and_version(tmp_path):
    parts = []
    for k, ids in enumerate(([3, 1], [], [2])):
        p = tmp_path / f"{k}.parquet"
        pd.DataFrame({"objID": np.array(ids, np.int64), "prediction": np.array(ids, float) / 10}).to_parquet(p)
        parts.append(p)
    out = tmp_path / "all.parquet"
    assert gather(parts, out, model="oh_p50/resnet18-16px-seed0") == 3
    df = pd.read_parquet(out)
    assert list(df.columns) == ["objID", "prediction", "model", "galmet_version"]
    assert df["objID"].tolist() == [3, 1, 2] and df["objID"].dtype == np.int64
    assert set(df["model"].astype(str)) == {"oh_p50/resnet18-16px-seed0"}
    assert set(df["galmet_version"].astype(str)) == {__version__}


def test_gather_keeps_an_ensembles_interval_columns(tmp_path):
    parts = []
    for k, ids in enumerate(([3, 1], [2])):
        p = tmp_path / f"{k}.parquet"
        pred = np.array(ids, float)
        pd.DataFrame({"objID": np.array(ids, np.int64), "prediction": pred, "p2p5": pred - 2, "p16": pred - 1,
                      "p84": pred + 1, "p97p5": pred + 2, "domain_p": pred / 10, "in_domain": pred > 1}).to_parquet(p)
        parts.append(p)
    out = tmp_path / "all.parquet"
    assert gather(parts, out, model="oh_p50/resnet18-16px-seeds0-1") == 3
    df = pd.read_parquet(out)
    assert list(df.columns) == ["objID", "prediction", "p2p5", "p16", "p84", "p97p5", "domain_p", "in_domain",
                                "model", "galmet_version"]
    assert (df["p97p5"] - df["prediction"]).tolist() == [2.0, 2.0, 2.0]
    assert df["in_domain"].dtype == bool and df["in_domain"].tolist() == [True, False, True]


def _snakemake(workdir: Path, cfg: Path, *extra: str) -> str:
    cmd = [str(Path(sys.executable).with_name("snakemake")), "infer", "--snakefile", str(ROOT / "Snakefile"),
           "--configfile", str(cfg), "--directory", str(workdir), "--cores", "2", "--resources", "gpu=1", *extra]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
    return p.stdout + p.stderr


def test_snakemake_infer_target_is_sharded_and_resumable(tmp_path, demo_catalog):
    ids = _ids(demo_catalog, 30)
    cat = tmp_path / "survey.csv"
    pd.DataFrame({"objID": [str(i) for i in ids]}).to_csv(cat, index=False)
    # a model that says it was trained on Legacy Surveys images, applied to the SDSS demo images:
    # allowed by the config, so each shard's log carries the warning
    model_file = write_untrained_model(tmp_path / "m" / "oh_p50" / "resnet18-16px-seed0" / "model.pt", res=RES,
                                       images=images_block("legacysurvey", 0.262, 128, 128))
    cfg = tmp_path / "infer.yaml"
    cfg.write_text(yaml.safe_dump({
        **EXPERIMENT,
        "catalog": {"source": "table", "path": str(DEMO / "catalog.csv")},
        "cutouts": {"source": "local", "local_dir": str(DEMO / "images")},
        "infer": {"model": str(model_file), "catalog": str(cat), "images_dir": str(DEMO / "images"),
                  "shards": 3, "chunk_size": 7, "batch_size": 8, "allow_survey_mismatch": True},
    }))
    wd = tmp_path / "wd"
    wd.mkdir()
    log = _snakemake(wd, cfg, "--set-threads", "infer_shard=1")  # one job a core (docs/cluster.md)
    out = wd / "results" / "infer" / "predictions.parquet"
    df = pd.read_parquet(out)
    assert df["objID"].tolist() == ids
    assert np.isfinite(df["prediction"]).all()
    assert set(df["model"].astype(str)) == {"untrained/resnet18-16px-seed0"}  # meta target / model dir
    assert log.count("rule infer_shard:") == 3
    shard_log = (wd / "results" / "logs" / "infer" / "shard-1-of-3.log").read_text()
    assert "survey mismatch allowed (infer.allow_survey_mismatch: true)" in shard_log
    assert "on cpu, 1 thread: 10 galaxies" in shard_log

    # resumable: a run that died before shard 1 and the gathering were done redoes only those
    first = df["prediction"].to_numpy()
    (wd / "results" / "infer" / "parts" / "2-of-3.parquet").unlink()  # scatter item 2 of infer.shards
    out.unlink()
    log = _snakemake(wd, cfg)
    assert log.count("rule infer_shard:") == 1 and "rule infer_split:" not in log
    assert "wildcards: scatteritem=2-of-3" in log and log.count("rule infer:") == 1
    np.testing.assert_allclose(pd.read_parquet(out)["prediction"].to_numpy(), first, atol=1e-6)

    # infer.format: fits gathers the same parts into a FITS table with the provenance (only the gathering runs)
    cfg.write_text(yaml.safe_dump({**yaml.safe_load(cfg.read_text()), "infer": {
        **yaml.safe_load(cfg.read_text())["infer"], "format": "fits"}}))
    log = _snakemake(wd, cfg)
    assert log.count("rule infer:") == 1 and "rule infer_shard:" not in log
    from astropy.io import fits

    from galmet.tables import file_sha256

    with fits.open(wd / "results" / "infer" / "predictions.fits") as hdul:
        hdul.verify("exception")
        assert hdul[1].data["objID"].tolist() == ids and hdul[1].columns["objID"].format == "K"
        assert hdul[1].header["MODEL"] == "untrained/resnet18-16px-seed0"
        assert hdul[1].header["MODELSHA"] == file_sha256(model_file) and hdul[1].header["SURVEY"] == "Legacy Surveys"
