"""galmet.conformal: split-conformal intervals with a spread-normalised score.

Coverage is checked on a synthetic heteroscedastic regression whose truth is known, and the
intervals against MAPIE's (the oracle: SplitConformalRegressor, prefit, "std_normalized").
"""

from __future__ import annotations

import numpy as np
import pytest

from galmet import conformal


def _synthetic(n, seed):
    """y = f(x) + sigma(x) * noise, with a model that knows f and a spread proportional to sigma."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, n)
    sigma = 0.02 + 0.15 * x**2
    y = 8.9 + 0.3 * np.sin(3 * x) + sigma * rng.standard_normal(n)
    mean = 8.9 + 0.3 * np.sin(3 * x)
    spread = 0.7 * sigma  # a spread that ranks the errors but is not calibrated by itself
    return x, y, mean, spread


def test_coverage_reaches_the_nominal_level_on_a_known_truth():
    _, y_cal, m_cal, s_cal = _synthetic(10_000, seed=1)
    _, y, m, s = _synthetic(20_000, seed=2)
    scores = conformal.calibration_scores(y_cal, m_cal, s_cal)
    for level in (0.5, 0.68, 0.9, 0.95):
        lo, hi = conformal.interval(m, s, scores, level)
        got = conformal.coverage(y, lo, hi)
        sigma = np.sqrt(level * (1 - level) / len(y))  # binomial error of the test coverage
        assert abs(got - level) < 3 * sigma + 1 / len(scores), (level, got)
    # the uncalibrated spread alone covers far less than 68%
    assert conformal.coverage(y, m - s, m + s) < 0.6


def test_intervals_equal_mapie_split_conformal():
    from mapie.regression import SplitConformalRegressor
    from sklearn.base import BaseEstimator, RegressorMixin

    class MeanAndSpread(RegressorMixin, BaseEstimator):
        """A prefit model whose predict(X, return_std=True) gives columns 0 and 1 of X."""

        def fit(self, X, y):
            self.fitted_ = True
            return self

        def predict(self, X, return_std=False):
            X = np.asarray(X)
            return (X[:, 0], X[:, 1]) if return_std else X[:, 0]

    _, y_cal, m_cal, s_cal = _synthetic(1000, seed=3)
    _, y, m, s = _synthetic(500, seed=4)
    levels = [0.68, 0.9, 0.95]
    mapie = SplitConformalRegressor(MeanAndSpread().fit(None, None), confidence_level=levels,
                                    conformity_score="std_normalized", prefit=True)
    mapie.conformalize(np.column_stack([m_cal, s_cal]), y_cal)
    _, bounds = mapie.predict_interval(np.column_stack([m, s]))
    scores = conformal.calibration_scores(y_cal, m_cal, s_cal)
    for j, level in enumerate(levels):
        lo, hi = conformal.interval(m, s, scores, level)
        np.testing.assert_allclose(hi, bounds[:, 1, j], rtol=0, atol=1e-12)
        # MAPIE 1.6 takes its lower bound's score from the reversed quantile, which lands on the
        # neighbouring order statistic: galmet keeps the interval symmetric (the textbook form,
        # whose coverage guarantee needs the same score on both sides), one rank wider there
        k = int(np.searchsorted(scores, conformal.score_quantile(scores, level)))
        q_lo = (m - bounds[:, 0, j]) / s
        np.testing.assert_allclose(q_lo, scores[k - 1], rtol=0, atol=1e-9)
        assert np.all(lo <= bounds[:, 0, j] + 1e-12)


def test_intervals_are_nested_and_ordered():
    _, y_cal, m_cal, s_cal = _synthetic(2000, seed=5)
    _, _, m, s = _synthetic(300, seed=6)
    cols = conformal.interval_columns(m, s, conformal.calibration_scores(y_cal, m_cal, s_cal), (0.95, 0.68))
    assert list(cols) == ["p2p5", "p16", "p84", "p97p5"] == conformal.interval_names((0.95, 0.68))
    assert conformal.interval_names((0.9, 0.68, 0.95)) == ["p2p5", "p5", "p16", "p84", "p95", "p97p5"]
    assert np.all(cols["p2p5"] <= cols["p16"]) and np.all(cols["p16"] <= m) and np.all(m <= cols["p84"])
    assert np.all(cols["p84"] <= cols["p97p5"])
    assert conformal.percentile_name(5) == "p5" and conformal.percentile_name(95) == "p95"


def test_a_level_the_calibration_set_cannot_support_is_refused():
    scores = conformal.calibration_scores([9.0] * 19, [8.9] * 19, [0.1] * 19)
    assert conformal.max_level(19) == 0.95
    conformal.score_quantile(scores, 0.95)  # exactly n / (n + 1): the largest score
    with pytest.raises(conformal.ConformalError, match=r"level 0.99 needs at least 99 calibration galaxies, "
                                                       r"there are 19"):
        conformal.score_quantile(scores, 0.99)
    with pytest.raises(conformal.ConformalError, match="between 0 and 1"):
        conformal.score_quantile(scores, 1.0)


def test_bad_calibration_input_is_named():
    with pytest.raises(conformal.ConformalError, match="empty calibration set"):
        conformal.calibration_scores([np.nan, 9.0], [8.9, np.nan], [0.1, 0.1])
    with pytest.raises(conformal.ConformalError, match="spread has 2 values, y 3"):
        conformal.calibration_scores([9.0, 9.1, 9.2], [9.0, 9.1, 9.2], [0.1, 0.1])
    with pytest.raises(conformal.ConformalError, match="negative"):
        conformal.calibration_scores([9.0], [9.0], [-0.1])
