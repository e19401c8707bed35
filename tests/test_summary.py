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
