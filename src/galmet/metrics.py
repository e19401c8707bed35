"""Scatter statistics of predictions against truth (docs/method.md, section 5).

``galmet evaluate`` (:mod:`galmet.cli.evaluate`) prints them for a predictions table.

Residual ``dZ = Z_pred - Z_true``.

- ``rmse``: sqrt(mean(dZ^2)).
- ``nmad``: 1.4826 * median(|dZ - median(dZ)|), the paper's equation 1 (centred).
- ``nmad_about_zero``: 1.4826 * median(|dZ|); the paper's quoted NMAD may have been this.
- ``median_residual``: median(dZ), the offset.

Binned statistics are taken in bins of the *true* value (``bin_width`` dex wide, or explicit
edges): counts, the running median of the prediction, RMSE, NMAD, median residual.

Every function ignores rows where either value is NaN/inf; :func:`evaluate_predictions`
reports how many such rows it dropped (``n_invalid``) instead of failing.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from galmet.config import default
from galmet.targets import get_target

NMAD_SCALE = 1.4826

__all__ = [
    "rmse",
    "nmad",
    "nmad_about_zero",
    "median_residual",
    "summarize",
    "binned_statistics",
    "make_edges",
    "bin_index",
    "sampling_error",
    "mean_verdict",
    "difference_verdict",
    "decide",
    "evaluate_predictions",
    "frac_key",
    "evaluate_table",
    "interval_scores",
    "compare_on_overlap",
]


def _arr(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).ravel()


def _finite(x) -> np.ndarray:
    x = _arr(x)
    return x[np.isfinite(x)]


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t, p = _arr(y_true), _arr(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} values but y_pred has {p.size}")
    ok = np.isfinite(t) & np.isfinite(p)
    return t[ok], p[ok]


def rmse(residuals) -> float:
    """Root mean square of the residuals (NaN for an empty input)."""
    r = _finite(residuals)
    return float(np.sqrt(np.mean(r**2))) if r.size else math.nan


def nmad(x) -> float:
    """Normalised median absolute deviation about the median: 1.4826 * median(|x - median(x)|)."""
    r = _finite(x)
    if not r.size:
        return math.nan
    return float(NMAD_SCALE * np.median(np.abs(r - np.median(r))))


def nmad_about_zero(x) -> float:
    """1.4826 * median(|x|): the NMAD of residuals taken about zero rather than their median."""
    r = _finite(x)
    return float(NMAD_SCALE * np.median(np.abs(r))) if r.size else math.nan


def median_residual(x) -> float:
    """Median of the residuals (the offset of the predictions)."""
    r = _finite(x)
    return float(np.median(r)) if r.size else math.nan


def summarize(y_true, y_pred) -> dict:
    """``{n, rmse, nmad, nmad_about_zero, median_residual}`` of ``y_pred - y_true``."""
    t, p = _pair(y_true, y_pred)
    d = p - t
    return {
        "n": int(d.size),
        "rmse": rmse(d),
        "nmad": nmad(d),
        "nmad_about_zero": nmad_about_zero(d),
        "median_residual": median_residual(d),
    }


#: 1-sigma sampling error of a statistic over n galaxies, in units of value / sqrt(n), for residuals
#: of Gaussian shape: the RMSE's 1/sqrt(2); the NMAD's sqrt(1.361) (Rousseeuw & Croux 1993: the
#: MAD's asymptotic variance, 37% efficiency).
SAMPLING_FACTOR = {"rmse": 1 / math.sqrt(2), "nmad": math.sqrt(1.361)}


def sampling_error(stat: str, value, n) -> float:
    """The 1-sigma error of ``stat`` (``rmse`` or ``nmad``) from the sample size alone:
    ``value * SAMPLING_FACTOR[stat] / sqrt(n)`` (NaN without a value or galaxies)."""
    if value is None or n is None or not np.isfinite(value) or not n > 0:
        return math.nan
    return float(value) * SAMPLING_FACTOR[stat] / math.sqrt(float(n))


#: a sample decides a pass/fail question when its mean is this many standard errors from the threshold.
DECIDING_SE = 2.0
#: below this many values no verdict is given, whatever their spread.
MIN_DECIDING_N = 3


def _check_side(passes_if: str) -> None:
    if passes_if not in ("below", "above"):
        raise ValueError(f"passes_if={passes_if!r}: give 'below' or 'above'")


def decide(gap: float, se: float, passes_if: str) -> str:
    """``passes`` / ``fails`` when ``gap`` (value minus threshold) is over :data:`DECIDING_SE`
    standard errors ``se`` on the passing / failing side, else ``inconclusive``."""
    if abs(gap) > DECIDING_SE * se:
        return "passes" if (gap < 0) == (passes_if == "below") else "fails"
    return "inconclusive"


def mean_verdict(values, threshold: float = 0.0, passes_if: str = "below") -> dict:
    """Whether the mean of per-galaxy ``values`` is on the passing side of ``threshold`` (``passes_if``
    ``"below"`` or ``"above"``) by more than :data:`DECIDING_SE` standard errors (``passes``), on
    the failing side by as much (``fails``), or neither (``inconclusive``: the sample cannot tell).

    Returns ``verdict``, ``n`` (finite values), ``mean``, ``std``, ``sem``, ``threshold`` and
    ``n_needed``: for an inconclusive sample, the number of galaxies that would decide it if the mean
    and the spread stayed as they are, ``(DECIDING_SE * std / |mean - threshold|)^2`` rounded up
    (None when the mean sits on the threshold or fewer than :data:`MIN_DECIDING_N` values give no
    spread to go by). Galaxies are taken as independent, the mean as normal (the central limit).
    """
    _check_side(passes_if)
    v = _finite(values)
    n = int(v.size)
    out = {"verdict": "inconclusive", "n": n, "mean": None, "std": None, "sem": None, "threshold": float(threshold),
           "passes_if": passes_if, "n_needed": None, "deciding_se": DECIDING_SE}
    if n == 0:
        return out
    mean = float(v.mean())
    std = float(v.std(ddof=1)) if n > 1 else 0.0
    out.update(mean=mean, std=std, sem=std / math.sqrt(n))
    if n < MIN_DECIDING_N:
        return out
    gap = mean - float(threshold)
    out["verdict"] = decide(gap, out["sem"], passes_if)
    if out["verdict"] == "inconclusive" and gap != 0:
        out["n_needed"] = max(n + 1, math.ceil((DECIDING_SE * std / abs(gap)) ** 2))
    return out


def difference_verdict(a, b, passes_if: str = "below") -> dict:
    """Whether the mean of ``a`` is below (``passes_if="below"``) or above the mean of ``b`` by more
    than :data:`DECIDING_SE` standard errors of the difference (Welch: ``sqrt(var_a/n_a + var_b/n_b)``):
    ``passes``, the other way by as much ``fails``, else ``inconclusive`` with ``n_needed``, the
    galaxies in all (split as now) that would decide it at the observed means and spreads."""
    _check_side(passes_if)
    a, b = _finite(a), _finite(b)
    out = {"verdict": "inconclusive", "n": int(a.size + b.size), "difference": None, "se": None, "n_needed": None,
           "passes_if": passes_if, "deciding_se": DECIDING_SE}
    if min(a.size, b.size) < MIN_DECIDING_N:
        return out
    diff = float(a.mean() - b.mean())
    se = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    out.update(difference=diff, se=se)
    out["verdict"] = decide(diff, se, passes_if)
    if out["verdict"] == "inconclusive" and diff != 0:
        out["n_needed"] = max(out["n"] + 1, math.ceil(out["n"] * (DECIDING_SE * se / abs(diff)) ** 2))
    return out


def make_edges(values, bin_width: float) -> np.ndarray:
    """Bin edges on multiples of ``bin_width`` covering every finite value of ``values``.

    Edges are rounded to 10 decimals so that 8.3 is 8.3 and not 8.299999999.
    """
    if not bin_width > 0:
        raise ValueError(f"bin_width must be positive, got {bin_width}")
    v = _finite(values)
    if not v.size:
        return np.array([0.0, bin_width])
    lo = math.floor(v.min() / bin_width + 1e-9)
    hi = math.floor(v.max() / bin_width + 1e-9) + 1
    if hi - lo > 1_000_000:
        raise ValueError(
            f"values span {v.min():g} to {v.max():g}: over a million bins of {bin_width:g}; "
            "are missing values coded as a number (-9999)?"
        )
    return np.round(np.arange(lo, hi + 1) * bin_width, 10)


def bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Index of the bin ``[edges[i], edges[i+1])`` of each value (last bin closed); -1 outside."""
    idx = np.searchsorted(edges, values, side="right") - 1
    idx[values == edges[-1]] = edges.size - 2
    idx[(values < edges[0]) | (values > edges[-1]) | ~np.isfinite(values)] = -1
    return idx


