"""Image stores: the per-shard files of the workflow's image stage, and reading them by objID.

Cutouts are decoded once into a compact store, a ``numpy`` array ``N x H x W x 3`` of uint8
saved with ``np.save`` (``results/images/{shard}/{res}px.npy``) beside an index of objIDs in
row order, so that training memory-maps it and never decodes a JPEG again. Each lower
resolution is re-binned directly from the full-resolution store.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd

from galmet.imaging import ImageError, block_average, pack_images
from galmet.io import atomic_path
from galmet.tables import read_table, write_table

log = logging.getLogger("galmet.stores")


def load_store(path: str | os.PathLike, mmap: bool = True) -> np.ndarray:
    """Open a packed store (``N x H x W x 3`` uint8 ``.npy``), memory-mapped by default."""
    arr = np.load(path, mmap_mode="r" if mmap else None)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
        raise ImageError(f"{path}: not an image store (expected N x H x W x 3 uint8, got {arr.dtype} {arr.shape})")
    return arr


def pack_shard(manifest_path, index_path, store_path, rejected_path, size: int, max_pixels: int | None = None) -> int:
    """Decode the JPEGs of a cutout manifest (``objID, path``) into a store and its index.

    Images that :func:`galmet.imaging.read_image` refuses (undecodable, over ``max_pixels``,
    single-channel, under half of ``size``) are left out and listed, with the reason, in
    ``rejected_path`` (``objID,path,reason``). Returns the number of images stored.
    """
    manifest = read_table(manifest_path)
    for col in ("objID", "path"):
        if col not in manifest.columns:
            raise ValueError(f"{manifest_path}: cutout manifest lacks the column {col!r}")
    arr, kept, rejected = pack_images(manifest["path"], size, progress=True, max_pixels=max_pixels)
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
    src = load_store(in_path)
    n = len(src)
    with atomic_path(out_path, suffix=".npy") as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, res, res, 3))
        chunk = 4096
        for start in range(0, n, chunk):
            out[start : start + chunk] = block_average(src[start : start + chunk], res)
        out.flush()
        del out
    log.info("re-binned %d images to %d px into %s", n, res, out_path)


class StoreView:
    """The images of several shard stores (memory-mapped), addressed by objID.

    Only the rows asked for are read: :meth:`take` reads them at once (sorted, per shard),
    :meth:`lazy` gives a sequence that reads each image when it is indexed.
    """

    def __init__(self, index_paths, store_paths):
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
