"""Prediction with a trained model, with test-time augmentation (TTA), and ``galmet predict``.

TTA averages the model's outputs over the first ``tta`` elements of the D4 group
(:func:`galmet.imaging.d4`: identity, the three quarter turns, then the same after a flip).
Images of another size than the model's are first brought to its resolution with
:func:`galmet.imaging.to_resolution` (block average when the size is a multiple, area
resampling otherwise), as the workflow's re-binning does.

Command line::

    galmet predict --model model.pt --images DIR --out predictions.csv [--tta | --no-tta]
    galmet predict --model model.pt --catalog galaxies.parquet [--images DIR] --out preds.parquet

With ``--images`` alone every ``DIR/*.jpg`` named ``<objID>.jpg`` is predicted; with
``--catalog`` (CSV/Parquet with ``objID`` and, without ``--images``, a ``path`` column; relative
paths are taken from the current directory) the catalog's galaxies are, read in chunks so that
memory stays flat for millions of rows. The output has the columns ``objID`` (exact int64) and
``prediction``; CSV or Parquet by the extension of ``--out``. An image that cannot be read is
skipped with a warning and listed, with the reason, in ``<out>.log``: never a NaN row.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import numpy as np
import torch

from galmet.imaging import D4_SIZE, ImageError, d4, read_jpeg, to_resolution
from galmet.model import build_model, normalisation_constants, to_input

log = logging.getLogger("galmet.predict")


class ModelFileError(ValueError):
    """A model file is missing or not a galmet model."""


def _device(device) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here: use 'auto' or 'cpu'")
    return torch.device(device)


def load_model(path, device="cpu"):
    """Load a ``model.pt`` written by :func:`galmet.train.train_model`: ``(model in eval mode, meta)``."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file (train one with the workflow, or check --model)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelFileError(f"{path}: not a loadable torch file ({exc})") from exc
    if not isinstance(obj, dict) or "state_dict" not in obj or "meta" not in obj:
        raise ModelFileError(f"{path}: not a galmet model file (expected a dict with state_dict and meta)")
    meta = obj["meta"]
    for key in ("arch", "resolution", "normalisation", "head"):
        if key not in meta:
            raise ModelFileError(f"{path}: model metadata lacks {key!r}; was it written by galmet.train?")
    head = meta["head"]
    model = build_model(meta["arch"], "none", hidden=int(head["hidden"]), dropout=tuple(head["dropout"]))
    model.load_state_dict(obj["state_dict"])
    dev = _device(device)
    model.to(dev).eval()
    if dev.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return model, meta


def bring_to_resolution(x: np.ndarray, res: int) -> np.ndarray:
    """``N x H x W x 3`` uint8 at the model's ``res`` (unchanged when already there)."""
    if x.shape[1:3] == (res, res):
        return x
    return np.stack([to_resolution(np.asarray(img), res) for img in x]) if len(x) else \
        np.empty((0, res, res, 3), np.uint8)


@torch.no_grad()
def predict_images(model, meta, x_uint8_nhwc, tta=8, batch_size=256, device="cpu") -> np.ndarray:
    """Predictions (float64, one per image) for uint8 ``N x H x W x 3`` images.

    ``tta``: number of D4 elements averaged (1 = none, 8 = all). The model is moved to
    ``device`` and put in eval mode. Batches of ``batch_size`` images run once per element.
    """
    tta = int(tta)
    if not 1 <= tta <= D4_SIZE:
        raise ValueError(f"tta={tta}: give the number of D4 symmetries to average, 1 to 8")
    x = x_uint8_nhwc
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected uint8 N x H x W x 3 images, got {x.dtype} {tuple(x.shape)}")
    dev = _device(device)
    model.to(dev).eval()
    res = int(meta["resolution"])
    norm = meta["normalisation"]
    scale, shift = normalisation_constants(norm["mean"], norm["std"], dev)
    amp = dev.type == "cuda"
    out = np.empty(len(x), dtype=np.float64)
    for s in range(0, len(x), int(batch_size)):
        chunk = bring_to_resolution(np.ascontiguousarray(x[s:s + int(batch_size)]), res)
        xb = torch.from_numpy(chunk)
        if dev.type == "cuda":
            xb = xb.pin_memory().to(dev, non_blocking=True)
        inp = to_input(xb.permute(0, 3, 1, 2), scale, shift)
        acc = torch.zeros(len(chunk), dtype=torch.float32, device=dev)
        for k in range(tta):
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                acc += model(d4(inp, k)).float()
        out[s:s + len(chunk)] = (acc / tta).double().cpu().numpy()
    return out


