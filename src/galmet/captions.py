"""The numbers the report quotes, read back from the workflow's result JSON files.

Snakemake renders a caption from its rule's ``params``, and evaluates those also before the
files exist (dry runs, building the DAG): the caption readers here give ``{}`` or ``"n/a"`` for
a file that is missing or not yet written, never an error. :func:`resolution_results` reads the
same files strictly, for Figure 4 and its table.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from galmet.io import read_json as _read_json
from galmet.metrics import decide
from galmet.names import parse_model_name
from galmet.targets import get_target

__all__ = ["read_json", "fmt", "target_of", "metric_numbers", "scatter_rows", "resolution_results",
           "resolution_lines", "results_table", "rmse_error", "coverage_cell"]

THIS_RUN, PUBLISHED, BASELINE = "CNN (this run)", "CNN (published)", "baseline"
PUBLISHED_NOTE = "Wu & Boada (2019) test set"
SCORES = ("rmse", "nmad", "nmad_about_zero", "median_residual", "n")


def read_json(path) -> dict:
    """The JSON object in ``path``, or ``{}`` while it does not exist or is incomplete: a caption's
    numbers (:func:`galmet.io.read_json` with ``missing_ok``)."""
    return _read_json(path, missing_ok=True)


def fmt(x, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def target_of(path, m: dict | None = None) -> str:
    """The target column a result JSON is of: its ``truth`` or ``target`` key (a published file's,
    a baseline's), else its folder (``results/metrics/{target}/{model}.json``)."""
    m = m or {}
    return str(m.get("truth") or m.get("target") or Path(path).parent.name)


_FRAC = re.compile(r"frac_(pred|true)_above_(\w+)")


def metric_numbers(path) -> dict:
    """A metrics JSON (galmet.metrics.evaluate_predictions) formatted for a caption: scatter to 3
    decimals, with ``unit`` (the target's, galmet.targets; "" for an unregistered column) and, for
    a target with a threshold statistic (oh_p50's 9.1 dex), ``threshold`` and the fractions above
    it in percent (``frac_true_above``, ``frac_pred_above``, also under their metrics keys);
    ``{}`` before the file exists."""
    m = read_json(path)
    if not m:
        return {}
    target = get_target(target_of(path, m))
    out = {k: fmt(m.get(k)) for k in ("rmse", "nmad", "nmad_about_zero", "median_residual")}
    out["n"] = m.get("n", "n/a")
    out["n_invalid"] = m.get("n_invalid", 0)
    out["unit"] = target.unit
    for k, v in m.items():
        if (match := _FRAC.fullmatch(k)) is not None:
            out[k] = out[f"frac_{match.group(1)}_above"] = "n/a" if v is None else f"{100 * v:.1f}%"
            out["threshold"] = f"{target.threshold:g}" if target.threshold is not None else match.group(2)
    return out


def _row(source, model, resolution, scores: dict, status, note) -> dict:
    return {"source": source, "model": model, "resolution": resolution,
            **{k: scores.get(k) for k in SCORES}, "status": status, "note": note}


def scatter_rows(metric_paths: Iterable, baseline_paths: Iterable = (),
                 published_paths: Iterable = (), missing_ok: bool = False) -> list[dict]:
    """One row per model, published file and baseline: ``source, model, resolution, rmse,
    nmad, nmad_about_zero, median_residual, n, status, note``.

    ``metric_paths``: ``results/metrics/{target}/{model}.json`` (the resolution comes from the
    model name); ``published_paths``: reference metrics with a ``resolution`` key;
    ``baseline_paths``: baseline JSONs (a skipped one has its reason as the note). With
    ``missing_ok`` a missing file gives empty scores (a missing baseline, no row).
    """
    read = read_json if missing_ok else _read_json
    rows = []
    for path in metric_paths:
        name = Path(path).stem
        rows.append(_row(THIS_RUN, name, parse_model_name(name)["resolution"], read(path), "ok", ""))
    for path in published_paths:
        m = read(path)
        res = m.get("resolution")
        rows.append(_row(PUBLISHED, Path(path).stem, None if res is None else int(res), m, "ok",
                         PUBLISHED_NOTE))
    for path in baseline_paths:
        b = read(path)
        if b:
            rows.append(_row(BASELINE, b.get("name"), None, b.get("test") or {}, b.get("status"),
                             b.get("reason") or ""))
    return rows


def resolution_results(metric_paths: Iterable, baseline_paths: Iterable = (),
                       published_paths: Iterable = ()):
    """The inputs of Figure 4 from the JSON files (as :func:`scatter_rows`, which must exist).

    Returns ``(cnn, baselines, published, table)``: two DataFrames of ``resolution, rmse, nmad,
    n`` (``n`` the test galaxies scored), a list of the baselines that ran as dicts ``{name, rmse,
    nmad, n}``, and the table of every row.
    """
    rows = scatter_rows(metric_paths, baseline_paths, published_paths)
    cols = ["resolution", "rmse", "nmad", "n"]

    def frame(source):
        return pd.DataFrame([{k: r[k] for k in cols} for r in rows if r["source"] == source],
                            columns=cols).astype(float)

    baselines = [{"name": r["model"], "rmse": r["rmse"], "nmad": r["nmad"], "n": r["n"]}
                 for r in rows if r["source"] == BASELINE and r["status"] == "ok"]
    return frame(THIS_RUN), baselines, frame(PUBLISHED), pd.DataFrame(rows)


def _line(r: dict, unit: str) -> str:
    scores = f"RMSE {fmt(r['rmse'])}, NMAD {fmt(r['nmad'])}" + (f" {unit}" if unit else "")
    if r["source"] == BASELINE:
        return f"baseline {r['model']}: " + (scores if r["status"] == "ok" else f"skipped ({r['note']})")
    if r["source"] == PUBLISHED:
        res = "?" if r["resolution"] is None else r["resolution"]
        return f"published {res} px: {scores}"
    return f"{r['model']}: {scores}"


def resolution_lines(metric_paths: Iterable, baseline_paths: Iterable = (),
                     published_paths: Iterable = ()) -> list[str]:
    """The Figure 4 caption: one line per model, then per baseline, then per published file, the
    scatter in the unit of the models' target (the folder of the first of ``metric_paths``)."""
    order = {THIS_RUN: 0, BASELINE: 1, PUBLISHED: 2}
    metric_paths = list(metric_paths)
    unit = get_target(target_of(metric_paths[0])).unit if metric_paths else ""
    rows = scatter_rows(metric_paths, baseline_paths, published_paths, missing_ok=True)
    return [_line(r, unit) for r in sorted(rows, key=lambda r: order[r["source"]])]


def rmse_error(rmse, n) -> float | None:
    """The 1-sigma sampling error of an RMSE over ``n`` galaxies, ``rmse / sqrt(2 n)`` (for
    residuals of roughly Gaussian shape): what to expect from the test size alone."""
    if rmse is None or not n:
        return None
    return float(rmse) / (2.0 * float(n)) ** 0.5


def results_table(models: list[dict], metric_paths: Iterable, baseline_paths: Iterable = (),
                  published_paths: Iterable = (), uncertainty_paths: Iterable = ()) -> list[dict]:
    """The report's landing table: one row of formatted test scores per model (``models``:
    dicts with ``target`` and ``name``, in the order of ``metric_paths``), per published file and
    per baseline; ``{}``-safe while the files do not exist yet. RMSE carries its 1-sigma
    sampling error (:func:`rmse_error`); a skipped baseline says so (its reason is in its JSON).
    A calibrated ensemble's row (its ``results/uncertainty/...`` JSON among ``uncertainty_paths``)
    gives the test coverage of its 68% and 95% intervals."""
    from galmet.targets import REFERENCE_TARGET

    metric_paths, baseline_paths, published_paths = map(list, (metric_paths, baseline_paths, published_paths))
    coverage = {Path(p).stem: read_json(p) for p in uncertainty_paths}
    rows = scatter_rows(metric_paths, baseline_paths, published_paths, missing_ok=True)
    targets = [m["target"] for m in models] + [REFERENCE_TARGET] * len(published_paths)
    targets += [b.get("target", "") for b in map(read_json, baseline_paths) if b]
    out = []
    for r, target in zip(rows, targets, strict=True):
        ok = r["status"] == "ok" and r["rmse"] is not None
        model = {PUBLISHED: f"published {r['resolution']} px", BASELINE: f"{r['model']} (baseline)"}.get(
            r["source"], str(r["model"]))
        out.append({
            "target": target, "model": model, "n": "" if r["n"] is None else str(r["n"]),
            # no-break spaces: the cell stays on one line in a narrow report pane
            "rmse": f"{fmt(r['rmse'])}\u00a0±\u00a0{fmt(rmse_error(r['rmse'], r['n']))}" if ok else "skipped",
            "nmad": fmt(r["nmad"]) if ok else "", "median_residual": fmt(r["median_residual"]) if ok else "",
            "coverage": coverage_cell(coverage.get(model, {})),
        })
    return out


def coverage_cell(u: dict) -> str:
    """``0.71 / 0.95`` (68% and 95% interval coverage on test) from an uncertainty JSON, or ``""``."""
    if not u.get("coverage68") and u.get("coverage68") != 0:
        return ""
    return f"{u['coverage68']:.2f}\u00a0/\u00a0{u['coverage95']:.2f}"


def check_verdicts(checks: dict) -> dict[str, str]:
    """Each sanity check of ``saliency_checks.json`` (galmet.explain) with its own verdict, in words:
    ``randomisation`` (passes when the mean rank correlation is below the threshold by two standard
    errors, fails when above by as much), ``deletion`` (passes when deleting the most salient pixels
    first changes the prediction more than random deletions by two standard errors, fails when less
    by as much), each else inconclusive with the number of galaxies that would decide it at the
    observed spread, and ``science`` (the central share); the area in the unit of the checks'
    ``target`` (a metallicity model's without one)."""
    r, d = checks.get("randomisation") or {}, checks.get("deletion") or {}
    unit = f" {_checks_unit(checks)}".rstrip()
    out = {}
    rho = (f"Spearman {fmt(r.get('spearman_mean'))} ± {fmt(r.get('spearman_std'))} over {r.get('n', 'n/a')} "
           f"galaxies, needs < {r.get('threshold', 0.3)}")
    verdict = _verdict_of(r)
    if r.get("spearman_mean") is None:
        out["randomisation"] = "not run (no map to compare)"
    elif verdict == "passes":
        out["randomisation"] = f"passes: the maps change when the weights are re-initialised ({rho})"
    elif verdict == "fails":
        out["randomisation"] = (f"FAILS: a re-initialised network ranks the pixels alike ({rho}): the maps show the "
                                "architecture or the image, not what the model learnt")
    else:
        out["randomisation"] = (f"inconclusive: {r.get('n')} galaxies cannot tell whether a re-initialised network "
                                f"ranks the pixels alike ({rho}, by two standard errors){_needed(r)}")
    area, sem = d.get("area_between_mean"), d.get("area_between_sem")
    numbers = (f"area between the curves {fmt(area, 4)} ± {fmt(sem, 4)}{unit}, mean ± standard error over "
               f"{d.get('n', 'n/a')} galaxies")
    verdict = _verdict_of(d, area, sem)
    if area is None or sem is None:
        out["deletion"] = "not run"
    elif verdict == "passes":
        out["deletion"] = (f"passes: deleting the most salient pixels first changed the prediction more than "
                           f"random deletions ({numbers})")
    elif verdict == "fails":
        out["deletion"] = (f"FAILS: deleting the most salient pixels first changed the prediction less than random "
                           f"deletions ({numbers}): the maps do not point at what drives the prediction")
    else:
        out["deletion"] = (f"inconclusive: deleting the most salient pixels first changed the prediction no more "
                           f"than random deletions, within two standard errors ({numbers}){_needed(d)}")
    out["science"] = (checks.get("science") or {}).get("verdict", "n/a")
    return out


def _verdict_of(check: dict, area=None, sem=None) -> str:
    """A check's verdict; files written before checks had one: the rule they were judged by."""
    if check.get("verdict"):
        return check["verdict"]
    if "passes" in check:  # randomisation, before verdicts: below the threshold passed
        return "passes" if check["passes"] else "fails"
    if area is None or sem is None:
        return "inconclusive"
    return decide(area, sem, "above")  # the rule mean_verdict applies


def _needed(check: dict) -> str:
    """``"; about K galaxies would decide ..."`` for an inconclusive check that knows K."""
    n_needed = check.get("n_needed")
    if not n_needed:
        return ": too few galaxies to judge their spread" if (check.get("n") or 0) < 3 else ""
    if (check.get("n_images") or 0) >= n_needed:  # the images were there: check_max held them back
        how = f"raise check_max (--check-max, explain.check_max) to {n_needed} or more"
    else:
        how = "run it on more images"
    return f"; about {n_needed} galaxies would decide it at this spread: {how}"


def _checks_unit(checks: dict) -> str:
    from galmet.targets import METALLICITY

    return get_target(checks.get("target") or METALLICITY).unit


def saliency_numbers(path) -> dict:
    """The sanity checks of ``saliency_checks.json`` (galmet.explain) formatted for Figure 7's
    caption; ``{}`` before the file exists."""
    c = read_json(path)
    if not c:
        return {}
    r, d, s = c.get("randomisation", {}), c.get("deletion", {}), c.get("science", {})
    low, high, diff = s.get("low_third") or {}, s.get("high_third") or {}, s.get("difference") or {}
    ci = diff.get("ci95") or [None, None]
    return {
        "method": c.get("method", "n/a"), "layer": c.get("layer") or "", "tta": c.get("tta", "n/a"),
        "unit": _checks_unit(c),
        "n": c.get("n", "n/a"), "n_checked": c.get("n_checked", "n/a"),
        "spearman": f"{fmt(r.get('spearman_mean'))} ± {fmt(r.get('spearman_std'))}",
        "spearman_signed": fmt(r.get("spearman_signed_mean")),
        "passes": _verdict_of(r) if r else "n/a", "threshold": r.get("threshold", 0.3),
        "steps": d.get("steps", "n/a"), "random_orders": d.get("random_orders", "n/a"),
        "area": f"{fmt(d.get('area_between_mean'), 4)} ± {fmt(d.get('area_between_std'), 4)}",
        "area_sem": fmt(d.get("area_between_sem"), 4), "area_salient": fmt(d.get("area_salient_mean"), 4),
        "area_random": fmt(d.get("area_random_mean"), 4),
        "fraction_positive": "n/a" if d.get("fraction_positive") is None else f"{100 * d['fraction_positive']:.0f}%",
        "labels": s.get("labels") or ["low", "high"], "by": s.get("by", ""),
        "share_low": f"{fmt(low.get('share_mean'))} ± {fmt(low.get('share_std'))}", "n_low": low.get("n", "n/a"),
        "share_high": f"{fmt(high.get('share_mean'))} ± {fmt(high.get('share_std'))}", "n_high": high.get("n", "n/a"),
        "share_flat": fmt(s.get("uniform_share")), "difference": fmt(diff.get("high_minus_low")),
        "ci95": f"[{fmt(ci[0])}, {fmt(ci[1])}]", "verdict": s.get("verdict", "n/a"),
        "deletion_verdict": check_verdicts(c)["deletion"],
        "seconds": {k: fmt(v, 1) for k, v in (c.get("seconds") or {}).items()},
    }


__all__ += ["saliency_numbers", "check_verdicts"]
