"""Shifted images: what a model meets outside its training images, made from real cutouts.

Each shift takes uint8 ``N x H x W x 3`` cutouts (a random generator where it draws) and gives
images of the same shape that a user could plausibly hand to the model: the test set of the
applicability-domain score (:mod:`galmet.domain`, ``benchmarks/domain_shift.py``) and of the
workflow's domain figure.

``band_reversed``     the colour planes in reverse order (a BGR composite, or g, r, i for i, r, g)
``larger_2x``         the central half of the frame blown up 2x: the galaxy twice as large
``smaller_2x``        the frame shrunk 2x into the middle of sky drawn from its own border: half as large
``blank_sky``         no galaxy: every pixel drawn from the image's own border (its sky)
``noise``             Gaussian noise (mean 128, sigma 48 per channel)
``grayscale``         the luminance in all three planes
``jpeg_q10``          re-encoded as JPEG at quality 10
``pasted_neighbour``  a second cutout, shrunk 2x, added off-centre beside the first (its sky removed)
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

SHIFTS = ("band_reversed", "larger_2x", "smaller_2x", "blank_sky", "noise", "grayscale", "jpeg_q10",
          "pasted_neighbour")

__all__ = ["SHIFTS", "shift"]


def _resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(img).resize(size, resample=Image.Resampling.BILINEAR), dtype=np.uint8)


def _border(img: np.ndarray) -> np.ndarray:
    """The outermost ring of pixels, ``P x 3``."""
    return np.concatenate([img[0], img[-1], img[1:-1, 0], img[1:-1, -1]])


def _sky(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A frame of the image's size whose pixels are drawn from its own border."""
    ring = _border(img)
    h, w = img.shape[:2]
    return ring[rng.integers(0, len(ring), size=h * w)].reshape(h, w, 3)


def _larger(img, rng):
    h, w = img.shape[:2]
    return _resize(img[h // 4:h // 4 + h // 2, w // 4:w // 4 + w // 2], (w, h))


def _smaller(img, rng):
    h, w = img.shape[:2]
    out = _sky(img, rng)
    out[h // 4:h // 4 + h // 2, w // 4:w // 4 + w // 2] = _resize(img, (w // 2, h // 2))
    return out


def _jpeg(img, rng, quality: int = 10):
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), dtype=np.uint8)


def _grayscale(img, rng):
    lum = np.asarray(Image.fromarray(img).convert("L"), dtype=np.uint8)
    return np.repeat(lum[..., None], 3, axis=2)


def _noise(img, rng):
    return np.clip(np.rint(rng.normal(128, 48, size=img.shape)), 0, 255).astype(np.uint8)


_ONE = {"band_reversed": lambda img, rng: img[..., ::-1].copy(), "larger_2x": _larger, "smaller_2x": _smaller,
        "blank_sky": _sky, "noise": _noise, "grayscale": _grayscale, "jpeg_q10": _jpeg}


def _paste(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n, h, w = images.shape[:3]
    out = images.astype(np.int16)
    partner = (np.arange(n) + 1 + rng.integers(0, max(n - 1, 1))) % max(n, 1)
    for i, j in enumerate(partner):
        small = _resize(images[j], (w // 2, h // 2)).astype(np.int16)
        small = np.clip(small - np.median(_border(images[j]), axis=0).astype(np.int16), 0, None)
        y0 = h // 2 - h // 4 + int(rng.integers(-h // 8, h // 8 + 1))
        x0 = w - w // 2  # the right half: centred at 3/4 of the width
        out[i, y0:y0 + h // 2, x0:x0 + w // 2] += small
    return np.clip(out, 0, 255).astype(np.uint8)


def shift(name: str, images: np.ndarray, seed: int = 0) -> np.ndarray:
    """The shift ``name`` (one of :data:`SHIFTS`) of uint8 ``N x H x W x 3`` images."""
    if name not in SHIFTS:
        raise ValueError(f"shift {name!r}: choose one of {', '.join(SHIFTS)}")
    images = np.asarray(images, dtype=np.uint8)
    rng = np.random.default_rng(seed)
    if name == "pasted_neighbour":
        return _paste(images, rng)
    return np.stack([_ONE[name](img, rng) for img in images]) if len(images) else images.copy()
