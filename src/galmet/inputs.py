"""The images of a prediction: where they come from, and why one is skipped.

One owner of the inputs of ``galmet predict``, the workflow's ``infer`` target and the notebook
API (:meth:`galmet.api.Model.predict`): each builds an :class:`ImageSource` and hands it to
:func:`galmet.predict.predict_rows`. A source gives chunks of ``(keys, images, extra)``: the
images' names (``keys``, in the column :attr:`ImageSource.id_name`), a uint8
``n x res x res x 3`` array at the model's resolution, and the catalog columns kept beside them
(``extra``); every image it cannot use goes to :attr:`ImageSource.skipped` as
``(key, path, "code: detail")`` and costs the others nothing.

Sources (:func:`open_source` picks one for the API's ``images`` argument):

:class:`FolderSource`   every ``<objID>.jpg`` / ``.jpeg`` of a folder, sorted by name (``--images DIR``)
:class:`CatalogSource`  the rows of a table (any :data:`galmet.tables.FORMATS`) with ``objID`` and a
                        ``path`` column, or ``<images>/<objID>.jpg`` (``--catalog``, an ``infer`` shard)
:class:`PathsSource`    a list of image files (named ``<objID>.jpg``: keyed by objID, else by path)
:class:`ArraySource`    a uint8 ``N x H x W x 3`` array (keyed by ``ids=``, else by row ``index``)

The skip reasons (:data:`SKIP_CODES`): those of :func:`galmet.imaging.read_image` (a file) and
:func:`galmet.imaging.check_pixels` (an array), plus ``bad_objid`` (no positive 64-bit objID in the
file name or catalog row), ``no_path`` (a catalog row without an image path), ``not_an_image``
(a folder's file that is not a .jpg/.jpeg) and ``not_finite`` (the model's output is not a number).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from galmet.imaging import IMAGE_SUFFIXES, REASONS, ImageError, check_pixels, is_image_name, read_image, to_resolution

#: files of an images folder that are neither images nor worth a line in the log.
QUIET_FILES = ("cutouts.json",)
#: every reason an image is skipped, with its ``code: detail`` text where the source writes it.
SKIP_TEXT = {
    "bad_objid": "the file name or catalog row does not give an objID, a positive 64-bit integer "
                 "(images are named <objID>.jpg)",
    "no_path": "the catalog row has no path",
    "not_an_image": "not a .jpg/.jpeg file; galmet reads <objID>.jpg",
    "not_finite": "the model's output is not finite",
}
SKIP_CODES = (*REASONS, *SKIP_TEXT)


def skip_reason(code: str) -> str:
    """``code: detail`` of a reason of :data:`SKIP_TEXT`."""
    return f"{code}: {SKIP_TEXT[code]}"


def objid_from_name(name: str):
    """The objID of ``<objID>.jpg``: a positive 64-bit integer, else None."""
    stem = name.rsplit(".", 1)[0]
    if stem.isdigit() and len(stem) <= 19 and 0 < int(stem) <= np.iinfo(np.int64).max:
        return int(stem)
    return None


def list_directory(folder) -> tuple[list[str], list[str]]:
    """``(image names, other names)`` of a folder, sorted: images have a suffix of
    :data:`galmet.imaging.IMAGE_SUFFIXES` in any case; hidden files and ``cutouts.json`` are in
    neither list."""
    names = sorted(e.name for e in os.scandir(folder) if e.is_file() and not e.name.startswith("."))
    return ([n for n in names if is_image_name(n)],
            [n for n in names if not is_image_name(n) and n not in QUIET_FILES])


def image_path(images: Path, oid: int) -> Path:
    """``images/<objID>.jpg``, or the ``.jpeg`` / upper-case file when that is the one there."""
    first = images / f"{oid}.jpg"
    if not first.exists():
        for suffix in (s for base in IMAGE_SUFFIXES for s in (base, base.upper())):
            if (images / f"{oid}{suffix}").exists():
                return images / f"{oid}{suffix}"
    return first


def decode_rows(rows, res: int, skipped: list, max_pixels: int | None = None) -> tuple[list[int], np.ndarray]:
    """Decode ``(key, path)`` rows into one ``n x res x res x 3`` uint8 array through
    :func:`galmet.imaging.read_image` (at most ``max_pixels``, default the config's
    ``cutouts.max_pixels``; at least ``res / 2`` px a side). Returns the positions of the rows kept
    and the array; the others are appended to ``skipped`` as ``(key, path, "code: detail")``."""
    rows = list(rows)
    x = np.empty((len(rows), res, res, 3), dtype=np.uint8)
    kept: list[int] = []
    for i, (key, path) in enumerate(rows):
        try:
            img = read_image(path, max_pixels=max_pixels, min_size=(res + 1) // 2)
        except ImageError as exc:
            skipped.append((key, path, exc.reason))
            continue
        x[len(kept)] = img if img.shape[:2] == (res, res) else to_resolution(img, res)
        kept.append(i)
    return kept, x[: len(kept)]


class ImageSource:
    """Images in chunks, with the skip list (see the module docstring): what every source has.
    Each source's ``chunks(res, max_pixels)`` gives ``(keys, uint8 n x res x res x 3, {extra
    column: values})`` per chunk (:class:`FileSource` for files, :class:`ArraySource`)."""

    id_name = "objID"
    extra_names: tuple[str, ...] = ()

    def __init__(self, chunk_size: int | None = None):
        from galmet.config import default

        self.chunk = max(int(default("predict.chunk_size") if chunk_size is None else chunk_size), 1)
        self.skipped: list[tuple] = []
        self.n_seen = 0

    def image_dirs(self) -> list:
        """The folders whose ``cutouts.json`` says what the images are (the survey check)."""
        return []

    def empty_message(self) -> str:
        """Why nothing was seen, for a source without a single image."""
        return "no images"

    def _keys(self, keys) -> np.ndarray:
        return np.asarray(keys, dtype=str if self.id_name == "path" else np.int64)

    def skip(self, keys, reason: str) -> None:
        """Record ``keys`` as skipped (no path) for ``reason`` (``code: detail``)."""
        self.skipped += [(k.item() if isinstance(k, np.generic) else k, None, reason) for k in keys]

    def skipped_records(self) -> list[dict]:
        """The skipped images as ``{<id column>, "path", "reason"}`` rows (``path`` None for arrays)."""
        key = self.id_name
        return [{key: (None if k is None else (str(k) if key == "path" else int(k))),
                 "path": None if p is None else str(p), "reason": r} for k, p, r in self.skipped]


class FileSource(ImageSource):
    """A source of image files: subclasses give ``row_chunks()``, lists of ``(key or None, path or
    None, extra row or None)``; a row without a key is ``bad_objid``, one without a path ``no_path``,
    the files are decoded by :func:`decode_rows`."""

    def chunks(self, res: int, max_pixels: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, dict]]:
        """``(keys, uint8 n x res x res x 3, {extra column: values})`` per chunk of rows."""
        for rows in self.row_chunks():
            self.n_seen += len(rows)
            good = []
            for key, path, extra in rows:
                if key is None:
                    self.skipped.append((key, path, skip_reason("bad_objid")))
                elif path is None:
                    self.skipped.append((key, path, skip_reason("no_path")))
                else:
                    good.append((key, path, extra))
            kept, x = decode_rows([(k, p) for k, p, _ in good], res, self.skipped, max_pixels)
            rows_kept = [good[i] for i in kept]
            yield (self._keys([k for k, _, _ in rows_kept]), x,
                   {c: [e[c] for _, _, e in rows_kept] for c in self.extra_names})


class FolderSource(FileSource):
    """Every image of a folder, sorted by name; other files are skipped as ``not_an_image``."""

    def __init__(self, folder, chunk_size: int | None = None):
        super().__init__(chunk_size)
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise NotADirectoryError(f"{self.folder}: not a directory")
        self.names, others = list_directory(self.folder)
        self.skipped += [(None, self.folder / n, skip_reason("not_an_image")) for n in others]

    def image_dirs(self) -> list:
        return [self.folder]

    def empty_message(self) -> str:
        return f"no <objID>.jpg in {self.folder}"

    def row_chunks(self):
        for s in range(0, len(self.names), self.chunk):
            yield [(objid_from_name(n), self.folder / n, None) for n in self.names[s:s + self.chunk]]


class CatalogSource(FileSource):
    """The rows of a catalog table, read in chunks: ``objID`` and the ``path`` column, or
    ``images/<objID>.jpg`` when ``images`` is given; ``keep`` names catalog columns carried
    through to the output (ValueError naming the file and its columns when one is missing)."""

    def __init__(self, catalog, images=None, chunk_size: int | None = None, keep=(), what: str = "--catalog"):
        from galmet.tables import table_columns, table_format

        super().__init__(chunk_size)
        self.catalog, self.images, self.what = Path(catalog), None if images is None else Path(images), what
        table_format(self.catalog, what)
        if not self.catalog.is_file():
            raise FileNotFoundError(f"{what} {self.catalog}: no such file")
        names = table_columns(self.catalog)
        listed = f"(columns: {', '.join(map(str, names))})"
        if "objID" not in names:
            raise ValueError(f"{what} {self.catalog}: no objID column {listed}")
        if self.images is None and "path" not in names:
            raise ValueError(f"{what} {self.catalog}: no path column; add one, or give --images DIR to read "
                             "DIR/<objID>.jpg")
        missing = [c for c in keep if c not in names]
        if missing:
            raise ValueError(f"--keep {','.join(missing)}: not a column of {self.catalog} {listed}")
        self.extra_names = tuple(c for c in dict.fromkeys(keep) if c not in ("objID", "path"))

    def image_dirs(self) -> list:
        from galmet.cutouts.manifest import catalog_dirs

        return [self.images] if self.images is not None else catalog_dirs(self.catalog)

    def empty_message(self) -> str:
        return f"the catalog {self.catalog} is empty"

    def row_chunks(self):
        from galmet.tables import iter_table_chunks

        cols = ["objID", *(["path"] if self.images is None else []), *self.extra_names]
        for df in iter_table_chunks(self.catalog, cols, self.chunk):
            ids = df["objID"].to_numpy(dtype=np.int64)
            if self.images is not None:
                paths = [image_path(self.images, i) for i in ids]
            else:
                paths = [Path(p) if isinstance(p, str) and p else None for p in df["path"].tolist()]
            extra = df[list(self.extra_names)].to_dict("records") if self.extra_names else [None] * len(ids)
            yield [(int(i) if i > 0 else None, p, e) for i, p, e in zip(ids, paths, extra)]


class PathsSource(FileSource):
    """A list of image files: keyed by objID when every one is named ``<objID>.jpg``, else by path."""

    def __init__(self, paths, chunk_size: int | None = None):
        super().__init__(chunk_size)
        try:
            self.paths = [Path(p) for p in paths]
        except TypeError:
            raise TypeError(f"images: give a folder, a list of image paths or a uint8 N x H x W x 3 array, not "
                            f"{type(paths).__name__}") from None
        oids = [objid_from_name(p.name) for p in self.paths]
        self.id_name = "objID" if all(o is not None for o in oids) else "path"
        self.keys = oids if self.id_name == "objID" else [str(p) for p in self.paths]

    def image_dirs(self) -> list:
        return list(dict.fromkeys(p.parent for p in self.paths))

    def empty_message(self) -> str:
        return "the list of images is empty"

    def row_chunks(self):
        for s in range(0, len(self.paths), self.chunk):
            yield [(k, p, None) for k, p in zip(self.keys[s:s + self.chunk], self.paths[s:s + self.chunk])]


class ArraySource(ImageSource):
    """A uint8 ``N x H x W x 3`` array (one ``H x W x 3`` image is a batch of one), keyed by ``ids``
    (objIDs) or by row ``index``; each image passes :func:`galmet.imaging.check_pixels`."""

    def __init__(self, images: np.ndarray, ids=None, chunk_size: int | None = None):
        super().__init__(chunk_size)
        x = images[None] if images.ndim == 3 else images
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"images: expected uint8 N x H x W x 3 (or one H x W x 3) RGB, got {x.dtype} "
                             f"{tuple(images.shape)}; scale floats to 0..255 and convert with .astype(np.uint8)")
        if ids is not None and len(ids) != len(x):
            raise ValueError(f"ids: {len(ids)} objIDs for {len(x)} images; give one per image")
        self.array, self.id_name = x, "index" if ids is None else "objID"
        self.keys = np.arange(len(x)) if ids is None else np.asarray(ids, dtype=np.int64)

    def empty_message(self) -> str:
        return "the array holds no image"

    def chunks(self, res: int, max_pixels: int | None = None):
        for s in range(0, len(self.array), self.chunk):
            keys, out = [], []
            for key, img in zip(self.keys[s:s + self.chunk], self.array[s:s + self.chunk]):
                self.n_seen += 1
                try:
                    check_pixels(img, min_size=(res + 1) // 2, source="array")
                except ImageError as exc:
                    self.skipped.append((int(key), None, exc.reason))
                    continue
                keys.append(int(key))
                same = img.shape[:2] == (res, res)
                out.append(img if same else to_resolution(np.ascontiguousarray(img), res))
            yield (self._keys(keys), np.stack(out) if out else np.empty((0, res, res, 3), np.uint8), {})


def read_ahead(items: Iterator, depth: int = 1) -> Iterator:
    """The items of ``items``, produced by a background thread ``depth`` items ahead of the
    consumer: the next chunk of images is decoded while the network predicts this one (PIL's
    decoder and torch's kernels release the GIL). An exception of the producer is raised in the
    consumer at the item it would have been; a consumer that stops early (an error, Ctrl-C)
    stops the producer after the item it is on."""
    q: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("done", None))
        except BaseException as exc:  # noqa: BLE001 (handed to the consumer, which raises it)
            put(("error", exc))

    thread = threading.Thread(target=produce, name="galmet-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "done":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()


def open_source(images, ids=None, chunk_size: int | None = None) -> ImageSource:
    """The source of the notebook API's ``images``: a folder, one image file, a list of paths or a
    uint8 array (``ids``: the objIDs of an array's rows)."""
    if isinstance(images, (str, os.PathLike)) and not Path(images).exists():
        raise FileNotFoundError(f"images: {images} is neither a folder nor an image file")
    if ids is not None and not isinstance(images, np.ndarray):
        raise ValueError("ids: give objIDs only with an array of images; a file's objID is its name, <objID>.jpg")
    if isinstance(images, (str, os.PathLike)) and Path(images).is_dir():
        return FolderSource(images, chunk_size)
    if isinstance(images, np.ndarray):
        return ArraySource(images, ids, chunk_size)
    if isinstance(images, (str, os.PathLike)):
        images = [images]  # one file (a missing one is skipped as unreadable, as on the command line)
    return PathsSource(images, chunk_size)


def log_skipped(skipped, logger: str) -> None:
    """One warning per skipped image (logger ``logger``)."""
    log = logging.getLogger(logger)
    for key, path, reason in skipped:
        log.warning("skipped %s: %s", path or key, reason)


__all__ = ["read_ahead", "QUIET_FILES", "SKIP_TEXT", "SKIP_CODES", "skip_reason", "objid_from_name", "list_directory",
           "image_path", "decode_rows", "ImageSource", "FileSource", "FolderSource", "CatalogSource", "PathsSource",
           "ArraySource", "open_source", "log_skipped"]
