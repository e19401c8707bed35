"""galmet.summary: the models' metrics and the seed spread in one structure."""

from __future__ import annotations

import json

import pytest

from galmet.summary import build_summary


def test_models_keep_the_path_the_workflow_gives_and_seeds_are_grouped(tmp_path):
    models, paths = [], []
    for seed, rmse in ((0, 0.10), (1, 0.12)):
        name = f"resnet18-32px-seed{seed}"
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"n": 10, "rmse": rmse, "nmad": rmse - 0.02, "binned": []}))
        models.append({"target": "oh_p50", "name": name, "path": f"somewhere/{name}/model.pt"})
        paths.append(path)
    summary = build_summary(models, paths, [])
    first = summary["models"][0]
    assert first["path"] == "somewhere/resnet18-32px-seed0/model.pt"
    assert (first["arch"], first["resolution"], first["seed"]) == ("resnet18", 32, 0)
    assert first["test"] == {"n": 10, "rmse": 0.10, "nmad": pytest.approx(0.08)}
    spread = summary["seeds"]["oh_p50/resnet18-32px"]
    assert spread["n_seeds"] == 2 and spread["rmse_mean"] == pytest.approx(0.11)


def test_ensembles_gain_their_coverage_beside_the_models(tmp_path):
    metrics = tmp_path / "m.json"
    metrics.write_text(json.dumps({"n": 78, "rmse": 0.15, "nmad": 0.11, "nmad_about_zero": 0.12,
                                   "median_residual": -0.01, "binned": []}))
    unc = tmp_path / "u.json"
    unc.write_text(json.dumps({"n": 78, "coverage68": 0.70, "coverage95": 0.95, "width68": 0.3,
                               "width95": 0.6, "pit": {}}))
    ens = {"target": "oh_p50", "name": "resnet18-32px-seeds0-1", "resolution": 32,
           "members": ["resnet18-32px-seed0", "resnet18-32px-seed1"], "path": "results/models/x/model.pt"}
    summary = build_summary([], [], [], [ens], [metrics], [unc])
    assert summary["models"] == [] and summary["baselines"] == []
    (e,) = summary["ensembles"]
    assert {k: e[k] for k in ens} == ens
    assert e["test"] == {"n": 78, "rmse": 0.15, "nmad": 0.11, "median_residual": -0.01, "coverage68": 0.70,
                         "coverage95": 0.95, "width68": 0.3, "width95": 0.6}
    assert "ensembles" not in build_summary([], [], [])  # no ensemble configured: the old shape
