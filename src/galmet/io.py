"""Atomic file writes and small table I/O helpers shared by every stage.

A step that dies midway must never leave a half-written file under its final name: every
writer here writes to a temporary file in the same directory and renames it into place.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds.

    The temporary file keeps the final suffix (``.parquet``, ``.npy``...) so that libraries
    which choose a format by extension behave as for the final file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=suffix if suffix is not None else "".join(path.suffixes),
        dir=path.parent,
    )
    os.close(fd)
    tmp = Path(tmp)
    # mkstemp makes the file 0600; give it the permissions a plain open() would (umask)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(obj, path: str | os.PathLike) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike, missing_ok: bool = False):
    """The JSON value in ``path`` (the one JSON reader of galmet).

    A file that is not valid JSON raises ValueError naming it; a missing one FileNotFoundError.
    With ``missing_ok``, both give ``{}`` instead: for report captions, which Snakemake evaluates
    before their files exist.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        if missing_ok:
            return {}
        raise
    try:
        return json.loads(text)
    except ValueError as exc:
        if missing_ok:
            return {}
        raise ValueError(f"{path}: not valid JSON ({exc}); rerun the step that writes it, or delete it") from None


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a table as Parquet or CSV (by extension), atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        elif path.suffix == ".csv":
            df.to_csv(tmp, index=False)
        else:
            raise ValueError(f"{path}: unsupported table extension {path.suffix!r} (use .parquet or .csv)")


def read_table(path: str | os.PathLike, id_columns: tuple[str, ...] = ("objID", "specObjID")) -> pd.DataFrame:
    """Read a CSV or Parquet table; 64-bit id columns in a CSV are read as int64, never float."""
    path = Path(path)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        header = pd.read_csv(path, nrows=0).columns
        dtype = {c: "string" for c in id_columns if c in header}
        df = pd.read_csv(path, dtype=dtype)
        for c in dtype:
            df[c] = parse_ids(df[c], column=c, source=path)
        return df
    raise ValueError(f"{path}: unsupported table extension {path.suffix!r} (use .parquet or .csv)")


class IdError(ValueError):
    """An id column holds values that are not exact 64-bit integers."""


def parse_ids(values, column: str = "objID", source: str | os.PathLike = "table") -> pd.Series:
    """Parse SDSS ids to int64 exactly, refusing anything that went through a float.

    Accepts integer dtypes and strings of digits. A float column, or a string such as
    ``1.2376e+18`` or ``1237648702973411443.0``, is refused with the offending row named:
    a 19-digit id does not survive a float64 (53-bit mantissa).
    """
    s = pd.Series(values)
    if pd.api.types.is_integer_dtype(s.dtype):
        return s.astype("int64")
    if pd.api.types.is_float_dtype(s.dtype):
        raise IdError(
            f"{source}: column {column!r} was stored as floating point, so its 64-bit ids are "
            "rounded; re-export it as integers (in pandas read it with dtype={'objID': str})"
        )
    text = s.astype("string").str.strip()
    bad = ~text.fillna("").str.fullmatch(r"-?\d{1,19}")
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise IdError(
            f"{source}: row {i + 1} of column {column!r} is {text.iloc[i]!r}, not an integer id; "
            f"{int(bad.sum())} such rows. SDSS ids are 64-bit integers: export them as integers, "
            "not floats or scientific notation"
        )
    return text.astype("int64").rename(column)


def table_columns(path: str | os.PathLike) -> list[str]:
    """Column names of a CSV or Parquet table, without reading its rows."""
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        return list(pq.ParquetFile(path).schema_arrow.names)
    if path.suffix.lower() == ".csv":
        return list(pd.read_csv(path, nrows=0).columns)
    raise ValueError(f"{path}: unsupported table extension {path.suffix!r} (use .parquet or .csv)")


def iter_table_chunks(path: str | os.PathLike, columns: list[str], chunk_size: int):
    """Stream ``columns`` of a CSV or Parquet table, ``chunk_size`` rows at a time.

    Memory stays flat in the table's length. ``objID`` is parsed to exact int64 in every chunk
    (:func:`parse_ids`); other columns of a CSV are read as strings.
    """
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        frames = (b.to_pandas() for b in pq.ParquetFile(path).iter_batches(batch_size=chunk_size, columns=columns))
    elif path.suffix.lower() == ".csv":
        frames = pd.read_csv(path, usecols=columns, dtype={c: "string" for c in columns}, chunksize=chunk_size,
                             keep_default_na=False)
    else:
        raise ValueError(f"{path}: unsupported table extension {path.suffix!r} (use .parquet or .csv)")
    for df in frames:
        if "objID" in df:
            df["objID"] = parse_ids(df["objID"], column="objID", source=path).to_numpy()
        yield df
