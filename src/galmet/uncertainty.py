"""Scoring calibrated intervals on the test split: coverage, width, PIT, risk-coverage.

The workflow scores a calibrated ensemble's test predictions once (``results/uncertainty/
{target}/{ensemble}.json``, :func:`score_intervals`):

- ``coverage68``, ``coverage95``: fraction of test galaxies whose truth lies inside the 68% and
  95% intervals; ``width68``, ``width95``: mean of ``p84 - p16`` and ``p97p5 - p2p5`` (dex).
- ``band68``, ``band95``: the central 95% range of the coverage that ``n`` galaxies give by
  chance when the true coverage is the nominal one (binomial); ``within_band68/95`` say whether
  the measured coverage lies inside it.
- ``calibration``: observed against nominal coverage at levels 0.1 ... 0.95 with that band;
  ``pit``: the histogram (10 bins) of the probability integral transform
  (:func:`galmet.conformal.pit`), flat when calibrated.
- ``binned``: coverage in bins of the true value (conditional coverage: where the CNN is
  systematically wrong, at the ends of the range, the intervals cover less than nominal);
  ``undercovered`` names the bins (>= 5 galaxies) whose 68% coverage is below its band.
- ``binned_predicted``: coverage, mean width (68% and 95%) and ``n`` in bins of the *predicted*
  value, the only conditional coverage a user can act on (the truth is unknown when predicting,
  and what a group-conditional calibration, :func:`galmet.conformal.mondrian_calibration`,
  aims at); ``undercovered_predicted`` names its bins (>= 5 galaxies) below the 68% band.
- ``risk_coverage``: RMSE of the most confident fraction ``f`` of the galaxies (smallest spread
  first), ``f = 0.1 ... 1``; ``confident_half_better``: is the RMSE at ``f = 0.5`` lower than
  at 1? ``spread_ranks_errors``: whether that is more than the sample's chance, the squared errors
  of the confident half below the other half's by two standard errors (``verdict`` passes, fails
  or inconclusive, with ``n_needed``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import binom

from galmet.config import default
from galmet.conformal import interval, max_level, pit
from galmet.metrics import difference_verdict

__all__ = ["LEVELS", "FRACTIONS", "binomial_band", "calibration_curve", "pit_histogram", "binned_coverage",
           "interval_rows", "binned_predicted", "risk_coverage", "score_intervals"]

#: Nominal levels of the calibration curve.
LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.68, 0.7, 0.8, 0.9, 0.95)
#: Fractions of the most confident galaxies of the risk-coverage curve.
FRACTIONS = tuple(round(0.1 * k, 1) for k in range(1, 11))


def binomial_band(level: float, n: int, prob: float = 0.95) -> tuple[float, float]:
    """The central ``prob`` range of the coverage that ``n`` galaxies give by chance at a true
    coverage ``level`` (binomial quantiles, as fractions)."""
    if n <= 0:
        return (math.nan, math.nan)
    lo, hi = binom.ppf([(1 - prob) / 2, (1 + prob) / 2], n, level)
    return float(lo / n), float(hi / n)


def _inside(y, mean, spread, scores, level) -> np.ndarray:
    lo, hi = interval(mean, spread, scores, level)
    return (y >= lo) & (y <= hi)


def calibration_curve(y, mean, spread, scores, levels=LEVELS) -> list[dict]:
    """``{"level", "observed", "band_lo", "band_hi"}`` per nominal level the calibration set
    supports (levels above ``n_cal / (n_cal + 1)`` are left out)."""
    rows = []
    for level in levels:
        if level > max_level(len(scores)):
            continue
        lo, hi = binomial_band(level, len(y))
        rows.append({"level": level, "observed": float(np.mean(_inside(y, mean, spread, scores, level))),
                     "band_lo": lo, "band_hi": hi})
    return rows


def pit_histogram(y, mean, spread, scores, bins: int = 10) -> dict:
    """Counts of the PIT values in ``bins`` equal bins of [0, 1], and the count expected per bin."""
    counts, edges = np.histogram(pit(y, mean, spread, scores), bins=bins, range=(0.0, 1.0))
    return {"edges": edges.tolist(), "counts": counts.astype(int).tolist(), "expected": len(y) / bins}


def binned_coverage(y, mean, spread, scores, bin_width: float = default("evaluate.bin_width")) -> list[dict]:
    """Coverage (and mean width) of the 68% and 95% intervals in bins of the truth ``bin_width``
    wide, with the binomial band of each bin's size (:func:`interval_rows`) and its median residual."""
    from galmet.metrics import bin_index, make_edges

    edges = make_edges(y, bin_width)
    idx = bin_index(y, edges)
    bounds = {level: interval(mean, spread, scores, level) for level in (0.68, 0.95)}
    rows = interval_rows(y, bounds, idx, edges)
    filled = [g for g in range(len(edges) - 1) if np.any(idx == g)]  # interval_rows' rows, in order
    for row, g in zip(rows, filled, strict=True):
        row["median_residual"] = float(np.median(mean[idx == g] - y[idx == g]))
    return rows


