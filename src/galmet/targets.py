r"""The targets a CNN learns: one registry of what each catalog column is and how it is shown.

A target is a column of the clean catalog (MPA-JHU ``oh_p50``, ``lgm_tot_p50``, ...). Its
entry in :data:`TARGETS` is all the code knows of it: the quantity, the units and the figure
labels (``galmet.figures``, the model file's meta), the words for its low and high ends (the
saliency labels, ``galmet.explain``), its valid range (``galmet.catalog`` drops the rows outside
it as ``bad_<column>`` and keeps the column) and an optional threshold statistic (the fraction of
values above it, in the metrics and Figure 2: ``oh_p50``'s 9.1 dex only). The config schema
accepts exactly the registered names (``galmet.config``), and the workflow trains, predicts and
draws Figures 1-4 for each configured one. Adding a target is one entry here, as
``sfr_tot_p50`` was; e.g. for the MPA-JHU 4000 A break (no unit, no threshold)::

    "d4000_n": Target("d4000_n", r"$D_n(4000)$", valid=(0.5, 3.0), low="young", high="old"),

Two targets have more: the published predictions of Wu & Boada (2019) are of
:data:`REFERENCE_TARGET` only, and the mass route (Fig. 5) and the predicted MZR (Fig. 6) need
both :data:`MASS` and :data:`METALLICITY` (:func:`has_mzr`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Target", "TARGETS", "METALLICITY", "MASS", "REFERENCE_TARGET", "MZR_TARGETS",
    "get_target", "generic_target", "has_mzr", "Z_HIGH",
]

#: Metallicity threshold of the paper's "fraction above Z = 9.1" statistic (dex), docs/method.md, section 5.
Z_HIGH = 9.1


@dataclass(frozen=True)
class Target:
    """How one target column is named and drawn; labels left empty are derived from
    ``quantity`` and ``unit`` (``true <quantity> [<unit>]`` ...)."""

    name: str  # the catalog column
    quantity: str  # axis text of the quantity (mathtext allowed), without the unit
    unit: str = ""  # unit on axes, e.g. "dex"; "" for a bare column
    units_long: str = ""  # unit written into model.pt's meta; default: unit
    symbol_true: str = ""  # short symbols on Figure 1-2 panels
    symbol_pred: str = ""
    label_true: str = ""  # axis labels of Figure 3 (and 5, 6)
    label_pred: str = ""
    label_resid: str = ""
    noun: str = ""  # in titles ("scatter of the test <noun>"); default: name
    threshold: float | None = None  # metrics and Figure 2 give the fraction of values above it
    valid: tuple[float, float] | None = None  # open range of real values; the catalog drops the rest
    low: str = ""  # words for the low and high ends (saliency groups); default "low <noun>"
    high: str = ""
    table_unit: str = ""  # astropy unit string of the column in FITS/ECSV/VOTable tables; default: unit
    description: str = ""  # one line naming the quantity in tables (galmet.tables); default: noun

    def __post_init__(self):
        if self.valid is not None and not self.valid[0] < self.valid[1]:
            raise ValueError(f"target {self.name}: valid range {self.valid} must be (low, high) with low < high")
        suffix = f" [{self.unit}]" if self.unit else ""
        derived = {
            "units_long": self.unit,
            "symbol_true": f"{self.quantity} (true)",
            "symbol_pred": f"{self.quantity} (pred)",
            "label_true": f"true {self.quantity}{suffix}",
            "label_pred": f"predicted {self.quantity}{suffix}",
            "label_resid": f"predicted $-$ true {self.quantity}{suffix}",
            "noun": self.name,
            "table_unit": self.unit,
        }
        for key, value in derived.items():
            if not getattr(self, key):
                object.__setattr__(self, key, value)  # frozen: only here, while constructing
        for key in ("low", "high"):
            if not getattr(self, key):
                object.__setattr__(self, key, f"{key} {self.noun}")
        if not self.description:
            object.__setattr__(self, "description", self.noun)

    @property
    def words(self) -> tuple[str, str]:
        """The words for the low and high ends, e.g. ("metal-poor", "metal-rich")."""
        return self.low, self.high

    def out_of_range(self, values) -> np.ndarray:
        """Boolean mask of the finite ``values`` outside the open :attr:`valid` range (none without one)."""
        x = np.asarray(values, dtype=np.float64)
        if self.valid is None:
            return np.zeros(x.shape, bool)
        with np.errstate(invalid="ignore"):
            return np.isfinite(x) & ((x <= self.valid[0]) | (x >= self.valid[1]))

    @property
    def axis_text(self) -> str:
        """The quantity with its unit, for a histogram's x axis."""
        return f"{self.quantity} [{self.unit}]" if self.unit else self.quantity

    def label(self, kind: str) -> str:
        """Axis label of the truth (kind='true'), the prediction ('pred') or the residual ('resid')."""
        return {"true": self.label_true, "pred": self.label_pred, "resid": self.label_resid}[kind]


METALLICITY = "oh_p50"
MASS = "lgm_tot_p50"

TARGETS: dict[str, Target] = {
    METALLICITY: Target(
        METALLICITY, "12 + log(O/H)", unit="dex", units_long="dex (12 + log O/H)",
        symbol_true=r"$Z_{\rm true}$", symbol_pred=r"$Z_{\rm pred}$",
        label_true=r"$Z_{\rm true}$ = 12 + log(O/H) [dex]", label_pred=r"$Z_{\rm pred}$ [dex]",
        label_resid=r"$\Delta Z = Z_{\rm pred} - Z_{\rm true}$ [dex]",
        noun="metallicity", threshold=Z_HIGH, valid=(6.0, 10.5), low="metal-poor", high="metal-rich",
        description="gas-phase metallicity 12 + log(O/H)",
    ),
    MASS: Target(
        MASS, r"$\log\,(M_*/M_\odot)$", unit="dex", units_long="log10(M*/Msun)",
        symbol_true=r"$\log M_{*,\rm true}$", symbol_pred=r"$\log M_{*,\rm pred}$",
        label_resid=r"$\Delta \log M_*$ (pred $-$ true) [dex]", noun="stellar mass",
        valid=(5.0, 13.0), low="low-mass", high="high-mass",
        table_unit="dex(solMass)", description="total stellar mass log10(M*/Msun)",
    ),
    "sfr_tot_p50": Target(  # MPA-JHU total star-formation rate; sentinels (-99, -9999) lie outside its range
        "sfr_tot_p50", r"$\log\,({\rm SFR}/M_\odot\,{\rm yr}^{-1})$", unit="dex", units_long="log10(SFR / Msun yr^-1)",
        noun="star-formation rate", valid=(-5.0, 4.0), low="low-SFR", high="high-SFR",
        table_unit="dex(solMass/yr)", description="total star-formation rate log10(SFR / Msun yr^-1)",
    ),
}

#: The target of the published predictions (Wu & Boada 2019) that the reference rules score.
REFERENCE_TARGET = METALLICITY
#: Targets the mass route and the predicted MZR need together: (stellar mass, metallicity).
MZR_TARGETS = (MASS, METALLICITY)


def generic_target(name: str) -> Target:
    """A plain entry for a column nobody registered: labelled by its name, no unit."""
    return Target(name, name)


def get_target(name: str) -> Target:
    """The registered entry of ``name``, else :func:`generic_target`."""
    return TARGETS.get(name) or generic_target(name)


def has_mzr(targets: Iterable[str]) -> bool:
    """Whether the configured ``targets`` allow Figures 5 and 6 (both mass and metallicity)."""
    return set(MZR_TARGETS) <= set(targets)
