"""The applicability domain: does an image look like the images the model was trained on?

galmet's intervals hold for galaxies like its calibration galaxies. Where a model is applied to
images unlike its training images (another survey, a galaxy far smaller in the frame, blank sky,
a grayscale or band-swapped composite, heavy JPEG compression) the guarantee is void, and a CNN
still answers with a confident number. Every prediction therefore carries a conformal p-value,
``domain_p``: how usual the image is for this model, relative to its training images, and
``in_domain = domain_p >= alpha`` (default alpha 0.01).

The score (high = unusual) is the Mahalanobis distance of simple statistics of the image at the
model's resolution (:func:`image_statistics`: the galaxy's and the sky's colours, chroma,
central brightness, concentration, size, symmetry, the brightest off-centre pixel, sky level and
noise, fine structure, channel correlation) from those of the training images (robust location
and scale, ridge-regularised covariance; fitted on at most ``MAX_REFERENCE`` training images).
It was chosen on the validation split and on shifted validation images
(``benchmarks/domain_shift.py``) against the nearest-neighbour distance and the Mahalanobis
distance in the network's penultimate-layer embedding, the members' and TTA views'
disagreement, and combinations: the image statistics alone separated every shift best (AUROC
0.95-1.00 for all but a second galaxy pasted beside the first, which no candidate caught well),
the embedding scores missed blank sky, band swaps and JPEG artefacts that the network is
insensitive to. Everything the score needs is fitted on training images only, so it is a fixed
function of an image when the calibration starts.

The p-value is split-conformal: the scores of the validation galaxies (used neither to fit the
weights nor for the test score) are kept, sorted, in the model file, and
``domain_p = (1 + #{calibration scores >= score}) / (n + 1)``. For a galaxy exchangeable with the
validation galaxies, ``P(domain_p <= alpha) <= alpha``: at most a fraction alpha of in-domain
galaxies are flagged, which the workflow checks on the test split. The smallest p-value ``n``
calibration galaxies can give is ``1 / (n + 1)``: with fewer than ``1 / alpha - 1`` of them
nothing can be flagged at that alpha (:func:`check_alpha` says so).

What it is not: a test of the image, not of the physics. An AGN or a shocked galaxy that looks
like a star-forming galaxy of the training set is in the domain; the metallicity of such a galaxy
is not what the model learnt, and ``in_domain`` does not say so. Nor does it see everything a
network may be sensitive to: it compares the statistics above.

The block stored in the model file (:mod:`galmet.modelfile`, key ``domain``; plain tensors,
floats and strings, loadable with ``weights_only=True``, a few kilobytes): ``version``,
``score``, ``stat_names``, ``resolution``, ``stats_loc``, ``stats_scale`` (``S``),
``stats_precision`` (``S x S``), ``scores`` (sorted float64 calibration scores), ``split``,
``n`` (calibration galaxies), ``n_reference`` (training images fitted).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from galmet.imaging import bring_to_resolution

log = logging.getLogger("galmet.domain")

VERSION = 1
#: training images the statistics are fitted on, at most (a random subsample beyond that).
MAX_REFERENCE = 20000
SCORE = "Mahalanobis distance of image statistics from the training images'"
STAT_NAMES = ("colour_rg", "colour_gb", "chroma", "sky_colour_rg", "sky_colour_gb", "central_brightness",
              "concentration", "size", "asymmetry", "off_centre_peak", "sky_level", "sky_noise", "fine_structure",
              "channel_correlation")

__all__ = ["VERSION", "MAX_REFERENCE", "STAT_NAMES", "image_statistics", "fit_stats",
           "stats_distance", "fit", "scores", "p_values", "check_alpha", "columns", "flagged_summary", "shift_check"]


# ----------------------------------------------------------------------------- image statistics


def _ring(x: np.ndarray) -> np.ndarray:
    """The outermost ring of pixels of ``N x H x W x C``: ``N x P x C``."""
    return np.concatenate([x[:, 0], x[:, -1], x[:, 1:-1, 0], x[:, 1:-1, -1]], axis=1)


def _radius(res: int) -> np.ndarray:
    c = (res - 1) / 2
    yy, xx = np.mgrid[:res, :res]
    return np.hypot(yy - c, xx - c)


def image_statistics(x_uint8_nhwc: np.ndarray) -> np.ndarray:
    """Float64 ``N x S`` statistics (:data:`STAT_NAMES`) of uint8 ``N x res x res x 3`` images.

    Sky = median of the border ring per channel, noise = its MAD; fluxes are sky-subtracted, in
    units of the full 0..255 range. The galaxy's colours (flux-weighted over the pixels brighter
    than the sky by twice its noise, within res/2 of the centre) and chroma (their mean spread
    between channels over their brightness), the sky's colours, central brightness,
    concentration (flux within res/8 over flux within res/2), flux-weighted radius over the
    width, 180-degree asymmetry, brightest off-centre pixel over the central mean, sky level and
    noise, fine structure (mean |pixel - 3x3 mean| over the noise) and the correlation of the
    first and last channel.
    """
    x = np.asarray(x_uint8_nhwc, dtype=np.float64) / 255.0
    n, res = len(x), x.shape[1]
    ring = _ring(x)
    sky = np.median(ring, axis=1)  # N x C
    noise = 1.4826 * np.median(np.abs(ring - sky[:, None]), axis=1) + 1e-3  # N x C
    f = x - sky[:, None, None]
    r = _radius(res)
    centre, inner, frame = r <= max(res / 8, 1), r <= res / 2, r > res / 4
    frame |= not frame.any()  # 1 px: no pixel off the centre, the image is its own frame
    lum = f.mean(axis=3)
    pos = np.clip(lum, 0, None)
    gal = (lum > 2 * noise.mean(axis=1)[:, None, None]) & inner  # N x H x W
    gal[:, centre] |= ~gal.any(axis=(1, 2))[:, None]  # no bright pixel: the centre stands in
    w = gal[..., None] * np.clip(f, 0, None)
    fl = w.sum(axis=(1, 2)) + 1e-6  # N x C
    tot = fl.sum(axis=1)
    spread = (gal * np.abs(f - lum[..., None]).mean(axis=3)).sum(axis=(1, 2))
    chroma = spread / (gal * np.abs(lum)).sum(axis=(1, 2)).clip(1e-6)
    sky_tot = sky.sum(axis=1) + 1e-3
    flux_in = pos[:, inner].sum(axis=1) + 1e-6
    conc = pos[:, centre].sum(axis=1) / flux_in
    size = np.sqrt((pos * r ** 2).sum(axis=(1, 2)) / (pos.sum(axis=(1, 2)) + 1e-6)) / res
    asym = np.abs(lum - lum[:, ::-1, ::-1]).sum(axis=(1, 2)) / (np.abs(lum).sum(axis=(1, 2)) + 1e-6)
    peak_out = lum[:, frame].max(axis=1) / (np.abs(lum[:, centre].mean(axis=1)) + 1e-3)
    # below 3 px no pixel has a full 3 x 3 neighbourhood: no fine structure to measure
    interior = np.abs(lum - _box3(lum))[:, 1:-1, 1:-1]
    fine = (interior.mean(axis=(1, 2)) if interior.size else np.zeros(n)) / noise.mean(axis=1)
    a, b = x[..., 0].reshape(n, -1), x[..., 2].reshape(n, -1)
    a, b = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
    corr = (a * b).sum(axis=1) / (np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1)) + 1e-9)
    return np.stack([(fl[:, 0] - fl[:, 1]) / tot, (fl[:, 1] - fl[:, 2]) / tot, np.log10(chroma + 1e-3),
                     (sky[:, 0] - sky[:, 1]) / sky_tot, (sky[:, 1] - sky[:, 2]) / sky_tot,
                     f[:, centre].mean(axis=(1, 2)), conc, size, asym,
                     np.log10(np.clip(peak_out, 1e-3, None) + 1), sky.mean(axis=1),
                     np.log10(noise.mean(axis=1)), np.log10(fine + 1e-3), corr], axis=1)


def _box3(img: np.ndarray) -> np.ndarray:
    """3 x 3 mean filter of ``N x H x W`` (edges replicated)."""
    p = np.pad(img, ((0, 0), (1, 1), (1, 1)), mode="edge")
    h, w = img.shape[1:]
    return sum(p[:, i:i + h, j:j + w] for i in range(3) for j in range(3)) / 9.0


def fit_stats(stats: np.ndarray, ridge: float = 1e-3) -> dict:
    """Robust location and scale and the ridge-regularised precision matrix of training
    statistics ``N x S``: what :func:`stats_distance` needs."""
    loc = np.median(stats, axis=0)
    scale = 1.4826 * np.median(np.abs(stats - loc), axis=0)
    scale = np.where(scale > 1e-9, scale, stats.std(axis=0) + 1e-9)
    z = (stats - loc) / scale
    cov = np.cov(z, rowvar=False) if len(z) > 1 else np.eye(z.shape[1])
    cov = np.atleast_2d(cov) + ridge * np.eye(z.shape[1]) + 1e-2 * np.diag(np.diag(np.atleast_2d(cov)))
    return {"loc": loc, "scale": scale, "precision": np.linalg.inv(cov)}


def stats_distance(stats: np.ndarray, fitted: dict) -> np.ndarray:
    """Mahalanobis distance of each row of ``stats`` under :func:`fit_stats`'s fit."""
    z = (np.asarray(stats, np.float64) - np.asarray(fitted["loc"])) / np.asarray(fitted["scale"])
    return np.sqrt(np.maximum(np.einsum("ns,st,nt->n", z, np.asarray(fitted["precision"]), z), 0.0))


