"""Images as arrays: JPEG decoding and re-binning (PIL and numpy, no files of the workflow).

A cutout decodes to an ``H x W x 3`` uint8 array (channels R, G, B; for SDSS cutouts the
bands i, r, g). Lower resolutions are made by block averaging (re-binning), rounded once to
uint8; :func:`to_resolution` brings an image of any size to a model's resolution.
The stores built from these arrays are :mod:`galmet.stores`; the D4 symmetries that act on
them as torch tensors are :mod:`galmet.augment`.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError


class ImageError(ValueError):
    """An image file could not be used; the message names the file and the reason."""


def read_jpeg(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file fully into an ``H x W x 3`` uint8 RGB array.

    Raises :class:`ImageError` naming the file for a missing, empty, truncated or otherwise
    undecodable file, so that a caller can skip it and record why.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return decode_jpeg_bytes(data, source=str(path))


def decode_jpeg_bytes(data: bytes, source: str = "image") -> np.ndarray:
    """Decode image bytes fully (a truncated JPEG is an error, not a grey band)."""
    if not data:
        raise ImageError(f"{source}: empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()  # decodes everything: raises on truncated data
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{source}: not a decodable image ({exc})") from None


def block_average(images: np.ndarray, res: int) -> np.ndarray:
    """Re-bin ``N x H x W x C`` (or ``H x W x C``) uint8 images to ``res x res`` by block means.

    ``H`` and ``W`` must be multiples of ``res``; the mean of each block is rounded to the
    nearest integer (half away from zero never matters: block means of integers are
    multiples of 1/block_size).
    """
    arr = np.asarray(images)
    single = arr.ndim == 3
    if single:
        arr = arr[None]
    n, h, w, c = arr.shape
    if h % res or w % res:
        raise ValueError(f"cannot re-bin {h}x{w} px images to {res} px: {res} does not divide both sizes")
    fh, fw = h // res, w // res
    if fh == 1 and fw == 1:
        out = arr.astype(np.uint8, copy=True)
    else:
        blocks = arr.reshape(n, res, fh, res, fw, c)
        out = np.rint(blocks.mean(axis=(2, 4), dtype=np.float64)).astype(np.uint8)
    return out[0] if single else out


def to_resolution(image: np.ndarray, res: int) -> np.ndarray:
    """Bring one ``H x W x 3`` uint8 image to ``res x res``.

    Block averaging when ``res`` divides the size (identical to the workflow's re-binning),
    area (box) resampling otherwise, so that images of any size can be given to a model.
    """
    h, w = image.shape[:2]
    if h % res == 0 and w % res == 0:
        return block_average(image, res)
    resized = Image.fromarray(image).resize((res, res), resample=Image.Resampling.BOX)
    return np.asarray(resized, dtype=np.uint8)


def pack_images(
    paths: Iterable[str | os.PathLike], size: int, progress: bool = False
) -> tuple[np.ndarray, list[int], list[tuple[int, str]]]:
    """Decode images into one ``N x size x size x 3`` uint8 array.

    Returns the array, the positions (in ``paths``) of the images it holds, and the rejected
    ones as ``(position, reason)``. An image of another size is brought to ``size`` with
    :func:`to_resolution`; an undecodable one is rejected, never stored.
    """
    paths = list(paths)
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    kept: list[int] = []
    rejected: list[tuple[int, str]] = []
    iterator = enumerate(paths)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, total=len(paths), desc="decode", unit="img", mininterval=2)
    for i, path in iterator:
        try:
            img = read_jpeg(path)
        except ImageError as exc:
            rejected.append((i, str(exc)))
            continue
        if img.shape[:2] != (size, size):
            img = to_resolution(img, size)
        out[len(kept)] = img
        kept.append(i)
    return out[: len(kept)], kept, rejected
