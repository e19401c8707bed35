"""The applicability domain: does an image look like the images the model was trained on?

galmet's intervals hold for galaxies like its calibration galaxies. Where a model is applied to
images unlike its training images (another survey, a galaxy far smaller in the frame, blank sky,
a grayscale or band-swapped composite, heavy JPEG compression) the guarantee is void, and a CNN
still answers with a confident number. Every prediction therefore carries a conformal p-value,
``domain_p``: how usual the image is for this model, relative to its labelled images, and
``in_domain = domain_p >= alpha``, at the level the model file records (:func:`default_alpha`:
the config's ``predict.domain_alpha`` when the model was trained, 0.05 by default).

The score (high = unusual) combines two tests of statistics of the image at the model's
resolution, each turned into a tail fraction of the reference images' values:

* the Mahalanobis distance of :func:`image_statistics` (the galaxy's and the sky's colours,
  chroma, central brightness, concentration, size, symmetry, the brightest off-centre pixel, sky
  level and noise, fine structure, channel correlation) from the reference images' (robust
  location and scale, ridge-regularised covariance): anything unlike the training images;
* the band order: a logistic discriminant between :func:`band_statistics` (log ratios of the
  first and second channel to the third of the galaxy's light, of the sky's pixel-to-pixel noise
  and of the sky level) of the reference images and of the same images with their channels
  reversed (computed from the ratios, no second pass). A BGR composite (OpenCV's order, or the
  bands mapped the wrong way round) is a likely mistake that the general distance misses for
  galaxies of near-neutral colour: the sky's noise ratio still gives it away.

``score = -min(tail_distance / (1 - BAND_WEIGHT), tail_band / BAND_WEIGHT)``, where a tail is
the fraction of reference values above the image's (negative beyond the largest, so that the
score keeps growing). Both and the weight were chosen on the validation split and on shifted
validation images (``benchmarks/domain_shift.py``) against the nearest-neighbour distance and the
Mahalanobis distance in the network's penultimate-layer embedding, the members' and TTA views'
disagreement: the embedding scores missed blank sky, band swaps and JPEG artefacts that the
network is insensitive to. None of it involves the network, so the test is the same for every
model of a resolution and costs a few milliseconds per thousand images.

**Calibration (cross-conformal).** The labelled galaxies (train and valid splits; at most
``MAX_IMAGES`` of them, drawn with the seed) are split into ``FOLDS`` folds; for each fold the
two tests are fitted on the other folds and the fold's galaxies are scored by that fit. A new
image is scored by each fold's fit ``k`` and
``domain_p = (1 + sum_k #{scores of fold k >= score_k(image)}) / (n + 1)`` (Vovk's
cross-conformal p-value, as in Barber et al.'s CV+). The score depends on the images alone, never
on their metallicities or on the network, so using the training images is as valid as using the
validation images; all of them together make the p-values ``n + 1`` steps fine instead of the
validation split's: the demo's 322 labelled galaxies give a smallest ``domain_p`` of 1/323
(the validation split alone gave 1/75, so 0.01 flagged nothing). Validity: for a galaxy
exchangeable with the labelled ones, ``P(domain_p <= alpha)`` is at most ``2 alpha`` in theory
and close to ``alpha`` in practice (Vovk 2015); ``tests/test_domain.py`` checks the false-flag
rate against the binomial band of alpha on exchangeable draws, and the workflow reports it on the
test split. An alpha at or below ``1 / (n + 1)`` could flag nothing and is refused
(:func:`check_alpha`, :func:`smallest_alpha`).

What it is not: a test of the image, not of the physics. An AGN or a shocked galaxy that looks
like a star-forming galaxy of the training set is in the domain; the metallicity of such a galaxy
is not what the model learnt, and ``in_domain`` does not say so. Nor does it see everything a
network may be sensitive to: a second galaxy pasted beside the first is rarely caught, and a
galaxy twice as large or small in the frame looks like a nearer or farther galaxy at 0.01.

The block stored in the model file (:mod:`galmet.modelfile`, key ``domain``; plain tensors,
floats and strings, loadable with ``weights_only=True``, some tens of kilobytes), version 2:
``version``, ``score``, ``stat_names``, ``band_names``, ``resolution``, ``folds`` (K),
``band_weight``, per fold ``stats_loc``, ``stats_scale`` (``K x S``), ``stats_precision``
(``K x S x S``), ``stats_grid``, ``band_grid`` (``K x GRID``: quantiles of the reference values),
``band_coef`` (``K x B``), ``band_intercept`` (``K``), then ``scores`` (the calibration scores,
each fold's sorted, concatenated), ``fold_sizes`` (``K``), ``n``, ``alpha`` (the level chosen
when it was fitted), ``smallest_alpha``, ``split`` and ``n_reference``. Version 1 blocks (one
Mahalanobis fit, validation scores only; galmet before cross-conformal calibration) still load
and predict as they did.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from galmet.imaging import bring_to_resolution

log = logging.getLogger("galmet.domain")

VERSION = 2
#: labelled images the test is fitted and calibrated on, at most (a random subsample beyond that).
MAX_IMAGES = 20000
#: folds of the cross-conformal calibration.
FOLDS = 10
#: the share of the level given to the band-order test (chosen on the validation split).
BAND_WEIGHT = 0.2
#: quantiles of the reference values kept per fold (the tail fractions are read from them).
GRID = 257
#: the level when the model file records none (version 1 blocks) and the schema's default.
DEFAULT_ALPHA = 0.05
SCORE = ("the Mahalanobis distance of image statistics and a band-order discriminant, as tail fractions of "
         "the labelled images' values (cross-conformal, galmet.domain)")
STAT_NAMES = ("colour_rg", "colour_gb", "chroma", "sky_colour_rg", "sky_colour_gb", "central_brightness",
              "concentration", "size", "asymmetry", "off_centre_peak", "sky_level", "sky_noise", "fine_structure",
              "channel_correlation")
BAND_NAMES = ("galaxy_ln_c0_c2", "galaxy_ln_c1_c2", "sky_noise_ln_c0_c2", "sky_noise_ln_c1_c2", "sky_ln_c0_c2",
              "sky_ln_c1_c2")

__all__ = ["VERSION", "MAX_IMAGES", "FOLDS", "BAND_WEIGHT", "DEFAULT_ALPHA", "STAT_NAMES", "BAND_NAMES",
           "DomainAlphaError", "image_statistics", "band_statistics", "fit_stats", "stats_distance", "fit",
           "fit_features", "scores", "feature_scores",
           "p_values", "domain_p", "smallest_alpha", "default_alpha", "check_alpha", "columns", "flagged_summary",
           "shift_check"]


class DomainAlphaError(ValueError):
    """An alpha the model's calibration cannot use (command lines exit 2 on it)."""


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
    lum = _channel_mean(f)
    pos = np.clip(lum, 0, None)
    gal = (lum > 2 * noise.mean(axis=1)[:, None, None]) & inner  # N x H x W
    gal[:, centre] |= ~gal.any(axis=(1, 2))[:, None]  # no bright pixel: the centre stands in
    fl = np.einsum("nhw,nhwc->nc", gal.astype(np.float64), np.clip(f, 0, None)) + 1e-6  # N x C
    tot = fl.sum(axis=1)
    spread = (gal * _channel_mean(np.abs(f - lum[..., None]))).sum(axis=(1, 2))
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


