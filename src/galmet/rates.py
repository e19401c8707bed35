"""Images per second of training and prediction, per device kind, backbone and resolution: what
``galmet plan`` turns a run's jobs into hours with.

:data:`RATES` are measured rates shipped with galmet, each with its ``basis`` (how, where, when);
:func:`measure` measures them on this machine in a few seconds (``galmet plan --measure``);
:func:`rate` reads a table at any resolution, interpolating between measured ones (log rate
linear in log pixel count) and saying so in the basis it returns. A ``predict`` rate counts
views: one image with 8x test-time augmentation is 8 views. Light at import (no torch).
"""

from __future__ import annotations

import math
import os
import sys
import time

__all__ = ["RATES", "GPU_SCALE_CAP", "CPU_TRAIN_BATCH", "CPU_PREDICT_IMAGES", "rate", "measure"]

_CPU_BASIS = ("measured by galmet.rates.measure (galmet.train.train_one_epoch on a memory-resident uint8 store, "
              "batch 32, D4 augmentation, as benchmarks/train_throughput.py's 'ours'; galmet.predict.predict_images "
              "without TTA, batch 256; random images) on 2 shared cores of an Intel Xeon VM, torch threads 2, "
              "2026-12-03; benchmarks/train_throughput.py --quick there the same day: resnet18 16 px 229 / 2,417, "
              "64 px 43 / 221, resnet34 128 px 10.6 / 30.9 img/s (train / predict); other jobs shared the cores: "
              "a repeat of the training measurement gave 0.7-2x these rates")
_GPU_BASIS = ("the paper's reported cost, not measured by galmet: ResNet-34 at 128 px, ~60 s an epoch for ~85,000 "
              "training images on one NVIDIA P100 (~1,400 img/s), prediction ~1 ms an image (6 ms with 8x TTA)")

#: (device kind, train.arch) -> {"rates": {resolution: {"train": img/s, "predict": views/s}}, "basis": how
#: they were measured, "threads": the CPU threads the measurement used}.
RATES = {
    ("cpu", "resnet18"): {
        "basis": _CPU_BASIS, "threads": 2,
        "rates": {8: {"train": 188.4, "predict": 2889.8}, 16: {"train": 169.3, "predict": 1950.5},
                  32: {"train": 103.7, "predict": 603.8}, 64: {"train": 36.6, "predict": 140.2},
                  128: {"train": 13.0, "predict": 45.8}},
    },
    ("cpu", "resnet34"): {
        "basis": _CPU_BASIS, "threads": 2,
        "rates": {8: {"train": 159.2, "predict": 2644.0}, 16: {"train": 146.1, "predict": 1567.2},
                  32: {"train": 82.5, "predict": 567.2}, 64: {"train": 24.6, "predict": 114.9},
                  128: {"train": 7.6, "predict": 19.7}},
    },
    ("gpu", "resnet34"): {
        "basis": _GPU_BASIS, "threads": 1,
        "rates": {128: {"train": 1400.0, "predict": 1000.0}},
    },
}

#: the largest training batch :func:`measure` steps with on the CPU (a step of 256 ResNet-34
#: images at 128 px takes most of a minute on 2 cores; the rate hardly depends on the batch there).
CPU_TRAIN_BATCH = 32
#: the images (and largest batch) :func:`measure` predicts in one timed call on the CPU.
CPU_PREDICT_IMAGES = 64

#: A GPU's rate below its measured resolutions grows with the pixel count at most this much: a
#: step on small images is bound by kernel launches and the optimizer, not by pixels.
GPU_SCALE_CAP = 16.0


def _interpolate(points: dict, res: int, kind: str, cap: float) -> tuple[float, str]:
    """The rate at ``res`` from ``{res: rate}``: exact, log-log interpolated between two
    measured resolutions, scaled by pixel count beyond them (at most ``cap`` times faster below
    the smallest); and how it was obtained, in words."""
    known = sorted(points)
    if res in points:
        return points[res], f"measured at {res} px"
    lo = [r for r in known if r < res]
    hi = [r for r in known if r > res]
    if lo and hi:
        a, b = lo[-1], hi[0]
        w = (math.log(res) - math.log(a)) / (math.log(b) - math.log(a))
        value = math.exp((1 - w) * math.log(points[a]) + w * math.log(points[b]))
        return value, f"interpolated, {a} to {b} px"
    ref = known[0] if hi else known[-1]
    factor = (ref / res) ** 2
    if factor > cap:
        if cap == 1:
            return points[ref], f"{ref} px rate, assumed no faster below"
        return points[ref] * cap, f"{ref} px rate x {cap:g}: pixel scaling capped"
    return points[ref] * factor, f"{ref} px rate scaled by pixel count"


