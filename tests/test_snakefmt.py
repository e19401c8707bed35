"""The workflow's rule files are formatted by snakefmt (the Snakemake workflow catalog checks the
same), with the line length of pyproject.toml's [tool.snakefmt] (ruff's)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import tomllib

from .conftest import ROOT, skip_or_fail

FIX = "snakefmt Snakefile workflow/"


def snakefmt() -> str:
    """The snakefmt beside this Python (the project's venv), else the one on PATH."""
    here = Path(sys.executable).with_name("snakefmt")
    found = str(here) if here.is_file() else shutil.which("snakefmt")
    if not found:
        skip_or_fail("snakefmt is not installed (it is in the dev extra: pip install -e '.[dev]')")
    return found


def test_pyproject_gives_snakefmt_ruffs_line_length():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert cfg["tool"]["snakefmt"]["line_length"] == cfg["tool"]["ruff"]["line-length"]


def test_the_workflow_is_formatted():
    proc = subprocess.run([snakefmt(), "--check", "Snakefile", "workflow/"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    if proc.returncode != 0:
        diff = subprocess.run([snakefmt(), "--compact-diff", "Snakefile", "workflow/"], cwd=ROOT,
                              capture_output=True, text=True, timeout=300).stdout
        raise AssertionError(f"snakefmt would reformat the workflow (exit {proc.returncode}); run `{FIX}` in "
                             f"the repository root:\n{proc.stderr[-2000:]}\n{diff[-4000:]}")