def _channel_mean(x: np.ndarray) -> np.ndarray:
    """``x.mean(axis=3)`` of ``N x H x W x 3``, to the same bits (numpy adds three values in order
    either way) in a third of the time."""
    return (x[..., 0] + x[..., 1] + x[..., 2]) / 3.0


def _box3(img: np.ndarray) -> np.ndarray:
    """3 x 3 mean filter of ``N x H x W`` (edges replicated)."""
    p = np.pad(img, ((0, 0), (1, 1), (1, 1)), mode="edge")
    h, w = img.shape[1:]
    return sum(p[:, i:i + h, j:j + w] for i in range(3) for j in range(3)) / 9.0


def band_statistics(x_uint8_nhwc: np.ndarray) -> np.ndarray:
    """Float64 ``N x 6`` statistics of the channel order (:data:`BAND_NAMES`) of uint8
    ``N x res x res x 3`` images: the natural log of the first and of the second channel over the
    third of the galaxy's light (pixels weighted by their brightness above the median of the
    outer frame), of the sky's noise (median plus clipped mean of the absolute differences of
    neighbouring pixels along the border ring) and of the sky level (median of the ring)."""
    x = np.asarray(x_uint8_nhwc, dtype=np.float64) / 255.0
    res = x.shape[1]
    ring = _ring(x)
    steps = np.abs(np.diff(ring, axis=1)) if ring.shape[1] > 1 else np.zeros_like(ring)
    noise = np.median(steps, axis=1) + np.minimum(steps, 0.05).mean(axis=1) + 1e-3  # N x C
    sky = np.median(ring, axis=1) + 2e-3
    r = _radius(res)
    outer = r > res / 2.5
    outer |= not outer.any()
    lum = _channel_mean(x)
    w = np.clip(lum - np.median(lum[:, outer], axis=1)[:, None, None], 0, None)
    light = np.einsum("nhw,nhwc->nc", w, x) / (w.sum(axis=(1, 2))[:, None] + 1e-9) + 1e-3
    return np.log(np.stack([light[:, 0] / light[:, 2], light[:, 1] / light[:, 2], noise[:, 0] / noise[:, 2],
                            noise[:, 1] / noise[:, 2], sky[:, 0] / sky[:, 2], sky[:, 1] / sky[:, 2]], axis=1))


