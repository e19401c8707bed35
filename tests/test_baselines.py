"""galmet.baselines on real rows: SDSS ugriz photometry and stellar masses (Galaxy Zoo / DR9)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from galmet import baselines
from galmet.split import assign_splits

DATA = Path(__file__).resolve().parent / "data"
# small grid: the test checks behaviour, not the best forest
PARAMS = {"magnitude_columns": "mag_{band}", "seed": 3,
          "rf": {"n_estimators": [40], "max_depth": [None, 8], "min_samples_leaf": [5],
                 "max_features": [1.0]}}


@pytest.fixture(scope="module")
def gz() -> pd.DataFrame:
    """The real rows; their ids are float-damaged, so rows get their own ids (row numbers)."""
    df = pd.read_csv(DATA / "gz_photometry.csv")
    df["objID"] = np.arange(1, len(df) + 1, dtype="int64")
    df.loc[df["stellar_mass"] < 0, "stellar_mass"] = np.nan  # -9999 = missing
    split = pd.DataFrame({"objID": df["objID"], "split": assign_splits(
        df["objID"].to_numpy(), seed=1, fractions={"train": 0.6, "valid": 0.2, "test": 0.2})})
    return df, split


def test_rf_beats_constant_on_stellar_mass(gz):
    df, split = gz
    const, cpred = baselines.run_baseline("constant", df, split, "stellar_mass", PARAMS)
    rf, rpred = baselines.run_baseline("rf_ugriz", df, split, "stellar_mass", PARAMS)
    assert const["status"] == rf["status"] == "ok"
    assert rf["test"]["rmse"] < 0.6 * const["test"]["rmse"]
    assert rf["test"]["nmad"] < const["test"]["nmad"]
    # the constant is the mean of the training targets
    train = df.merge(split)[lambda d: d["split"] == "train"]["stellar_mass"]
    assert const["params"]["value"] == pytest.approx(train.mean())
    assert (cpred["prediction"] == const["params"]["value"]).all()
    # hyperparameters chosen on the validation split, and stated
    assert rf["params"]["valid_rmse"] == min(s["valid_rmse"] for s in rf["search"])
    assert len(rf["search"]) == 2 and rf["params"]["max_depth"] in (None, 8)
    assert rf["features"][-1] == "i-z" and len(rf["features"]) == 9
    # rows with a -9999/0 magnitude are not predicted, but counted
    assert rf["n_test_unpredictable"] > 0
    assert rf["test"]["n"] + rf["n_test_unpredictable"] == const["test"]["n"]
    assert list(rpred.columns) == ["objID", "stellar_mass", "prediction"]
    assert len(rpred) == rf["test"]["n"]
    json.dumps(rf, allow_nan=False)


def test_rf_is_reproducible_with_a_seed(gz):
    df, split = gz
    a, pa = baselines.run_baseline("rf_gri", df, split, "stellar_mass", PARAMS)
    b, pb = baselines.run_baseline("rf_gri", df, split, "stellar_mass", PARAMS)
    assert a["test"]["rmse"] == b["test"]["rmse"]
    np.testing.assert_array_equal(pa["prediction"].to_numpy(), pb["prediction"].to_numpy())
    c, pc = baselines.run_baseline("rf_gri", df, split, "stellar_mass", {**PARAMS, "seed": 4})
    assert not np.array_equal(pa["prediction"].to_numpy(), pc["prediction"].to_numpy())


def test_grid_searched_on_a_subsample_then_refit_on_all(gz):
    """search_max_train: every candidate is fit on the subsample, the chosen one on all."""
    df, split = gz
    full, _ = baselines.run_baseline("rf_ugriz", df, split, "stellar_mass", PARAMS)
    sub, _ = baselines.run_baseline("rf_ugriz", df, split, "stellar_mass", {**PARAMS, "search_max_train": 500})
    assert sub["n_search"] == 500 and sub["n_train"] == full["n_train"] > 500
    assert full["n_search"] == full["n_train"]
    chosen = {k: sub["params"][k] for k in ("n_estimators", "max_depth", "min_samples_leaf", "max_features")}
    assert chosen in [c["params"] for c in sub["search"]]
    # refit on every training galaxy: better than the subsample's own best, near the full search
    assert sub["params"]["valid_rmse"] < min(c["valid_rmse"] for c in sub["search"])
    assert sub["test"]["rmse"] < 1.1 * full["test"]["rmse"]


def test_skipped_without_magnitudes_on_the_demo_catalog(demo_catalog):
    split = pd.DataFrame({"objID": demo_catalog["objID"], "split": assign_splits(
        demo_catalog["objID"].to_numpy(), 0, {"train": 0.6, "valid": 0.2, "test": 0.2})})
    rf, pred = baselines.run_baseline("rf_gri", demo_catalog, split, "oh_p50")
    assert rf["status"] == "skipped" and "modelMag_g" in rf["reason"]
    assert rf["test"]["n"] == 0 and len(pred) == 0
    assert list(pred.columns) == ["objID", "oh_p50", "prediction"]
    missing, _ = baselines.run_baseline("constant", demo_catalog, split, "lgm_tot_p50")
    assert missing["status"] == "skipped" and "lgm_tot_p50" in missing["reason"]
    const, _ = baselines.run_baseline("constant", demo_catalog, split, "oh_p50")
    assert const["status"] == "ok" and const["test"]["n"] > 0
    json.dumps(rf, allow_nan=False)
    with pytest.raises(ValueError, match="unknown baseline"):
        baselines.run_baseline("rf_xyz", demo_catalog, split, "oh_p50")


def test_feature_matrix_flags_missing_magnitudes():
    t = pd.DataFrame({"m_g": [17.0, 0.0, 18.0, np.nan], "m_r": [16.5, 16.0, -9999.0, 17.0]})
    X, valid, names = baselines.feature_matrix(t, "gr", colours=True, template="m_{band}")
    assert valid.tolist() == [True, False, False, False]
    assert names == ["m_g", "m_r", "g-r"]
    assert X[0].tolist() == pytest.approx([17.0, 16.5, 0.5])
    with pytest.raises(KeyError, match="m_u"):
        baselines.feature_matrix(t, "ugr", template="m_{band}")
