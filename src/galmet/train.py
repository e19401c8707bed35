"""Training: the paper's recipe (docs/method.md, section 4) in plain PyTorch.

Schedule
    Stage 1 (only with a pretrained body and ``stage1.epochs > 0``): the body is frozen — its
    parameters get no gradient *and* it is kept in eval mode, so its batch-norm running
    statistics stay the pretrained ones; the head alone is trained at ``stage1.lr``, cosine
    annealed to 0 over the stage. With ``pretrained: none`` stage 1 is skipped (a random body
    is not a feature extractor worth freezing).
    Stage 2: everything trainable, SGD with momentum and per-layer-group learning rates
    ``stage2.lrs`` for early / middle / head (as galmet.backbones splits the body: a ResNet's
    early is stem, layer1, layer2, its middle layer3, layer4), annealed
    with SGDR (cosine to 0, warm restarts) over cycles of ``stage2.cycles`` epochs. Learning
    rates are set per iteration, as fastai 0.7 did. A new optimizer (fresh momentum) starts
    each stage, as each fastai ``fit`` call did.
    Loss: RMSE of the batch. The last linear layer's bias starts at the mean training label
    (an offset of ~9 dex is otherwise the first thing a short schedule spends its epochs on).

Data path
    ``x`` arrives as uint8 ``N x H x W x 3`` (a memory-mapped store is fine). Batches are
    gathered as uint8, moved to the device, then the random D4 element per sample
    (:func:`galmet.augment.d4_per_sample`, vectorised) and the normalisation are applied there.
    An NHWC array seen as NCHW is already channels_last: no layout copy is ever made. When
    the arrays fit (``data_on_device``) they are copied once to the device (to RAM on CPU);
    otherwise batches are gathered from the array, on CUDA by a prefetching thread into pinned
    memory. CUDA: bf16 autocast and channels_last.

Robustness
    Every random draw of epoch ``e`` (order, D4 elements, dropout) comes from a generator
    seeded by ``(seed, e)``: a run resumed at epoch ``e`` continues exactly as an uninterrupted
    one. The checkpoint (``checkpoint.pt`` beside the model) is written atomically after every epoch (model, optimizer,
    log) and removed once ``model.pt`` is written; a rerun with the same parameters and data
    resumes after the last finished epoch (a checkpoint of other parameters or data is
    ignored and overwritten). A non-finite loss stops training with :class:`TrainingError`.
    Ctrl-C logs one line (:func:`interrupted_message`: the epoch, the checkpoint kept, rerun to
    resume) and lets the KeyboardInterrupt go on (a workflow job then exits 130 without a
    traceback: :func:`galmet.logs.job_errors`).

Model selection
    ``keep: last`` (default, the paper's practice) keeps the final weights — at the end of
    an SGDR cycle, where the learning rate is 0. ``keep: best`` keeps the epoch with the lowest
    validation RMSE; with a validation set of a few dozen galaxies that choice is noisy and
    flatters the validation score, so use it only with a large validation split.

Outputs (:class:`TrainOutputs`, paths given by the caller): the model file (written by
:func:`galmet.modelfile.save`), the log (``epoch, stage, lr_early, lr_middle, lr_head,
train_rmse, valid_rmse, seconds``), the loss curve (:func:`galmet.figures.loss_curve`).

The recipe, step by step: :func:`setup` (device, seeded model, data, plan), :func:`resume`
(from the checkpoint), :func:`fit` (:func:`fit_epoch` per epoch, :func:`train_one_epoch` the
hot loop, then the checkpoint), :func:`finalise` (kept weights, TTA validation score, files).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from galmet import reproducible
from galmet._version import __version__
from galmet.augment import d4_per_sample
from galmet.config import section
from galmet.io import atomic_path
from galmet.model import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_model,
    cpu_state,
    layer_groups,
    normalisation_constants,
    resolve_device,
    set_body_trainable,
    to_input,
    train_mode,
)
from galmet.tables import write_table

log = logging.getLogger("galmet.train")

GROUPS = ("early", "middle", "head")
#: fewest training images: batch norm needs two samples per batch.
MIN_TRAIN = 2
LOG_COLUMNS = ["epoch", "stage", "lr_early", "lr_middle", "lr_head", "train_rmse", "valid_rmse", "seconds"]


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, bad inputs); the message says what to change."""


