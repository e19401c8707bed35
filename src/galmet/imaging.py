"""Images as arrays: the one image reader (with its input guards) and re-binning.

Every image galmet takes from a user or a service goes through :func:`read_image`:
``galmet predict``, ``galmet explain``, the ``infer`` target and the workflow's packing of
cutouts. It decodes an image file into an ``H x W x 3`` uint8 array (channels R, G, B; for SDSS
cutouts the bands i, r, g) or raises :class:`ImageError`, whose ``code`` says why the image is
not used (the skipped logs carry ``code: detail``):

``unreadable``   the file cannot be read (missing, a directory, permissions)
``empty``        0 bytes
``undecodable``  not an image PIL can decode, or truncated
``too_large``    more pixels than ``max_pixels`` (default: the config's ``cutouts.max_pixels``,
                 4096 x 4096): refused from the header,
                 before the pixels are decoded, so a decompression bomb costs nothing
``not_colour``   a single-channel image (grayscale, 1-bit, 16- or 32-bit integer, float), or a
                 colour image whose three channels are equal everywhere: a colour model cannot
                 answer it. RGBA, LA-less palette (P), CMYK and YCbCr images are converted to RGB;
                 16-bit-per-channel colour PNGs are read at 8 bits per channel by PIL.
``too_small``    a side shorter than ``min_size`` (callers pass half the model's resolution: a
                 64 px model refuses images under 32 px rather than invent detail by upsampling)

Lower resolutions are made by block averaging (re-binning), rounded once to uint8;
:func:`to_resolution` brings an image of any size to a model's resolution. The stores built from
these arrays are :mod:`galmet.stores`; the D4 symmetries that act on them as torch tensors are
:mod:`galmet.augment`.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

#: file suffixes read as images (any case); other files in an images folder are named in the log.
IMAGE_SUFFIXES = (".jpg", ".jpeg")
#: the reasons an image is not used (``ImageError.code``).
REASONS = ("unreadable", "empty", "undecodable", "too_large", "not_colour", "too_small")
#: PIL modes converted to RGB; every other mode is single-channel (``not_colour``).
_COLOUR_MODES = ("RGB", "RGBA", "RGBX", "RGBa", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV")
#: an RGB image whose channels differ nowhere by more than this is a grayscale image in colour.
_GREY_TOLERANCE = 2


class ImageError(ValueError):
    """An image file could not be used; the message names the file and the reason.

    ``code`` is one of :data:`REASONS`; ``str(error)`` is ``"<file>: <code>: <detail>"``.
    """

    def __init__(self, source: str, code: str, detail: str):
        self.source, self.code, self.detail = str(source), code, detail
        super().__init__(f"{source}: {code}: {detail}")

    @property
    def reason(self) -> str:
        """``code: detail``, as the skipped logs write it."""
        return f"{self.code}: {self.detail}"


def max_pixels_or_default(max_pixels: int | None) -> int:
    """``max_pixels``, or the config's ``cutouts.max_pixels`` when None."""
    from galmet.config import default

    return int(default("cutouts.max_pixels") if max_pixels is None else max_pixels)


