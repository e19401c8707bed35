"""Atomic file writes and JSON, shared by every stage (tables: :mod:`galmet.tables`, their one owner).

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


__all__ = ["atomic_path", "write_json", "read_json"]
