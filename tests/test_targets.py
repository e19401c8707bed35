"""galmet.targets: the registry of target columns and what the figures and the workflow read."""

from __future__ import annotations

import numpy as np
import pytest

from galmet import figures, targets
from galmet.targets import MASS, METALLICITY, TARGETS, Target, get_target, has_mzr


def test_registered_labels_are_the_papers():
    z, m = TARGETS[METALLICITY], TARGETS[MASS]
    assert z.label_true == r"$Z_{\rm true}$ = 12 + log(O/H) [dex]"
    assert z.label_pred == r"$Z_{\rm pred}$ [dex]"
    assert (z.symbol_true, z.symbol_pred) == (r"$Z_{\rm true}$", r"$Z_{\rm pred}$")
    assert z.axis_text == "12 + log(O/H) [dex]" and z.threshold == 9.1
    assert m.label_true == r"true $\log\,(M_*/M_\odot)$ [dex]"
    assert m.label_pred == r"predicted $\log\,(M_*/M_\odot)$ [dex]"
    assert m.label("resid") == r"$\Delta \log M_*$ (pred $-$ true) [dex]"
    assert m.threshold is None
    assert (z.units_long, m.units_long) == ("dex (12 + log O/H)", "log10(M*/Msun)")
    assert (z.words, m.words) == (("metal-poor", "metal-rich"), ("low-mass", "high-mass"))
    assert (z.valid, m.valid) == ((6.0, 10.5), (5.0, 13.0))


def test_valid_range_and_threshold_are_the_targets_own():
    z = TARGETS[METALLICITY]
    assert z.out_of_range([6.0, 6.01, 9.1, 10.49, 10.5, np.nan]).tolist() == [True, False, False, False, True, False]
    assert z.threshold == targets.Z_HIGH == 9.1 and get_target("x").threshold is None
    assert not get_target("x").out_of_range([-1e6, 1e6]).any()  # no range: nothing is out of it
    assert get_target("x").words == ("low x", "high x")
    with pytest.raises(ValueError, match=r"target x: valid range \(2.0, 1.0\)"):
        Target("x", "x", valid=(2.0, 1.0))


def test_the_loss_curve_unit_is_the_registered_one(monkeypatch):
    from galmet.train import _unit

    monkeypatch.setitem(TARGETS, "flux_x", Target("flux_x", "flux", unit="Jy"))
    assert (_unit(MASS), _unit("flux_x"), _unit("unregistered"), _unit(None)) == ("dex", "Jy", "", "dex")


def test_unknown_column_gets_a_plain_entry():
    t = get_target("d4000_n")
    assert (t.label("true"), t.label("pred")) == ("true d4000_n", "predicted d4000_n")
    assert t.label("resid") == "predicted $-$ true d4000_n"
    assert (t.symbol_true, t.symbol_pred) == ("d4000_n (true)", "d4000_n (pred)")
    assert t.axis_text == "d4000_n" and t.units_long == "" and t.noun == "d4000_n"
    assert "d4000_n" not in TARGETS


def test_sfr_is_one_entry_and_the_figures_follow():
    """sfr_tot_p50 is registered with a quantity, a unit and a range: its labels follow, the figures
    use them, the catalog keeps and checks its column, and it has no threshold statistic."""
    from galmet.catalog import keep_columns

    entry = get_target("sfr_tot_p50")
    quantity = r"$\log\,({\rm SFR}/M_\odot\,{\rm yr}^{-1})$"
    assert entry is TARGETS["sfr_tot_p50"] and entry.units_long == "log10(SFR / Msun yr^-1)"
    assert entry.label_true == f"true {quantity} [dex]" and entry.threshold is None
    assert entry.words == ("low-SFR", "high-SFR") and "sfr_tot_p50" in keep_columns()
    assert entry.out_of_range([-99.0, -4.9, 3.9, 4.0]).tolist() == [True, False, False, True]
    sfr = np.linspace(-1.0, 1.0, 200)
    fig = figures.fig3_scatter(sfr, sfr + 0.05 * np.cos(40 * sfr), target="sfr_tot_p50")
    assert fig.axes[0].get_xlabel() == entry.label_true
    fig = figures.fig2_histograms(sfr, sfr + 0.1, target="sfr_tot_p50")
    assert fig.axes[0].get_xlabel() == f"{quantity} [dex]" and not fig.axes[0].lines


def test_which_figures_apply():
    assert has_mzr([METALLICITY, MASS]) and has_mzr([MASS, "sfr_tot_p50", METALLICITY])
    assert not has_mzr([METALLICITY]) and not has_mzr([MASS])
    assert targets.REFERENCE_TARGET == METALLICITY  # the published predictions are metallicities


def test_entries_are_frozen():
    with pytest.raises(AttributeError):
        TARGETS[METALLICITY].unit = "K"