def read_image(path: str | os.PathLike, max_pixels: int | None = None, min_size: int = 1) -> np.ndarray:
    """Decode an image file fully into an ``H x W x 3`` uint8 RGB array, or raise
    :class:`ImageError` naming the file and the reason (see the module docstring). ``max_pixels``
    defaults to the config's ``cutouts.max_pixels``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(path, "unreadable", f"cannot read it ({exc.strerror or type(exc).__name__})") from None
    return decode_image(data, source=str(path), max_pixels=max_pixels, min_size=min_size)


def decode_image(data: bytes, source: str = "image", max_pixels: int | None = None, min_size: int = 1) -> np.ndarray:
    """Decode image bytes fully (a truncated JPEG is an error, not a grey band), with the guards
    of :func:`read_image`."""
    max_pixels = max_pixels_or_default(max_pixels)
    if not data:
        raise ImageError(source, "empty", "the file has 0 bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                _check_header(im, source, int(max_pixels), int(min_size))
                im.load()  # decodes everything: raises on truncated data
                rgb = np.asarray(im if im.mode == "RGB" else im.convert("RGB"), dtype=np.uint8).copy()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(source, "too_large", f"PIL refuses it as a decompression bomb ({exc})") from None
    except ImageError:  # the header's verdict (_check_header)
        raise
    except UnidentifiedImageError:
        raise ImageError(source, "undecodable", "not an image file PIL can read (JPEG, PNG, ...)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(source, "undecodable", f"damaged or truncated ({exc})") from None
    if channels_equal(rgb):
        what = (f"every pixel has the same value ({rgb.reshape(-1)[0]})" if rgb.min() == rgb.max() else
                "its three colour channels are equal: a grayscale image saved as colour")
        raise ImageError(source, "not_colour", f"{what}, which a colour model cannot answer")
    return rgb


def _check_header(im: Image.Image, source: str, max_pixels: int, min_size: int) -> None:
    w, h = im.size
    if w * h > max_pixels:
        raise ImageError(source, "too_large", f"{w} x {h} px = {w * h:,} pixels, over the limit of {max_pixels:,} "
                         "(--max-pixels, config cutouts.max_pixels); a cutout is a few hundred pixels across")
    if im.mode not in _COLOUR_MODES:
        raise ImageError(source, "not_colour", f"a single-channel image (PIL mode {im.mode}): a colour model "
                         "cannot answer it; give three-band colour cutouts")
    if min(w, h) < min_size:
        raise ImageError(source, "too_small", f"{w} x {h} px, under the {min_size} px this model needs (half its "
                         "input size): too little detail to answer")


def check_pixels(img: np.ndarray, min_size: int = 1, source: str = "array") -> None:
    """The guards of :func:`read_image` for an image given as an ``H x W x 3`` uint8 array:
    :class:`ImageError` ``too_small`` (a side under ``min_size``) or ``not_colour`` (three equal
    channels)."""
    h, w = img.shape[:2]
    if min(h, w) < min_size:
        raise ImageError(source, "too_small", f"{w} x {h} px, under the {min_size} px this model needs (half "
                         "its input size): too little detail to answer")
    if channels_equal(img):
        raise ImageError(source, "not_colour", "its three colour channels are equal: a grayscale image, which a "
                         "colour model cannot answer")


def channels_equal(rgb: np.ndarray) -> bool:
    """Whether an RGB image's three channels differ nowhere by more than a rounding (a grayscale image)."""
    if rgb.size == 0:
        return False
    c = rgb.astype(np.int16)
    return bool(max(np.abs(c[..., 0] - c[..., 1]).max(), np.abs(c[..., 1] - c[..., 2]).max()) <= _GREY_TOLERANCE)


def is_image_name(name: str) -> bool:
    """Whether a file name has one of :data:`IMAGE_SUFFIXES` (any case)."""
    return name.lower().endswith(IMAGE_SUFFIXES)


def block_average(images: np.ndarray, res: int) -> np.ndarray:
    """Re-bin ``N x H x W x C`` (or ``H x W x C``) uint8 images to ``res x res`` by block means.

    ``H`` and ``W`` must be multiples of ``res``; the mean of each block is rounded to the
    nearest integer, halves to the even one (``numpy.rint`` of the float64 mean, which is what
    the training images were made with). Computed in integers (block sums, then the rounded
    quotient), which gives exactly those numbers at a quarter of the float64 mean's time.
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
        k = fh * fw
        dtype = np.uint16 if k * 255 < 2 ** 16 else np.uint32
        total = np.zeros((n, res, res, c), dtype)
        for i in range(fh):
            for j in range(fw):
                total += arr[:, i::fh, j::fw]
        q, r = np.divmod(total, dtype(k))
        twice = r * dtype(2)
        q += (twice > k) | ((twice == k) & (q & 1).astype(bool))  # round half to even, as rint
        out = q.astype(np.uint8)
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


def bring_to_resolution(x: np.ndarray, res: int) -> np.ndarray:
    """``N x H x W x 3`` uint8 at the model's ``res`` (unchanged when already there)."""
    if x.shape[1:3] == (res, res):
        return x
    return np.stack([to_resolution(np.asarray(img), res) for img in x]) if len(x) else \
        np.empty((0, res, res, 3), np.uint8)


def pack_images(
    paths: Iterable[str | os.PathLike], size: int, progress: bool = False, max_pixels: int | None = None
) -> tuple[np.ndarray, list[int], list[tuple[int, str]]]:
    """Decode images into one ``N x size x size x 3`` uint8 array.

    Returns the array, the positions (in ``paths``) of the images it holds, and the rejected
    ones as ``(position, "code: detail")``. An image of another size is brought to ``size`` with
    :func:`to_resolution`; one that :func:`read_image` refuses (undecodable, over ``max_pixels``,
    single-channel, under ``size / 2`` px) is rejected, never stored. ``max_pixels`` defaults to
    the config's ``cutouts.max_pixels``.
    """
    max_pixels = max_pixels_or_default(max_pixels)
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
            img = read_image(path, max_pixels=max_pixels, min_size=(size + 1) // 2)
        except ImageError as exc:
            rejected.append((i, exc.reason))
            continue
        if img.shape[:2] != (size, size):
            img = to_resolution(img, size)
        out[len(kept)] = img
        kept.append(i)
    return out[: len(kept)], kept, rejected