# ----------------------------------------------------------------------------- schedule


def cosine_factors(cycles, steps_per_epoch: int) -> np.ndarray:
    """Per-iteration learning-rate factors of SGDR: one cosine from 1 to 0 per cycle.

    ``cycles`` are cycle lengths in epochs, e.g. ``[1, 2, 4]``; the result has
    ``sum(cycles) * steps_per_epoch`` entries and equals 1 at the first step of every cycle.
    """
    parts = []
    for c in cycles:
        n = int(c) * int(steps_per_epoch)
        t = np.arange(n, dtype=np.float64)
        parts.append(0.5 * (1.0 + np.cos(np.pi * t / n)))
    return np.concatenate(parts) if parts else np.zeros(0)


def plan(params: dict, steps_per_epoch: int) -> list[dict]:
    """One entry per epoch: ``{"stage", "base_lrs" (3), "factors" (per step)}``.

    Stage-1 epochs (frozen body) have base learning rates ``[0, 0, stage1.lr]``.
    """
    epochs = []
    if _stage1_epochs(params):
        n1 = _stage1_epochs(params)
        f = cosine_factors([n1], steps_per_epoch)
        for e in range(n1):
            epochs.append(
                {"stage": 1, "base_lrs": [0.0, 0.0, float(params["stage1"]["lr"])],
                 "factors": f[e * steps_per_epoch:(e + 1) * steps_per_epoch]}
            )
    f = cosine_factors(params["stage2"]["cycles"], steps_per_epoch)
    for e in range(sum(int(c) for c in params["stage2"]["cycles"])):
        epochs.append(
            {"stage": 2, "base_lrs": [float(v) for v in params["stage2"]["lrs"]],
             "factors": f[e * steps_per_epoch:(e + 1) * steps_per_epoch]}
        )
    return epochs


def _stage1_epochs(params: dict) -> int:
    if str(params["pretrained"]) == "none":
        return 0
    return int(params["stage1"]["epochs"])


def make_optimizer(model, stage: int, params: dict) -> torch.optim.SGD:
    """SGD with momentum over the three layer groups (stage 1: the head group only)."""
    groups = layer_groups(model)
    if stage == 1:
        set_body_trainable(model, False)
        specs = [{"params": groups[2], "lr": float(params["stage1"]["lr"]), "name": "head"}]
    else:
        set_body_trainable(model, True)
        specs = [
            {"params": g, "lr": float(lr), "name": name}
            for g, lr, name in zip(groups, params["stage2"]["lrs"], GROUPS)
        ]
    return torch.optim.SGD(
        specs, lr=specs[-1]["lr"], momentum=float(params["momentum"]),
        weight_decay=float(params["weight_decay"]),
    )


def _set_lrs(opt: torch.optim.SGD, base_lrs, factor: float) -> None:
    by_name = dict(zip(GROUPS, base_lrs))
    for g in opt.param_groups:
        g["lr"] = by_name[g["name"]] * factor


# ----------------------------------------------------------------------------- data


def _fits(nbytes: int, device: torch.device, mode: str) -> bool:
    if mode == "always":
        return True
    if mode == "never":
        return False
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return nbytes <= 0.7 * free - 3 * 2**30  # leave room for the model's own few GB
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 8 * 2**30
    return nbytes <= 0.25 * ram


