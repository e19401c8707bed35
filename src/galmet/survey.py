"""The survey model: a calibrated ensemble distilled into one network, one pass a galaxy.

The calibrated ensemble (:mod:`galmet.ensemble`) is galmet's best answer and its slowest: its
members times its TTA views forward passes a galaxy (3 x 8 = 24 in the demo, 5 x 8 = 40 in the
paper's configuration). For a catalogue of millions of galaxies the survey model spends one:

Distillation (:func:`distil`)
    A network of the members' architecture and resolution is trained by the members' recipe
    (:func:`galmet.train.train_model`: the same schedule, augmentation, checkpoints and resume),
    seeded by the ensemble's first seed, on the training galaxies with the **ensemble's
    predictions as its labels** (:func:`teacher_labels`: the mean over members and the
    ensemble's calibrated TTA views), not the measured metallicities: what it learns is the
    ensemble's function of the image. (On the demo's 248 training galaxies the same schedule on
    the measured labels did better on the validation split, in each of three seeds: 0.100 dex
    against 0.110, the ensemble's 0.101, on an AMD EPYC; ``benchmarks/survey_recipes.py``. There
    the longer schedule, not the teacher, is the gain.) The validation galaxies stay unseen: they
    calibrate it.

Calibration
    Split conformal on the validation split, like the ensemble's (:func:`galmet.ensemble.calibrate`),
    with a constant spread (:data:`galmet.predict.CONSTANT_SPREAD`): one pass has no spread to
    measure, so the intervals have one width, the quantiles of ``|y - prediction|`` over the
    validation galaxies. Their coverage holds for galaxies exchangeable with the validation
    split, as the ensemble's; what is lost is the ensemble's per-galaxy width.

The model file (:mod:`galmet.modelfile`) is a single network's (``kind: single``, ``tta: 1``),
with its ``calibration`` block, the applicability-domain test of its training images (fitted as
for any trained model) and a ``survey`` block: ``teacher`` (the ensemble's name, its file's
SHA-256, members and TTA) and ``valid`` (RMSE of the survey model and of the ensemble on the
validation split, the intervals' widths). The workflow's ``survey`` rule writes them, with both
models' galaxies/s (:func:`throughput`), to ``survey.json`` beside it. ``galmet predict``,
:func:`galmet.load_model` and ``snakemake infer`` take it like any model file.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from galmet.ensemble import calibrate
from galmet.predict import CONSTANT_SPREAD, choose_tta, predict_images, predict_views

log = logging.getLogger("galmet.survey")

__all__ = ["teacher_labels", "distil", "throughput"]


def teacher_labels(teacher, meta: dict, x, batch_size: int | None = None, device="cpu") -> np.ndarray:
    """The ensemble's predictions of uint8 ``N x H x W x 3`` images ``x``: the mean over its members
    and the TTA views it was calibrated with (float32)."""
    return predict_images(teacher, meta, x, choose_tta(None, meta), batch_size, device).astype(np.float32)


def distil(teacher, teacher_meta: dict, train_x, valid_x, valid_y, params: dict, out, meta: dict,
           valid_parts=None, device="auto", batch_size: int | None = None, teacher_file: dict | None = None,
           reproducible: bool | None = None) -> dict:
    """Train the survey model of the ``teacher`` ensemble and write its model file.

    ``train_x``, ``valid_x``: the training and validation galaxies' uint8 images at the teacher's
    resolution; ``valid_y`` the validation galaxies' measured values (the teacher's predictions
    are the training labels); ``params``: the ``train`` section (the members' recipe); ``out``:
    a :class:`galmet.train.TrainOutputs` or a directory; ``meta``: what the caller knows, as for
    :func:`galmet.train.train_model` (target, images, seed, domain_alpha, ...);
    ``valid_parts``: labelled chunks of the validation split to calibrate on (default: one chunk
    of ``valid_x, valid_y``); ``teacher_file``: ``{"name", "path", "sha256"}`` of the teacher's
    model file, for the provenance. Returns :func:`galmet.train.train_model`'s summary with
    ``survey``, the model file's ``survey`` block (provenance; validation RMSE of one pass against
    the ensemble's, and the intervals' widths).
    """
    from types import SimpleNamespace

    from galmet import modelfile
    from galmet.model import resolve_device
    from galmet.train import TrainOutputs, train_model

    outputs = out if isinstance(out, TrainOutputs) else TrainOutputs.in_dir(out)
    dev = str(resolve_device(params.get("device", "auto") if device == "auto" else device))
    t0 = time.perf_counter()
    labels = teacher_labels(teacher, teacher_meta, train_x, batch_size, dev)
    log.info("labelled %d training galaxies with the ensemble (%d members x %d views) in %.1f s",
             len(labels), len(teacher_meta.get("members") or [1]), choose_tta(None, teacher_meta),
             time.perf_counter() - t0)
    result = train_model(train_x, labels, valid_x, valid_y, params, outputs, {**meta, "tta": 1}, device=device)

    model, smeta = modelfile.load(outputs.model, dev, reproducible=reproducible)
    if valid_parts is None:
        valid_parts = [SimpleNamespace(x=valid_x, y=valid_y)]
    smeta = calibrate(model, smeta, valid_parts, tta=1, batch_size=batch_size, device=dev, spread=CONSTANT_SPREAD)
    teacher_rmse = (teacher_meta.get("calibration") or {}).get("valid_rmse")
    from galmet.conformal import score_quantile

    scores = smeta["calibration"]["scores"]
    smeta["survey"] = {
        "method": "distilled: trained on the training galaxies with the teacher ensemble's predictions as "
                  "labels, calibrated by split conformal (one width) on the validation galaxies",
        "teacher": {**(teacher_file or {}), "members": [m.get("name") for m in teacher_meta.get("members") or []],
                    "tta": choose_tta(None, teacher_meta)},
        "valid": {"n": smeta["calibration"]["n"], "rmse": smeta["calibration"]["valid_rmse"],
                  "teacher_rmse": teacher_rmse,
                  **{f"width{int(lv * 100)}": 2 * float(score_quantile(scores, lv)) for lv in (0.68, 0.95)}},
    }
    modelfile.save(outputs.model, model, smeta)
    log.info("survey model %s: valid RMSE %.4f in one pass (the ensemble's %s)", outputs.model,
             smeta["calibration"]["valid_rmse"], "?" if teacher_rmse is None else f"{teacher_rmse:.4f}")
    return {**result, "survey": smeta["survey"]}


def throughput(models: dict, x, repeats: int = 3, seconds: float = 2.0, batch_size: int | None = None,
               device="cpu") -> dict:
    """Galaxies/s of each ``(model, meta, tta)`` of ``models`` (by name) predicting the uint8
    images ``x`` (recycled to enough galaxies for about ``seconds`` a run): forward passes on
    decoded, re-binned images, the compute ceiling of a prediction path. The runs are
    interleaved, ``repeats`` of each; the median is reported."""
    sizes = {}
    for name, (model, meta, tta) in models.items():  # a warm-up run, which also sizes the timed ones
        n = min(len(x), 32)
        t0 = time.perf_counter()
        predict_views(model, meta, x[:n], tta, batch_size, device)
        per = (time.perf_counter() - t0) / n
        sizes[name] = int(np.clip(seconds / max(per, 1e-6), 16, 4096))
    runs = {name: [] for name in models}
    for _ in range(repeats):
        for name, (model, meta, tta) in models.items():
            batch = x[np.arange(sizes[name]) % len(x)]
            t0 = time.perf_counter()
            predict_views(model, meta, batch, tta, batch_size, device)
            runs[name].append(len(batch) / (time.perf_counter() - t0))
    return {name: float(np.median(r)) for name, r in runs.items()}