# ----------------------------------------------------------------------------- command line


def cli_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Predict with a trained galmet model on <objID>.jpg cutouts, with test-time "
        "augmentation. Output columns: objID, prediction (CSV or Parquet by the extension of --out); "
        "unreadable images are skipped and listed in <out>.log.",
    )
    p.add_argument("--model", required=True, help="model.pt written by the workflow's training")
    p.add_argument("--images", help="directory of <objID>.jpg; alone: predict every *.jpg in it")
    p.add_argument("--catalog", help="CSV/Parquet with an objID column (and path, without --images); read in chunks")
    p.add_argument("--out", required=True, help="output table, .csv or .parquet")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="average over the 8 D4 symmetries (default: the model's TTA setting)")
    p.add_argument("--batch-size", type=int, default=256, help="images per batch (default 256)")
    p.add_argument("--chunk-size", type=int, default=4096,
                   help="images read, predicted and written at a time (default 4096)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    return p


def _iter_directory(images: Path, chunk: int):
    """(objID or None, path) for every *.jpg of a directory, sorted by name, in chunks."""
    names = sorted(e.name for e in os.scandir(images) if e.is_file() and e.name.lower().endswith(".jpg"))
    for s in range(0, len(names), chunk):
        yield [(_objid_from_name(n), images / n) for n in names[s:s + chunk]]


def _objid_from_name(name: str):
    stem = name.rsplit(".", 1)[0]
    if stem.lstrip("-").isdigit() and len(stem.lstrip("-")) <= 19:
        try:
            return int(np.int64(int(stem)))
        except OverflowError:
            return None
    return None


def _iter_catalog(catalog: Path, images: Path | None, chunk: int):
    from galmet.io import iter_table_chunks, table_columns

    if catalog.suffix.lower() not in (".csv", ".parquet"):
        raise ValueError(f"--catalog {catalog}: use a .csv or .parquet table")
    _check_catalog_columns(catalog, table_columns(catalog), images)
    cols = ["objID"] + (["path"] if images is None else [])
    for df in iter_table_chunks(catalog, cols, chunk):
        ids = df["objID"].to_numpy(dtype=np.int64)
        if images is not None:
            paths = [images / f"{i}.jpg" for i in ids]
        else:
            paths = [Path(p) if isinstance(p, str) and p else None for p in df["path"].tolist()]
        yield [(int(i), p) for i, p in zip(ids, paths)]


def _check_catalog_columns(catalog: Path, names, images) -> None:
    if "objID" not in names:
        raise ValueError(f"--catalog {catalog}: no objID column (columns: {', '.join(map(str, names))})")
    if images is None and "path" not in names:
        raise ValueError(
            f"--catalog {catalog}: no path column; add one, or give --images DIR to read DIR/<objID>.jpg"
        )


class _Writer:
    """Streams rows to a CSV or Parquet file under a temporary name; renamed on success."""

    def __init__(self, tmp: Path, kind: str):
        self.tmp, self.kind = tmp, kind
        self.n = 0
        if kind == "csv":
            self.fh = open(tmp, "w", newline="")
            self.fh.write("objID,prediction\n")
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            self.schema = pa.schema([("objID", pa.int64()), ("prediction", pa.float64())])
            self.pw = pq.ParquetWriter(tmp, self.schema)

    def write(self, ids: np.ndarray, preds: np.ndarray) -> None:
        self.n += len(ids)
        if self.kind == "csv":
            self.fh.writelines(f"{int(i)},{float(p)!r}\n" for i, p in zip(ids, preds))
        else:
            import pyarrow as pa

            self.pw.write_table(pa.table({"objID": pa.array(ids, pa.int64()),
                                          "prediction": pa.array(preds, pa.float64())}, schema=self.schema))

    def close(self) -> None:
        if self.kind == "csv":
            self.fh.close()
        else:
            self.pw.close()


def cli_main(args) -> int:
    from galmet.io import atomic_path
    from galmet.logs import setup_logging

    if not logging.getLogger().handlers:
        setup_logging()
    out = Path(args.out)
    kind = {".csv": "csv", ".parquet": "parquet"}.get(out.suffix.lower())
    if kind is None:
        print(f"galmet predict: --out {out}: use a .csv or .parquet file name", file=sys.stderr)
        return 2
    if not args.images and not args.catalog:
        print("galmet predict: give --images DIR, --catalog FILE, or both", file=sys.stderr)
        return 2
    images = Path(args.images) if args.images else None
    if images is not None and not images.is_dir():
        print(f"galmet predict: --images {images}: not a directory", file=sys.stderr)
        return 2
    if args.batch_size < 1 or args.chunk_size < 1:
        print("galmet predict: --batch-size and --chunk-size must be >= 1", file=sys.stderr)
        return 2
    try:
        model, meta = load_model(args.model, args.device)
        if args.catalog:
            chunks = _iter_catalog(Path(args.catalog), images, args.chunk_size)
        else:
            chunks = _iter_directory(images, args.chunk_size)
    except (ModelFileError, ValueError, OSError) as exc:
        print(f"galmet predict: {exc}", file=sys.stderr)
        return 2
    default_tta = int(meta.get("tta", 8))
    if args.tta is None:
        tta = default_tta
    else:
        tta = (default_tta if default_tta > 1 else D4_SIZE) if args.tta else 1
    res = int(meta["resolution"])
    dev = str(next(model.parameters()).device)
    log.info("predicting %s (%s, %d px, TTA x%d) on %s", meta.get("target", "target"), meta["arch"], res, tta, dev)

    skipped: list[tuple[str, str, str]] = []
    n_seen = 0
    log_path = out.with_name(out.name + ".log")
    try:
        with atomic_path(out) as tmp:
            writer = _Writer(tmp, kind)
            try:
                for chunk in chunks:
                    ids, imgs = [], []
                    for oid, path in chunk:
                        n_seen += 1
                        if oid is None:
                            _skip(skipped, "", path, "file name is not <objID>.jpg with an integer objID")
                            continue
                        if path is None:
                            _skip(skipped, oid, "", "no path in the catalog")
                            continue
                        try:
                            img = read_jpeg(path)
                        except ImageError as exc:
                            _skip(skipped, oid, path, str(exc))
                            continue
                        ids.append(oid)
                        imgs.append(to_resolution(img, res) if img.shape[:2] != (res, res) else img)
                    if not ids:
                        continue
                    preds = predict_images(model, meta, np.stack(imgs), tta=tta,
                                           batch_size=args.batch_size, device=dev)
                    ok = np.isfinite(preds)
                    for oid in np.asarray(ids)[~ok]:
                        _skip(skipped, oid, "", "the model's output is not finite")
                    writer.write(np.asarray(ids, dtype=np.int64)[ok], preds[ok])
                    log.info("%d images read, %d predicted, %d skipped", n_seen, writer.n, len(skipped))
            finally:
                writer.close()
    except (ValueError, OSError) as exc:
        print(f"galmet predict: {exc}", file=sys.stderr)
        return 2
    with atomic_path(log_path) as tmp:
        with open(tmp, "w") as fh:
            fh.write(f"# galmet predict: model {args.model}, TTA x{tta}; {writer.n} predicted, "
                     f"{len(skipped)} skipped of {n_seen}\n")
            fh.write("objID\tpath\treason\n")
            for oid, path, reason in skipped:
                fh.write(f"{oid}\t{path}\t{reason}\n")
    log.info("wrote %d predictions to %s (%d skipped, listed in %s)", writer.n, out, len(skipped), log_path)
    if n_seen == 0:
        print("galmet predict: no images to predict (no *.jpg / empty catalog)", file=sys.stderr)
        return 1
    if writer.n == 0:
        print(f"galmet predict: none of the {n_seen} images could be used; see {log_path}", file=sys.stderr)
        return 1
    return 0


def _skip(skipped: list, oid, path, reason: str) -> None:
    log.warning("skipped %s: %s", path or oid, reason)
    skipped.append((str(oid), str(path), reason))


__all__ = ["load_model", "predict_images", "cli_parser", "cli_main", "ModelFileError"]
