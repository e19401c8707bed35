"""Ensembles: several trained models as one, with a calibrated per-galaxy uncertainty.

An ensemble is a first-class model: one model file (``kind: ensemble``, :mod:`galmet.modelfile`)
that ``galmet predict --model`` and the workflow's ``infer`` target take like a single model.
Its prediction for a galaxy is the mean over its members and over the TTA views; its spread the
standard deviation of those ``members x views`` values (:func:`galmet.predict.mean_and_spread`).

Why this spread: compared once on the validation split (``benchmarks/uncertainty_spread.py``),
seed ensembles gave the lowest RMSE of their mean, and the spread over TTA views ranked the
errors best; the spread over members x views has both (the law of total variance: the members'
disagreement plus their mean TTA variance) at no cost beyond predicting the members with TTA.

Calibration (:func:`calibrate`): split-conformal prediction (:mod:`galmet.conformal`) on the
validation split, galaxies used neither to fit the weights (with ``train.keep: last`` the
validation split does not choose them either) nor for the test score. What that costs: nothing
is taken from the training set; the intervals' guarantee holds for galaxies exchangeable with
the validation split, and the highest level a validation split of ``n`` galaxies supports is
``n / (n + 1)`` (0.95 needs 19 galaxies). With ``train.keep: best`` the validation split also
picks each member's epoch, which makes it slightly optimistic as a calibration set.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np

from galmet.config import default
from galmet.conformal import DEFAULT_LEVELS, ConformalError, calibration_scores, score_quantile
from galmet.modelfile import ModelFileError
from galmet.predict import calibrated_mean_and_spread, predict_views

log = logging.getLogger("galmet.ensemble")

__all__ = ["EnsembleError", "SHARED", "combine", "calibrate"]

#: meta keys every member must share (one network input and output for all of them).
SHARED = ("arch", "head", "pretrained", "resolution", "normalisation", "target", "target_units", "images")
#: per-member meta kept in the ensemble's ``members`` list.
MEMBER_KEYS = ("seed", "kept_epoch", "epochs", "n_train", "n_valid", "valid_rmse", "valid_rmse_tta", "reproducible",
               "fingerprint", "train_params")
SPREAD = "standard deviation over members x TTA views"


class EnsembleError(ModelFileError):
    """Members that cannot form one ensemble; the message names the member and the key."""


def combine(members, names) -> tuple:
    """``(Ensemble, meta)`` of trained single models ``members`` (``(model, meta)`` pairs, as
    :func:`galmet.modelfile.load` gives them) named ``names``; the meta is not yet calibrated."""
    from galmet.model import Ensemble

    members, names = list(members), [str(n) for n in names]
    if len(members) < 2 or len(members) != len(names):
        raise EnsembleError(f"an ensemble needs two or more members with one name each, got {len(members)} "
                            f"model(s) and {len(names)} name(s)")
    first = members[0][1]
    for name, (_, meta) in zip(names[1:], members[1:]):
        if meta.get("kind", "single") != "single":
            raise EnsembleError(f"{name}: an ensemble's members are single models, this one is {meta['kind']}")
        for key in SHARED:
            if meta.get(key) != first.get(key):
                raise EnsembleError(
                    f"{name} differs from {names[0]} in {key!r} ({meta.get(key)!r} against {first.get(key)!r}): "
                    "the members of an ensemble must share target, resolution, architecture and input "
                    "normalisation (train them with the same config, different seeds)")
    meta = {k: first.get(k) for k in SHARED}
    # members trained on different machines may have run different kernels (the mode off): the
    # ensemble predicts in the reproducible mode only when every member was trained in it.
    modes = [(m.get("reproducible") or {}) for _, m in members]
    meta["reproducible"] = modes[0] if all(r.get("enabled") for r in modes) else {"enabled": False}
    meta.update(kind="ensemble", tta=first.get("tta", 8), members=[
        {"name": name, **{k: m.get(k) for k in MEMBER_KEYS if k in m}} for name, (_, m) in zip(names, members)])
    return Ensemble([model for model, _ in members]), meta


def calibrate(model, meta: dict, parts: Iterable, tta: int | None = None, batch_size: int | None = None, device="cpu",
              split: str = "valid", spread: str = SPREAD) -> dict:
    """``meta`` with its ``calibration`` block, measured on ``parts`` (labelled chunks with ``x``
    and ``y``, e.g. :func:`galmet.dataset.iter_split` of the validation split): the sorted scores
    ``|y - mean| / spread`` of every galaxy (:func:`galmet.conformal.calibration_scores`).
    ``tta`` and ``batch_size`` default to the config's ``predict.tta`` and ``predict.batch_size``;
    ``spread``: :data:`SPREAD`, or :data:`galmet.predict.CONSTANT_SPREAD` for intervals of one
    width (a single network, :mod:`galmet.survey`)."""
    tta = default("predict.tta") if tta is None else tta
    how = {"calibration": {"spread": spread}}
    ys, means, spreads = [], [], []
    for part in parts:
        if len(part.y) == 0:
            continue
        mean, spread_ = calibrated_mean_and_spread(how, predict_views(model, meta, part.x, tta, batch_size, device))
        ys.append(np.asarray(part.y, np.float64))
        means.append(mean)
        spreads.append(spread_)
    if not ys:
        raise EnsembleError(f"empty calibration set: the {split} split has no galaxy with an image and a valid "
                            f"{meta.get('target')}; give the split more galaxies (split.fractions)")
    y, mean, sd = (np.concatenate(a) for a in (ys, means, spreads))
    scores = calibration_scores(y, mean, sd)
    for level in DEFAULT_LEVELS:
        try:
            score_quantile(scores, level)
        except ConformalError as exc:
            raise EnsembleError(f"the {split} split is too small to calibrate the default intervals: {exc}; "
                                "give it more galaxies (split.fractions)") from None
    rmse = float(np.sqrt(np.mean((mean - y) ** 2)))
    log.info("calibrated on %d %s galaxies: RMSE %.4f, median spread %.4f, median score %.3f",
             len(scores), split, rmse, float(np.median(sd)), float(np.median(scores)))
    return {**meta, "calibration": {
        "method": "split conformal, score |y - mean| / spread", "split": split, "n": int(len(scores)),
        "tta": int(tta), "spread": spread, "valid_rmse": rmse, "scores": [float(s) for s in scores]}}
