"""The documentation site builds with warnings as errors, and its generated pages hold what a
user looks for there (docs/conf.py, docs/_ext/galmet_docs.py)."""

from __future__ import annotations

import html
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS / "_ext"))

import galmet_docs  # noqa: E402

MISSING = [m for m in ("sphinx", "myst_nb", "furo") if importlib.util.find_spec(m) is None]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built as `make docs` builds it (sphinx-build -W --keep-going), into a temporary folder."""
    if MISSING:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the docs dependencies are missing in CI: {MISSING} (pip install -e '.[dev]')")
        pytest.skip(f"needs {', '.join(MISSING)} (pip install -e '.[docs]')")
    out = tmp_path_factory.mktemp("site")
    run = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                          str(DOCS), str(out)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"the docs build failed (warnings are errors):\n{run.stderr[-6000:]}"
    return out


def page_text(site: Path, name: str) -> str:
    """The visible text of a built page, tags dropped, entities decoded, spaces collapsed."""
    body = (site / f"{name}.html").read_text()
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", body, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


def table_row(site: Path, name: str, first_cell: str) -> str:
    """The text of the last table row of page ``name`` whose first cell is ``first_cell`` (the
    generated reference follows the pages' own overview tables)."""
    found = []
    for row in re.findall(r"<tr\b.*?</tr>", (site / f"{name}.html").read_text(), flags=re.S):
        cells = [" ".join(html.unescape(re.sub(r"<[^>]+>", " ", c)).split())
                 for c in re.findall(r"<t[dh]\b.*?</t[dh]>", row, flags=re.S)]
        if cells and cells[0] == first_cell:
            found.append(" | ".join(cells))
    assert found, f"no row {first_cell!r} on {name}.html"
    return found[-1]


def schema_keys(properties: dict, prefix: str = ""):
    for name, schema in properties.items():
        yield prefix + name
        yield from schema_keys(schema.get("properties", {}), f"{prefix}{name}.")


def test_configuration_page_lists_every_key_with_the_registries_values(site):
    from galmet.config import load_schema

    schema = load_schema()
    text = page_text(site, "configuration")
    missing = [k for k in schema_keys(schema["properties"]) if f" {k} " not in text]
    assert missing == [], missing
    source = table_row(site, "configuration", "cutouts.source")
    assert all(s in source for s in ("local", "skyserver", "legacysurvey", "panstarrs")), source
    assert "local" in table_row(site, "configuration", "cutouts.source").split(" | ")[2]  # the default
    arch = table_row(site, "configuration", "train.arch")
    assert "efficientnet_b0" in arch and "resnet34" in arch.split(" | ")[2], arch
    assert "≥ 1" in table_row(site, "configuration", "shards")
    assert "list of number (> 0); exactly 3 items" in table_row(site, "configuration", "train.stage2.lrs")
    assert "(oh_p50 metallicity in dex;" in text  # a description, its underscores not eaten as emphasis


def test_cli_page_lists_every_option_of_every_subcommand(site):
    import importlib

    from galmet.cli import SUBCOMMANDS

    text = page_text(site, "cli")
    for name, (module, _) in SUBCOMMANDS.items():
        assert f"galmet {name}" in text
        options = [o for a in importlib.import_module(module).cli_parser()._actions for o in a.option_strings
                   if o not in ("-h", "--help")]
        assert [o for o in options if o not in text] == [], name
    row = table_row(site, "cli", "--allow-survey-mismatch")
    assert "cutouts.json" in row
    assert "output columns" in text and "in_domain" in text  # galmet predict's epilog


def test_api_page_documents_the_package_from_its_docstrings(site):
    page = (site / "api.html").read_text()
    for obj in ("galmet.plan.Study", "galmet.plan.Study.models", "galmet.predict.PredictionWriter",
                "galmet.cutouts.base.Provider", "galmet.config.load_schema"):
        assert f'id="{obj}"' in page, obj
    text = page_text(site, "api")
    assert "median(|x - median(x)|)" in text  # an absolute value, not a reST substitution
    assert "http_429 Too Many Requests" in text  # cutouts.base's table of failure reasons


def test_pages_moved_from_the_readme_are_on_the_site(site):
    assert "--allow-survey-mismatch" in page_text(site, "surveys")
    assert "ps1filenames.py" in page_text(site, "surveys")
    assert "Mahalanobis" in page_text(site, "uncertainty-and-domain")
    assert "profiles/slurm/config.yaml" in page_text(site, "cluster")
    assert "docs/method.md, section N" in page_text(site, "method")


def test_the_tutorial_is_on_the_site_as_committed(site):
    """docs/tutorial.ipynb is a page of the site (in the toctree, linked from the index), its
    code shown, nothing executed by the build (the notebook has no outputs)."""
    text = page_text(site, "tutorial")
    assert "galmet in a notebook" in text and "jupyter execute docs/tutorial.ipynb" in text
    assert "load_model" in text and "domain_alpha" in text  # a code cell
    assert 'href="tutorial.html"' in (site / "index.html").read_text()


# ---- the generator, without Sphinx ----

def test_escape_keeps_code_and_takes_everything_else_literally():
    assert galmet_docs.escape("a `x|y` b* <c> |d|") == r"a `x\|y` b\* \<c\> \|d\|"
    assert galmet_docs.escape("one ` backquote_here") == r"one \` backquote\_here"


def test_plain_docstring_paragraphs_are_shown_as_written():
    columns = ["``name``   the first entry, which runs", "           onto a second line", "``b``      another"]
    out = galmet_docs.plain_paragraphs(["Intro |x|.", "", *columns, "", "Code::", "", "   a |b|"])
    assert out[0] == r"Intro \|x\|."
    assert out[2:4] == [".. code-block:: text", ""] and out[4] == "    name   the first entry, which runs"
    assert out[-1] == "   a |b|"  # a literal block is left alone


def test_a_page_without_its_marker_fails_the_build():
    sphinx_errors = pytest.importorskip("sphinx.errors")
    with pytest.raises(sphinx_errors.ExtensionError, match="% galmet:cli"):
        galmet_docs._source_read(None, "cli", ["# Command line\n\nno marker\n"])
