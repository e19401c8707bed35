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
"""

from __future__ import annotations

import math

import numpy as np

#: Spreads are floored here (dex) so that a member-identical ensemble cannot divide by zero.
MIN_SPREAD = 1e-6
DEFAULT_LEVELS = (0.68, 0.95)

__all__ = ["ConformalError", "MIN_SPREAD", "DEFAULT_LEVELS", "calibration_scores", "score_quantile",
           "max_level", "interval", "percentile_name", "interval_columns", "coverage", "pit"]


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


def score_quantile(scores, level: float) -> float:
    """``q_L``: the ``ceil(L (n + 1))``-th smallest of the sorted ``scores``."""
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    if not 0 < level < 1:
        raise ConformalError(f"level {level!r}: give a coverage between 0 and 1, e.g. 0.68 or 0.95")
    k = math.ceil(level * (n + 1) - 1e-9)  # the tolerance keeps 0.68 * 101 = 68.68... honest
    if k > n:
        raise ConformalError(
            f"level {level:g} needs at least {math.ceil(level / (1 - level))} calibration galaxies, "
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