def rate(table: dict, device: str, arch: str, res: int) -> dict:
    """``{"train", "predict", "basis", "how"}`` for ``arch`` at ``res`` px on ``device`` (``cpu``
    or ``gpu``) from ``table`` (:data:`RATES` or :func:`measure`'s). A backbone the table lacks
    takes the rates of the table's other one on that device (said in ``how``); KeyError naming
    the device when the table has none for it."""
    entry = table.get((device, arch))
    borrowed = ""
    if entry is None:
        others = sorted(a for d, a in table if d == device)
        if not others:
            raise KeyError(f"no {device} rates in the table (it has {sorted(set(d for d, _ in table))})")
        entry, borrowed = table[(device, others[-1])], f"{others[-1]}'s rates (none for {arch}); "
    cap = GPU_SCALE_CAP if device == "gpu" else 1.0
    out = {"basis": entry["basis"], "threads": int(entry.get("threads", 1))}
    for kind in ("train", "predict"):
        points = {r: v[kind] for r, v in entry["rates"].items() if v[kind] > 0}
        if not points:
            raise KeyError(f"no {kind} rate for {arch} on {device}")
        out[kind], how = _interpolate(points, int(res), kind, cap)
    out["how"] = borrowed + how
    return out


def measure(arch: str, resolutions, device: str = "auto", seconds: float = 30.0, train_batch: int | None = None,
            predict_batch: int | None = None) -> dict:
    """A rates table (the shape of :data:`RATES`) for ``arch`` at ``resolutions`` on ``device``
    (``auto``: CUDA when torch sees one), measured in about ``seconds`` on random images: SGD
    steps through :func:`galmet.train.train_one_epoch` and :func:`galmet.predict.predict_images`
    without TTA, as the workflow's jobs run them. Batches: config ``train.batch_size`` (on the
    CPU at most :data:`CPU_TRAIN_BATCH`, so that a step fits the time) and ``predict.batch_size``
    (on the CPU at most :data:`CPU_PREDICT_IMAGES`), the schema's defaults when not given."""
    if "torch" not in sys.modules:  # OpenMP threads that spin while waiting slow a shared CPU down
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from galmet.config import default
    from galmet.model import resolve_device

    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    bs = int(train_batch or default("train.batch_size"))
    bs = bs if cuda else min(bs, CPU_TRAIN_BATCH)
    pbs = int(predict_batch or default("predict.batch_size"))
    pbs = pbs if cuda else min(pbs, CPU_PREDICT_IMAGES)
    budget = seconds / max(1, len(resolutions)) / 2  # half training, half prediction
    rates = {res: _measure_one(arch, res, dev, (bs, pbs), budget) for res in sorted({int(r) for r in resolutions})}
    name = torch.cuda.get_device_name(dev) if cuda else f"{torch.get_num_threads()} CPU threads"
    basis = (f"measured by galmet plan --measure on this machine ({name}, training batch {bs}, prediction "
             f"batch {pbs}, random images, {time.strftime('%Y-%m-%d')})")
    return {("gpu" if cuda else "cpu", arch): {"basis": basis, "threads": 1 if cuda else torch.get_num_threads(),
                                                "rates": rates}}


def _measure_one(arch: str, res: int, dev, batches: tuple[int, int], budget: float) -> dict:
    """``{"train", "predict"}`` images a second of a fresh ``arch`` at ``res`` px on ``dev``."""
    import numpy as np
    import torch

    from galmet.model import IMAGENET_MEAN, IMAGENET_STD, build_model, normalisation_constants
    from galmet.predict import predict_images
    from galmet.train import ImageSource, make_optimizer, split_batches, train_one_epoch

    cuda = dev.type == "cuda"
    (bs, pbs), rng = batches, np.random.default_rng(0)
    x = rng.integers(0, 256, (bs * 2, res, res, 3), dtype=np.uint8)
    x_pred = rng.integers(0, 256, (pbs * (4 if cuda else 1), res, res, 3), dtype=np.uint8)
    torch.manual_seed(0)
    model = build_model(arch, "none").to(dev)
    if cuda:
        model.to(memory_format=torch.channels_last)  # as galmet.train runs on CUDA
    params = {"stage2": {"lrs": [1e-3, 1e-3, 1e-3]}, "momentum": 0.9, "weight_decay": 0.0}
    opt = make_optimizer(model, 2, params)
    scale, shift = normalisation_constants(IMAGENET_MEAN, IMAGENET_STD, dev)
    src, y = ImageSource(x, dev, resident=True), torch.zeros(len(x), device=dev)
    ks = torch.randint(0, 8, (len(x),))
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def train_pass():  # one SGD step on a random batch, D4-augmented as in training
        batches = split_batches(rng.permutation(len(x))[:bs], bs)
        train_one_epoch(model, opt, src, y, batches, ks, params["stage2"]["lrs"], np.ones(1), scale, shift, cuda)
        return bs

    def predict_pass():
        meta = {"resolution": res, "normalisation": {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}}
        predict_images(model, meta, x_pred, tta=1, batch_size=pbs, device=str(dev))
        return len(x_pred)

    return {"train": _timed(train_pass, budget, sync, model.train),
            "predict": _timed(predict_pass, budget, sync, model.eval)}


def _timed(step, budget: float, sync, mode) -> float:
    """Images a second of ``step`` (it returns its images) after one warm-up call, repeated for
    about ``budget`` seconds (at least twice)."""
    mode()
    step()  # warm-up: allocator, kernel choice
    sync()
    n, calls, t0 = 0, 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - t0 < budget:
        n += step()
        calls += 1
        sync()
    return round(n / (time.perf_counter() - t0), 1)
