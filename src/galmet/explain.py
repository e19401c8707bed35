"""Saliency maps of a trained model and the sanity checks that make them evidence.

Which pixels drove a prediction? :func:`saliency_maps` gives each image a *signed* map at the
model's input resolution (``res x res``; positive where the pixels push the prediction up), made
with captum (0.9):

``gradcam``    Grad-CAM (``captum.attr.LayerGradCam``) at a body layer, by default (``auto``) the one
               the model's backbone names in galmet.backbones (a ResNet's ``layer2``: 8 x 8 at 64 px;
               ``layer4`` is 2 x 2 at 64 px and 1 x 1 below, so flat there), upsampled
               bilinearly to the input (``LayerAttribution.interpolate``).
``ig``         integrated gradients (``captum.attr.IntegratedGradients``) from a baseline image
               filled with the median of the image's border (the sky), summed over colours.
``occlusion``  ``captum.attr.Occlusion``: the change of the prediction when a square of res/8 px
               (stride half that) is filled with the border median.

The default was chosen on the validation split by the checks below and by cost
(``benchmarks/saliency_methods.py``). With test-time augmentation the map of the TTA-averaged
prediction is the mean of the maps of the D4 views (:func:`galmet.augment.d4`), each mapped back
to the original orientation: a rotated image gets the rotated map. An ensemble (a model with
``members``, whose forward gives one column per member) gets the mean of its members' maps, as its
prediction is their mean.

Checks (:func:`sanity_checks`, reported with every run)

``randomisation``  (Adebayo et al. 2018) per galaxy, the Spearman rank correlation between the
                   |maps| of the trained model and of the same architecture with every weight
                   re-initialised; the maps depend on what the model learnt when the mean is below
                   0.3 by two standard errors (``passes``), above it by as much ``fails``, else
                   ``inconclusive`` with ``n_needed``, the galaxies that would decide at this
                   spread (:func:`galmet.metrics.mean_verdict`).
``deletion``       pixels replaced by the border median in ``steps`` steps (5% each for 20), most
                   salient first, without TTA; the curve is |prediction - first prediction| (dex)
                   against the deleted fraction, beside the same for ``random_orders`` random
                   orders. Figure of merit: the area between the two (dex), per galaxy; its mean
                   above zero by two standard errors ``passes``, below by as much ``fails``, else
                   ``inconclusive`` with ``n_needed``.
``science``        the share of |map| within res/8 px of the centre (the central quarter of the
                   width) for the metal-poor third against the metal-rich third, with a
                   bootstrap interval of the difference and a plain verdict.

Command line (:mod:`galmet.cli.explain`)::

    galmet explain --model model.pt --images DIR --out OUTDIR [--method gradcam|ig|occlusion]
                   [--allow-survey-mismatch]

writes ``OUTDIR/<objID>.png`` (|map| over the cutout at the model's resolution, titled with the
prediction, with a colour bar),
``OUTDIR/saliency.npz`` (``objID`` int64 N, ``maps`` float32 N x res x res, ``prediction`` float64
N), ``OUTDIR/saliency_checks.json`` and ``OUTDIR/skipped.log`` (unreadable images, skipped with a
warning as ``galmet predict`` does).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from galmet.augment import D4_SIZE, d4, d4_inverse
from galmet.backbones import saliency_layer
from galmet.config import default
from galmet.imaging import bring_to_resolution
from galmet.io import atomic_path
from galmet.metrics import DECIDING_SE, mean_verdict
from galmet.model import members, normalisation_constants, resolve_device, to_input
from galmet.predict import predict_images
from galmet.targets import METALLICITY, get_target

METHODS = ("gradcam", "ig", "occlusion")
#: the randomisation check passes when the mean rank correlation is below this.
SPEARMAN_PASS = 0.3
#: radius of the central region of the science statement, as a fraction of the width.
CENTRAL_RADIUS = 1 / 8


def _schema(key: str):
    """A field whose default is the config schema's (``saliency.<key>``, or a full key)."""
    return field(default_factory=lambda: default(key if "." in key else f"saliency.{key}"))


