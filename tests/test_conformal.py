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


# ----------------------------------------------------------------------------- Mondrian (by prediction)


def _graded(n, seed):
    """Predictions on 8.2..9.3 whose normalised error grows five-fold towards low predictions: a
    spread that ranks the errors within a range of the prediction but not across it."""
    rng = np.random.default_rng(seed)
    mean = rng.uniform(8.2, 9.3, n)
    spread = 0.05 * rng.uniform(0.5, 1.5, n)
    y = mean + (1 + 4 * (9.3 - mean) / 1.1) * spread * rng.standard_normal(n)
    return y, mean, spread


def test_mondrian_covers_every_group_of_the_prediction_where_marginal_does_not():
    from galmet.uncertainty import binomial_band

    y_cal, m_cal, s_cal = _graded(60_000, seed=11)
    y, m, s = _graded(15_000, seed=12)
    edges = conformal.quantile_edges(m_cal, 3)  # terciles of the calibration predictions
    assert len(edges) == 2 and 8.55 < edges[0] < 8.58 and 8.92 < edges[1] < 8.95
    block = conformal.mondrian_calibration(y_cal, m_cal, s_cal, edges)
    scores = conformal.calibration_scores(y_cal, m_cal, s_cal)
    groups = conformal.group_index(m, edges)
    for level in (0.68, 0.95):
        mondrian = conformal.mondrian_interval(m, s, block, level)
        marginal = conformal.interval(m, s, scores, level)
        for g in range(3):
            sel = groups == g
            lo, hi = binomial_band(level, int(sel.sum()), prob=0.99)
            got = conformal.coverage(y[sel], mondrian[0][sel], mondrian[1][sel])
            assert lo <= got <= hi, (level, g, got, lo, hi)
        low, high = groups == 0, groups == 2
        assert conformal.coverage(y[low], marginal[0][low], marginal[1][low]) < binomial_band(level, low.sum())[0]
        assert conformal.coverage(y[high], marginal[0][high], marginal[1][high]) > binomial_band(level, high.sum())[1]
        # overall, both calibrations reach the level; Mondrian's intervals are narrower where the model is good
        assert abs(conformal.coverage(y, *mondrian) - level) < 0.015
        assert abs(conformal.coverage(y, *marginal) - level) < 0.015
        assert np.mean((mondrian[1] - mondrian[0])[high]) < np.mean((marginal[1] - marginal[0])[high])


def test_a_group_too_small_for_a_level_falls_back_to_the_marginal_quantile():
    rng = np.random.default_rng(13)
    mean = np.concatenate([rng.uniform(8.3, 8.5, 10), rng.uniform(8.6, 8.9, 100)])  # none from 9.0 up
    y, spread = mean + np.where(mean < 8.5, 0.3, 0.1) * rng.standard_normal(110), np.full(110, 0.1)
    block = conformal.mondrian_calibration(y, mean, spread, [8.5, 9.0])
    assert [len(g) for g in block["scores_by_group"]] == [10, 100, 0]
    for level, fell_back in ((0.68, [False, False, True]), (0.95, [True, False, True])):
        q, back = conformal.group_quantiles(block, level)
        assert back.tolist() == fell_back
        marginal = conformal.score_quantile(block["scores"], level)
        for g in range(3):
            own = marginal if back[g] else conformal.score_quantile(block["scores_by_group"][g], level)
            assert q[g] == own
        assert q[2] == marginal and q[1] < marginal  # the low group's larger errors widen the marginal
    # min_group: the 10-galaxy group falls back at every level
    q, back = conformal.group_quantiles(conformal.mondrian_calibration(y, mean, spread, [8.5, 9.0], min_group=20),
                                        0.68)
    assert back.tolist() == [True, False, True] and q[0] == conformal.score_quantile(block["scores"], 0.68)
    # too few scores in all for the level: refused as the marginal calibration refuses it
    small = conformal.mondrian_calibration(y[:10], mean[:10], spread[:10], [8.5])
    with pytest.raises(conformal.ConformalError, match="level 0.95 needs at least 19"):
        conformal.group_quantiles(small, 0.95)


def test_mondrian_block_and_columns_names_and_shapes():
    import json

    y, m, s = _graded(500, seed=14)
    block = conformal.mondrian_calibration(y, m, s, [8.6, 8.8, 9.0])
    assert json.loads(json.dumps(block)) == block  # plain floats: a model file's calibration block
    assert set(block) == {"method", "edges", "min_group", "scores", "scores_by_group"}
    assert block["method"] == conformal.MONDRIAN and block["edges"] == [8.6, 8.8, 9.0]
    assert len(block["scores_by_group"]) == 4 and sum(map(len, block["scores_by_group"])) == len(block["scores"]) == 500
    assert all(g == sorted(g) for g in block["scores_by_group"])
    # a prediction on an edge belongs to the group above; below the first / above the last edge too
    assert conformal.group_index([8.0, 8.6, 8.7, 8.8, 9.5, np.nan], [8.6, 8.8, 9.0]).tolist() == [0, 1, 1, 2, 3, -1]
    cols = conformal.mondrian_interval_columns(m[:50], s[:50], block, (0.95, 0.68))
    assert list(cols) == conformal.interval_names((0.95, 0.68)) and all(c.shape == (50,) for c in cols.values())
    assert np.all(cols["p2p5"] <= cols["p16"]) and np.all(cols["p16"] <= m[:50])
    assert np.all(m[:50] <= cols["p84"]) and np.all(cols["p84"] <= cols["p97p5"])
    lo, hi = conformal.mondrian_interval([np.nan, 9.0], [0.1, 0.1], block, 0.68)
    assert np.isnan(lo[0]) and np.isfinite(hi[1])
    assert conformal.step_edges([8.5, 9.1], 0.2) == [8.6, 8.8, 9.0]
    assert conformal.step_edges([8.61, 8.79], 0.2) == [] and conformal.quantile_edges([1.0] * 9, 3) == [1.0]
    with pytest.raises(conformal.ConformalError, match="strictly increasing"):
        conformal.mondrian_calibration(y, m, s, [8.8, 8.6])
    with pytest.raises(conformal.ConformalError, match="needs a Mondrian block"):
        conformal.group_quantiles({"method": "split conformal", "scores": block["scores"]}, 0.68)
