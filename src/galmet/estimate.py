"""How long a run's CNN jobs take, estimated from the jobs of its dry run (:mod:`galmet.dag`) and
rates of images a second (:mod:`galmet.rates`): ``galmet plan``'s time lines.

A training of ``E`` epochs (stage 1 when the body is pretrained, plus the SGDR cycles of stage
2) costs ``E x n_train`` images at the training rate, plus a validation pass each epoch and the
final validation score with TTA at the prediction rate; a prediction job ``members x n_test x
tta`` views (one view a galaxy for a survey model); an ensemble's calibration ``members x
n_valid x tta`` views; a survey model's making its ensemble's labels of the training galaxies
(``members x n_train x tta`` views) and a training of ``survey.cycles`` epochs. The split sizes are
config ``split.fractions`` of the number of galaxies. Downloads, packing, baselines, saliency
maps and figures are not estimated. Light at import (no torch).
"""

from __future__ import annotations

import os
from pathlib import Path

from galmet.names import survey_name
from galmet.rates import rate

__all__ = ["PAPER_GALAXIES", "galaxies", "split_sizes", "estimate"]

#: galaxies of the paper's MPA-JHU x DR14 selection with its cuts (docs/method.md, section 1).
PAPER_GALAXIES = 142_000

#: the parts of the run the estimate leaves out.
NOT_ESTIMATED = "downloads, packing, baselines, domain checks, saliency maps, figures"


def galaxies(config: dict, root: Path, cwd: Path | None = None, override: int | None = None) -> tuple[int, str]:
    """``(number of galaxies, where it comes from)``: ``override``; else the rows of the
    catalog table (catalog.source ``table``: the path from ``cwd``, else the workflow's own
    file at ``root``), before the cleaning cuts; else the paper's selection."""
    if override is not None:
        if override <= 0:
            raise ValueError(f"--galaxies must be positive, got {override}")
        return int(override), "given (--galaxies)"
    cat = config["catalog"]
    if cat["source"] == "table" and cat.get("path"):
        rel = Path(cat["path"])
        for path in ([rel] if rel.is_absolute() else [Path(cwd or os.getcwd()) / rel, root / rel]):
            if path.is_file():
                from galmet.tables import read_table

                return len(read_table(path)), f"rows of catalog.path {cat['path']} (before the cleaning cuts)"
        return PAPER_GALAXIES, (f"catalog.path {cat['path']} not found: the paper's selection, "
                                f"{PAPER_GALAXIES:,} galaxies, assumed (--galaxies to change)")
    return PAPER_GALAXIES, f"the paper's selection from {cat['source']}, after its cuts; --galaxies to change"


def split_sizes(config: dict, n: int) -> dict:
    """Galaxies per split (config split.fractions of ``n``)."""
    return {k: int(round(n * float(v))) for k, v in config["split"]["fractions"].items()}


def _epochs(train: dict) -> int:
    stage1 = 0 if str(train["pretrained"]) == "none" else int(train["stage1"]["epochs"])
    return stage1 + sum(int(c) for c in train["stage2"]["cycles"])


def _survey_epochs(config: dict) -> int:
    cycles = (config.get("survey") or {}).get("cycles")
    train = config["train"]
    return _epochs({**train, "stage2": {**train["stage2"], "cycles": cycles}} if cycles else train)