class ImageSource:
    """uint8 images ``N x H x W x 3`` served as batches ``B x 3 x H x W`` (channels_last) on ``device``.

    ``resident``: the whole array is copied once to the device (RAM on CPU), in chunks so a
    memory-mapped store is never read whole into host memory first; else rows are gathered
    from the array for each batch.
    """

    def __init__(self, x: np.ndarray, device: torch.device, resident: bool):
        self.x = x
        self.device = device
        self.resident = resident
        self.data = None
        if resident:
            out = torch.empty(x.shape, dtype=torch.uint8, device=device)
            step = max(1, (256 * 2**20) // max(1, int(np.prod(x.shape[1:]))))
            for s in range(0, len(x), step):
                out[s:s + step] = torch.from_numpy(np.array(x[s:s + step])).to(device)
            self.data = out

    def __len__(self) -> int:
        return len(self.x)

    def host_batch(self, idx: np.ndarray) -> torch.Tensor:
        """Rows ``idx`` gathered on the host (pinned when the target is CUDA), NHWC uint8."""
        t = torch.from_numpy(np.ascontiguousarray(self.x[idx]))
        return t.pin_memory() if self.device.type == "cuda" else t

    def batch(self, idx: np.ndarray, host: torch.Tensor | None = None) -> torch.Tensor:
        if self.resident:
            t = self.data.index_select(0, torch.as_tensor(idx, device=self.device))
        else:
            t = (host if host is not None else self.host_batch(idx)).to(self.device, non_blocking=True)
        return t.permute(0, 3, 1, 2)  # NCHW view of NHWC memory = channels_last

    def iterate(self, batches: list[np.ndarray]):
        """Yield device batches; a streamed CUDA source prefetches on a thread."""
        if self.resident or self.device.type != "cuda":
            for idx in batches:
                yield self.batch(idx)
            return
        q: queue.Queue = queue.Queue(maxsize=3)
        stop = threading.Event()

        def worker():
            try:
                for idx in batches:
                    if stop.is_set():
                        return
                    q.put(self.host_batch(idx))
                q.put(None)
            except BaseException as exc:  # handed to the consumer
                q.put(exc)

        th = threading.Thread(target=worker, daemon=True)
        th.start()
        try:
            for idx in batches:
                item = q.get()
                if isinstance(item, BaseException):
                    raise item
                yield self.batch(idx, host=item)
        finally:
            stop.set()
            while th.is_alive():
                try:
                    q.get_nowait()
                except queue.Empty:
                    th.join(timeout=0.05)


def split_batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Cut a permutation into ``ceil(n / batch_size)`` batches of near-equal size.

    No batch is dropped and none is tiny (batch norm needs more than one sample); indices are
    sorted inside a batch so that a memory-mapped store is read in order.
    """
    n = len(order)
    nb = max(1, math.ceil(n / batch_size))
    return [np.sort(b) for b in np.array_split(order, nb)]


def dataset_stats(x: np.ndarray, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (0..1 units) of uint8 NHWC images, in chunks."""
    s = np.zeros(3)
    s2 = np.zeros(3)
    n = 0
    for i in range(0, len(x), chunk):
        b = np.asarray(x[i:i + chunk], dtype=np.float64) / 255.0
        s += b.sum(axis=(0, 1, 2))
        s2 += (b * b).sum(axis=(0, 1, 2))
        n += b.shape[0] * b.shape[1] * b.shape[2]
    mean = s / n
    std = np.sqrt(np.maximum(s2 / n - mean**2, 1e-12))
    return mean.tolist(), std.tolist()


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(int(seed) * 1_000_003 + int(epoch) * 7919 + 17)
    return g


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def rmse_on(model, source: ImageSource, y: np.ndarray, scale, shift, batch_size: int, amp: bool) -> float:
    """RMSE of the model (eval mode, no TTA) on a whole set."""
    if len(source) == 0:
        return float("nan")
    model.eval()
    sse = torch.zeros((), dtype=torch.float64, device=source.device)
    yt = torch.as_tensor(np.asarray(y, dtype=np.float32), device=source.device)
    batches = [np.arange(s, min(s + batch_size, len(source))) for s in range(0, len(source), batch_size)]
    for idx, xb in zip(batches, source.iterate(batches)):
        with torch.autocast(source.device.type, dtype=torch.bfloat16, enabled=amp):
            pred = model(to_input(xb, scale, shift))
        sse += ((pred.float() - yt[idx[0]:idx[-1] + 1]) ** 2).sum().double()
    return math.sqrt(float(sse) / len(source))


# ----------------------------------------------------------------------------- the run


@dataclass
class TrainOutputs:
    """Where a training run writes: the model file, the per-epoch log, the loss-curve plot
    (optional) and the resume checkpoint (default: ``checkpoint.pt`` beside the model; it is
    not a declared workflow output, since Snakemake deletes those when a job starts)."""

    model: Path
    log: Path
    curve: Path | None = None
    checkpoint: Path | None = None

    def __post_init__(self):
        self.model, self.log = Path(self.model), Path(self.log)
        self.curve = None if self.curve is None else Path(self.curve)
        self.checkpoint = Path(self.checkpoint) if self.checkpoint else self.model.with_name("checkpoint.pt")

    @classmethod
    def in_dir(cls, out_dir) -> TrainOutputs:
        """``model.pt``, ``train_log.csv``, ``loss_curve.png``, ``checkpoint.pt`` in ``out_dir``."""
        d = Path(out_dir)
        return cls(d / "model.pt", d / "train_log.csv", d / "loss_curve.png")


@dataclass
class _Run:
    """Everything fixed for the whole run: parameters, device, model, data and schedule."""

    params: dict
    seed: int
    dev: torch.device
    amp: bool
    model: torch.nn.Module
    norm: dict
    scale: torch.Tensor
    shift: torch.Tensor
    train: ImageSource
    valid: ImageSource
    y_train: torch.Tensor
    y_valid: np.ndarray
    batch_size: int
    schedule: list
    fingerprint: str
    reproducible: dict


@dataclass
class _Progress:
    """What changes epoch by epoch and is saved in the checkpoint."""

    rows: list = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"epoch": None, "valid_rmse": float("inf"), "state": None})
    start_epoch: int = 0
    opt: torch.optim.SGD | None = None
    opt_stage: int | None = None
    resumed_from: int | None = None


