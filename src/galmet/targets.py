r"""The targets a CNN learns: one registry of what each catalog column is and how it is shown.

A target is a column of the clean catalog (MPA-JHU ``oh_p50``, ``lgm_tot_p50``, ...). Its
entry in :data:`TARGETS` gives the quantity, the units and the figure labels; the config schema
accepts exactly the registered names (``galmet.config``), and the workflow trains, predicts and
draws Figures 1-4 for each configured one. Adding a target is one entry here, e.g.::

    "sfr_tot_p50": Target("sfr_tot_p50", r"$\log\,{\rm SFR}$", unit="dex",
                          units_long="log10(SFR / Msun yr^-1)"),

Two targets have more: the published predictions of Wu & Boada (2019) are of
:data:`REFERENCE_TARGET` only, and the mass route (Fig. 5) and the predicted MZR (Fig. 6) need
both :data:`MASS` and :data:`METALLICITY` (:func:`has_mzr`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from galmet.metrics import Z_HIGH

__all__ = [
    "Target", "TARGETS", "METALLICITY", "MASS", "REFERENCE_TARGET", "MZR_TARGETS",
    "get_target", "generic_target", "has_mzr",
]


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
    threshold: float | None = None  # Figure 2 gives the fraction of values above it

    def __post_init__(self):
        suffix = f" [{self.unit}]" if self.unit else ""
        derived = {
            "units_long": self.unit,
            "symbol_true": f"{self.quantity} (true)",
            "symbol_pred": f"{self.quantity} (pred)",
            "label_true": f"true {self.quantity}{suffix}",
            "label_pred": f"predicted {self.quantity}{suffix}",
            "label_resid": f"predicted $-$ true {self.quantity}{suffix}",
            "noun": self.name,
        }
        for key, value in derived.items():
            if not getattr(self, key):
                object.__setattr__(self, key, value)  # frozen: only here, while constructing

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
        noun="metallicity", threshold=Z_HIGH,
    ),
    MASS: Target(
        MASS, r"$\log\,(M_*/M_\odot)$", unit="dex", units_long="log10(M*/Msun)",
        symbol_true=r"$\log M_{*,\rm true}$", symbol_pred=r"$\log M_{*,\rm pred}$",
        label_resid=r"$\Delta \log M_*$ (pred $-$ true) [dex]", noun="stellar mass",
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