# ----------------------------------------------------------------------------- fit, score, p-value


def _at(x_uint8_nhwc, res: int) -> np.ndarray:
    return bring_to_resolution(np.ascontiguousarray(x_uint8_nhwc), int(res))


def _statistics(x_uint8_nhwc, res: int, chunk: int = 4096) -> np.ndarray:
    """:func:`image_statistics` of images brought to ``res``, a chunk at a time (memory-mapped stores)."""
    parts = [image_statistics(_at(x_uint8_nhwc[s:s + chunk], res)) for s in range(0, len(x_uint8_nhwc), chunk)]
    return np.concatenate(parts) if parts else np.empty((0, len(STAT_NAMES)))


def fit(x_train, x_valid, res: int, max_reference: int = MAX_REFERENCE, seed: int = 0, split: str = "valid") -> dict:
    """The model file's ``domain`` block: the statistics of the training images (uint8
    ``N x H x W x 3``, memory-mapped is fine; at most ``max_reference`` of them, drawn with
    ``seed``) and the calibration scores of the validation images, both at the model's ``res``."""
    if len(x_valid) == 0:
        raise ValueError("no validation images: the applicability-domain test is calibrated on the validation "
                         "split; give it galaxies (split.fractions)")
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(x_train), size=min(len(x_train), int(max_reference)), replace=False))
    st = fit_stats(_statistics(x_train[idx] if len(idx) < len(x_train) else x_train, res))
    block = {"version": VERSION, "score": SCORE, "stat_names": list(STAT_NAMES), "resolution": int(res),
             "stats_loc": torch.as_tensor(st["loc"]), "stats_scale": torch.as_tensor(st["scale"]),
             "stats_precision": torch.as_tensor(st["precision"]), "n_reference": int(len(idx)), "split": str(split)}
    cal = scores(block, x_valid)
    cal = cal[np.isfinite(cal)]
    block.update(scores=torch.as_tensor(np.sort(cal), dtype=torch.float64), n=int(len(cal)))
    log.info("domain: statistics of %d training images; %d %s galaxies calibrate domain_p (smallest p %.4f)",
             len(idx), len(cal), split, 1 / (len(cal) + 1))
    return block


