"""The survey model: one network standing in for a calibrated ensemble, one pass a galaxy.

The calibrated ensemble (:mod:`galmet.ensemble`) is galmet's best answer and its slowest: its
members times its TTA views forward passes a galaxy (3 x 8 = 24 in the demo, 5 x 8 = 40 in the
paper's configuration). For a catalogue of millions of galaxies the survey model spends one:

Training (:func:`train_survey`)
    A network of the ensemble's architecture and resolution is trained by the members' recipe
    (:func:`galmet.train.train_model`: the same augmentation, checkpoints and resume) with the
    survey schedule (config ``survey.cycles``; the demo's: 60 epochs against the members' 30),
    seeded by the ensemble's first seed, on the training galaxies. Its labels (``labels``):

    ``measured`` (the default)
        the training galaxies' measured values, as the members';
    ``teacher``
        the ensemble's predictions of them (:func:`teacher_labels`: the mean over members and
        the ensemble's calibrated TTA views): the ensemble distilled.

    The default was chosen on the validation split (``benchmarks/survey_recipes.py``, the demo on
    an AMD EPYC, the ensemble's validation RMSE 0.1010 dex): the 60-epoch schedule on the
    measured labels gave 0.1028, 0.0990, 0.1016 dex in three seeds, on the ensemble's labels
    0.1101, 0.1084, 0.1136; starting from a member, twice the epochs, 4x the images (sub-pixel
    phases) or a mean of both labels did no better. The ensemble's predictions of its own
    training galaxies are in-sample fits, not what it says of new galaxies: a student copies
    their errors too. The validation galaxies stay unseen: they calibrate it.

Calibration
    Split conformal on the validation split, like the ensemble's (:func:`galmet.ensemble.calibrate`),
    with a constant spread (:data:`galmet.predict.CONSTANT_SPREAD`): one pass has no spread to
    measure, so the intervals have one width, the quantiles of ``|y - prediction|`` over the
    validation galaxies. Their coverage holds for galaxies exchangeable with the validation
    split, as the ensemble's; what is lost is the ensemble's per-galaxy width.

The model file (:mod:`galmet.modelfile`) is a single network's (``kind: single``, ``tta: 1``),
with its ``calibration`` block, the applicability-domain test of its training images (fitted as
for any trained model) and a ``survey`` block: ``labels``, ``teacher`` (the ensemble it stands
for: its name, its file's SHA-256, members and TTA) and ``valid`` (RMSE of the survey model and
of the ensemble on the validation split, the intervals' widths). The workflow's ``survey`` rule
writes them, with both models' galaxies/s (:func:`throughput`), to ``survey.json`` beside it.
``galmet predict``, :func:`galmet.load_model` and ``snakemake infer`` take it like any model file.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from galmet.ensemble import calibrate
from galmet.predict import CONSTANT_SPREAD, choose_tta, predict_images, predict_views

log = logging.getLogger("galmet.survey")

__all__ = ["LABELS", "teacher_labels", "train_survey", "throughput"]

#: what the survey model can be trained on (config ``survey.labels``), the default first
LABELS = ("measured", "teacher")


def teacher_labels(teacher, meta: dict, x, batch_size: int | None = None, device="cpu") -> np.ndarray:
    """The ensemble's predictions of uint8 ``N x H x W x 3`` images ``x``: the mean over its members
    and the TTA views it was calibrated with (float32)."""
    return predict_images(teacher, meta, x, choose_tta(None, meta), batch_size, device).astype(np.float32)


def train_survey(teacher, teacher_meta: dict, train_x, train_y, valid_x, valid_y, params: dict, out, meta: dict,
                 labels: str = "measured", valid_parts=None, device="auto", batch_size: int | None = None,
                 teacher_file: dict | None = None, reproducible: bool | None = None) -> dict:
    """Train the survey model of the ``teacher`` ensemble and write its model file.

    ``train_x``, ``valid_x``: the training and validation galaxies' uint8 images at the teacher's
    resolution; ``train_y``, ``valid_y``: their measured values; ``labels``: what it learns,
    ``"measured"`` (``train_y``) or ``"teacher"`` (the ensemble's predictions of ``train_x``);
    ``params``: the ``train`` section (the members' recipe with the survey schedule); ``out``:
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
    from galmet.conformal import score_quantile
    from galmet.model import resolve_device
    from galmet.train import TrainOutputs, train_model

    if labels not in LABELS:
        raise ValueError(f"survey labels {labels!r}: expected one of {', '.join(LABELS)} (config survey.labels)")
    outputs = out if isinstance(out, TrainOutputs) else TrainOutputs.in_dir(out)
    dev = str(resolve_device(params.get("device", "auto") if device == "auto" else device))
    tta = choose_tta(None, teacher_meta)
    if labels == "teacher":
        t0 = time.perf_counter()
        y = teacher_labels(teacher, teacher_meta, train_x, batch_size, dev)
        log.info("labels: teacher; labelled %d training galaxies with the ensemble (%d members x %d views) in %.1f s",
                 len(y), len(teacher_meta.get("members") or [1]), tta, time.perf_counter() - t0)
    else:
        y = np.asarray(train_y, dtype=np.float32)
        log.info("labels: measured; %d training galaxies", len(y))
    result = train_model(train_x, y, valid_x, valid_y, params, outputs, {**meta, "tta": 1}, device=device)

    model, smeta = modelfile.load(outputs.model, dev, reproducible=reproducible)
    if valid_parts is None:
        valid_parts = [SimpleNamespace(x=valid_x, y=valid_y)]
    smeta = calibrate(model, smeta, valid_parts, tta=1, batch_size=batch_size, device=dev, spread=CONSTANT_SPREAD)
    teacher_rmse = (teacher_meta.get("calibration") or {}).get("valid_rmse")
    scores = smeta["calibration"]["scores"]
    learnt = ("the training galaxies' measured values" if labels == "measured"
              else "the teacher ensemble's predictions of the training galaxies (distilled)")
    smeta["survey"] = {
        "labels": labels,
        "method": f"one network of the teacher's architecture and resolution trained on {learnt}, "
                  "calibrated by split conformal (one width) on the validation galaxies",
        "teacher": {**(teacher_file or {}), "members": [m.get("name") for m in teacher_meta.get("members") or []],
                    "tta": tta},
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
