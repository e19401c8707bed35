"""A folder laid out like the repository after `make demo`, small enough that the documentation's
commands run in seconds: the code blocks of README.md and docs/*.md run in it
(tests/test_docs_blocks.py).

It holds the demo's model files by their names, but randomly initialised (tests/untrained.py): a
64 px ResNet-18 and a calibrated ensemble of three with an applicability-domain block, so that
`galmet predict` writes every column the pages name; their predictions mean nothing. The demo's
cutouts are a dozen of the real ones; the catalog, the configs, the published predictions and
the workflow are the repository's own.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from tests.conftest import DEMO, ROOT
from tests.untrained import write_untrained_model

N_IMAGES = 12  # demo cutouts in the workspace's resources/demo/images
RES = 64  # the demo's ensemble resolution
DEMO_MODEL = "results/models/oh_p50/resnet18-64px-seed0/model.pt"
DEMO_ENSEMBLE = "results/models/oh_p50/resnet18-64px-seeds0-1-2/model.pt"
# linked from the repository: what the pages' commands read and never write
LINKED = ("configs", "profiles", "workflow", "Snakefile", "resources/reference")


def _images(folder: Path, names: list[str], manifest: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(DEMO / "images" / name, folder / name)
    if manifest:
        shutil.copy(DEMO / "images" / "cutouts.json", folder / "cutouts.json")
    return folder


def write_demo_models(root: Path, catalog: pd.DataFrame, n: int = 48, tta: int = 2) -> None:
    """The demo's 64 px model and its calibrated ensemble (seeds 0, 1, 2) under ``root``, as
    untrained ResNet-18s: the ensemble calibrated on the second half of the first ``n`` demo
    galaxies (``tta`` views), the domain block fitted on the first half."""
    from galmet import domain, modelfile
    from galmet.dataset import LabelledSet
    from galmet.ensemble import calibrate, combine
    from galmet.imaging import block_average, read_image

    ids = catalog["objID"].to_numpy()[:n]
    x = block_average(np.stack([read_image(DEMO / "images" / f"{i}.jpg") for i in ids]), RES)
    y = catalog["oh_p50"].to_numpy(np.float64)[:n]
    images = modelfile.images_block("skyserver", "adaptive", 128, 128)
    scratch = root / "untrained"
    members = [write_untrained_model(scratch / f"seed{s}.pt", res=RES, seed=s) for s in (0, 1, 2)]
    model, meta = modelfile.load(members[0])
    meta = {**meta, "target": "oh_p50", "images": images, "domain": domain.fit(x[: n // 2], x[n // 2:], RES)}
    modelfile.save(root / DEMO_MODEL, model, meta)
    model, meta = combine([modelfile.load(p) for p in members], [f"resnet18-64px-seed{s}" for s in (0, 1, 2)])
    meta = calibrate(model, {**meta, "target": "oh_p50", "tta": tta},
                     [LabelledSet(ids[n // 2:], x[n // 2:], y[n // 2:])], tta=tta)
    meta["domain"] = domain.fit(x[: n // 2], x[n // 2:], RES)
    meta["images"] = images
    modelfile.save(root / DEMO_ENSEMBLE, model, meta)
    shutil.rmtree(scratch)


def build_workspace(root: Path, catalog: pd.DataFrame) -> Path:
    """The workspace in ``root``: returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).symlink_to(ROOT / name)
    (root / ".venv").mkdir()
    (root / ".venv" / "bin").symlink_to(Path(sys.executable).parent)  # .venv/bin/galmet, snakemake
    shutil.copy(ROOT / "config.yaml", root / "config.yaml")
    (root / "docs").mkdir()
    shutil.copy(ROOT / "docs" / "tutorial.ipynb", root / "docs" / "tutorial.ipynb")
    (root / "resources" / "demo").mkdir(parents=True)
    shutil.copy(DEMO / "catalog.csv", root / "resources" / "demo" / "catalog.csv")
    names = [f"{i}.jpg" for i in catalog["objID"].to_numpy()[:N_IMAGES]]
    _images(root / "resources" / "demo" / "images", names, manifest=True)
    _images(root / "my_jpegs", names, manifest=False)  # a user's own JPEGs: no cutouts.json
    write_demo_models(root, catalog)
    return root
