"""results/summary.json: the test metrics of every trained model and every baseline in one file.

Shape (later stages add entries, never change it)::

    {"models": [{"name", "target", "resolution", "arch", "seed", "path",
                 "test": {"n", "rmse", "nmad", "nmad_about_zero", "median_residual"}}],
     "baselines": [{"name", "target", "status", "reason", "test": {...}}],
     "seeds": {"<target>/<arch>-<res>px": {"n_seeds", "rmse_mean", "rmse_std", "nmad_mean", "nmad_std"}},
     "ensembles": [{"name", "target", "resolution", "members" (model names), "path",
                    "test": {"n", "rmse", "nmad", "median_residual", "coverage68", "coverage95",
                             "width68", "width95"}}],
     "survey_models": [{"name", "target", "resolution", "teacher" (the ensemble's name), "path",
                        "labels" (what it learnt: "measured" or "teacher"),
                        "throughput": {"galaxies_per_s", "ensemble_galaxies_per_s", "speedup", ...},
                        "valid": {"n", "rmse", "teacher_rmse", "width68", "width95"},
                        "test": {the ensembles' keys}}]}

``survey_models`` (:mod:`galmet.survey`) appears with a configured survey model; its
``throughput`` is this machine's (the one number of the file that differs between machines),
from the model's ``survey.json``.

A model or ensemble with an applicability-domain test (:mod:`galmet.domain`) also has
``"domain": {"alpha", "n", "flagged", "fraction", "band", "inside"}``: the test galaxies it flags,
beside the band that chance gives for galaxies like the validation split.

``models`` lists every single model scored, an ensemble's members included (their RMSE beside
the ensemble's); an ensemble's coverage (fractions) and widths (dex) come from its
``results/uncertainty/...`` JSON (:mod:`galmet.uncertainty`).
"""

from __future__ import annotations

import numpy as np

from galmet.io import read_json
from galmet.names import parse_model_name, seed_group

TEST_KEYS = ("n", "rmse", "nmad", "nmad_about_zero", "median_residual")
ENSEMBLE_KEYS = ("n", "rmse", "nmad", "median_residual")
INTERVAL_KEYS = ("coverage68", "coverage95", "width68", "width95")


def build_summary(models: list[dict], metric_paths: list, baseline_paths: list, ensembles: list[dict] = (),
                  ensemble_metric_paths: list = (), uncertainty_paths: list = (), surveys: list[dict] = (),
                  survey_metric_paths: list = (), survey_uncertainty_paths: list = (),
                  survey_report_paths: list = ()) -> dict:
    """Gather ``models`` (dicts with ``target``, ``name`` and ``path`` of the model file, in the
    order of ``metric_paths``), the baseline JSON files, the ``ensembles`` (dicts with
    ``name, target, resolution, members, path``, in the order of their metric and uncertainty
    files) and the ``surveys`` (dicts with ``name, target, resolution, teacher, path``, in the
    order of their metric, uncertainty and ``survey.json`` files) into the summary structure."""
    entries = []
    for model, path in zip(models, metric_paths, strict=True):
        metrics = read_json(path)
        entries.append(
            {
                "name": model["name"],
                "target": model["target"],
                **parse_model_name(model["name"]),
                "path": str(model["path"]),
                "test": {k: metrics[k] for k in TEST_KEYS if k in metrics},
                **_domain(metrics),
            }
        )
    baselines = []
    for path in baseline_paths:
        b = read_json(path)
        baselines.append({k: b.get(k) for k in ("name", "target", "status", "reason", "params", "test")})
    out = {"models": entries, "baselines": baselines, "seeds": seed_spread(entries)}
    if ensembles:
        out["ensembles"] = [
            {**{k: e[k] for k in ("name", "target", "resolution", "members")}, "path": str(e["path"]),
             "test": {**{k: m[k] for k in ENSEMBLE_KEYS}, **{k: u[k] for k in INTERVAL_KEYS}}, **_domain(m)}
            for e, m, u in zip(ensembles, map(read_json, ensemble_metric_paths), map(read_json, uncertainty_paths),
                               strict=True)]
    if surveys:
        out["survey_models"] = [
            {**{k: e[k] for k in ("name", "target", "resolution", "teacher")}, "path": str(e["path"]),
             "labels": r.get("labels"), "throughput": r["throughput"], "valid": r["valid"],
             "test": {**{k: m[k] for k in ENSEMBLE_KEYS}, **{k: u[k] for k in INTERVAL_KEYS}}, **_domain(m)}
            for e, m, u, r in zip(surveys, map(read_json, survey_metric_paths),
                                  map(read_json, survey_uncertainty_paths), map(read_json, survey_report_paths),
                                  strict=True)]
    return out


def _domain(metrics: dict) -> dict:
    """``{"domain": {alpha, n, flagged, fraction, band, inside}}`` where the metrics have it."""
    return {"domain": metrics["domain"]} if "domain" in metrics else {}


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
