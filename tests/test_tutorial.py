"""docs/tutorial.ipynb runs from top to bottom (with nbclient, on the venv's own python3 kernel)
on a small calibrated ensemble and a part of the demo's cutouts, and shows what it says it shows."""

from __future__ import annotations

import sys

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import ROOT
from tests.test_api import demo_subset, tiny_calibrated_ensemble

NOTEBOOK = ROOT / "docs" / "tutorial.ipynb"
N_IMAGES = 16


def test_the_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)
    assert nb.metadata.kernelspec.name == "python3"


def _text(cell) -> str:
    return "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in cell.outputs)


def test_the_tutorial_runs_and_draws_its_figures(demo_catalog, tmp_path, monkeypatch):
    model = tiny_calibrated_ensemble(tmp_path / "model" / "model.pt", demo_catalog)
    images = demo_subset(tmp_path / "images", N_IMAGES)
    monkeypatch.setenv("GALMET_MODEL", str(model))
    monkeypatch.setenv("GALMET_IMAGES", str(images))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable)"))  # which python ran it
    NotebookClient(nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(ROOT)}}).execute()
    probe = nb.cells.pop()
    assert _text(probe).strip() == sys.executable  # the venv's python3 kernel, whatever `python` is on PATH
    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    texts = [_text(c) for c in code]
    assert any(f"{N_IMAGES} galaxies predicted, 0 skipped" in t for t in texts), texts
    assert any("sha256" in t and "oh_p50" in t and "resnet18" in t for t in texts), texts  # model.info
    table_cell = next(c for c, t in zip(code, texts) if "galaxies predicted" in t)
    html = "".join(o.get("data", {}).get("text/html", "") for o in table_cell.outputs)
    assert "p16" in html and "p97p5" in html and "domain_p" in html and "dex" in html  # the table, with units
    figures = [c for c in code if any("image/png" in o.get("data", {}) for o in c.outputs)]
    assert len(figures) == 2, "the prediction plot and the saliency map"
    assert "68% intervals: contain" in _text(figures[0]) and "randomisation:" in _text(figures[1])


@pytest.fixture(autouse=True)
def _no_user_kernels(tmp_path, monkeypatch):
    """The kernel must come from the venv (ipykernel's own python3), not from a user's kernelspec."""
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter-data"))
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "jupyter-config"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter-runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
