"""Every code block of README.md and docs/*.md runs (Sybil's MyST parsers), in a folder laid out
like the repository after `make demo` (tests/docs_workspace.py), or carries a marker saying why
it cannot run here: ``<!-- skip: next "why" -->`` (a download, a GPU, a SLURM cluster, hours).

- ``bash``: run by bash (``-euo pipefail``) in the workspace, with ``.venv/bin`` first on PATH;
  it passes when every command succeeds.
- ``console``: ``$ command`` lines, each followed by the output it prints; run as ``bash`` blocks
  and compared as doctest does (``...`` stands for any text, runs of spaces are one space).
- ``python``: executed in the workspace (``>>>`` examples compared as doctest does).
- ``yaml``: a config file named by its first comment (``# my.yaml ...``), written into the
  workspace and validated: a whole run as it is, a layer over the config the page names.
- ``snakemake``: a user's Snakefile, ``<galmet>`` read as this repository; Snakemake's dry run of
  it (``snakemake -n``) in an empty folder with the demo's config must plan the run.

Blocks in ``text`` (or without a language) are output and diagrams, never commands; a page may
use no other language.
"""

from __future__ import annotations

import doctest
import os
import re
import subprocess
import sys
from pathlib import Path
from unittest import SkipTest

import pytest
import yaml
from sybil import Sybil
from sybil.parsers.myst import CodeBlockParser, PythonCodeBlockParser, SkipParser

from tests.conftest import ROOT
from tests.docs_workspace import build_workspace

PAGES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]
RUN = ("bash", "console", "python", "yaml", "snakemake")
NOT_CODE = ("text", "", "{eval-rst}", "{toctree}")
FENCE = re.compile(r"^(`{3,})(\S*)", re.MULTILINE)
TIMEOUT = 600
WORKSPACE: Path | None = None  # set by the fixture: where the blocks run


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, demo_catalog):
    global WORKSPACE
    WORKSPACE = build_workspace(tmp_path_factory.mktemp("docs") / "repo", demo_catalog)
    yield WORKSPACE
    WORKSPACE = None


def _env() -> dict:
    return {**os.environ, "PATH": f"{WORKSPACE / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": os.pathsep.join(p for p in [str(ROOT / "src"), os.environ.get("PYTHONPATH")] if p)}


def _bash(source: str) -> str:
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", source], cwd=WORKSPACE, env=_env(),
                          capture_output=True, text=True, timeout=TIMEOUT)
    if proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}:\n{source}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return proc.stdout


def run_bash(example) -> None:
    _bash(example.parsed)


def run_console(example) -> None:
    """Each ``$ command`` with the lines below it as its expected output."""
    checker = doctest.OutputChecker()
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    for command, expected in re.findall(r"^\$ (.+)\n((?:(?!\$ ).*\n)*)", example.parsed, re.MULTILINE):
        got = _bash(command)
        if not checker.check_output(expected, got, flags):
            raise AssertionError(checker.output_difference(doctest.Example(command, expected), got, flags))


def check_yaml(example) -> None:
    """The config file of the block, written into the workspace and validated."""
    from galmet.config import EXPERIMENT_KEYS, load_config

    name = re.match(r"#\s*(\S+\.yaml)", example.parsed)
    assert name, "a config block starts with `# <file>.yaml`: the file it is"
    (WORKSPACE / name[1]).write_text(example.parsed)
    keys = yaml.safe_load(example.parsed)
    if all(k in keys for k in EXPERIMENT_KEYS):
        load_config(keys)
    else:  # a layer, over the config the page's next command names before it
        base = re.search(rf"--configfile (\S+\.yaml) {re.escape(name[1])}", example.document.text)
        assert base, f"{name[1]} is a layer: the page names the config it is layered on"
        load_config([WORKSPACE / base[1], WORKSPACE / name[1]])


def dry_run_snakefile(example) -> None:
    user = WORKSPACE / "user-workflow"
    user.mkdir(exist_ok=True)
    (user / "Snakefile").write_text(example.parsed.replace("<galmet>", str(ROOT)))
    (user / "config.yaml").write_text((ROOT / "config.yaml").read_text())
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "-d", str(user), "-s",
                           str(user / "Snakefile")], cwd=user, env=_env(), capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "galmet_train" in proc.stdout, proc.stdout[-3000:]


SYBIL = Sybil(parsers=[
    SkipParser(),
    PythonCodeBlockParser(doctest_optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE),
    CodeBlockParser("bash", run_bash),
    CodeBlockParser("console", run_console),
    CodeBlockParser("yaml", check_yaml),
    CodeBlockParser("snakemake", dry_run_snakefile),
])


def fences(text: str) -> list[tuple[str, int, int]]:
    """``(language, start, end)`` of every fenced block of a Markdown page."""
    out, opening = [], None
    for m in FENCE.finditer(text):
        if opening is None:
            opening = m
        elif m[1] == opening[1] and not m[2]:
            out.append((opening[2], opening.start(), m.end()))
            opening = None
    return out


@pytest.mark.parametrize("page", PAGES)
def test_every_code_block_runs_or_says_why_not(page, workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    document = SYBIL.parse(ROOT / page)
    blocks = fences(document.text)
    unknown = {lang for lang, _, _ in blocks} - {*RUN, *NOT_CODE}
    assert not unknown, f"{page}: a block in a language no test runs: {unknown}"
    ran, skipped = set(), {}
    for example in document.examples():
        block = next((b for b in blocks if b[1] <= example.start < b[2]), None)
        try:
            example.evaluate()
        except SkipTest as why:
            skipped[block] = str(why)
            continue
        if block is not None:  # a skip marker is no block
            ran.add(block)
    untested = [document.text[b[1]:b[2]][:200] for b in blocks if b[0] in RUN and b not in ran and b not in skipped]
    assert untested == [], f"{page}: blocks neither run nor skipped with a reason: {untested}"
    assert all(skipped.values()), f"{page}: a skipped block says why"


def test_every_make_target_the_docs_name_exists():
    """`make <target>` in README.md, DEVELOPING.md and docs/*.md, and every .PHONY target, is a
    rule of the Makefile."""
    makefile = (ROOT / "Makefile").read_text()
    rules = set(re.findall(r"^([\w-]+):", makefile, re.MULTILINE))
    phony = set(re.search(r"^\.PHONY:(.*)$", makefile, re.MULTILINE)[1].split())
    text = "".join((ROOT / page).read_text() for page in [*PAGES, "DEVELOPING.md"])
    named = set(re.findall(r"\bmake ([a-z][\w-]*)", text))
    assert named and "demo" in named
    assert named <= rules, f"named in the docs but not in the Makefile: {named - rules}"
    assert phony <= rules, f".PHONY but no rule: {phony - rules}"