def _job_seconds(exp: dict, config: dict, sizes: dict, device: str, table: dict) -> dict:
    """Seconds of every CNN job on ``device``: ``{"train": {(target, model): s}, "ensemble": ...,
    "survey": ..., "predict": ...}`` and the rates used per (arch, resolution)."""
    tta, epochs = int(config["predict"]["tta"]), _epochs(config["train"])
    used = {}

    def r(m):
        key = (m["arch"], m["resolution"])
        if key not in used:
            used[key] = rate(table, device, *key)
        return used[key]

    out = {"train": {}, "ensemble": {}, "survey": {}, "predict": {}}
    for m in exp["trainings"]:
        rt = r(m)
        out["train"][(m["target"], m["model"])] = (
            epochs * sizes["train"] / rt["train"] + (epochs + tta) * sizes["valid"] / rt["predict"])
    for m in exp["ensembles"]:
        out["ensemble"][(m["target"], m["model"])] = len(m["seeds"]) * sizes["valid"] * tta / r(m)["predict"]
    distil = (config.get("survey") or {}).get("labels") == "teacher"
    for m in exp.get("surveys", []):
        rt, survey_epochs = r(m), _survey_epochs(config)
        out["survey"][(m["target"], m["model"])] = (
            distil * len(m["seeds"]) * sizes["train"] * tta / rt["predict"]  # the ensemble's labels
            + survey_epochs * sizes["train"] / rt["train"] + (survey_epochs + 1) * sizes["valid"] / rt["predict"])
    for m in exp["predictions"]:
        passes = 1 if m.get("survey") else len(m.get("seeds") or [m.get("seed")]) * tta
        out["predict"][(m["target"], m["model"])] = passes * sizes["test"] / r(m)["predict"]
    return {"seconds": out, "rates": used}


def _longest_chain(exp: dict, s: dict) -> float:
    """Seconds of the longest chain of CNN jobs when every job runs as soon as its inputs exist:
    a model's training then its prediction; an ensemble's slowest member, its calibration, its
    prediction (or its survey model, then the survey model's prediction)."""
    chains = [s["train"][k] + s["predict"].get(k, 0.0) for k in s["train"]]
    for m in exp["ensembles"]:
        key, survey = (m["target"], m["model"]), (m["target"], survey_name(m["model"]))
        members = [s["train"].get((m["target"], name), 0.0) for name in _member_names(m, exp)]
        after = s["predict"].get(key, 0.0)
        if survey in s["survey"]:
            after = max(after, s["survey"][survey] + s["predict"].get(survey, 0.0))
        chains.append(max(members, default=0.0) + s["ensemble"][key] + after)
    return max(chains, default=0.0)


def _member_names(ens: dict, exp: dict) -> list[str]:
    return [t["model"] for t in exp["trainings"] if t["target"] == ens["target"] and t["arch"] == ens["arch"]
            and t["resolution"] == ens["resolution"] and t["seed"] in ens["seeds"]]


def estimate(exp: dict, config: dict, n_galaxies: int, tables: dict, cores: int) -> dict:
    """The time of the CNN jobs of ``exp`` (:func:`galmet.dag.experiments`) for ``n_galaxies``:
    per device kind of ``tables`` (``{"gpu": table, "cpu": table}``, each as
    :data:`galmet.rates.RATES`) the seconds of trainings, calibrations and predictions, their
    total (one job after another, as ``--resources gpu=1`` runs them), the longest chain (a
    cluster with a device per job), the rates used and their basis. On the CPU ``wall_cores``
    is the total spread over ``cores`` (rates measured with ``threads`` threads, assumed to scale
    with cores), never under the longest chain."""
    sizes = split_sizes(config, n_galaxies)
    out = {"galaxies": n_galaxies, "split": sizes, "epochs": _epochs(config["train"]),
           "tta": int(config["predict"]["tta"]), "not_estimated": NOT_ESTIMATED, "devices": {}}
    for device, table in tables.items():
        res = _job_seconds(exp, config, sizes, device, table)
        s = res["seconds"]
        parts = {k: sum(v.values()) for k, v in s.items()}
        total = sum(parts.values())
        dev = {"seconds": parts, "total": total, "longest_chain": _longest_chain(exp, s),
               "rates": [{"arch": a, "resolution": r, **v} for (a, r), v in sorted(res["rates"].items())]}
        if device == "cpu":
            threads = max((v["threads"] for v in res["rates"].values()), default=1)
            dev["wall_cores"] = max(total * threads / max(1, cores), dev["longest_chain"])
            dev["cores"] = cores
        out["devices"][device] = dev
    return out