BINNED_COLUMNS = [
    "lo", "hi", "center", "n", "median_true", "median_pred",
    "p16_pred", "p84_pred", "rmse", "nmad", "median_residual",
]


def binned_statistics(y_true, y_pred, bin_width: float | None = 0.1, edges=None,
                      min_count: int = 1) -> pd.DataFrame:
    """Statistics of the predictions in bins of the true value.

    Bins are ``[lo, hi)`` (the last one closed). Give ``edges`` explicitly or a ``bin_width``
    (edges on multiples of it). Bins holding fewer than ``min_count`` galaxies are left out.
    Columns: ``lo, hi, center, n, median_true, median_pred, p16_pred, p84_pred, rmse, nmad,
    median_residual`` (residual = pred - true within the bin).
    """
    t, p = _pair(y_true, y_pred)
    if edges is None:
        if bin_width is None:
            raise ValueError("give bin_width or edges")
        edges = make_edges(t, bin_width)
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError("edges must be a strictly increasing sequence of at least two values")
    idx = bin_index(t, edges)
    rows = []
    for i in np.unique(idx[idx >= 0]):  # only occupied bins: cheap even for absurd ranges
        m = idx == i
        n = int(m.sum())
        if n < max(min_count, 1):
            continue
        ti, pi = t[m], p[m]
        d = pi - ti
        rows.append({
            "lo": float(edges[i]),
            "hi": float(edges[i + 1]),
            "center": float(np.round(0.5 * (edges[i] + edges[i + 1]), 10)),
            "n": n,
            "median_true": float(np.median(ti)),
            "median_pred": float(np.median(pi)),
            "p16_pred": float(np.percentile(pi, 16)),
            "p84_pred": float(np.percentile(pi, 84)),
            "rmse": rmse(d),
            "nmad": nmad(d),
            "median_residual": median_residual(d),
        })
    return pd.DataFrame(rows, columns=BINNED_COLUMNS)


