"""galmet.uncertainty: scoring calibrated intervals on a test set, on a synthetic truth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import kstest

from galmet import conformal, uncertainty


def _synthetic(n, seed, bias_below=None):
    """Heteroscedastic truth around a known mean; optionally a model biased low-Z (as the CNN is)."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(8.2, 9.3, n)
    sigma = 0.02 + 0.1 * rng.uniform(0, 1, n)
    mean = z + sigma * rng.standard_normal(n)  # the model's prediction; z is the truth
    if bias_below is not None:
        mean = np.where(z < bias_below, mean + 0.25, mean)
    return z, mean, 0.8 * sigma


def test_scores_of_calibrated_intervals_reach_the_nominal_level():
    scores = conformal.calibration_scores(*_synthetic(5000, seed=1))
    y, mean, spread = _synthetic(4000, seed=2)
    u = uncertainty.score_intervals(y, mean, spread, scores)
    assert u["n"] == 4000 and u["n_calibration"] == 5000
    assert u["within_band68"] and u["within_band95"], (u["coverage68"], u["coverage95"])
    assert 0.66 < u["coverage68"] < 0.70 and 0.935 < u["coverage95"] < 0.965
    assert u["width95"] > u["width68"] > 0
    for row in u["calibration"]:  # test and calibration noise both: within 4 sigma of the test's
        assert row["band_lo"] < row["level"] < row["band_hi"]
        assert abs(row["observed"] - row["level"]) < 4 * np.sqrt(row["level"] * (1 - row["level"]) / 4000), row
    # PIT uniform: the histogram within a few sigma everywhere, and a KS test on the values
    counts = np.array(u["pit"]["counts"])
    assert np.all(np.abs(counts - u["pit"]["expected"]) < 4 * np.sqrt(u["pit"]["expected"]))
    assert kstest(conformal.pit(y, mean, spread, scores), "uniform").pvalue > 1e-3
    # the spread ranks the errors: the confident half is better than all
    assert u["confident_half_better"] and u["rmse_confident_half"] < 0.8 * u["rmse_all"]
    assert u["spread_ranks_errors"]["verdict"] == "passes"
    # ten of those galaxies cannot tell, and say how many would; a spread that ranks nothing is not
    # called better because its confident half happened to be
    few = uncertainty.score_intervals(y[:10], mean[:10], spread[:10], scores)["spread_ranks_errors"]
    assert few["verdict"] == "inconclusive" and few["n"] == 10 and (few["n_needed"] is None or few["n_needed"] > 10)
    shuffled = uncertainty.score_intervals(y, mean, np.random.default_rng(3).permutation(spread), scores)
    assert shuffled["spread_ranks_errors"]["verdict"] == "inconclusive"
    rmse = [r["rmse"] for r in u["risk_coverage"]]
    assert [r["fraction"] for r in u["risk_coverage"]] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert rmse[0] < rmse[4] < rmse[-1]


def test_conditional_coverage_names_where_the_model_is_biased():
    scores = conformal.calibration_scores(*_synthetic(5000, seed=3, bias_below=8.4))
    y, mean, spread = _synthetic(4000, seed=4, bias_below=8.4)
    u = uncertainty.score_intervals(y, mean, spread, scores, bin_width=0.1)
    assert [8.2, 8.3] in u["undercovered"] and [8.3, 8.4] in u["undercovered"]
    assert all(lo >= 8.2 and hi <= 8.4 + 1e-9 for lo, hi in u["undercovered"]), u["undercovered"]
    low = [r for r in u["binned"] if r["hi"] <= 8.4]
    assert all(r["coverage68"] < 0.3 and r["median_residual"] > 0.2 for r in low)


def test_uninformative_spread_gives_a_flat_risk_coverage_curve():
    rng = np.random.default_rng(5)
    y = rng.uniform(8.2, 9.3, 20000)
    mean = y + 0.1 * rng.standard_normal(len(y))
    spread = rng.uniform(0.05, 0.15, len(y))  # unrelated to the error
    curve = uncertainty.risk_coverage(y, mean, spread)
    assert max(r["rmse"] for r in curve) - min(r["rmse"] for r in curve) < 0.01


def test_small_sets_binomial_band_and_levels_beyond_the_calibration():
    lo, hi = uncertainty.binomial_band(0.68, 78)
    assert lo < 0.68 < hi and 0.1 < hi - lo < 0.25  # a test split of 78 galaxies tells coverage to +-0.1
    scores = conformal.calibration_scores(*_synthetic(15, seed=6))  # supports levels up to 15/16
    y, mean, spread = _synthetic(50, seed=7)
    levels = [r["level"] for r in uncertainty.calibration_curve(y, mean, spread, scores)]
    assert max(levels) == 0.9 and 0.95 not in levels
    with pytest.raises(conformal.ConformalError, match="level 0.95 needs at least 19"):
        uncertainty.score_intervals(y, mean, spread, scores)
    with pytest.raises(ValueError, match="no test galaxy"):
        uncertainty.score_intervals([np.nan], [9.0], [0.1], scores)


def test_coverage_in_bins_of_the_prediction():
    rng = np.random.default_rng(8)

    def data(n):  # the spread underestimates the error 3x where the prediction is below 8.5
        mean = rng.uniform(8.2, 9.3, n)
        spread = rng.uniform(0.03, 0.08, n)
        return mean + np.where(mean < 8.5, 3.0, 1.0) * spread * rng.standard_normal(n), mean, spread

    scores = conformal.calibration_scores(*data(5000))
    y, mean, spread = data(4000)
    u = uncertainty.score_intervals(y, mean, spread, scores, bin_width=0.1)
    rows = u["binned_predicted"]
    assert [r["lo"] for r in rows] == pytest.approx(np.arange(8.2, 9.25, 0.1))
    assert sum(r["n"] for r in rows) == 4000
    assert {"lo", "hi", "n", "coverage68", "coverage95", "width68", "width95", "band68_lo", "band68_hi",
            "band95_lo", "band95_hi"} <= set(rows[0])
    q68, q95 = conformal.score_quantile(scores, 0.68), conformal.score_quantile(scores, 0.95)
    for r in rows:
        sel = (mean >= r["lo"]) & (mean < r["hi"])
        assert r["n"] == sel.sum()
        assert r["width68"] == pytest.approx(2 * q68 * spread[sel].mean())
        assert r["width95"] == pytest.approx(2 * q95 * spread[sel].mean())
        if r["hi"] <= 8.5 + 1e-9:  # where the spread is too small, coverage well below nominal
            assert r["coverage68"] < r["band68_lo"] and r["coverage95"] < r["band95_lo"]
        else:
            assert r["coverage68"] >= r["band68_lo"]
    assert u["undercovered_predicted"] == [[8.2, 8.3], [8.3, 8.4], [8.4, 8.5]]  # edges rounded (make_edges)