def _reversed_band(band: np.ndarray) -> np.ndarray:
    """:func:`band_statistics` of the same images with their channels reversed: ln(c2/c0) = -ln(c0/c2)
    and ln(c1/c0) = ln(c1/c2) - ln(c0/c2), for each of the three pairs."""
    out = np.empty_like(band)
    for j in range(0, band.shape[1], 2):
        out[:, j], out[:, j + 1] = -band[:, j], band[:, j + 1] - band[:, j]
    return out


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


#: Pixels a side squared times images in one chunk of :func:`_features`: 64 images at 64 px, 16 at
#: 128 px (their float64 intermediates, some 6 MB a copy, stay in the CPU's cache: the fastest
#: chunk measured at 16 to 128 px; a thousand images at a time took 1.7x as long at 64 px, 3.5x
#: at 128 px).
CHUNK_PIXELS = 64 * 64 * 64


def _features(x_uint8_nhwc, res: int, chunk: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`image_statistics` and :func:`band_statistics` of images brought to ``res``, ``chunk``
    images at a time (default: :data:`CHUNK_PIXELS` pixels' worth); memory-mapped stores are read a
    chunk at a time. Each image's statistics do not depend on the others in its chunk, to the bit, except
    for an image alone (numpy adds its pixels in another order: ~1e-15 apart), so a last chunk of
    one image joins the chunk before it."""
    chunk = max(2, CHUNK_PIXELS // (int(res) ** 2)) if chunk is None else int(chunk)
    stats, band = [np.empty((0, len(STAT_NAMES)))], [np.empty((0, len(BAND_NAMES)))]
    bounds = [*range(0, len(x_uint8_nhwc), chunk), len(x_uint8_nhwc)]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] == 1:
        del bounds[-2]
    for s, e in zip(bounds[:-1], bounds[1:]):
        x = _at(x_uint8_nhwc[s:e], res)
        stats.append(image_statistics(x))
        band.append(band_statistics(x))
    return np.concatenate(stats), np.concatenate(band)


def _tail(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The fraction of reference values above each value, read from their quantile ``grid``;
    beyond the largest it goes on below 0 in units of the grid's upper half-range."""
    levels = np.linspace(0.0, 1.0, len(grid))
    v = np.asarray(values, dtype=np.float64)
    top, mid = grid[-1], grid[len(grid) // 2]
    return (1.0 - np.interp(v, grid, levels)) - np.clip(v - top, 0, None) / max(top - mid, 1e-12)


def _fit_fold(stats: np.ndarray, band: np.ndarray) -> dict:
    """The two tests fitted on reference images' statistics: the Mahalanobis fit and the
    quantiles of its distances; the band-order discriminant and the quantiles of its values."""
    from sklearn.linear_model import LogisticRegression

    st = fit_stats(stats)
    flipped = _reversed_band(band)
    lr = LogisticRegression(C=1.0, max_iter=2000).fit(np.concatenate([band, flipped]),
                                                       np.r_[np.zeros(len(band)), np.ones(len(flipped))])
    q = np.linspace(0.0, 1.0, GRID)
    fold = {"loc": st["loc"], "scale": st["scale"], "precision": st["precision"],
            "coef": lr.coef_[0].astype(np.float64), "intercept": float(lr.intercept_[0])}
    fold["stats_grid"] = np.quantile(stats_distance(stats, fold), q)
    fold["band_grid"] = np.quantile(band @ fold["coef"] + fold["intercept"], q)
    return fold


def _fold_score(fold: dict, stats: np.ndarray, band: np.ndarray, weight: float) -> np.ndarray:
    """The combined score of one fold's fit (high = unusual; NaN where a statistic is not finite)."""
    d = _tail(stats_distance(stats, fold), np.asarray(fold["stats_grid"]))
    if weight <= 0:  # the statistics distance alone (benchmarks/domain_shift.py compares)
        return np.where(np.isfinite(stats).all(axis=1), -d, np.nan)
    b = _tail(band @ np.asarray(fold["coef"]) + float(fold["intercept"]), np.asarray(fold["band_grid"]))
    out = -np.minimum(d / (1.0 - weight), b / weight)
    return np.where(np.isfinite(stats).all(axis=1) & np.isfinite(band).all(axis=1), out, np.nan)


def _folds(block: dict) -> list[dict]:
    """Each fold's fit of a version 2 block as numpy arrays."""
    t = {k: np.asarray(block[k], dtype=np.float64) for k in ("stats_loc", "stats_scale", "stats_precision",
                                                               "stats_grid", "band_grid", "band_coef",
                                                               "band_intercept")}
    return [{"loc": t["stats_loc"][k], "scale": t["stats_scale"][k], "precision": t["stats_precision"][k],
             "stats_grid": t["stats_grid"][k], "band_grid": t["band_grid"][k], "coef": t["band_coef"][k],
             "intercept": t["band_intercept"][k]} for k in range(int(block["folds"]))]


def fit(x_train, x_valid, res: int, alpha: float = DEFAULT_ALPHA, max_images: int = MAX_IMAGES, folds: int = FOLDS,
        seed: int = 0, split: str = "train+valid") -> dict:
    """The model file's ``domain`` block: the two tests fitted and calibrated cross-conformally
    (``folds`` folds, fewer for fewer than ``2 * folds`` images) on the labelled images, uint8
    ``N x H x W x 3`` of the train and valid splits (memory-mapped is fine; at most ``max_images``
    of them together, drawn with ``seed``), at the model's ``res``; ``alpha``: the level the
    model's predictions use by default (refused when these images cannot reach it,
    :func:`check_alpha`)."""
    n_all = len(x_train) + len(x_valid)
    if n_all < 4:
        raise ValueError(f"{n_all} labelled images: the applicability-domain test needs at least 4 (train and "
                         "valid splits together) to be fitted and calibrated")
    folds = min(int(folds), n_all // 2)  # at least two galaxies a fold
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(n_all, size=min(n_all, int(max_images)), replace=False))
    parts = []
    for x, lo in ((x_train, 0), (x_valid, len(x_train))):
        idx = pick[(pick >= lo) & (pick < lo + len(x))] - lo
        if len(idx):
            parts.append(_features(x[idx] if len(idx) < len(x) else x, res))
    return fit_features(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), res, alpha,
                        folds, rng, split)


def fit_features(stats: np.ndarray, band: np.ndarray, res: int, alpha: float = DEFAULT_ALPHA, folds: int = FOLDS,
                 seed=0, split: str = "train+valid", band_weight: float = BAND_WEIGHT) -> dict:
    """:func:`fit` from the labelled images' :func:`image_statistics` and :func:`band_statistics`
    (rows with a statistic that is not finite are left out); ``seed``: an int or a numpy Generator;
    ``band_weight``: the band-order test's share of the level (0: the statistics distance alone)."""
    rng = np.random.default_rng(seed)
    ok = np.isfinite(stats).all(axis=1) & np.isfinite(band).all(axis=1)
    stats, band = stats[ok], band[ok]
    fold_of = rng.permutation(len(stats)) % folds
    fits, cal = [], []
    for k in range(folds):
        fits.append(_fit_fold(stats[fold_of != k], band[fold_of != k]))
        cal.append(np.sort(_fold_score(fits[-1], stats[fold_of == k], band[fold_of == k], band_weight)))
    n = int(sum(len(c) for c in cal))
    stack = lambda key: torch.as_tensor(np.stack([f[key] for f in fits]), dtype=torch.float64)  # noqa: E731
    block = {"version": VERSION, "score": SCORE, "stat_names": list(STAT_NAMES), "band_names": list(BAND_NAMES),
             "resolution": int(res), "folds": folds, "band_weight": float(band_weight),
             "stats_loc": stack("loc"), "stats_scale": stack("scale"), "stats_precision": stack("precision"),
             "stats_grid": stack("stats_grid"), "band_grid": stack("band_grid"), "band_coef": stack("coef"),
             "band_intercept": torch.as_tensor([f["intercept"] for f in fits], dtype=torch.float64),
             "scores": torch.as_tensor(np.concatenate(cal), dtype=torch.float64),
             "fold_sizes": torch.as_tensor([len(c) for c in cal], dtype=torch.int64), "n": n,
             "smallest_alpha": smallest_alpha(n), "split": str(split), "n_reference": n, "alpha": float(alpha)}
    check_alpha(block, alpha, option="predict.domain_alpha")
    log.info("domain: %d labelled images (%s) in %d folds calibrate domain_p (smallest p 1/%d = %.4f); "
             "in_domain at alpha %g by default", n, split, folds, n + 1, 1 / (n + 1), alpha)
    return block


def scores(block: dict, x_uint8_nhwc) -> np.ndarray:
    """The domain score of each image (high = unlike the labelled images): of a version 1 block,
    the Mahalanobis distance; of a version 2 block, ``N x K``, one column per fold's fit."""
    if int(block["version"]) < 2:
        st = {"loc": np.asarray(block["stats_loc"]), "scale": np.asarray(block["stats_scale"]),
              "precision": np.asarray(block["stats_precision"])}
        stats, _ = _features(x_uint8_nhwc, int(block["resolution"]))
        return stats_distance(stats, st)
    return feature_scores(block, *_features(x_uint8_nhwc, int(block["resolution"])))


def feature_scores(block: dict, stats: np.ndarray, band: np.ndarray) -> np.ndarray:
    """:func:`scores` (version 2, ``N x K``) from the images' statistics."""
    w = float(block["band_weight"])
    return np.stack([_fold_score(f, stats, band, w) for f in _folds(block)], axis=1).reshape(len(stats), -1)


def p_values(block: dict, score) -> np.ndarray:
    """Conformal p-values of :func:`scores`: ``(1 + #{calibration scores >= s}) / (n + 1)``, the
    count summed over the folds for a version 2 block (0 where the score is not finite)."""
    s = np.asarray(score, dtype=np.float64)
    cal = np.asarray(block["scores"], dtype=np.float64)
    if int(block.get("version", 1)) < 2:
        above = len(cal) - np.searchsorted(cal, s, side="left")
        p = (1.0 + above) / (len(cal) + 1.0)
        return np.where(np.isfinite(s), p, 0.0)
    sizes = np.asarray(block["fold_sizes"], dtype=np.int64)
    ends = np.cumsum(sizes)
    above = np.zeros(len(s))
    for k, (lo, hi) in enumerate(zip(ends - sizes, ends)):
        c = cal[lo:hi]
        above += len(c) - np.searchsorted(c, s[:, k], side="left")
    p = (1.0 + above) / (int(sizes.sum()) + 1.0)
    return np.where(np.isfinite(s).all(axis=1), p, 0.0)


def domain_p(block: dict, x_uint8_nhwc) -> np.ndarray:
    """``domain_p`` of images (any size): :func:`p_values` of :func:`scores`."""
    return p_values(block, scores(block, x_uint8_nhwc))


def smallest_alpha(n: int) -> float:
    """The smallest level, at three significant digits, that ``n`` calibration galaxies can use:
    ``domain_p`` is never below ``1 / (n + 1)`` and flags where ``domain_p < alpha``, so alpha
    must be above ``1 / (n + 1)``, strictly."""
    floor = 1.0 / (int(n) + 1)
    digits = 2 - int(np.floor(np.log10(floor)))
    value = np.ceil(floor * 10 ** digits) / 10 ** digits
    return float(value if value > floor else value + 10.0 ** -digits)


def default_alpha(block: dict | None) -> float:
    """The level a model's predictions use when none is given: the one its block records (the
    config's ``predict.domain_alpha`` when it was fitted), else :data:`DEFAULT_ALPHA`."""
    return float(block["alpha"]) if block is not None and "alpha" in block else DEFAULT_ALPHA


def check_alpha(block: dict, alpha: float, option: str = "--domain-alpha") -> None:
    """:class:`DomainAlphaError` when ``alpha`` is not a level, or when ``n`` calibration galaxies
    cannot give a p-value below it (nothing could be flagged): the message names the smallest
    usable value (:func:`smallest_alpha`) and ``option``, the caller's name for the level."""
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        a = float("nan")
    if not 0 < a < 1:
        raise DomainAlphaError(f"domain alpha {alpha!r}: give a level between 0 and 1, e.g. {DEFAULT_ALPHA}")
    n = int(block["n"])
    if a <= 1.0 / (n + 1):
        raise DomainAlphaError(
            f"domain alpha {a:g} flags nothing: the {n} calibration galaxies of this model give domain_p no "
            f"smaller than 1/{n + 1} = {1 / (n + 1):.4g}; use {option} {smallest_alpha(n):g} or more, or "
            "calibrate on more labelled galaxies")


def columns(block: dict | None, x_uint8_nhwc, alpha: float | None = None) -> dict[str, np.ndarray]:
    """``{"domain_p", "in_domain"}`` of images (any size; nothing without a block) at ``alpha``
    (default: the model's, :func:`default_alpha`)."""
    if block is None:
        return {}
    alpha = default_alpha(block) if alpha is None else float(alpha)
    p = domain_p(block, x_uint8_nhwc)
    return {"domain_p": p, "in_domain": p >= alpha}


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


def shift_check(block: dict, x_uint8_nhwc, alpha: float | None = None, seed: int = 0) -> dict:
    """``domain_p`` of galaxies (full-size cutouts, e.g. the test split) and of their shifted copies
    (:mod:`galmet.shifts`), with the flagged fraction of each set at ``alpha`` (default: the
    model's): the workflow's picture of what the test flags and what it lets through."""
    from galmet.shifts import SHIFTS, shift

    alpha = default_alpha(block) if alpha is None else float(alpha)

    sets = {"as observed": np.asarray(x_uint8_nhwc)}
    sets.update({name: shift(name, sets["as observed"], seed=seed) for name in SHIFTS})
    out = {}
    for name, x in sets.items():
        p = domain_p(block, x)
        out[name] = {**flagged_summary(p, alpha), "domain_p": [float(v) for v in p]}
    return {"alpha": float(alpha), "n_calibration": int(block["n"]), "min_p": 1.0 / (int(block["n"]) + 1),
            "sets": out}