def scores(block: dict, x_uint8_nhwc) -> np.ndarray:
    """The domain score of each image (high = unlike the training images)."""
    st = {"loc": block["stats_loc"].numpy(), "scale": block["stats_scale"].numpy(),
          "precision": block["stats_precision"].numpy()}
    return stats_distance(_statistics(x_uint8_nhwc, int(block["resolution"])), st)


def p_values(block: dict, score) -> np.ndarray:
    """Conformal p-values ``(1 + #{calibration scores >= s}) / (n + 1)``."""
    cal = np.asarray(block["scores"], dtype=np.float64)
    s = np.asarray(score, dtype=np.float64)
    above = len(cal) - np.searchsorted(cal, s, side="left")
    p = (1.0 + above) / (len(cal) + 1.0)
    return np.where(np.isfinite(s), p, 0.0)


def check_alpha(block: dict, alpha: float) -> str | None:
    """A warning when ``n`` calibration galaxies cannot give a p-value as small as ``alpha``."""
    if not 0 < float(alpha) < 1:
        raise ValueError(f"domain alpha {alpha!r}: give a level between 0 and 1, e.g. 0.01")
    n = int(block["n"])
    if 1.0 / (n + 1) > float(alpha):
        return (f"domain_p cannot go below 1/(n+1) = {1 / (n + 1):.4f} with the {n} calibration galaxies of this "
                f"model, so alpha {alpha:g} flags nothing: use --domain-alpha {1 / (n + 1):.3g} or more, or "
                "calibrate on a larger validation split")
    return None


