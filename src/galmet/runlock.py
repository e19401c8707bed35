"""Snakemake's directory lock after a killed run: tell a stale lock from a live run.

Snakemake locks a working directory (``.snakemake/locks/``) while it runs and removes the lock
when it stops, also on Ctrl-C. Only a ``kill -9`` of Snakemake itself leaves the lock behind, and
the next run then refuses to start until ``snakemake --unlock``. ``make demo`` calls
``python -m galmet.runlock`` first: it removes the lock only when no Snakemake process runs in
the directory, so two runs can never be let loose on the same files.

    python -m galmet.runlock [DIR]    exit 0: no lock or a stale one removed; 1: a run is live
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def lock_files(directory) -> list[Path]:
    """The lock files of Snakemake in ``directory`` (empty: not locked)."""
    locks = Path(directory) / ".snakemake" / "locks"
    return sorted(p for p in locks.glob("*.lock")) if locks.is_dir() else []


def snakemake_pids(directory) -> list[int]:
    """Processes that run Snakemake with ``directory`` as their working directory (Linux /proc)."""
    here = Path(directory).resolve()
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        if pid == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = Path(os.readlink(entry / "cwd")).resolve()
        except OSError:  # gone, or not ours to read
            continue
        if cwd == here and _runs_snakemake(argv):
            pids.append(pid)
    return pids


def _runs_snakemake(argv: list[bytes]) -> bool:
    """``snakemake ...``, ``python .../bin/snakemake ...`` or ``python -m snakemake ...``."""
    names = [os.path.basename(a.decode(errors="replace")) for a in argv[:3]]
    if names and names[0] == "snakemake":
        return True
    if names and names[0].startswith("python"):
        return len(names) > 1 and (names[1] == "snakemake" or names[1:3] == ["-m", "snakemake"])
    return False


def clear_stale_lock(directory=".") -> bool | None:
    """Remove the lock when no Snakemake runs in ``directory``.

    Returns True when a stale lock was removed, False when there was none, None when a
    Snakemake process still runs there (its lock is kept).
    """
    if not lock_files(directory):
        return False
    if snakemake_pids(directory):
        return None
    shutil.rmtree(Path(directory) / ".snakemake" / "locks")
    return True


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    directory = argv[0] if argv else "."
    cleared = clear_stale_lock(directory)
    if cleared:
        print(f"galmet: removed a stale Snakemake lock in {Path(directory).resolve()} "
              "(left by a killed run; no Snakemake runs there now)", file=sys.stderr)
    elif cleared is None:
        print(f"galmet: Snakemake is running in {Path(directory).resolve()} (pids "
              f"{', '.join(map(str, snakemake_pids(directory)))}); wait for it, or stop it first",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
