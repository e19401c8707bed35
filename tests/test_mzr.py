"""galmet.mzr: the Tremonti et al. (2004) relation and the binned mass-metallicity relation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from galmet import mzr


@pytest.mark.parametrize(
    "x, z",
    [
        # -1.492 + 1.847 x - 0.08026 x^2, by hand
        (9.0, -1.492 + 16.623 - 6.50106),  # 8.62994
        (10.0, -1.492 + 18.47 - 8.026),  # 8.952
        (11.0, -1.492 + 20.317 - 9.71146),  # 9.11354
    ],
)
def test_tremonti_at_known_masses(x, z):
    assert mzr.tremonti_z(x) == pytest.approx(z, abs=1e-9)
    assert isinstance(mzr.tremonti_z(x), float)


def test_tremonti_vectorised_and_strict_range():
    z = mzr.tremonti_z(np.array([8.0, 10.0, 12.0]), strict=True)
    assert math.isnan(z[0]) and math.isnan(z[2])
    assert z[1] == pytest.approx(8.952)
    # the fit rises over its valid range and peaks near its upper end (x = 1.847 / 0.16052)
    x = np.linspace(*mzr.TREMONTI_VALID_RANGE, 50)
    assert np.all(np.diff(mzr.tremonti_z(x)) > 0)
    assert 1.847 / (2 * 0.08026) == pytest.approx(11.506, abs=1e-3)
    assert mzr.mzr_metallicity(10.0) == mzr.tremonti_z(10.0)


def test_binned_mzr_by_hand():
    m = np.array([9.05, 9.15, 9.19, 10.5, np.nan])
    z = np.array([8.60, 8.70, 8.80, 9.00, 9.0])
    b = mzr.binned_mzr(m, z, bin_width=0.2)
    assert b["lo"].tolist() == pytest.approx([9.0, 10.4])
    assert b["n"].tolist() == [3, 1]
    assert b["median_z"].tolist() == pytest.approx([8.70, 9.00])
    assert b.loc[0, "tremonti"] == pytest.approx(mzr.tremonti_z(9.1))
    d = z[:3] - mzr.tremonti_z(m[:3])
    assert b.loc[0, "rmse"] == pytest.approx(np.sqrt(np.mean(d**2)))
    assert b.loc[0, "median_offset"] == pytest.approx(np.median(d))
    assert b.loc[1, "rmse"] == pytest.approx(abs(9.0 - mzr.tremonti_z(10.5)))


def test_binned_mzr_tremonti_column_empty_outside_valid_range():
    b = mzr.binned_mzr([8.0, 12.0], [8.3, 9.0], bin_width=0.2)
    assert b["tremonti"].isna().all()
    assert b["n"].tolist() == [1, 1]


def test_mzr_summary_and_mass_route():
    m = np.array([9.0, 9.5, 10.0, 10.5, 11.0, 12.0])
    zt = mzr.tremonti_z(m) + np.array([0.1, -0.1, 0.0, 0.05, -0.05, 0.0])
    zp = mzr.tremonti_z(m)
    table, numbers = mzr.mzr_summary(m, zp, zt)
    assert isinstance(table, pd.DataFrame) and table["n"].sum() == 6
    assert numbers["n"] == 6 and numbers["n_in_tremonti_range"] == 5
    assert numbers["pred_rmse_about_tremonti"] == pytest.approx(0.0, abs=1e-12)
    assert numbers["true_rmse_about_tremonti"] == pytest.approx(
        np.sqrt((0.01 + 0.01 + 0 + 0.0025 + 0.0025) / 5))
    out = mzr.mass_route_comparison(zt, zp, mass_pred=m, mass_true=m + 0.1)
    # Z_MZR of the true mass equals zp here, so both routes have the same scatter
    assert out["mzr"]["rmse"] == pytest.approx(out["direct"]["rmse"])
    assert out["mass"]["median_residual"] == pytest.approx(-0.1)
    assert mzr.mass_route_comparison([np.nan], None, [10.0])["mzr"]["rmse"] is None


def test_mass_route_rows_join_by_objid():
    mass = pd.DataFrame({"objID": [3, 1, 2], "lgm_tot_p50": [10.0, 9.0, 11.0],
                         "prediction": [10.1, 9.2, 10.8]})
    direct = pd.DataFrame({"objID": [1, 3], "oh_p50": [8.6, 8.9], "prediction": [8.7, 8.8]})
    catalog = pd.DataFrame({"objID": [1, 2, 3, 4], "oh_p50": [8.6, 9.0, 8.9, 8.5]})
    rows = mzr.mass_route_rows(mass, direct, catalog).set_index("objID")
    assert sorted(rows.index) == [1, 2, 3]  # the mass CNN's test galaxies
    assert rows.loc[2, "oh_p50"] == 9.0 and np.isnan(rows.loc[2, "z_pred"])  # no direct prediction
    assert rows.loc[3, "z_pred"] == 8.8 and rows.loc[3, "prediction"] == 10.1


def test_mzr_rows_need_the_catalog_mass():
    preds = pd.DataFrame({"objID": [1, 2], "oh_p50": [8.6, 9.0], "prediction": [8.7, 8.9]})
    catalog = pd.DataFrame({"objID": [2, 1], "lgm_tot_p50": [10.5, 9.5]})
    rows = mzr.mzr_rows(preds, catalog).set_index("objID")
    assert rows.loc[1, "lgm_tot_p50"] == 9.5 and rows.loc[2, "prediction"] == 8.9
    with pytest.raises(ValueError, match="lgm_tot_p50"):
        mzr.mzr_rows(preds, catalog.drop(columns="lgm_tot_p50"))