@dataclass(frozen=True)
class ExplainSettings:
    """How maps are made and checked (config ``saliency``, ``galmet explain``'s options); every
    default is the config schema's."""

    method: str = _schema("method")
    layer: str = _schema("layer")  # gradcam only; auto: the backbone's default (galmet.backbones.saliency_layer)
    tta: int = _schema("predict.tta")  # D4 views averaged (1 = none)
    ig_steps: int = _schema("ig_steps")  # ig only
    steps: int = _schema("steps")  # deletion steps (20 of 5%)
    random_orders: int = _schema("random_orders")  # deletion: random orders to compare with
    check_max: int | None = _schema("check_max")  # randomisation and deletion on at most this many galaxies
    seed: int = _schema("seed")
    batch_size: int = _schema("batch_size")

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"saliency method {self.method!r}: choose one of {', '.join(METHODS)}")
        if not 1 <= int(self.tta) <= D4_SIZE:
            raise ValueError(f"tta={self.tta}: give the number of D4 symmetries to average, 1 to 8")
        if self.steps < 1 or self.random_orders < 1 or self.batch_size < 1 or self.ig_steps < 2:
            raise ValueError("steps, random_orders and batch_size must be >= 1, ig_steps >= 2")


# ----------------------------------------------------------------------------- maps


def model_inputs(meta: dict, x_uint8_nhwc: np.ndarray, device) -> torch.Tensor:
    """uint8 ``N x H x W x 3`` images -> the model's normalised ``N x 3 x res x res`` float input."""
    x = bring_to_resolution(np.ascontiguousarray(x_uint8_nhwc), int(meta["resolution"]))
    scale, shift = normalisation_constants(meta["normalisation"]["mean"], meta["normalisation"]["std"], device)
    return to_input(torch.from_numpy(x).to(device).permute(0, 3, 1, 2), scale, shift).contiguous()


def border_fill(inp: torch.Tensor) -> torch.Tensor:
    """Per image and channel, the median of the outermost ring of pixels (the sky): ``N x C x 1 x 1``."""
    ring = torch.cat([inp[..., 0, :], inp[..., -1, :], inp[..., 1:-1, 0], inp[..., 1:-1, -1]], dim=-1)
    return ring.median(dim=-1).values[..., None, None]


def _layer(net: torch.nn.Module, name: str) -> torch.nn.Module:
    name = saliency_layer(net.arch, name) if getattr(net, "arch", None) else name
    modules = dict(net.named_modules())
    for key in (name, f"body.{name}"):
        if key in modules:
            return modules[key]
    raise ValueError(f"saliency layer {name!r}: the network has no such module")