def _fingerprint(params: dict, meta: dict, x_train, y_train, x_valid, y_valid, seed: int, init=None) -> str:
    h = hashlib.sha256()
    for name, t in sorted((init or {}).items()):  # the starting weights: a checkpoint of others is not resumed
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update(json.dumps({"params": params, "meta": meta, "seed": seed}, sort_keys=True, default=str).encode())
    for a in (x_train, x_valid):
        h.update(repr(tuple(a.shape)).encode())
        if len(a):
            h.update(np.ascontiguousarray(a[0]).tobytes())
            h.update(np.ascontiguousarray(a[-1]).tobytes())
    for a in (y_train, y_valid):
        h.update(np.ascontiguousarray(a, dtype=np.float32).tobytes())
    return h.hexdigest()


def _after_checkpoint(epoch: int) -> None:
    """Called after each checkpoint is written (a seam for tests that interrupt training)."""


def setup(x_train, y_train, x_valid, y_valid, params: dict, meta: dict, device, init: dict | None = None) -> _Run:
    """Device, normalisation, the seeded model (head bias at the mean label, or the weights ``init``:
    a state dict of a network of the same architecture), data sources and the epoch plan."""
    seed = int(meta.get("seed", 0))
    dev = resolve_device(device if device not in (None, "auto") else params["device"])
    # before anything computes: torch and MKL choose their kernels at their first computation
    mode = reproducible.wanted(params["reproducible"], dev.type)
    repro = reproducible.apply(mode, dev.type, int(params["num_threads"]))
    amp = dev.type == "cuda" and params["precision"] in ("auto", "bf16")
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = not mode  # autotuning picks algorithms by their timings
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if params["normalisation"] == "imagenet":
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    else:
        mean, std = dataset_stats(x_train)
    scale, shift = normalisation_constants(mean, std, dev)

    torch.manual_seed(seed)
    head = params["head"]
    # weights given: no pretrained body to read, load_state_dict replaces every tensor
    model = build_model(params["arch"], params["pretrained"] if init is None else "none", hidden=int(head["hidden"]),
                        dropout=tuple(head["dropout"]))
    if init is not None:
        model.load_state_dict(init)
    else:
        with torch.no_grad():
            model.head.fc2.bias.fill_(float(np.mean(y_train)))
    model.to(dev)
    if dev.type == "cuda" or params["channels_last"] is True:
        model.to(memory_format=torch.channels_last)

    src_train = ImageSource(x_train, dev, _fits(x_train.nbytes + x_valid.nbytes, dev, params["data_on_device"]))
    batch_size = min(int(params["batch_size"]), len(x_train))
    return _Run(
        params=params, seed=seed, dev=dev, amp=amp, model=model,
        norm={"name": params["normalisation"], "mean": [float(v) for v in mean], "std": [float(v) for v in std]},
        scale=scale, shift=shift, train=src_train, valid=ImageSource(x_valid, dev, src_train.resident),
        y_train=torch.as_tensor(y_train, device=dev), y_valid=y_valid, batch_size=batch_size,
        schedule=plan(params, math.ceil(len(x_train) / batch_size)),
        fingerprint=_fingerprint(params, meta, x_train, y_train, x_valid, y_valid, seed, init),
        reproducible=repro,
    )


