"""Calibrated intervals: split-conformal prediction with a spread-normalised score.

A model gives, for each galaxy, a prediction ``mean`` and a ``spread`` (e.g. the standard
deviation over the members of an ensemble). On calibration galaxies, used neither to fit the
weights nor for the test score, the scores ``s_i = |y_i - mean_i| / spread_i`` are computed and
kept, sorted (:func:`calibration_scores`: plain floats, so they can live in a model file that
loads with ``weights_only=True``). For a level ``L`` (e.g. 0.68) the interval is
``mean ± q_L * spread``, where ``q_L`` is the ``k``-th smallest score, ``k = ceil(L (n + 1))``
(split conformal prediction; MAPIE's ``SplitConformalRegressor(prefit=True,
conformity_score="std_normalized")`` gives the same upper bounds, which the tests check; its
lower bound takes the neighbouring order statistic, where galmet keeps the interval symmetric). Over
exchangeable galaxies the interval then contains the truth with probability at least ``L``.
A level above ``n / (n + 1)`` would need a score beyond the largest seen: it is refused with a
message, never answered with an infinite interval.

Interval columns follow the MPA-JHU convention: the level-``L`` interval is ``p{50(1-L)}`` to
``p{50(1+L)}`` (0.68: ``p16, p84``; 0.95: ``p2p5, p97p5``; 0.9: ``p5, p95``).

Group-conditional (Mondrian) calibration, an option (:func:`mondrian_calibration`): the marginal
guarantee above is over all galaxies together, and a model whose normalised errors grow in part
of the range (the CNN at low metallicity) can cover less than ``L`` there and more elsewhere.
Mondrian split conformal cuts the galaxies into groups by their *prediction* (never by the truth,
unknown when predicting) at increasing ``edges`` (group 0 below ``edges[0]``, group ``g`` from
``edges[g-1]`` up to ``edges[g]``, the last one from ``edges[-1]`` up: every prediction has a
group) and takes each group's own quantile ``q_L`` of its own calibration scores: over
exchangeable galaxies, the coverage is then at least ``L`` *within each group*. A group too small
for a level, fewer than ``ceil(L / (1 - L))`` scores (0.68: 3, 0.95: 19) or fewer than the
block's ``min_group``, falls back to the marginal quantile of all scores, which keeps the marginal
guarantee but not the group's (:func:`group_quantiles` says which groups fell back). The block
is plain floats, for a model file's ``calibration``: ``{"method": "mondrian", "edges": [...],
"min_group": m, "scores": [all, sorted], "scores_by_group": [[sorted], ...]}``. Compared with
the marginal calibration on the demo's validation split (``benchmarks/conditional_coverage.py``)
it was not adopted: 74 galaxies cannot tell its gain from noise; the workflow stays marginal.
"""

from __future__ import annotations

import math

import numpy as np

#: Spreads are floored here (dex) so that a member-identical ensemble cannot divide by zero.
MIN_SPREAD = 1e-6
DEFAULT_LEVELS = (0.68, 0.95)
#: ``method`` of a group-conditional calibration block.
MONDRIAN = "mondrian"

__all__ = ["ConformalError", "MIN_SPREAD", "DEFAULT_LEVELS", "MONDRIAN", "calibration_scores", "score_quantile",
           "max_level", "min_calibration", "interval", "percentile_name", "interval_columns", "coverage", "pit",
           "quantile_edges", "step_edges", "group_index", "mondrian_calibration", "group_quantiles",
           "mondrian_interval", "mondrian_interval_columns"]


class ConformalError(ValueError):
    """Calibration is impossible or a level cannot be reached; the message says why."""


def _arrays(*arrays, names):
    out = [np.asarray(a, dtype=np.float64).reshape(-1) for a in arrays]
    n = len(out[0])
    for a, name in zip(out, names, strict=True):
        if len(a) != n:
            raise ConformalError(f"{name} has {len(a)} values, {names[0]} {n}: give one per galaxy")
    return out


def calibration_scores(y, mean, spread) -> np.ndarray:
    """Sorted scores ``|y - mean| / max(spread, MIN_SPREAD)`` of the calibration galaxies.

    Galaxies with a non-finite truth, mean or spread are left out; none left is an error.
    """
    y, mean, spread = _arrays(y, mean, spread, names=("y", "mean", "spread"))
    if np.any(spread < 0):
        raise ConformalError(f"spread has {int(np.sum(spread < 0))} negative value(s): give standard deviations")
    ok = np.isfinite(y) & np.isfinite(mean) & np.isfinite(spread)
    if not ok.any():
        raise ConformalError(
            f"empty calibration set ({len(y)} galaxies, none with a finite truth, mean and spread): "
            "intervals need calibration galaxies used neither for training nor for the test score")
    return np.sort(np.abs(y[ok] - mean[ok]) / np.maximum(spread[ok], MIN_SPREAD))