def _json_number(x):
    """A JSON-safe number: NaN/inf become None (strict JSON has no NaN)."""
    if isinstance(x, (int, np.integer)):
        return int(x)
    x = float(x)
    return x if math.isfinite(x) else None


def frac_key(kind: str, threshold: float) -> str:
    """The metrics key of the fraction of ``kind`` ('true' or 'pred') values above ``threshold``:
    ``frac_pred_above_9p1`` for 9.1 (the point written ``p``, a minus sign ``m``)."""
    return f"frac_{kind}_above_{threshold:g}".replace(".", "p").replace("-", "m")


def evaluate_predictions(y_true, y_pred, bin_width: float | None = None, threshold: float | None = None) -> dict:
    """All evaluation numbers, JSON-ready (no NaN).

    ``{n, n_invalid, rmse, nmad, nmad_about_zero, median_residual, bin_width, binned: [rows of
    binned_statistics]}``. Rows with a NaN or infinite value are left out and counted in
    ``n_invalid``. With a ``threshold`` (the target's, ``galmet.targets.Target.threshold``: 9.1
    dex for ``oh_p50``, docs/method.md, section 5) also the fractions of predicted and true values
    above it, before ``bin_width``: ``frac_pred_above_9p1``, ``frac_true_above_9p1``
    (:func:`frac_key`); a target without a threshold has no such keys. ``bin_width`` defaults to
    the config's ``evaluate.bin_width``.
    """
    if bin_width is None:
        bin_width = default("evaluate.bin_width")
    t_all, p_all = _arr(y_true), _arr(y_pred)
    if t_all.shape != p_all.shape:
        raise ValueError(f"y_true has {t_all.size} values but y_pred has {p_all.size}")
    t, p = _pair(t_all, p_all)
    out = summarize(t, p)
    out["n_invalid"] = int(t_all.size - t.size)
    fracs = []
    if threshold is not None:
        for kind, values in (("pred", p), ("true", t)):
            fracs.append(frac_key(kind, threshold))
            out[fracs[-1]] = float(np.mean(values > threshold)) if values.size else math.nan
    out["bin_width"] = float(bin_width)
    binned = binned_statistics(t, p, bin_width=bin_width) if t.size else pd.DataFrame()
    out["binned"] = [
        {k: _json_number(v) for k, v in row.items()} for row in binned.to_dict(orient="records")
    ]
    order = ["n", "n_invalid", "rmse", "nmad", "nmad_about_zero", "median_residual", *fracs,
             "bin_width", "binned"]
    return {k: (out[k] if k == "binned" else _json_number(out[k])) for k in order}