def resume(run: _Run, checkpoint: Path) -> _Progress:
    """The progress saved in ``checkpoint`` when it is of this run (same parameters and data),
    with the model's weights restored; else a fresh start."""
    progress = _Progress()
    if not checkpoint.exists():
        return progress
    try:
        ck = torch.load(checkpoint, map_location=run.dev, weights_only=True)
    except Exception as exc:  # a checkpoint from another version, or damaged
        log.warning("ignoring unreadable checkpoint %s (%s); training from the start", checkpoint, exc)
        return progress
    if ck.get("fingerprint") != run.fingerprint:
        log.warning("checkpoint %s is for other parameters or data: training from the start", checkpoint)
        return progress
    run.model.load_state_dict(ck["model"])
    progress.rows = list(ck["log"])
    progress.best = {"epoch": ck["best_epoch"], "valid_rmse": ck["best_valid_rmse"], "state": ck.get("best_state")}
    progress.start_epoch = progress.resumed_from = int(ck["epoch"]) + 1
    if progress.start_epoch < len(run.schedule) and run.schedule[progress.start_epoch]["stage"] == ck["stage"]:
        progress.opt = make_optimizer(run.model, ck["stage"], run.params)
        progress.opt.load_state_dict(ck["optimizer"])
        progress.opt_stage = ck["stage"]
    log.info("resuming %s after epoch %d of %d", checkpoint.parent, progress.start_epoch, len(run.schedule))
    return progress


def _save_checkpoint(run: _Run, progress: _Progress, epoch: int, stage: int, path: Path) -> None:
    ck = {
        "fingerprint": run.fingerprint, "epoch": epoch, "stage": stage,
        "model": run.model.state_dict(), "optimizer": progress.opt.state_dict(), "log": progress.rows,
        "best_epoch": progress.best["epoch"], "best_valid_rmse": progress.best["valid_rmse"],
        "best_state": progress.best["state"],
    }
    with atomic_path(path) as tmp:
        torch.save(ck, tmp)


# ----------------------------------------------------------------------------- training


def train_one_epoch(model, opt, source: ImageSource, y_t: torch.Tensor, batches, ks_all, base_lrs, factors,
                    scale, shift, amp: bool, epoch: int = 0, stage: int = 2) -> float:
    """One pass over ``batches`` (index arrays): the hot loop. Returns the sum of squared errors.

    Per batch: uint8 gather on the device, one random D4 element per image (``ks_all[i]`` for
    image ``i``; None: no augmentation), normalisation, forward, RMSE loss, SGD step at
    ``base_lrs * factors[b]``.
    """
    dev = source.device
    sse = torch.zeros((), dtype=torch.float64, device=dev)
    for b, (idx, xb) in enumerate(zip(batches, source.iterate(batches))):
        _set_lrs(opt, base_lrs, float(factors[b]))
        if ks_all is not None:
            xb = d4_per_sample(xb, ks_all[torch.from_numpy(idx)].to(dev))
        inp = to_input(xb, scale, shift)
        yb = y_t[torch.as_tensor(idx, device=dev)]
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            pred = model(inp)
        err = pred.float() - yb
        mse = (err * err).mean()
        loss = torch.sqrt(mse)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sse += mse.detach().double() * len(idx)
        if dev.type == "cpu" and not math.isfinite(float(loss.detach())):
            _raise_nan(float(loss.detach()), epoch, b, stage, opt)
    return float(sse)