def max_level(n: int) -> float:
    """The highest level ``n`` calibration scores can certify: ``n / (n + 1)``."""
    return n / (n + 1)


def min_calibration(level: float) -> int:
    """The fewest calibration scores that certify ``level``: ``ceil(L / (1 - L))`` (0.95: 19)."""
    return math.ceil(level / (1 - level) - 1e-9)


def score_quantile(scores, level: float) -> float:
    """``q_L``: the ``ceil(L (n + 1))``-th smallest of the sorted ``scores``."""
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    if not 0 < level < 1:
        raise ConformalError(f"level {level!r}: give a coverage between 0 and 1, e.g. 0.68 or 0.95")
    k = math.ceil(level * (n + 1) - 1e-9)  # the tolerance keeps 0.68 * 101 = 68.68... honest
    if k > n:
        raise ConformalError(
            f"level {level:g} needs at least {min_calibration(level)} calibration galaxies, "
            f"there are {n} (the highest level they support is {max_level(n):.4f})")
    return float(scores[max(k, 1) - 1])


def interval(mean, spread, scores, level: float) -> tuple[np.ndarray, np.ndarray]:
    """``(lower, upper)`` of the level-``L`` interval, ``mean ± q_L * spread``."""
    mean, spread = _arrays(mean, spread, names=("mean", "spread"))
    half = score_quantile(scores, level) * np.maximum(spread, MIN_SPREAD)
    return mean - half, mean + half


def percentile_name(q: float) -> str:
    """Column name of percentile ``q`` (0..100): 16 -> ``p16``, 2.5 -> ``p2p5``."""
    text = f"{q:.4f}".rstrip("0").rstrip(".")
    return "p" + text.replace(".", "p")


def _percentiles(levels) -> list[float]:
    return sorted({50 * (1 - level) for level in levels} | {50 * (1 + level) for level in levels})


def interval_names(levels=DEFAULT_LEVELS) -> list[str]:
    """Names of the columns that :func:`interval_columns` gives at ``levels``, in its order."""
    return [percentile_name(q) for q in _percentiles(levels)]


def interval_columns(mean, spread, scores, levels=DEFAULT_LEVELS) -> dict[str, np.ndarray]:
    """The interval bounds at each level as columns named by percentile, in increasing
    percentile: ``{"p2p5": ..., "p16": ..., "p84": ..., "p97p5": ...}`` for the default levels."""
    bounds = {}
    for level in levels:
        lo, hi = interval(mean, spread, scores, level)
        bounds[50 * (1 - level)], bounds[50 * (1 + level)] = lo, hi
    return {percentile_name(q): bounds[q] for q in _percentiles(levels)}


def coverage(y, lower, upper) -> float:
    """Fraction of galaxies whose truth lies inside ``[lower, upper]``."""
    y, lower, upper = _arrays(y, lower, upper, names=("y", "lower", "upper"))
    return float(np.mean((y >= lower) & (y <= upper))) if len(y) else float("nan")


def pit(y, mean, spread, scores) -> np.ndarray:
    """Probability integral transform of each truth under the calibrated predictive distribution.

    The intervals ``mean ± q * spread`` define a symmetric distribution whose ``|y - mean| /
    spread`` follows the calibration scores: ``PIT = 1/2 ± 1/2 * G(|y - mean| / spread)`` (sign
    of ``y - mean``), with ``G(s) = rank of s among the n scores / (n + 1)``. Calibrated
    intervals give PIT values uniform on [0, 1]: a U shape means too narrow, a hump too wide.
    """
    y, mean, spread = _arrays(y, mean, spread, names=("y", "mean", "spread"))
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    s = np.abs(y - mean) / np.maximum(spread, MIN_SPREAD)
    g = np.searchsorted(scores, s, side="right") / (len(scores) + 1)
    return 0.5 + 0.5 * np.sign(y - mean) * g


# ----------------------------------------------------------------------------- Mondrian (by prediction)


