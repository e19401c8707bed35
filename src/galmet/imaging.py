"""Images: JPEG decoding, the packed uint8 store, re-binning, and the 8 D4 symmetries.

Cutouts are decoded once into a compact store, a ``numpy`` array ``N x H x W x 3`` of uint8
(channels R, G, B = SDSS i, r, g) saved with ``np.save`` so that training memory-maps it and
never decodes a JPEG again. Lower resolutions are made by block averaging (re-binning), each
directly from the full-resolution store and rounded once to uint8.

The dihedral group D4 (rotations by multiples of 90 degrees, with and without a flip) acts on
torch tensors ``... x C x H x W``; element ``k`` in 0..7 is ``k % 4`` quarter turns, preceded by a
horizontal flip when ``k >= 4``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

D4_SIZE = 8


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


def load_store(path: str | os.PathLike, mmap: bool = True) -> np.ndarray:
    """Open a packed store (``N x H x W x 3`` uint8 ``.npy``), memory-mapped by default."""
    arr = np.load(path, mmap_mode="r" if mmap else None)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
        raise ImageError(f"{path}: not an image store (expected N x H x W x 3 uint8, got {arr.dtype} {arr.shape})")
    return arr


def d4(x, k: int):
    """Apply D4 element ``k`` (0..7) to a torch tensor ``... x C x H x W`` (H == W)."""
    import torch

    if not 0 <= k < D4_SIZE:
        raise ValueError(f"D4 element must be in 0..7, got {k}")
    if k >= 4:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k % 4, dims=(-2, -1))


def d4_inverse(k: int) -> int:
    """The element that undoes ``k``: rotations invert to the opposite turn, flips to themselves."""
    return (4 - k) % 4 if k < 4 else k


def d4_per_sample(x, ks):
    """Apply a (possibly different) D4 element to each sample of a batch ``N x C x H x W``.

    Vectorised: one masked assignment per group element, no Python loop over samples.
    ``ks`` is an integer tensor of length N with values in 0..7.
    """
    import torch

    ks = torch.as_tensor(ks, device=x.device)
    if ks.shape != (x.shape[0],):
        raise ValueError(f"need one D4 element per sample: {x.shape[0]} samples, got {tuple(ks.shape)}")
    out = torch.empty_like(x)
    for k in range(D4_SIZE):
        mask = ks == k
        if mask.any():
            out[mask] = d4(x[mask], k)
    return out


def pack_shard(manifest_path, index_path, store_path, rejected_path, size: int) -> int:
    """Decode the JPEGs of a cutout manifest (``objID, path``) into a store and its index.

    Images that fail to decode are left out and listed, with the reason, in ``rejected_path``
    (``objID,path,reason``). Returns the number of images stored.
    """
    import logging

    import pandas as pd

    from galmet.io import atomic_path, read_table, write_table

    log = logging.getLogger("galmet.imaging")
    manifest = read_table(manifest_path)
    for col in ("objID", "path"):
        if col not in manifest.columns:
            raise ValueError(f"{manifest_path}: cutout manifest lacks the column {col!r}")
    arr, kept, rejected = pack_images(manifest["path"], size, progress=True)
    bad = pd.DataFrame(
        {
            "objID": manifest["objID"].to_numpy()[[i for i, _ in rejected]].astype("int64"),
            "path": manifest["path"].to_numpy()[[i for i, _ in rejected]].astype(str),
            "reason": [r for _, r in rejected],
        }
    )
    for _, row in bad.iterrows():
        log.warning("rejected objID %s: %s", row.objID, row.reason)
    with atomic_path(store_path, suffix=".npy") as tmp:
        np.save(tmp, arr)
    write_table(pd.DataFrame({"objID": manifest["objID"].to_numpy()[kept].astype("int64")}), index_path)
    write_table(bad, rejected_path)
    log.info("packed %d images of %d px (%d rejected) into %s", len(kept), size, len(bad), store_path)
    return len(kept)


def rebin_store(in_path, out_path, res: int) -> None:
    """Write the block-averaged ``res`` px version of a store, in chunks (memory stays flat)."""
    import logging

    from galmet.io import atomic_path

    src = load_store(in_path)
    n = len(src)
    with atomic_path(out_path, suffix=".npy") as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, res, res, 3))
        chunk = 4096
        for start in range(0, n, chunk):
            out[start : start + chunk] = block_average(src[start : start + chunk], res)
        out.flush()
        del out
    logging.getLogger("galmet.imaging").info("re-binned %d images to %d px into %s", n, res, out_path)


class StoreView:
    """The images of several shard stores (memory-mapped), addressed by objID.

    Only the rows asked for are read: :meth:`take` reads them at once (sorted, per shard),
    :meth:`lazy` gives a sequence that reads each image when it is indexed.
    """

    def __init__(self, index_paths, store_paths):
        import pandas as pd

        self.stores, ids, shard, row = [], [], [], []
        for k, (index_path, store_path) in enumerate(zip(index_paths, store_paths, strict=True)):
            shard_ids = pd.read_parquet(index_path)["objID"].to_numpy(dtype=np.int64)
            store = load_store(store_path)
            if len(shard_ids) != len(store):
                raise ImageError(f"{store_path}: {len(store)} images but {index_path} lists {len(shard_ids)} ids")
            self.stores.append(store)
            ids.append(shard_ids)
            shard.append(np.full(len(shard_ids), k))
            row.append(np.arange(len(shard_ids)))
        self.index = pd.Index(np.concatenate(ids) if ids else np.empty(0, np.int64))
        self.shard = np.concatenate(shard) if shard else np.empty(0, int)
        self.row = np.concatenate(row) if row else np.empty(0, int)

    def positions(self, objids) -> np.ndarray:
        """Position of each id in the view, -1 for an id no store holds."""
        return self.index.get_indexer(np.asarray(objids, dtype=np.int64))

    def _located(self, objids) -> np.ndarray:
        pos = self.positions(objids)
        if (pos < 0).any():
            missing = np.asarray(objids, dtype=np.int64)[pos < 0]
            raise KeyError(f"{len(missing)} requested galaxies are in no image store, e.g. {list(missing[:5])}")
        return pos

    def take(self, objids) -> np.ndarray:
        """The images of ``objids``, in that order, as one uint8 array."""
        pos = self._located(objids)
        shape = self.stores[0].shape[1:] if self.stores else (1, 1, 3)
        out = np.empty((len(pos),) + shape, dtype=np.uint8)
        for k, store in enumerate(self.stores):
            sel = np.nonzero(self.shard[pos] == k)[0]
            if len(sel):
                rows = self.row[pos[sel]]
                order = np.argsort(rows)  # sorted rows keep memory-mapped reads sequential
                out[sel[order]] = store[rows[order]]
        return out

    def lazy(self, objids) -> _LazyImages:
        """A sequence of the images of ``objids`` that reads each one only when indexed."""
        pos = self._located(objids)
        return _LazyImages(self.stores, self.shard[pos], self.row[pos])


class _LazyImages:
    def __init__(self, stores, shard, row):
        self.stores, self.shard, self.row = stores, shard, row

    def __len__(self) -> int:
        return len(self.row)

    def __getitem__(self, i) -> np.ndarray:
        return np.asarray(self.stores[self.shard[i]][self.row[i]])


def gather(index_paths, store_paths, objids) -> np.ndarray:
    """Collect the images of ``objids`` (in that order) from several shard stores.

    Each shard's store is memory-mapped; only the requested rows are read. Raises KeyError
    naming the ids that no store holds.
    """
    return StoreView(index_paths, store_paths).take(objids)