def attribute(net: torch.nn.Module, inp: torch.Tensor, settings: ExplainSettings) -> torch.Tensor:
    """Signed ``N x H x W`` maps of one network for a normalised batch ``N x C x H x W`` (no TTA)."""
    from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Occlusion

    h, w = inp.shape[-2:]
    if settings.method == "gradcam":
        cam = LayerGradCam(net, _layer(net, settings.layer)).attribute(inp)
        return LayerAttribution.interpolate(cam, (h, w), "bilinear")[:, 0]
    fill = border_fill(inp)
    if settings.method == "ig":
        ig = IntegratedGradients(net).attribute(inp, baselines=fill.expand_as(inp).contiguous(),
                                                n_steps=settings.ig_steps, internal_batch_size=settings.batch_size)
        return ig.sum(dim=1)
    win = max(1, h // 8)
    occ = Occlusion(net).attribute(inp, sliding_window_shapes=(inp.shape[1], win, win),
                                   strides=(inp.shape[1], max(1, win // 2), max(1, win // 2)),
                                   baselines=fill, perturbations_per_eval=max(1, settings.batch_size // len(inp)))
    return occ.mean(dim=1)


def _tta_maps(nets, inp: torch.Tensor, settings: ExplainSettings) -> torch.Tensor:
    """Mean over members and D4 views of the maps, each view's map turned back by the inverse element."""
    acc = torch.zeros((inp.shape[0], *inp.shape[-2:]), dtype=torch.float32, device=inp.device)
    with torch.enable_grad():  # gradients also when called under torch.no_grad()
        for net in nets:
            for k in range(int(settings.tta)):
                acc += d4(attribute(net, d4(inp, k), settings).detach().float(), d4_inverse(k))
    return acc / (int(settings.tta) * len(nets))


def saliency_maps(model, meta: dict, x_uint8_nhwc: np.ndarray, settings: ExplainSettings | None = None,
                  device="cpu") -> np.ndarray:
    """Signed saliency maps (float32 ``N x res x res``) of the TTA-averaged prediction of ``model``
    (a network or an ensemble with ``members``) for uint8 ``N x H x W x 3`` images."""
    settings = settings or ExplainSettings()
    dev = resolve_device(device)
    nets = members(model)
    for net in nets:
        net.to(dev).eval()
    res = int(meta["resolution"])
    out = np.empty((len(x_uint8_nhwc), res, res), dtype=np.float32)
    for s in range(0, len(out), settings.batch_size):
        inp = model_inputs(meta, x_uint8_nhwc[s:s + settings.batch_size], dev)
        out[s:s + len(inp)] = _tta_maps(nets, inp, settings).cpu().numpy()
    return out


# ----------------------------------------------------------------------------- the checks


def randomised(model, seed: int = 0):
    """A CPU copy of ``model`` with every parameter and buffer re-initialised (each member of an
    ensemble), as the architecture initialises them: the reference of the randomisation check."""
    clone = copy.deepcopy(model).to("cpu")
    covered = set()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in clone.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
                covered.update(id(p) for p in module.parameters(recurse=False))
            if hasattr(module, "reset_running_stats"):
                module.reset_running_stats()
    left = [name for name, p in clone.named_parameters() if id(p) not in covered]
    if left:
        raise ValueError(f"cannot re-initialise {', '.join(left[:5])}: no module of theirs has reset_parameters")
    return clone.eval()


def rowwise_spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of each row of ``a`` with the same row of ``b`` (NaN for a flat row)."""
    import pandas as pd  # average ranks of ties, as scipy.stats.rankdata (scipy is not in envs/torch.yaml)

    ra, rb = (pd.DataFrame(np.asarray(m, dtype=np.float64).reshape(len(m), -1)).rank(axis=1).to_numpy()
              for m in (a, b))
    ra, rb = ra - ra.mean(axis=1, keepdims=True), rb - rb.mean(axis=1, keepdims=True)
    den = np.sqrt((ra ** 2).sum(axis=1) * (rb ** 2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(axis=1) / den, np.nan)


def _mean_std(values) -> tuple[float | None, float | None]:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return (float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0) if v.size else (None, None)


def randomisation_check(model, meta: dict, x: np.ndarray, maps: np.ndarray, settings: ExplainSettings,
                        device="cpu") -> dict:
    """Rank correlation of the maps of ``model`` with those of its re-initialised copy (per galaxy)."""
    random_maps = saliency_maps(randomised(model, settings.seed), meta, x, settings, device)
    rho = rowwise_spearman(np.abs(maps), np.abs(random_maps))
    signed = rowwise_spearman(maps, random_maps)
    test = mean_verdict(rho, SPEARMAN_PASS, passes_if="below")  # its mean and std are the check's
    mean, std = test["mean"], test["std"]
    signed_mean, signed_std = _mean_std(signed)
    return {"spearman_mean": mean, "spearman_std": std, "spearman_signed_mean": signed_mean,
            "spearman_signed_std": signed_std, "threshold": SPEARMAN_PASS, "verdict": test["verdict"],
            "passes": test["verdict"] == "passes", "n": test["n"], "sem": test["sem"], "n_needed": test["n_needed"],
            "maps": "magnitudes (spearman_*) and signed maps (spearman_signed_*)", "seed": settings.seed}


@torch.no_grad()
def _mean_prediction(nets, images: torch.Tensor) -> torch.Tensor:
    """The prediction of ``nets`` (mean over members, no TTA); channels_last, ~30% faster on a CPU."""
    images = images.contiguous(memory_format=torch.channels_last)
    return torch.stack([net(images).float() for net in nets]).mean(dim=0)


def _deletion_predictions(nets, inp, fill, rank, n_del) -> torch.Tensor:
    """Predictions of ``G`` images at the deletion steps ``n_del`` (pixels gone): ``G x T``."""
    g, c, h, w = inp.shape
    mask = (rank[:, None, :] < n_del[None, :, None]).reshape(g, len(n_del), 1, h, w)
    steps = torch.where(mask, fill[:, None], inp[:, None]).reshape(-1, c, h, w)
    return _mean_prediction(nets, steps).reshape(g, len(n_del))


def _ranks(order: np.ndarray) -> np.ndarray:
    """For orders of pixel indices (one row a galaxy), the step at which each pixel goes."""
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(order.shape[1]), order.shape), axis=1)
    return rank


def deletion_curves(model, meta: dict, x: np.ndarray, maps: np.ndarray, settings: ExplainSettings,
                    device="cpu") -> tuple[np.ndarray, np.ndarray]:
    """|change of the prediction| (``N x (steps + 1)``) as pixels are filled with the border median,
    most salient (largest |map|) first, and the same for ``random_orders`` random orders
    (``N x orders x (steps + 1)``). No TTA; an ensemble's prediction is its members' mean."""
    dev = resolve_device(device)
    nets = members(model)
    for net in nets:
        net.to(dev, memory_format=torch.channels_last).eval()
    n, res = len(x), int(meta["resolution"])
    pixels = res * res
    n_del = np.rint(np.arange(settings.steps + 1) * pixels / settings.steps).astype(np.int64)
    inner = torch.as_tensor(n_del[1:-1], device=dev)  # the intact and the empty image: once for all orders
    rng = np.random.default_rng(settings.seed)
    curves = np.empty((n, 1 + settings.random_orders, len(n_del)))
    chunk = max(1, settings.batch_size * 4 // max(1, len(inner)))
    for s in range(0, n, chunk):
        inp = model_inputs(meta, x[s:s + chunk], dev)
        g = len(inp)
        fill = border_fill(inp)
        intact = _mean_prediction(nets, inp)
        empty = _mean_prediction(nets, fill.expand_as(inp))
        orders = [np.argsort(-np.abs(maps[s:s + g]).reshape(g, -1), axis=1, kind="stable")]
        orders += [rng.permuted(np.tile(np.arange(pixels), (g, 1)), axis=1) for _ in range(settings.random_orders)]
        for o, order in enumerate(orders):
            pred = torch.empty((g, 0), device=dev)  # no inner step when steps == 1
            if len(inner):
                pred = _deletion_predictions(nets, inp, fill, torch.as_tensor(_ranks(order), device=dev), inner)
            pred = torch.cat([intact[:, None], pred, empty[:, None]], dim=1)
            curves[s:s + g, o] = (pred - intact[:, None]).abs().cpu().numpy()
    return curves[:, 0], curves[:, 1:]


def deletion_summary(salient: np.ndarray, random: np.ndarray, steps: int) -> dict:
    """The deletion test's numbers: mean curves and the area between them (dex), per galaxy."""
    area = np.trapezoid(salient - random.mean(axis=1), dx=1.0 / steps, axis=1)
    test = mean_verdict(area, 0.0, passes_if="above")
    mean, std = test["mean"], test["std"]
    return {
        "steps": int(steps), "random_orders": int(random.shape[1]), "n": int(len(area)),
        "fraction_deleted": [round(i / steps, 6) for i in range(steps + 1)],
        "curve_salient": [float(v) for v in salient.mean(axis=0)],
        "curve_random": [float(v) for v in random.mean(axis=(0, 1))],
        "area_salient_mean": _mean_std(np.trapezoid(salient, dx=1.0 / steps, axis=1))[0],
        "area_random_mean": _mean_std(np.trapezoid(random.mean(axis=1), dx=1.0 / steps, axis=1))[0],
        "area_between_mean": mean, "area_between_std": std,
        "area_between_sem": None if std is None else std / np.sqrt(max(1, len(area))),
        "fraction_positive": float(np.mean(area > 0)) if len(area) else None,
        "verdict": test["verdict"], "n_needed": test["n_needed"],
        "units": "dex x fraction of pixels deleted; |prediction - prediction of the intact image|",
    }


def central_mask(res: int, radius: float = CENTRAL_RADIUS) -> np.ndarray:
    """Pixels within ``radius * res`` of the image's centre (``res x res`` booleans)."""
    yy, xx = np.mgrid[:res, :res]
    c = (res - 1) / 2
    return np.hypot(yy - c, xx - c) <= radius * res


def central_share(maps: np.ndarray, radius: float = CENTRAL_RADIUS) -> np.ndarray:
    """Per map, the share of its magnitude within ``radius * res`` of the centre (NaN for a zero map)."""
    mag = np.abs(np.asarray(maps, dtype=np.float64))
    total = mag.sum(axis=(1, 2))
    inner = (mag * central_mask(mag.shape[-1], radius)).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inner / total, np.nan)


def _group(share: np.ndarray, values: np.ndarray) -> dict:
    mean, std = _mean_std(share)
    return {"n": int(len(share)), "share_mean": mean, "share_std": std,
            "share_sem": None if std is None else std / np.sqrt(max(1, len(share))),
            "value_range": [float(values.min()), float(values.max())] if len(values) else None}


def _difference(poor: np.ndarray, rich: np.ndarray, seed: int, n_boot: int = 2000) -> dict:
    """High third minus low third of the mean central share: a bootstrap 95% interval and the
    two-sided p value of a permutation test (labels shuffled ``n_boot`` times)."""
    rng = np.random.default_rng(seed)
    diff = float(rich.mean() - poor.mean())
    boot = (rng.choice(rich, (n_boot, len(rich))).mean(axis=1) - rng.choice(poor, (n_boot, len(poor))).mean(axis=1))
    lo, hi = np.percentile(boot, [2.5, 97.5])
    both = np.concatenate([rich, poor])
    perm = rng.permuted(np.tile(both, (n_boot, 1)), axis=1)
    null = perm[:, :len(rich)].mean(axis=1) - perm[:, len(rich):].mean(axis=1)
    p = (1 + np.sum(np.abs(null) >= abs(diff))) / (1 + n_boot)
    return {"high_minus_low": diff, "ci95": [float(lo), float(hi)], "permutation_p": float(p)}


def _verdict(out: dict, min_group: int) -> str:
    low, high = out["low_third"], out["high_third"]
    lw, hw = out["labels"]
    nums = (f"central share {high['share_mean']:.3f} ± {high['share_std']:.3f} (std; N = {high['n']}) for the "
            f"{hw} third against {low['share_mean']:.3f} ± {low['share_std']:.3f} (N = {low['n']}) for the {lw} "
            f"third (a flat map gives {out['uniform_share']:.3f})")
    d = out["difference"]
    diff = f"difference {d['high_minus_low']:+.3f}, 95% bootstrap interval [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"
    if min(low["n"], high["n"]) < min_group:
        return f"cannot tell: too few galaxies per third (fewer than {min_group}); {nums}"
    if d["ci95"][0] <= 0 <= d["ci95"][1] or d["permutation_p"] >= 0.05:
        need = _thirds_needed(out)
        more = f"; about {need} galaxies a third would tell at this spread" if need else ""
        return (f"cannot tell at this sample size: {nums}; {diff}, permutation p = {d['permutation_p']:.2g} "
                f"(a difference needs an interval without zero and p < 0.05){more}")
    more = "more" if d["high_minus_low"] > 0 else "less"
    return (f"the {hw} third's saliency is {more} concentrated in the centre than the {lw} third's: {nums}; "
            f"{diff}, permutation p = {d['permutation_p']:.2g}")


def _thirds_needed(out: dict) -> int | None:
    """Galaxies per third that would make the observed difference of central shares two standard
    errors from zero at the observed spreads (None for no difference)."""
    low, high, diff = out["low_third"], out["high_third"], abs(out["difference"]["high_minus_low"])
    var = low["share_std"] ** 2 + high["share_std"] ** 2
    if not diff > 0 or not np.isfinite(var):
        return None
    return max(min(low["n"], high["n"]) + 1, math.ceil(DECIDING_SE ** 2 * var / diff ** 2))


#: The words of a metallicity model's low and high ends (galmet.targets), the default labels.
METAL_WORDS = get_target(METALLICITY).words


def science_numbers(maps: np.ndarray, values, by: str = "true", labels=METAL_WORDS,
                    seed: int = 0, min_group: int = 10) -> dict:
    """The central share of |map| (within res/8 of the centre) for the lowest third of ``values``
    against the highest third, with their spread, the difference and a plain verdict; ``labels``:
    the words of the low and high ends (galmet.targets.Target.words)."""
    share = central_share(maps)
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(share) & np.isfinite(v)
    share, v = share[ok], v[ok]
    res = int(np.shape(maps)[-1]) if np.ndim(maps) == 3 else 0
    out = {"by": by, "labels": list(labels), "radius_px": CENTRAL_RADIUS * res, "n": int(ok.sum()),
           "uniform_share": float(central_mask(res).mean()) if res else None}
    if len(v) < 6:
        out["verdict"] = f"cannot tell: {len(v)} galaxies with a map and a value"
        return out
    lo, hi = np.quantile(v, [1 / 3, 2 / 3])
    poor, rich = v <= lo, v >= hi
    out["low_third"], out["high_third"] = _group(share[poor], v[poor]), _group(share[rich], v[rich])
    out["difference"] = _difference(share[poor], share[rich], seed)
    out["verdict"] = _verdict(out, min_group)
    return out


def _check_subset(n: int, settings: ExplainSettings) -> np.ndarray:
    """Indices of the galaxies the randomisation and deletion checks run on (seeded, sorted)."""
    if settings.check_max is None or n <= settings.check_max:
        return np.arange(n)
    return np.sort(np.random.default_rng(settings.seed).choice(n, settings.check_max, replace=False))


def sanity_checks(model, meta: dict, x: np.ndarray, maps: np.ndarray, settings: ExplainSettings, values,
                  by: str = "true", labels=None, device="cpu") -> dict:
    """The randomisation and deletion checks (on at most ``settings.check_max`` galaxies) and the
    science numbers (on all), with the seconds each took. ``labels``: the words of the low and high
    ends of the values, by default those of the model's target (:func:`target_words`)."""
    idx = _check_subset(len(x), settings)
    seconds = {}
    t0 = time.perf_counter()
    randomisation = randomisation_check(model, meta, x[idx], maps[idx], settings, device)
    seconds["randomisation"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    deletion = deletion_summary(*deletion_curves(model, meta, x[idx], maps[idx], settings, device), settings.steps)
    seconds["deletion"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    science = science_numbers(maps, values, by=by, labels=labels or target_words(meta), seed=settings.seed)
    seconds["science"] = time.perf_counter() - t0
    for check in (randomisation, deletion):  # what an inconclusive check could still be run on
        check["n_images"] = int(len(x))
    return {"n_checked": int(len(idx)), "randomisation": randomisation, "deletion": deletion, "science": science,
            "seconds": seconds}


def target_words(meta: dict) -> tuple[str, str]:
    """The words of the low and high ends of a model's target (galmet.targets), e.g. ("metal-poor",
    "metal-rich"); a model file without a target is a metallicity model (the first ones were)."""
    return get_target(meta.get("target") or METALLICITY).words


def explain(model, meta: dict, x: np.ndarray, settings: ExplainSettings | None = None, values=None,
            by: str = "true", labels=None, device="cpu"):
    """Maps, TTA-averaged predictions and the checks JSON of uint8 images ``x``: ``(maps, predictions,
    checks)``. The science statement splits by ``values`` (e.g. the truth) or, without, by the
    predictions (``by="predicted"``)."""
    settings = settings or ExplainSettings()
    arch = meta.get("arch") or getattr(members(model)[0], "arch", None)
    if settings.method == "gradcam" and arch:  # the layer used, not "auto", in the checks JSON
        settings = replace(settings, layer=saliency_layer(arch, settings.layer))
    t0 = time.perf_counter()
    maps = saliency_maps(model, meta, x, settings, device)
    t_maps = time.perf_counter() - t0
    t0 = time.perf_counter()
    preds = predict_images(model, meta, x, tta=settings.tta, device=device)
    t_pred = time.perf_counter() - t0
    if values is None:
        values, by = preds, "predicted"
    checks = sanity_checks(model, meta, x, maps, settings, values, by=by, labels=labels, device=device)
    seconds = {"maps": t_maps, "predictions": t_pred, **checks.pop("seconds")}
    seconds = {k: round(v, 2) for k, v in {**seconds, "total": sum(seconds.values())}.items()}
    head = {"method": settings.method, "layer": settings.layer if settings.method == "gradcam" else None,
            "tta": int(settings.tta), "resolution": int(meta["resolution"]), "n": int(len(x)),
            "kind": meta.get("kind", "single"), "members": len(members(model)), "settings": asdict(settings)}
    return maps, preds, _json_safe({**head, **checks, "seconds": seconds})


def _json_safe(obj):
    """Non-finite floats as None (the JSON writer refuses NaN)."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


# ----------------------------------------------------------------------------- files


def write_maps(path, objid, maps: np.ndarray, preds) -> None:
    """``saliency.npz``: ``objID`` (int64 N), ``maps`` (float32 N x res x res), ``prediction`` (float64 N)."""
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, objID=np.asarray(objid, dtype=np.int64), maps=np.asarray(maps, dtype=np.float32),
                            prediction=np.asarray(preds, dtype=np.float64))


def overlay(image: np.ndarray, saliency: np.ndarray, size: int = 256, alpha: float = 0.7) -> np.ndarray:
    """The cutout (``res x res x 3`` uint8, as the model saw it) with |map| over it in the inferno
    colour map, opaque where the map is strongest; ``size x size x 3`` uint8 (nearest upscaling)."""
    from matplotlib import colormaps
    from PIL import Image

    mag = np.abs(np.asarray(saliency, dtype=np.float64))
    mag = mag / mag.max() if mag.max() > 0 else mag
    a = alpha * mag[..., None]
    mixed = (1 - a) * np.asarray(image, dtype=np.float64) / 255.0 + a * colormaps["inferno"](mag)[..., :3]
    out = Image.fromarray(np.clip(np.rint(255 * mixed), 0, 255).astype(np.uint8))
    return np.asarray(out.resize((size, size), resample=Image.Resampling.NEAREST))


__all__ = ["ExplainSettings", "METHODS", "members", "saliency_maps", "attribute", "randomised",
           "rowwise_spearman", "randomisation_check", "deletion_curves", "deletion_summary", "central_share",
           "science_numbers", "sanity_checks", "target_words", "explain", "write_maps", "overlay"]