def evaluate_table(df: pd.DataFrame, truth: str = "oh_p50", pred: str = "prediction",
                   bin_width: float | None = None, source: str = "table") -> dict:
    """:func:`evaluate_predictions` on two columns of a table; names the missing column.

    The threshold statistic is the registered one of the ``truth`` column (galmet.targets), if
    any. Non-numeric entries count as invalid rows (``n_invalid``), never a crash.
    """

    missing = [c for c in (truth, pred) if c not in df.columns]
    if missing:
        raise KeyError(
            f"{source}: no column {', '.join(map(repr, missing))}; columns are {list(df.columns)}"
        )
    t = pd.to_numeric(df[truth], errors="coerce").to_numpy(dtype=np.float64)
    p = pd.to_numeric(df[pred], errors="coerce").to_numpy(dtype=np.float64)
    out = evaluate_predictions(t, p, bin_width=bin_width, threshold=get_target(truth).threshold)
    out = {"source": str(source), "truth": truth, "pred": pred, **out}
    intervals = interval_scores(df, truth)
    if intervals:
        out["intervals"] = intervals
    return out


_PERCENTILE = re.compile(r"p(\d+)(?:p(\d+))?")


def _percentile(column: str) -> float | None:
    """The percentile a column is named for (``p16`` -> 16, ``p2p5`` -> 2.5, as galmet predict
    writes them), or None."""
    m = _PERCENTILE.fullmatch(str(column))
    return None if m is None else float(f"{m.group(1)}.{m.group(2) or 0}")


def interval_scores(df: pd.DataFrame, truth: str) -> list[dict]:
    """Coverage and mean width of each central interval in a predictions table: the columns named
    by percentile in pairs ``q`` and ``100 - q`` (``p16``/``p84`` the 68% interval, ``p2p5``/``p97p5``
    the 95%, as ``galmet predict`` writes a calibrated ensemble's). One row per level, narrowest
    first: ``level, lower, upper, n, coverage, width_mean`` (rows with a NaN left out of ``n``)."""
    named = {q: c for c in df.columns if (q := _percentile(c)) is not None and 0 < q < 50}
    upper = {q: c for c in df.columns if (q := _percentile(c)) is not None and 50 < q < 100}
    rows = []
    for q in sorted(named, reverse=True):
        hi_col = upper.get(round(100 - q, 6))
        if hi_col is None:
            continue
        t, lo, hi = (pd.to_numeric(df[c], errors="coerce").to_numpy(np.float64) for c in (truth, named[q], hi_col))
        ok = np.isfinite(t) & np.isfinite(lo) & np.isfinite(hi)
        rows.append({"level": round((100 - 2 * q) / 100, 6), "lower": named[q], "upper": hi_col, "n": int(ok.sum()),
                     "coverage": _json_number(np.mean((t[ok] >= lo[ok]) & (t[ok] <= hi[ok]))) if ok.any() else None,
                     "width_mean": _json_number(np.mean(hi[ok] - lo[ok])) if ok.any() else None})
    return rows


def compare_on_overlap(this_run: pd.DataFrame, other: pd.DataFrame, truth: str = "oh_p50",
                       pred: str = "prediction", labels=("this_run", "published")) -> dict:
    """Score two prediction tables on the galaxies (objID) they share.

    Returns ``{"n_<a>", "n_<b>", "n_overlap", "<a>": summarize | None, "<b>": ..., "note"}``;
    an empty overlap (e.g. the demo sample against the published test set) is said in ``note``
    rather than raised.
    """
    a, b = labels
    left = this_run[["objID", truth, pred]].dropna()
    right = other[["objID", truth, pred]].dropna()
    both = left.merge(right, on="objID", suffixes=("_a", "_b"))
    out = {f"n_{a}": int(len(left)), f"n_{b}": int(len(right)), "n_overlap": int(len(both)),
           a: None, b: None}
    if len(both):
        out[a] = {k: _json_number(v) for k, v in
                  summarize(both[f"{truth}_a"], both[f"{pred}_a"]).items()}
        out[b] = {k: _json_number(v) for k, v in
                  summarize(both[f"{truth}_b"], both[f"{pred}_b"]).items()}
        dt = np.abs(both[f"{truth}_a"].to_numpy(float) - both[f"{truth}_b"].to_numpy(float))
        out["max_truth_difference"] = _json_number(dt.max())
        out["note"] = f"{len(both)} test galaxies in common; both scored on them"
    else:
        out["note"] = (f"no galaxy in common between the {len(left)} test galaxies of this run and "
                       f"the {len(right)} of the {b} predictions: the numbers are not on the same "
                       "galaxies (set split.force_test_ids to the published file on a full catalog)")
    return out