def interval_rows(y, bounds: dict, groups, edges) -> list[dict]:
    """Per group ``g`` (``groups == g``, spanning ``edges[g]`` to ``edges[g + 1]``) with a galaxy:
    ``lo, hi, n`` and, for each level ``L`` of ``bounds`` (``{L: (lower, upper)}``, e.g. 0.68 and
    0.95), ``coverage{key}``, ``width{key}`` (mean, dex) and the binomial band of the group's size
    (``band{key}_lo``, ``band{key}_hi``), ``key`` the level in percent (68, 95)."""
    y, groups = np.asarray(y, dtype=np.float64), np.asarray(groups)
    rows = []
    for g in range(len(edges) - 1):
        sel = groups == g
        n = int(sel.sum())
        if n == 0:
            continue
        row = {"lo": float(edges[g]), "hi": float(edges[g + 1]), "n": n}
        for level, (lo, hi) in bounds.items():
            key = f"{round(100 * level):d}"
            inside = (y[sel] >= lo[sel]) & (y[sel] <= hi[sel])
            band = binomial_band(level, n)
            row.update({f"coverage{key}": float(inside.mean()), f"width{key}": float(np.mean(hi[sel] - lo[sel])),
                        f"band{key}_lo": band[0], f"band{key}_hi": band[1]})
        rows.append(row)
    return rows


def binned_predicted(y, mean, spread, scores, bin_width: float = default("evaluate.bin_width")) -> list[dict]:
    """Coverage and mean width of the 68% and 95% intervals, with ``n`` and the binomial bands,
    in bins of the prediction ``mean`` ``bin_width`` wide (:func:`interval_rows`)."""
    from galmet.metrics import bin_index, make_edges

    edges = make_edges(mean, bin_width)
    bounds = {level: interval(mean, spread, scores, level) for level in (0.68, 0.95)}
    return interval_rows(y, bounds, bin_index(mean, edges), edges)


def risk_coverage(y, mean, spread, fractions=FRACTIONS) -> list[dict]:
    """RMSE of the most confident fraction ``f`` of the galaxies (smallest spread first)."""
    order = np.argsort(spread, kind="stable")
    err2 = (mean[order] - y[order]) ** 2
    rows = []
    for f in fractions:
        k = max(1, math.ceil(f * len(y) - 1e-9))
        rows.append({"fraction": float(f), "n": int(k), "rmse": float(np.sqrt(err2[:k].mean()))})
    return rows


def score_intervals(y, mean, spread, scores, bin_width: float = default("evaluate.bin_width")) -> dict:
    """Every number of the module docstring for test truths ``y``, predictions ``mean``,
    spreads ``spread`` and the ensemble's calibration ``scores``; rows with a non-finite value
    are left out (``n_invalid``)."""
    y, mean, spread = (np.asarray(a, dtype=np.float64).ravel() for a in (y, mean, spread))
    ok = np.isfinite(y) & np.isfinite(mean) & np.isfinite(spread)
    n_invalid = int((~ok).sum())
    y, mean, spread = y[ok], mean[ok], spread[ok]
    if len(y) == 0:
        raise ValueError("no test galaxy with a finite truth, prediction and spread: nothing to score")
    out = {"n": int(len(y)), "n_invalid": n_invalid, "n_calibration": int(len(scores))}
    for level, key in ((0.68, "68"), (0.95, "95")):
        lo, hi = interval(mean, spread, scores, level)
        cov = float(np.mean((y >= lo) & (y <= hi)))
        band = binomial_band(level, len(y))
        out.update({f"coverage{key}": cov, f"width{key}": float(np.mean(hi - lo)), f"band{key}": list(band),
                    f"within_band{key}": bool(band[0] <= cov <= band[1])})
    binned = binned_coverage(y, mean, spread, scores, bin_width)
    by_prediction = binned_predicted(y, mean, spread, scores, bin_width)
    curve = risk_coverage(y, mean, spread)
    out.update({
        "calibration": calibration_curve(y, mean, spread, scores), "pit": pit_histogram(y, mean, spread, scores),
        "binned": binned,
        "undercovered": [[r["lo"], r["hi"]] for r in binned if r["n"] >= 5 and r["coverage68"] < r["band68_lo"]],
        "binned_predicted": by_prediction,
        "undercovered_predicted": [[r["lo"], r["hi"]] for r in by_prediction
                                   if r["n"] >= 5 and r["coverage68"] < r["band68_lo"]],
        "risk_coverage": curve, "rmse_all": curve[-1]["rmse"],
        "rmse_confident_half": next(r["rmse"] for r in curve if r["fraction"] == 0.5),
    })
    out["confident_half_better"] = bool(out["rmse_confident_half"] < out["rmse_all"])
    out["spread_ranks_errors"] = spread_ranks_errors(y, mean, spread)
    return out


def spread_ranks_errors(y, mean, spread) -> dict:
    """Whether the spread ranks the errors on this sample: the squared errors of the most confident
    half (smallest spread) below those of the other half by two standard errors
    (:func:`galmet.metrics.difference_verdict`: ``passes``; above by as much ``fails``; else
    ``inconclusive`` with the number of galaxies that would decide it)."""
    order = np.argsort(spread, kind="stable")
    err2 = (np.asarray(mean)[order] - np.asarray(y)[order]) ** 2
    half = len(err2) // 2
    return difference_verdict(err2[:half], err2[half:], passes_if="below")
