"""The mass-metallicity relation (MZR): the Tremonti et al. (2004) fit and binned MZR statistics.

Tremonti et al. (2004, ApJ 613, 898, eq. 3) fit SDSS star-forming galaxies with

    12 + log(O/H) = -1.492 + 1.847 x - 0.08026 x^2,   x = log10(M* / Msun),

with a scatter of about 0.10 dex about the relation. The fit is valid over roughly
8.5 < x < 11.5; outside it the quadratic turns over and means nothing (it peaks near
x = 11.5). :func:`tremonti_z` evaluates it anywhere; with
``strict=True`` it returns NaN outside the range, and figures draw it only inside.

docs/method.md, section 6: a CNN trained on stellar mass gives a predicted mass; through this relation
it gives a metallicity ``Z_MZR`` that can be compared with the measured ``Z_true``, and the
scatter of ``Z_MZR - Z_true`` (paper: 0.12 dex) with that of the direct ``Z_pred - Z_true``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from galmet.metrics import bin_index, make_edges, median_residual, nmad, rmse
from galmet.targets import MASS, METALLICITY

#: Coefficients (a0, a1, a2) of Tremonti et al. (2004) eq. 3.
TREMONTI_COEFFS = (-1.492, 1.847, -0.08026)
#: Stellar-mass range (log Msun) over which the Tremonti fit holds.
TREMONTI_VALID_RANGE = (8.5, 11.5)
#: Scatter (dex) of SDSS galaxies about the Tremonti relation.
TREMONTI_SCATTER = 0.10
#: Width of the stellar-mass bins of the binned MZR (dex), as in docs/method.md, section 6.
MASS_BIN_WIDTH = 0.2

__all__ = [
    "TREMONTI_COEFFS",
    "TREMONTI_VALID_RANGE",
    "TREMONTI_SCATTER",
    "MASS_BIN_WIDTH",
    "tremonti_z",
    "tremonti_max",
    "mzr_metallicity",
    "binned_mzr",
    "mass_route_comparison",
    "mzr_summary",
    "mass_route_rows",
    "mzr_rows",
]


def tremonti_z(log_mass, strict: bool = False):
    """12 + log(O/H) from log10(M*/Msun) by Tremonti et al. (2004).

    With ``strict=True`` masses outside :data:`TREMONTI_VALID_RANGE` give NaN. Returns a
    float for a scalar input, else an array.
    """
    x = np.asarray(log_mass, dtype=np.float64)
    a0, a1, a2 = TREMONTI_COEFFS
    z = a0 + a1 * x + a2 * x**2
    if strict:
        lo, hi = TREMONTI_VALID_RANGE
        z = np.where((x >= lo) & (x <= hi), z, np.nan)
    return float(z) if z.ndim == 0 else z


def tremonti_max() -> float:
    """The highest metallicity the Tremonti relation gives (its vertex, near 9.13 dex at
    log M* = 11.5): Z_MZR never exceeds it, whatever the predicted mass."""
    a0, a1, a2 = TREMONTI_COEFFS
    return float(a0 - a1**2 / (4 * a2))


def mzr_metallicity(predicted_log_mass, strict: bool = False):
    """Z_MZR: the metallicity a predicted stellar mass implies through the Tremonti relation."""
    return tremonti_z(predicted_log_mass, strict=strict)


def binned_mzr(log_mass, z, bin_width: float = MASS_BIN_WIDTH, edges=None,
               min_count: int = 1) -> pd.DataFrame:
    """Metallicity ``z`` in bins of stellar mass ``log_mass`` (0.2 dex by default).

    Columns: ``lo, hi, center, n, median_z, p16_z, p84_z, tremonti`` (the relation at the bin
    centre, NaN outside its valid range) and, about the Tremonti curve evaluated at each
    galaxy's mass, ``rmse``, ``nmad`` and ``median_offset``. Bins ``[lo, hi)``, last closed;
    bins with fewer than ``min_count`` galaxies are left out. Rows with NaN are ignored.
    """
    m = np.asarray(log_mass, dtype=np.float64).ravel()
    z = np.asarray(z, dtype=np.float64).ravel()
    if m.shape != z.shape:
        raise ValueError(f"log_mass has {m.size} values but z has {z.size}")
    ok = np.isfinite(m) & np.isfinite(z)
    m, z = m[ok], z[ok]
    if edges is None:
        edges = make_edges(m, bin_width)
    edges = np.asarray(edges, dtype=np.float64)
    idx = bin_index(m, edges)
    rows = []
    for i in np.unique(idx[idx >= 0]):
        sel = idx == i
        n = int(sel.sum())
        if n < max(min_count, 1):
            continue
        mi, zi = m[sel], z[sel]
        d = zi - tremonti_z(mi)
        center = float(np.round(0.5 * (edges[i] + edges[i + 1]), 10))
        rows.append({
            "lo": float(edges[i]), "hi": float(edges[i + 1]), "center": center, "n": n,
            "median_z": float(np.median(zi)),
            "p16_z": float(np.percentile(zi, 16)),
            "p84_z": float(np.percentile(zi, 84)),
            "tremonti": tremonti_z(center, strict=True),
            "rmse": rmse(d), "nmad": nmad(d), "median_offset": median_residual(d),
        })
    cols = ["lo", "hi", "center", "n", "median_z", "p16_z", "p84_z", "tremonti",
            "rmse", "nmad", "median_offset"]
    return pd.DataFrame(rows, columns=cols)


def mass_route_comparison(z_true, z_pred_direct, mass_pred, mass_true=None) -> dict:
    """Scatter of the mass route (Z_MZR - Z_true) beside the direct route (Z_pred - Z_true).

    ``z_pred_direct`` may be None (no metallicity CNN); with ``mass_true`` the scatter of the
    predicted mass is added. Returns JSON-ready ``{"mzr": summarize(...), "direct": ... or
    None, "mass": ... or None}`` (NaN written as None).
    """
    from galmet.metrics import summarize

    def clean(d):
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                for k, v in d.items()}

    out = {"mzr": clean(summarize(z_true, mzr_metallicity(mass_pred))), "direct": None,
           "mass": None}
    if z_pred_direct is not None:
        out["direct"] = clean(summarize(z_true, z_pred_direct))
    if mass_true is not None:
        out["mass"] = clean(summarize(mass_true, mass_pred))
    return out


def mzr_summary(log_mass, z_pred, z_true, bin_width: float = MASS_BIN_WIDTH) -> tuple[pd.DataFrame, dict]:
    """The predicted and the empirical MZR side by side, for Figure 6 and its table.

    Returns ``(table, numbers)``: the table has one row per mass bin with ``n``, the medians of
    Z_pred and Z_true, their RMSE/NMAD about the Tremonti curve, and the Tremonti value; the
    numbers are the overall scatter of Z_pred and of Z_true about the Tremonti curve (masses
    inside its valid range) and the counts.
    """
    m = np.asarray(log_mass, dtype=np.float64)
    zp = np.asarray(z_pred, dtype=np.float64)
    zt = np.asarray(z_true, dtype=np.float64)
    ok = np.isfinite(m) & np.isfinite(zp) & np.isfinite(zt)
    m, zp, zt = m[ok], zp[ok], zt[ok]
    edges = make_edges(m, bin_width) if m.size else np.array([0.0, bin_width])
    bp = binned_mzr(m, zp, edges=edges)
    bt = binned_mzr(m, zt, edges=edges)
    keep = ["lo", "hi", "center", "n", "tremonti"]
    table = bp[keep].copy()
    for name, b in (("pred", bp), ("true", bt)):
        for col in ("median_z", "p16_z", "p84_z", "rmse", "nmad", "median_offset"):
            table[f"{col.replace('_z', '')}_{name}"] = b[col].to_numpy()
    lo, hi = TREMONTI_VALID_RANGE
    valid = (m >= lo) & (m <= hi)
    numbers = {
        "n": int(m.size),
        "n_in_tremonti_range": int(valid.sum()),
        "bin_width": float(bin_width),
        "pred_rmse_about_tremonti": rmse(zp[valid] - tremonti_z(m[valid])),
        "pred_nmad_about_tremonti": nmad(zp[valid] - tremonti_z(m[valid])),
        "true_rmse_about_tremonti": rmse(zt[valid] - tremonti_z(m[valid])),
        "true_nmad_about_tremonti": nmad(zt[valid] - tremonti_z(m[valid])),
        "tremonti_scatter": TREMONTI_SCATTER,
    }
    numbers = {k: (None if isinstance(v, float) and not np.isfinite(v) else v)
               for k, v in numbers.items()}
    return table, numbers


# ---------------------------------------------------------------------------------------------
# The galaxies of Figures 5 and 6, joined from the workflow's prediction tables and catalog


def mass_route_rows(mass_preds: pd.DataFrame, direct_preds: pd.DataFrame,
                    catalog: pd.DataFrame) -> pd.DataFrame:
    """The stellar-mass CNN's test galaxies with their measured metallicity and, where the
    metallicity CNN scored them too, its prediction: columns ``objID``, ``lgm_tot_p50`` (true
    mass), ``prediction`` (predicted mass), ``oh_p50`` (Z_true) and ``z_pred`` (NaN if none)."""
    mass = mass_preds[["objID", MASS, "prediction"]]
    direct = direct_preds[["objID", "prediction"]].rename(columns={"prediction": "z_pred"})
    return mass.merge(catalog[["objID", METALLICITY]], on="objID", how="inner").merge(
        direct, on="objID", how="left"
    )


def mzr_rows(z_preds: pd.DataFrame, catalog: pd.DataFrame) -> pd.DataFrame:
    """The metallicity CNN's test galaxies with their catalog stellar mass: columns ``objID``,
    ``oh_p50``, ``prediction`` (and ``p16, p84`` of a calibrated ensemble) and ``lgm_tot_p50``.
    ValueError when the catalog has no mass."""
    if MASS not in catalog.columns:
        raise ValueError(f"the catalog has no {MASS} column: no stellar mass for Figure 6")
    preds = z_preds[["objID", METALLICITY, "prediction", *[c for c in ("p16", "p84") if c in z_preds]]]
    return preds.merge(catalog[["objID", MASS]], on="objID", how="inner")