def fit_epoch(run: _Run, progress: _Progress, epoch: int) -> dict:
    """Train epoch ``epoch`` of the plan (its own seeded draws), score validation; the log row."""
    t0 = time.perf_counter()
    ep = run.schedule[epoch]
    stage = ep["stage"]
    if progress.opt is None or progress.opt_stage != stage:
        progress.opt = make_optimizer(run.model, stage, run.params)
        progress.opt_stage = stage
    set_body_trainable(run.model, stage == 2)
    train_mode(run.model, body_frozen=stage == 1)

    g = _epoch_generator(run.seed, epoch)
    n = len(run.train)
    order = torch.randperm(n, generator=g).numpy()
    # one D4 element per image for this epoch
    ks_all = torch.randint(0, 8, (n,), generator=g) if run.params["augment"] else None
    torch.manual_seed(int(g.initial_seed()) + 1)  # dropout draws of this epoch
    sse = train_one_epoch(run.model, progress.opt, run.train, run.y_train, split_batches(order, run.batch_size),
                          ks_all, ep["base_lrs"], ep["factors"], run.scale, run.shift, run.amp,
                          epoch=epoch, stage=stage)
    train_rmse = math.sqrt(float(sse) / n)
    if not math.isfinite(train_rmse):
        _raise_nan(train_rmse, epoch, None, stage, progress.opt)
    valid_rmse = rmse_on(run.model, run.valid, run.y_valid, run.scale, run.shift,
                         int(run.params["eval_batch_size"]), run.amp)
    lrs = dict(zip(GROUPS, ep["base_lrs"]))
    return {
        "epoch": epoch + 1, "stage": stage,
        **{f"lr_{k}": lrs[k] * float(ep["factors"][0]) for k in GROUPS},
        "train_rmse": train_rmse, "valid_rmse": valid_rmse,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def fit(run: _Run, progress: _Progress, outputs: TrainOutputs) -> None:
    """The epochs not done yet; after each, the checkpoint and the log are written."""
    n_epochs = len(run.schedule)
    for epoch in range(progress.start_epoch, n_epochs):
        row = fit_epoch(run, progress, epoch)
        progress.rows.append(row)
        if run.params["keep"] == "best" and row["valid_rmse"] < progress.best["valid_rmse"]:
            progress.best = {"epoch": epoch + 1, "valid_rmse": row["valid_rmse"], "state": cpu_state(run.model)}
        log.info(
            "epoch %d/%d stage %d: train RMSE %.4f, valid RMSE %.4f (%.1f s, %.0f img/s)",
            epoch + 1, n_epochs, row["stage"], row["train_rmse"], row["valid_rmse"], row["seconds"],
            len(run.train) / max(row["seconds"], 1e-9),
        )
        _save_checkpoint(run, progress, epoch, row["stage"], outputs.checkpoint)
        write_table(pd.DataFrame(progress.rows, columns=LOG_COLUMNS), outputs.log)
        _after_checkpoint(epoch)


def model_meta(run: _Run, progress: _Progress, meta: dict, kept_epoch: int, n_train: int, n_valid: int) -> dict:
    """The model file's metadata: the caller's (target, images, hashes, tta) and the run's."""
    p = run.params
    head = p["head"]
    return {
        **meta,
        "arch": p["arch"],
        "pretrained": str(p["pretrained"]),
        "head": {"type": "concat-pool, BN, dropout, linear, ReLU, BN, dropout, linear",
                 "hidden": int(head["hidden"]), "dropout": [float(v) for v in head["dropout"]]},
        "resolution": int(run.train.x.shape[1]),
        "input": "uint8 N x H x W x 3, scaled to 0..1 then (x - mean) / std",
        "normalisation": run.norm,
        "tta": int(meta.get("tta", 8)),
        "galmet_version": __version__,
        "torch_version": str(torch.__version__),
        "reproducible": run.reproducible,
        "seed": run.seed,
        "train_params": p,
        "n_train": int(n_train),
        "n_valid": int(n_valid),
        "kept_epoch": int(kept_epoch),
        "epochs": len(run.schedule),
        "valid_rmse": float(progress.rows[kept_epoch - 1]["valid_rmse"]),
    }


def finalise(run: _Run, progress: _Progress, outputs: TrainOutputs, meta: dict, domain_alpha: float) -> dict:
    """Keep the last (or best) weights, score validation with TTA, fit the applicability-domain
    test (its default level ``domain_alpha``, from :func:`_domain_alpha`), write the model file,
    the log and the loss curve, and remove the checkpoint."""
    from galmet import modelfile
    from galmet.predict import predict_images

    if run.params["keep"] == "best" and progress.best["state"] is not None:
        run.model.load_state_dict(progress.best["state"])
        kept_epoch = progress.best["epoch"]
    else:
        kept_epoch = len(run.schedule)
    full_meta = model_meta(run, progress, meta, kept_epoch, len(run.train), len(run.valid))
    run.model.eval()
    valid_tta = float("nan")
    if len(run.valid):
        pv = predict_images(run.model, full_meta, run.valid.x, tta=full_meta["tta"],
                            batch_size=int(run.params["eval_batch_size"]), device=str(run.dev))
        valid_tta = float(np.sqrt(np.mean((pv - run.y_valid) ** 2)))
    full_meta["valid_rmse_tta"] = valid_tta
    if len(run.valid):
        from galmet.domain import fit as fit_domain

        full_meta["domain"] = fit_domain(run.train.x, run.valid.x, full_meta["resolution"], seed=run.seed,
                                         alpha=domain_alpha)
    modelfile.save(outputs.model, run.model, full_meta)
    log_df = pd.DataFrame(progress.rows, columns=LOG_COLUMNS)
    write_table(log_df, outputs.log)
    if outputs.curve is not None:
        from galmet.figures import loss_curve, save_figure

        title = f"{run.params['arch']} {full_meta['resolution']} px, seed {run.seed}: " \
                f"valid RMSE {full_meta['valid_rmse']:.3f}"
        save_figure(loss_curve(log_df, title, unit=_unit(meta.get("target"))), [outputs.curve])
    outputs.checkpoint.unlink(missing_ok=True)
    return {
        "model": str(outputs.model), "log": str(outputs.log),
        "loss_curve": None if outputs.curve is None else str(outputs.curve), "device": str(run.dev),
        "epochs": len(run.schedule), "kept_epoch": int(kept_epoch), "resumed_from": progress.resumed_from,
        "valid_rmse": full_meta["valid_rmse"], "valid_rmse_tta": valid_tta,
        "train_seconds": float(sum(r["seconds"] for r in progress.rows)),
    }


def train_model(x_train, y_train, x_valid, y_valid, params, out, meta, device="auto", init: dict | None = None) -> dict:
    """Train a model by the paper's recipe (see the module docstring) and write its files.

    ``x_*``: uint8 ``N x H x W x 3`` arrays (memory-mapped is fine); ``y_*``: float labels;
    ``params``: ``config["train"]`` (validated by :func:`galmet.config.section`: missing keys take
    the schema defaults, a bad value raises :class:`galmet.config.ConfigError`); ``out``: a
    :class:`TrainOutputs`, or a directory for :meth:`TrainOutputs.in_dir`; ``meta``: what the
    caller knows (target, units, images provenance, hashes, seed, tta), stored in the model file
    with what training adds. ``device``: ``auto`` defers to ``params["device"]``. ``init``: the
    network's starting weights (a state dict of ``params["arch"]`` with galmet's head; default: the
    seeded random initialisation, or the pretrained body).
    Returns a summary dict (paths, epochs, validation RMSE with and without TTA, seconds).
    """
    t_start = time.perf_counter()
    outputs = out if isinstance(out, TrainOutputs) else TrainOutputs.in_dir(out)
    params = _train_section(params)
    meta = dict(meta or {})
    x_train, y_train, x_valid, y_valid = _check_data(x_train, y_train, x_valid, y_valid)
    domain_alpha = _domain_alpha(meta.pop("domain_alpha", None), len(x_train), len(x_valid))

    run = setup(x_train, y_train, x_valid, y_valid, params, meta, device, init)
    outputs.model.parent.mkdir(parents=True, exist_ok=True)
    progress = resume(run, outputs.checkpoint)
    log.info(
        "training %s (pretrained=%s) at %d px on %s: %d train / %d valid images, batch %d, %d epochs "
        "(stage 1: %d), data %s", params["arch"], params["pretrained"], x_train.shape[1], run.dev, len(x_train),
        len(x_valid), run.batch_size, len(run.schedule), _stage1_epochs(params),
        "resident on the device" if run.train.resident else "streamed from the array",
    )
    try:
        fit(run, progress, outputs)
        result = finalise(run, progress, outputs, meta, domain_alpha)
    except KeyboardInterrupt:
        log.error("%s", interrupted_message(len(progress.rows), len(run.schedule), outputs.checkpoint))
        raise
    result["seconds"] = time.perf_counter() - t_start
    log.info("wrote %s: valid RMSE %.4f (TTA x%d: %.4f), %.1f s", outputs.model, result["valid_rmse"],
             int(meta.get("tta", 8)), result["valid_rmse_tta"], result["seconds"])
    return result


def _domain_alpha(alpha, n_train: int, n_valid: int) -> float:
    """The applicability-domain level the model file will record: ``meta["domain_alpha"]`` (the
    workflow passes the config's ``predict.domain_alpha``), refused before the first epoch when the
    labelled galaxies could not reach it (:func:`galmet.domain.check_alpha`); when not given,
    :data:`galmet.domain.DEFAULT_ALPHA`, or the smallest level a small labelled set can use."""
    from galmet import domain

    n = min(n_train + n_valid, domain.MAX_IMAGES)
    if alpha is None:
        alpha = max(domain.DEFAULT_ALPHA, domain.smallest_alpha(n))
    elif n_valid:
        domain.check_alpha({"n": n}, alpha, option="predict.domain_alpha")
    return float(alpha)


def _train_section(params: dict | None) -> dict:
    """``params`` validated and completed as the config's ``train`` section (ConfigError names a bad
    key); a ``seed`` key, which the workflow adds beside them (the model's seed; training takes its
    seed from ``meta``), is kept as it is, part of the checkpoint's fingerprint."""
    params = dict(params or {})
    seed = {"seed": params.pop("seed")} if "seed" in params else {}
    return {**section("train", params), **seed}


def interrupted_message(done: int, epochs: int, checkpoint: Path) -> str:
    """The one line of a training stopped by Ctrl-C: where it stopped and how to resume."""
    if done and checkpoint.exists():
        return (f"interrupted at epoch {min(done + 1, epochs)} of {epochs}; the checkpoint {checkpoint} (after "
                f"epoch {done}) is kept: rerun the same command to resume from there")
    return f"interrupted in epoch 1 of {epochs}, before any checkpoint: rerun the same command to start again"


def _unit(target) -> str:
    """The unit of ``target`` (galmet.targets: dex for metallicity and mass, "" for an unregistered
    column); dex without a target (a metallicity model, as the first ones were)."""
    from galmet.targets import METALLICITY, get_target

    return get_target(target or METALLICITY).unit


def _check_data(x_train, y_train, x_valid, y_valid):
    x_train = _check_images(x_train, "x_train")
    x_valid = _check_images(x_valid, "x_valid")
    y_train = _check_labels(y_train, len(x_train), "y_train")
    y_valid = _check_labels(y_valid, len(x_valid), "y_valid")
    if x_valid.shape[1:] != x_train.shape[1:]:
        raise TrainingError(f"x_valid images are {x_valid.shape[1:]}, x_train {x_train.shape[1:]}: use one resolution")
    if len(x_train) < MIN_TRAIN:
        raise TrainingError(f"only {len(x_train)} training image(s): batch norm needs at least {MIN_TRAIN}")
    return x_train, y_train, x_valid, y_valid


def _raise_nan(value, epoch, batch, stage, opt) -> None:
    lrs = ", ".join(f"{g['name']} {g['lr']:.3g}" for g in opt.param_groups)
    where = f"epoch {epoch + 1}" + (f", batch {batch + 1}" if batch is not None else "")
    raise TrainingError(
        f"the training loss became {value} at {where} (stage {stage}, learning rates {lrs}): "
        "lower train.stage2.lrs / train.stage1.lr, or check the labels and images for NaN/inf"
    )


def _check_images(x, name: str) -> np.ndarray:
    if not (hasattr(x, "dtype") and hasattr(x, "shape")):
        x = np.asarray(x)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3 or x.shape[1] != x.shape[2]:
        raise TrainingError(f"{name}: expected uint8 N x H x W x 3 square images, got {x.dtype} {tuple(x.shape)}")
    return x


def _check_labels(y, n: int, name: str) -> np.ndarray:
    # a copy: pandas' copy-on-write hands out read-only arrays, which torch warns about
    y = np.array(y, dtype=np.float32).reshape(-1)
    if len(y) != n:
        raise TrainingError(f"{name}: {len(y)} labels for {n} images")
    bad = ~np.isfinite(y)
    if bad.any():
        raise TrainingError(f"{name}: {int(bad.sum())} labels are NaN/inf (first at row {int(np.argmax(bad))})")
    return y
