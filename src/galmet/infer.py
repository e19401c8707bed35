"""Survey-scale inference: a trained model applied to a catalog of any size.

Three steps, each a workflow rule (``workflow/rules/infer.smk``, target ``infer``):

1. :func:`split_catalog` streams the catalog (CSV, Parquet, FITS, ECSV or VOTable: ``objID`` and optionally
   ``path``) once or twice and writes ``n`` shards of contiguous rows, ``objID, path`` each,
   the path resolved (catalog ``path`` column, else ``<images_dir>/<objID>.jpg``, else the
   cutout cache).
2. :func:`predict_shard` predicts one shard through the library's one prediction path (that of
   ``galmet predict --catalog`` and the notebook API: :mod:`galmet.inputs`,
   :func:`galmet.predict.predict_to_table`): it reads ``chunk_size`` images at a time, brings them
   to the model's resolution, predicts and appends to a Parquet file; images that cannot be read
   are skipped and listed with the reason. One job per shard, so an interrupted run resumes at the first shard not done.
3. :func:`gather` concatenates the shards' predictions, in catalog order, into one Parquet
   ``objID, prediction, model, galmet_version``, a row group at a time (a calibrated ensemble's
   interval columns ``p2p5, p16, p84, p97p5`` follow ``prediction``), or, with ``infer.format``,
   one CSV, FITS, ECSV or VOTable (:mod:`galmet.tables`; all rows at once). Each shard's Parquet
   carries the units and the provenance (:func:`galmet.tables.provenance`), and so does the result.

Memory is bounded by the chunk sizes, never by the number of galaxies.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq

from galmet.config import default
from galmet.io import atomic_path
from galmet.tables import TableFormatError, format_list, iter_table_chunks, table_columns

log = logging.getLogger("galmet.infer")

SHARD_SCHEMA = pa.schema([("objID", pa.int64()), ("path", pa.string())])
OUT_SCHEMA = pa.schema([
    ("objID", pa.int64()),
    ("prediction", pa.float64()),
    ("model", pa.dictionary(pa.int32(), pa.string())),
    ("galmet_version", pa.dictionary(pa.int32(), pa.string())),
])


class InferError(ValueError):
    """The inference inputs are unusable; the message says which and why."""


# ----------------------------------------------------------------------------- catalog


def _catalog_columns(catalog: Path) -> list[str]:
    try:
        return table_columns(catalog)
    except TableFormatError:
        raise InferError(f"infer.catalog {catalog}: use a {format_list()} table") from None


def iter_catalog(catalog: str | os.PathLike, chunk_size: int | None = None) -> Iterator[tuple[np.ndarray, list]]:
    """The catalog in chunks of rows (default: the config's ``infer.chunk_size``): ``(objID int64
    array, list of path str or None)``."""
    catalog = Path(catalog)
    chunk_size = int(default("infer.chunk_size") if chunk_size is None else chunk_size)
    if not catalog.is_file():
        raise InferError(f"infer.catalog {catalog}: no such file")
    names = _catalog_columns(catalog)
    if "objID" not in names:
        raise InferError(f"infer.catalog {catalog}: no objID column (columns: {', '.join(map(str, names))})")
    cols = ["objID"] + (["path"] if "path" in names else [])
    for df in iter_table_chunks(catalog, cols, chunk_size):
        ids = df["objID"].to_numpy(dtype=np.int64)
        if "path" in df:
            paths = [p if isinstance(p, str) and p else None for p in df["path"].tolist()]
        else:
            paths = [None] * len(ids)
        yield ids, paths


def count_rows(catalog: str | os.PathLike) -> int:
    """Rows of the catalog: from the Parquet footer, or one streaming pass over a CSV."""
    catalog = Path(catalog)
    if catalog.suffix.lower() == ".parquet":
        return pq.ParquetFile(catalog).metadata.num_rows
    return sum(len(ids) for ids, _ in iter_catalog(catalog))


def split_catalog(catalog, shard_paths, images_dir=None, cache_dir=None, chunk_size: int | None = None) -> list[int]:
    """Write ``len(shard_paths)`` shards of contiguous catalog rows (``objID, path``), reading the
    catalog ``chunk_size`` rows at a time (default: the config's ``infer.chunk_size``).

    The image of a row is its ``path`` when the catalog has one, else ``images_dir/<objID>.jpg``,
    else ``cache_dir/<objID>.jpg``. Returns the rows per shard.
    """
    n_shards = len(shard_paths)
    if n_shards < 1:
        raise InferError("infer.shards must be at least 1")
    total = count_rows(catalog)
    if total == 0:
        raise InferError(f"infer.catalog {catalog}: no rows")
    per_shard = math.ceil(total / n_shards)
    fallback = images_dir if images_dir else cache_dir
    counts = [0] * n_shards
    writers: list[pq.ParquetWriter | None] = [None] * n_shards
    with _atomic_many(shard_paths) as tmps:
        try:
            row = 0
            for ids, paths in iter_catalog(catalog, chunk_size):
                if any(p is None for p in paths):
                    if fallback is None:
                        raise InferError(
                            f"infer.catalog {catalog}: rows without a path and no infer.images_dir "
                            "or cutout cache to find <objID>.jpg in")
                    paths = [p if p is not None else os.path.join(str(fallback), f"{i}.jpg")
                             for p, i in zip(paths, ids.tolist())]
                start = 0
                while start < len(ids):
                    k = (row + start) // per_shard
                    stop = min(len(ids), (k + 1) * per_shard - row)
                    if writers[k] is None:
                        writers[k] = pq.ParquetWriter(tmps[k], SHARD_SCHEMA)
                    writers[k].write_table(pa.table({"objID": pa.array(ids[start:stop], pa.int64()),
                                                     "path": pa.array(paths[start:stop], pa.string())},
                                                    schema=SHARD_SCHEMA))
                    counts[k] += stop - start
                    start = stop
                row += len(ids)
        finally:
            for w in writers:
                if w is not None:
                    w.close()
        for k, w in enumerate(writers):
            if w is None:  # more shards than rows: an empty shard is still a valid file
                pq.write_table(SHARD_SCHEMA.empty_table(), tmps[k])
    log.info("split %d galaxies of %s into %d shards of up to %d", total, catalog, n_shards, per_shard)
    return counts


class _atomic_many:
    """atomic_path for several files: all renamed into place only if the block succeeds."""

    def __init__(self, paths):
        self.paths = [Path(p) for p in paths]
        self._cms = [atomic_path(p) for p in self.paths]

    def __enter__(self) -> list[Path]:
        return [cm.__enter__() for cm in self._cms]

    def __exit__(self, *exc):
        for cm in self._cms:
            cm.__exit__(*exc)
        return False


# ----------------------------------------------------------------------------- prediction


def model_label(model_path: str | os.PathLike, meta: dict, name: str | None = None) -> str:
    """``name`` if given, else ``<target>/<model directory>``, e.g. ``oh_p50/<model name>``."""
    if name:
        return str(name)
    model_path = Path(model_path)
    target = meta.get("target") or model_path.parent.parent.name
    return f"{target}/{model_path.parent.name}"


def predict_shard(shard_path, model, meta, out_path, skipped_path=None, tta: int | None = None,
                  batch_size: int | None = None, chunk_size: int | None = None, device="cpu",
                  allow_survey_mismatch: bool = False, model_path=None, alpha: float | None = None,
                  max_pixels: int | None = None) -> dict:
    """Predict every galaxy of one shard (``objID, path``) through the library's one prediction
    path, as ``galmet predict --catalog`` does (:class:`galmet.inputs.CatalogSource`,
    :func:`galmet.predict.prepare`, :func:`galmet.predict.predict_to_table`); write ``objID,
    prediction`` (Parquet) atomically, with a calibrated model's intervals and a model's
    ``domain_p``, ``in_domain`` at ``alpha`` (default: the model's, :func:`galmet.predict.domain_alpha`;
    out-of-domain rows keep their prediction, their interval bounds are empty).

    ``model, meta``: from :func:`galmet.modelfile.load`. First the ``cutouts.json`` of every
    image folder is checked against the model's training images
    (:func:`galmet.cutouts.manifest.check_survey`): another survey, band order or pixel scale raises
    :class:`galmet.cutouts.manifest.SurveyMismatchError` unless ``allow_survey_mismatch`` (then, as
    for folders without a manifest, a warning in the log; ``model_path`` names the model in the
    message and gives the table its provenance). Unreadable images and non-finite outputs are
    left out and listed in ``skipped_path`` (CSV ``objID,path,reason``); a shard whose images are
    all refused gives an empty table. ``tta``, ``batch_size`` and ``chunk_size`` default to the
    config's ``infer.tta``, ``infer.batch_size`` and ``infer.chunk_size``, ``max_pixels`` to
    ``cutouts.max_pixels``.
    Returns ``{"n_in", "n_predicted", "n_skipped", "n_out_of_domain", "domain", "seconds",
    "survey_notes", "skipped"}`` (``domain``: :meth:`galmet.predict.PredictionRun.domain_line`).
    """
    from galmet.config import default
    from galmet.inputs import CatalogSource, log_skipped
    from galmet.predict import predict_to_table, prepare

    tta, batch_size, chunk_size = (default(f"infer.{k}") if v is None else v for k, v in
                                   (("tta", tta), ("batch_size", batch_size), ("chunk_size", chunk_size)))
    t0 = time.perf_counter()
    source = CatalogSource(shard_path, None, chunk_size, what="shard")
    run = prepare(meta, source, model_path, int(tta), (), alpha, allow_survey_mismatch,
                  fix="infer.allow_survey_mismatch: true", logger="galmet.infer", alpha_option="infer.domain_alpha")
    predict_to_table(source, model, meta, out_path, run, model_path=model_path, batch_size=batch_size,
                     device=device, max_pixels=max_pixels,
                     progress=lambda n: log.info("%s: %d read, %d predicted, %d skipped", shard_path, n,
                                                 run.n_predicted, len(run.skipped)))
    if skipped_path is not None:
        with atomic_path(skipped_path) as tmp:
            pd.DataFrame(run.skipped, columns=["objID", "path", "reason"]).to_csv(tmp, index=False)
    log_skipped(run.skipped[:5], "galmet.infer")
    domain = run.log_domain(meta, "galmet.infer", prefix=f"{shard_path}: ")
    return {"n_in": run.n_seen, "n_predicted": run.n_predicted, "n_skipped": len(run.skipped),
            "n_out_of_domain": run.n_out_of_domain, "domain": domain, "seconds": time.perf_counter() - t0,
            "survey_notes": run.survey_notes, "skipped": run.skipped}


# ----------------------------------------------------------------------------- gathering


def gather(part_paths, out_path, model: str, version: str | None = None) -> int:
    """Concatenate shard predictions (in the given order) into one table with the model
    name and the galmet version. Columns after ``prediction`` in the
    parts (a calibrated ensemble's intervals, ``domain_p``, ``in_domain``) are kept, with their
    types. Parquet is written a row group at a time; another format of :mod:`galmet.tables`
    (by ``out_path``'s extension) from all rows at once. The units, descriptions and the
    provenance of the first part (:class:`galmet.predict.PredictionWriter`) are kept, with
    ``model`` as the model's name. Returns the number of rows."""
    if version is None:
        from galmet._version import __version__ as version
    from galmet.tables import column_info, parquet_schema, table_format

    part_paths = list(part_paths)
    first = pq.read_schema(part_paths[0]) if part_paths else None
    extra = [c for c in first.names if c not in ("objID", "prediction")] if first is not None else []
    schema = pa.schema([*OUT_SCHEMA][:2] + [first.field(c) for c in extra] + [*OUT_SCHEMA][2:])
    doc = json.loads((first.metadata or {}).get(b"galmet", b"null")) if first is not None else None
    prov = {**doc["provenance"], "model": model} if doc and doc.get("provenance") else None
    units, descriptions = column_info(prov["target"] if prov else None, schema.names)
    if prov is not None:
        schema = parquet_schema(schema, units, descriptions, prov)
    if table_format(out_path) != "parquet":
        return _gather_whole(part_paths, out_path, schema, model, str(version), (units, descriptions, prov))
    n = out_of_domain = 0
    with atomic_path(out_path) as tmp:
        with pq.ParquetWriter(tmp, schema) as writer:
            for part in part_paths:
                pf = pq.ParquetFile(part)
                for i in range(pf.num_row_groups):
                    t = pf.read_row_group(i, columns=["objID", "prediction", *extra])
                    k = t.num_rows
                    if k == 0:
                        continue
                    if "in_domain" in extra:
                        out_of_domain += k - int(pa.compute.sum(t.column("in_domain")).as_py() or 0)
                    writer.write_table(pa.table({
                        **{c: t.column(c).cast(schema.field(c).type) for c in ["objID", "prediction", *extra]},
                        "model": pa.DictionaryArray.from_arrays(pa.array(np.zeros(k, np.int32)), [model]),
                        "galmet_version": pa.DictionaryArray.from_arrays(pa.array(np.zeros(k, np.int32)),
                                                                         [str(version)]),
                    }, schema=schema))
                    n += k
    log.info("wrote %d predictions of %s to %s", n, model, out_path)
    if "in_domain" in extra:
        _log_domain(out_of_domain, n)
    return n


def _log_domain(out_of_domain: int, n: int) -> None:
    """The gathered table's count of out-of-domain rows, in the log."""
    log.log(logging.WARNING if out_of_domain else logging.INFO, "%d of %d predictions are out of the model's "
            "domain (in_domain false): their interval bounds are empty", out_of_domain, n)


def _gather_whole(part_paths, out_path, schema: pa.Schema, model: str, version: str, info) -> int:
    """:func:`gather` into a CSV, FITS, ECSV or VOTable (:func:`galmet.tables.write_table`)."""
    from galmet.tables import write_table

    cols = [c for c in schema.names if c not in ("model", "galmet_version")]
    parts = [pq.read_table(p, columns=cols) for p in part_paths]
    df = (pa.concat_tables([t.cast(pa.schema([schema.field(c) for c in cols])) for t in parts]).to_pandas()
          if parts else pd.DataFrame({c: pd.Series(dtype="float64") for c in cols}))
    df["model"], df["galmet_version"] = model, version
    write_table(df, out_path, *info)
    log.info("wrote %d predictions of %s to %s", len(df), model, out_path)
    if "in_domain" in df:
        _log_domain(int((~df["in_domain"].astype(bool)).sum()), len(df))
    return len(df)


__all__ = ["InferError", "iter_catalog", "count_rows", "split_catalog", "model_label",
           "predict_shard", "gather"]
