"""results/summary.json: the test metrics of every trained model and every baseline in one file.

Shape (later stages add entries, never change it)::

    {"models": [{"name", "target", "resolution", "arch", "seed", "path",
                 "test": {"n", "rmse", "nmad", "nmad_about_zero", "median_residual"}}],
     "baselines": [{"name", "target", "status", "reason", "test": {...}}],
     "seeds": {"<target>/<arch>-<res>px": {"n_seeds", "rmse_mean", "rmse_std", "nmad_mean", "nmad_std"}}}
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from galmet.names import parse_model_name, seed_group

TEST_KEYS = ("n", "rmse", "nmad", "nmad_about_zero", "median_residual")


def build_summary(models: list[dict], metric_paths: list, baseline_paths: list) -> dict:
    """Gather ``models`` (dicts with ``target``, ``name`` and ``path`` of the model file, in the
    order of ``metric_paths``) and the baseline JSON files into the summary structure."""
    entries = []
    for model, path in zip(models, metric_paths, strict=True):
        metrics = json.loads(Path(path).read_text())
        entries.append(
            {
                "name": model["name"],
                "target": model["target"],
                **parse_model_name(model["name"]),
                "path": str(model["path"]),
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
        key = f"{e['target']}/{seed_group(e['arch'], e['resolution'])}"
        groups.setdefault(key, []).append(e["test"])
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