def columns(block: dict | None, x_uint8_nhwc, alpha: float) -> dict[str, np.ndarray]:
    """``{"domain_p", "in_domain"}`` of images (any size; nothing without a block)."""
    if block is None:
        return {}
    p = p_values(block, scores(block, x_uint8_nhwc))
    return {"domain_p": p, "in_domain": p >= float(alpha)}


# ----------------------------------------------------------------------------- the workflow's check


def flagged_summary(domain_p, alpha: float) -> dict:
    """How many galaxies of a set ``domain_p < alpha`` flags, beside what chance gives when all are
    in the domain: ``{"alpha", "n", "flagged", "fraction", "band", "inside"}``; ``band`` is the
    central 95% of the flagged fraction of ``n`` exchangeable galaxies (binomial at alpha) and
    ``inside`` says the fraction is not above it (the guarantee is an upper bound: with few
    calibration galaxies the p-values are coarse and flag fewer than alpha)."""
    from galmet.uncertainty import binomial_band

    p = np.asarray(domain_p, dtype=np.float64)
    n, k = int(len(p)), int(np.sum(p < float(alpha)))
    lo, hi = binomial_band(float(alpha), n)
    frac = k / n if n else float("nan")
    return {"alpha": float(alpha), "n": n, "flagged": k, "fraction": frac, "band": [lo, hi],
            "inside": bool(n and frac <= hi)}


def shift_check(block: dict, x_uint8_nhwc, alpha: float, seed: int = 0) -> dict:
    """``domain_p`` of galaxies (full-size cutouts, e.g. the test split) and of their shifted copies
    (:mod:`galmet.shifts`), with the flagged fraction of each set: the workflow's picture of what
    the test flags and what it lets through."""
    from galmet.shifts import SHIFTS, shift

    sets = {"as observed": np.asarray(x_uint8_nhwc)}
    sets.update({name: shift(name, sets["as observed"], seed=seed) for name in SHIFTS})
    out = {}
    for name, x in sets.items():
        p = p_values(block, scores(block, x))
        out[name] = {**flagged_summary(p, alpha), "domain_p": [float(v) for v in p]}
    return {"alpha": float(alpha), "n_calibration": int(block["n"]), "min_p": 1.0 / (int(block["n"]) + 1),
            "sets": out}
