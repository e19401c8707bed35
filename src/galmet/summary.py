"""results/summary.json: the test metrics of every trained model and every baseline in one file.

Shape (later stages add entries, never change it)::

    {"models": [{"name", "target", "resolution", "arch", "seed", "path",
                 "test": {"n", "rmse", "nmad", "nmad_about_zero", "median_residual"}}],
     "baselines": [{"name", "target", "status", "reason", "test": {...}}],
     "seeds": {"<target>/<arch>-<res>px": {"n_seeds", "rmse_mean", "rmse_std", "nmad_mean", "nmad_std"}}}
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

TEST_KEYS = ("n", "rmse", "nmad", "nmad_about_zero", "median_residual")
_NAME = re.compile(r"^(?P<arch>[a-z0-9]+)-(?P<res>\d+)px-seed(?P<seed>\d+)$")


def parse_model_name(name: str) -> dict:
    """``resnet18-64px-seed0`` -> ``{"arch": "resnet18", "resolution": 64, "seed": 0}``."""
    m = _NAME.match(name)
    if not m:
        raise ValueError(f"model name {name!r} is not of the form <arch>-<res>px-seed<seed>")
    return {"arch": m["arch"], "resolution": int(m["res"]), "seed": int(m["seed"])}


def build_summary(models: list[dict], metric_paths: list, baseline_paths: list) -> dict:
    """Gather ``models`` (dicts with ``target`` and ``name``, in the order of ``metric_paths``)
    and the baseline JSON files into the summary structure."""
    entries = []
    for model, path in zip(models, metric_paths, strict=True):
        metrics = json.loads(Path(path).read_text())
        entries.append(
            {
                "name": model["name"],
                "target": model["target"],
                **parse_model_name(model["name"]),
                "path": f"results/models/{model['target']}/{model['name']}/model.pt",
                "test": {k: metrics[k] for k in TEST_KEYS if k in metrics},
            }
        )
    baselines = []
    for path in baseline_paths:
        b = json.loads(Path(path).read_text())
        baselines.append({k: b.get(k) for k in ("name", "target", "status", "reason", "params", "test")})
    return {"models": entries, "baselines": baselines, "seeds": seed_spread(entries)}


def seed_spread(entries: list[dict]) -> dict:
    """Mean and standard deviation of test RMSE and NMAD over seeds, per target/arch/resolution."""
    groups: dict[str, list[dict]] = {}
    for e in entries:
        groups.setdefault(f"{e['target']}/{e['arch']}-{e['resolution']}px", []).append(e["test"])
    out = {}
    for key, tests in groups.items():
        rmse = np.array([t["rmse"] for t in tests], dtype=float)
        nmad = np.array([t["nmad"] for t in tests], dtype=float)
        out[key] = {
            "n_seeds": len(tests),
            "rmse_mean": float(rmse.mean()),
            "rmse_std": float(rmse.std(ddof=1)) if len(rmse) > 1 else 0.0,
            "nmad_mean": float(nmad.mean()),
            "nmad_std": float(nmad.std(ddof=1)) if len(nmad) > 1 else 0.0,
        }
    return out
