"""Ensembles as first-class models: one calibrated file that `galmet predict` takes like a single
model, gives the mean of its members with calibrated intervals, and refuses what would break them."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from galmet import modelfile
from galmet.cli import main as galmet_main
from galmet.dataset import LabelledSet
from galmet.ensemble import EnsembleError, calibrate, combine
from galmet.imaging import block_average, read_image
from galmet.predict import PredictionWriter, predict_columns, predict_images
from galmet.train import train_model

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "resources" / "demo" / "images"
RES = 16


@pytest.fixture(scope="module")
def demo(demo_catalog):
    """48 real galaxies at 16 px: 24 to train on, 24 to calibrate on."""
    ids = demo_catalog["objID"].to_numpy()[:48]
    x = block_average(np.stack([read_image(IMAGES / f"{i}.jpg") for i in ids]), RES)
    y = demo_catalog["oh_p50"].to_numpy(np.float64)[:48]
    return ids, x, y


@pytest.fixture(scope="module")
def members(demo, tmp_path_factory):
    """Two models really trained (1 epoch) that differ only by seed."""
    _, x, y = demo
    params = {"arch": "resnet18", "pretrained": "none", "batch_size": 8, "stage2": {"cycles": [1]},
              "num_threads": 1, "device": "cpu"}
    paths = []
    for seed in (0, 1):
        out = tmp_path_factory.mktemp(f"seed{seed}")
        train_model(x[:24], y[:24].astype(np.float32), x[24:], y[24:].astype(np.float32), params, out,
                    {"seed": seed, "target": "oh_p50", "tta": 8})
        paths.append(out / "model.pt")
    return paths


@pytest.fixture(scope="module")
def ensemble(demo, members, tmp_path_factory):
    ids, x, y = demo
    model, meta = combine([modelfile.load(p) for p in members], ["m0", "m1"])
    meta = calibrate(model, meta, [LabelledSet(ids[24:], x[24:], y[24:])], tta=8)
    path = tmp_path_factory.mktemp("ensemble") / "model.pt"
    modelfile.save(path, model, meta)
    return path


def test_ensemble_file_loads_with_weights_only_and_averages_its_members(demo, members, ensemble):
    obj = torch.load(ensemble, weights_only=True)  # no pickled object: a MAPIE object could not live here
    meta = obj["meta"]
    assert meta["kind"] == "ensemble" and [m["name"] for m in meta["members"]] == ["m0", "m1"]
    cal = meta["calibration"]
    assert cal["split"] == "valid" and cal["n"] == 24 and cal["tta"] == 8
    assert cal["scores"] == sorted(cal["scores"]) and len(cal["scores"]) == 24
    _, x, _ = demo
    model, meta = modelfile.load(ensemble)
    singles = [predict_images(*modelfile.load(p), x[:10], tta=8) for p in members]
    np.testing.assert_allclose(predict_images(model, meta, x[:10], tta=8), np.mean(singles, axis=0), atol=1e-9)


def test_intervals_are_nested_around_the_ensemble_mean(demo, ensemble):
    _, x, _ = demo
    model, meta = modelfile.load(ensemble)
    cols = predict_columns(model, meta, x, tta=8, levels=[0.9], spread=True)
    assert list(cols) == ["prediction", "spread", "p2p5", "p5", "p16", "p84", "p95", "p97p5"]
    order = ["p2p5", "p5", "p16", "prediction", "p84", "p95", "p97p5"]
    for lo, hi in zip(order, order[1:]):
        assert np.all(cols[lo] <= cols[hi]), (lo, hi)
    assert np.all(cols["spread"] > 0)


def _image_dir(ids, tmp_path) -> Path:
    d = tmp_path / "images"
    d.mkdir()
    for i in ids:
        shutil.copy(IMAGES / f"{i}.jpg", d / f"{i}.jpg")
    return d


def test_galmet_predict_on_an_ensemble_gives_the_workflows_numbers(demo, ensemble, tmp_path):
    ids, _, _ = demo
    ids = [int(i) for i in ids[:12]]
    images = _image_dir(ids, tmp_path)
    # the members were trained in the reproducible mode (the test session's CPU default): the workflow
    # predicts in it, galmet predict with the fast kernels unless --reproducible true
    for setting in ("true", "auto"):
        assert galmet_main(["predict", "--model", str(ensemble), "--images", str(images), "--reproducible", setting,
                            "--out", str(tmp_path / f"cli-{setting}.parquet")]) == 0
    cli = pd.read_parquet(tmp_path / "cli-true.parquet")  # float64 (the CSV carries 4 decimals)
    fast = pd.read_parquet(tmp_path / "cli-auto.parquet")
    assert list(cli.columns) == list(fast.columns) == ["objID", "prediction", "p2p5", "p16", "p84", "p97p5"]
    # the workflow's path (workflow/scripts/predict_split.py): image stores, same function, same writer
    model, meta = modelfile.load(ensemble)
    store = block_average(np.stack([read_image(IMAGES / f"{i}.jpg") for i in ids]), RES)
    cols = predict_columns(model, meta, store, tta=8, spread=True)
    with PredictionWriter(tmp_path / "split.parquet") as writer:
        writer.write(ids, cols.pop("prediction"), extra={"oh_p50": np.zeros(len(ids))}, after=cols)
    split = pd.read_parquet(tmp_path / "split.parquet")
    assert list(split.columns) == ["objID", "oh_p50", "prediction", "spread", "p2p5", "p16", "p84", "p97p5"]
    for c in ("prediction", "p2p5", "p16", "p84", "p97p5"):
        np.testing.assert_allclose(cli.set_index("objID").loc[ids, c], split.set_index("objID").loc[ids, c],
                                   atol=1e-6, err_msg=c)
        # the fast kernels sum in another order: float32 rounding, a few 1e-6 dex at most
        np.testing.assert_allclose(fast.set_index("objID").loc[ids, c], split.set_index("objID").loc[ids, c],
                                   atol=2e-5, err_msg=c)
    # and the infer target's shard step (snakemake infer) through the same loop
    from galmet.infer import predict_shard

    shard = tmp_path / "shard.parquet"
    pd.DataFrame({"objID": ids, "path": [str(images / f"{i}.jpg") for i in ids]}).to_parquet(shard)
    predict_shard(shard, model, meta, tmp_path / "infer.parquet", tta=8)
    infer = pd.read_parquet(tmp_path / "infer.parquet")
    assert list(infer.columns) == list(cli.columns)
    cols = ["prediction", "p2p5", "p97p5"]
    np.testing.assert_allclose(infer.set_index("objID").loc[ids, cols], cli.set_index("objID").loc[ids, cols])
    assert galmet_main(["predict", "--model", str(ensemble), "--images", str(images), "--levels", "0.9",
                        "--out", str(tmp_path / "levels.parquet")]) == 0
    assert list(pd.read_parquet(tmp_path / "levels.parquet").columns) == [
        "objID", "prediction", "p2p5", "p5", "p16", "p84", "p95", "p97p5"]


def test_predict_refuses_what_would_make_the_intervals_wrong(demo, ensemble, members, tmp_path, capsys):
    ids, _, _ = demo
    images = _image_dir(ids[:3], tmp_path)
    base = ["predict", "--model", str(ensemble), "--images", str(images), "--out", str(tmp_path / "o.csv")]
    assert galmet_main([*base, "--no-tta"]) == 2
    assert "calibrated with TTA over 8 symmetries" in capsys.readouterr().err
    assert galmet_main([*base, "--levels", "0.99"]) == 2  # 24 calibration galaxies support up to 0.96
    assert "level 0.99 needs at least 99 calibration galaxies, there are 24" in capsys.readouterr().err
    assert not (tmp_path / "o.csv").exists()
    model, meta = modelfile.load(ensemble)
    with pytest.raises(ValueError, match="calibrated with TTA over 8"):
        predict_columns(model, meta, np.zeros((1, RES, RES, 3), np.uint8), tta=1)
    # a single model without calibration keeps its two columns; --levels needs a calibration
    single = ["predict", "--model", str(members[0]), "--images", str(images), "--out", str(tmp_path / "s.csv")]
    assert galmet_main(single) == 0
    assert list(pd.read_csv(tmp_path / "s.csv").columns) == ["objID", "prediction", "domain_p", "in_domain"]
    assert galmet_main([*single, "--levels", "0.9"]) == 2
    assert "no calibration" in capsys.readouterr().err


def test_members_that_cannot_form_an_ensemble_are_named(members, tmp_path):
    a, b = (modelfile.load(p) for p in members)
    other_res = (b[0], {**b[1], "resolution": 32})
    with pytest.raises(EnsembleError, match=r"m1 differs from m0 in 'resolution' \(32 against 16\)"):
        combine([a, other_res], ["m0", "m1"])
    other_target = (b[0], {**b[1], "target": "lgm_tot_p50"})
    with pytest.raises(EnsembleError, match="m1 differs from m0 in 'target'"):
        combine([a, other_target], ["m0", "m1"])
    with pytest.raises(EnsembleError, match="two or more"):
        combine([a], ["m0"])
    model, meta = combine([a, b], ["m0", "m1"])
    empty = LabelledSet(np.empty(0, np.int64), np.empty((0, RES, RES, 3), np.uint8), np.empty(0))
    with pytest.raises(EnsembleError, match="empty calibration set: the valid split has no galaxy"):
        calibrate(model, meta, [empty])
    nan = LabelledSet(np.arange(2), np.zeros((2, RES, RES, 3), np.uint8), np.array([np.nan, np.nan]))
    with pytest.raises(ValueError, match="empty calibration set"):
        calibrate(model, meta, [nan])


def test_explain_an_ensemble_gives_the_mean_of_its_members_maps(demo, members, ensemble):
    """galmet.explain on the real ensemble file: one map per galaxy, the mean of the members'."""
    from galmet.explain import ExplainSettings, saliency_maps

    _, x, _ = demo
    settings = ExplainSettings(tta=2, batch_size=8)
    model, meta = modelfile.load(ensemble)
    maps = saliency_maps(model, meta, x[:6], settings)
    assert maps.shape == (6, RES, RES) and np.isfinite(maps).all()
    singles = [saliency_maps(*modelfile.load(p), x[:6], settings) for p in members]
    np.testing.assert_allclose(maps, np.mean(singles, axis=0), rtol=1e-4, atol=1e-6)
