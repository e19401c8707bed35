"""Sphinx configuration of galmet's documentation site: ``make docs`` (or
``sphinx-build -W --keep-going -b html docs docs/_build/html``); ``tests/test_docs_site.py``
builds it with warnings as errors.

Why Sphinx with MyST rather than MkDocs: the pages stay Markdown (as docs/method.md and
docs/cluster.md already are), and Sphinx's autodoc reads the package's docstrings, which are
reStructuredText (``:func:``, ``:class:`` and double-backquoted literals), as they are; ``-W``
then turns every broken reference, unknown lexer or malformed docstring into a failed build.
The configuration and command-line references are generated at build time from the JSON schema
and the argparse parsers (``docs/_ext/galmet_docs.py``), so they cannot fall behind the code.
"""

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
# This checkout's package first (not a copy installed elsewhere), and the generator extension.
sys.path[:0] = [str(DOCS.parent / "src"), str(DOCS / "_ext")]

from galmet import __version__  # noqa: E402

project = "galmet"
author = "The galmet developers"
copyright = "The galmet developers, MIT licence"  # noqa: A001
release = version = __version__

# myst_nb: the Markdown pages (it includes myst_parser) and the tutorial notebook, shown as
# committed (without outputs: tests/test_tutorial.py runs it; building the site runs nothing).
extensions = ["myst_nb", "sphinx.ext.autodoc", "galmet_docs"]
nb_execution_mode = "off"
root_doc = "index"
exclude_patterns = ["_build", "README.md", "**/.ipynb_checkpoints", "tutorial-run.ipynb"]

myst_heading_anchors = 3  # [text](page.md#a-heading) links
myst_enable_extensions = ["colon_fence"]

# autodoc: members in source order, the type hints in the signature as written.
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "signature"

# Code without a language (docstrings' "::" blocks: command lines, JSON shapes) is shown as plain text.
highlight_language = "text"

html_theme = "furo"
html_title = f"galmet {release}"


def setup(app):
    """A Snakefile is Python with Snakemake's directives: ```snakemake blocks (GitHub's name for
    the language) are highlighted as Python; tests/test_docs_blocks.py dry-runs them."""
    from pygments.lexers.python import PythonLexer

    app.add_lexer("snakemake", PythonLexer)