def _check_edges(edges) -> np.ndarray:
    edges = np.asarray(edges, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
        raise ConformalError(f"group edges {edges.tolist()}: give finite, strictly increasing cut points of the "
                             "prediction")
    return edges


def quantile_edges(mean, n_groups: int) -> list[float]:
    """Cut points that split the finite predictions ``mean`` into ``n_groups`` groups of (nearly)
    equal size (3: terciles); repeated cut points are merged (fewer groups)."""
    mean = np.asarray(mean, dtype=np.float64).reshape(-1)
    mean = mean[np.isfinite(mean)]
    if n_groups < 1 or not len(mean):
        raise ConformalError(f"{n_groups} group(s) of {len(mean)} finite prediction(s): give one group or more "
                             "and some predictions")
    cuts = np.quantile(mean, np.arange(1, n_groups) / n_groups)
    return [float(c) for c in np.unique(cuts)]


def step_edges(mean, width: float, origin: float = 0.0) -> list[float]:
    """Cut points on ``origin + k * width`` strictly inside the range of the finite predictions
    ``mean`` (e.g. 0.2 dex bins: 8.6, 8.8, 9.0 for predictions from 8.5 to 9.1)."""
    mean = np.asarray(mean, dtype=np.float64).reshape(-1)
    mean = mean[np.isfinite(mean)]
    if not width > 0 or not len(mean):
        raise ConformalError(f"step {width!r} over {len(mean)} finite prediction(s): give a positive width "
                             "and some predictions")
    ks = np.arange(math.floor((mean.min() - origin) / width) + 1, math.ceil((mean.max() - origin) / width))
    return [round(float(origin + k * width), 10) for k in ks]


def group_index(mean, edges) -> np.ndarray:
    """Group of each prediction: 0 below ``edges[0]``, ``g`` for ``edges[g-1] <= mean <
    edges[g]``, ``len(edges)`` from the last edge up (``-1`` for a non-finite prediction)."""
    mean = np.asarray(mean, dtype=np.float64).reshape(-1)
    idx = np.searchsorted(_check_edges(edges), mean, side="right")
    idx[~np.isfinite(mean)] = -1
    return idx


def mondrian_calibration(y, mean, spread, edges, min_group: int = 0) -> dict:
    """The Mondrian calibration block of calibration galaxies (see the module docstring): their
    sorted scores (:func:`calibration_scores`), all together and per group of the prediction at
    ``edges``; ``min_group``: groups with fewer scores use the marginal quantile at every level."""
    edges = _check_edges(edges)
    y, mean, spread = _arrays(y, mean, spread, names=("y", "mean", "spread"))
    scores = calibration_scores(y, mean, spread)  # checks spreads, refuses an empty set
    ok = np.isfinite(y) & np.isfinite(mean) & np.isfinite(spread)
    groups = group_index(mean[ok], edges)
    by_group = [calibration_scores(y[ok][groups == g], mean[ok][groups == g], spread[ok][groups == g]).tolist()
                if np.any(groups == g) else [] for g in range(len(edges) + 1)]
    return {"method": MONDRIAN, "edges": [float(e) for e in edges], "min_group": int(min_group),
            "scores": [float(s) for s in scores], "scores_by_group": [[float(s) for s in g] for g in by_group]}


def _mondrian_block(calibration: dict) -> dict:
    if calibration.get("method") != MONDRIAN:
        raise ConformalError(f"calibration method {calibration.get('method')!r}: this needs a Mondrian block "
                             "(galmet.conformal.mondrian_calibration)")
    if len(calibration["scores_by_group"]) != len(calibration["edges"]) + 1:
        raise ConformalError(f"{len(calibration['edges'])} edges need {len(calibration['edges']) + 1} groups of "
                             f"scores, the block has {len(calibration['scores_by_group'])}")
    return calibration


def group_quantiles(calibration: dict, level: float) -> tuple[np.ndarray, np.ndarray]:
    """``(q_L per group, fell_back per group)``: each group's own quantile, or the marginal one
    (``fell_back`` True) for a group with fewer than ``max(min_calibration(L), min_group)`` scores."""
    cal = _mondrian_block(calibration)
    marginal = score_quantile(cal["scores"], level)  # ConformalError when even all scores are too few
    need = max(min_calibration(level), int(cal.get("min_group", 0)))
    fell_back = np.array([len(g) < need for g in cal["scores_by_group"]], dtype=bool)
    q = np.array([marginal if back else score_quantile(g, level)
                  for g, back in zip(cal["scores_by_group"], fell_back, strict=True)], dtype=np.float64)
    return q, fell_back


def mondrian_interval(mean, spread, calibration: dict, level: float) -> tuple[np.ndarray, np.ndarray]:
    """``(lower, upper)`` of the level-``L`` interval, ``mean ± q_L[group of mean] * spread``."""
    mean, spread = _arrays(mean, spread, names=("mean", "spread"))
    q, _ = group_quantiles(calibration, level)
    groups = group_index(mean, calibration["edges"])
    half = np.where(groups >= 0, q[np.maximum(groups, 0)], np.nan) * np.maximum(spread, MIN_SPREAD)
    return mean - half, mean + half


def mondrian_interval_columns(mean, spread, calibration: dict, levels=DEFAULT_LEVELS) -> dict[str, np.ndarray]:
    """:func:`interval_columns` with the Mondrian block ``calibration``: same names, same order."""
    bounds = {}
    for level in levels:
        lo, hi = mondrian_interval(mean, spread, calibration, level)
        bounds[50 * (1 - level)], bounds[50 * (1 + level)] = lo, hi
    return {percentile_name(q): bounds[q] for q in _percentiles(levels)}
