"""Shared fixtures: paths to the bundled real data."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from galmet.reproducible import set_environment

# CPU trainings run in the reproducible mode by default (train.reproducible: auto), which fixes the
# kernels torch and MKL choose at their first computation: set before any test module imports torch.
set_environment()

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "resources" / "demo"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> None:
    """Skip on a user's machine; fail in CI, where every system test must run."""
    if IN_CI:
        pytest.fail(f"CI=true but: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def demo_catalog() -> pd.DataFrame:
    return pd.read_csv(DEMO / "catalog.csv", dtype={"objID": "int64"})


@pytest.fixture(scope="session")
def demo_images(demo_catalog) -> list[Path]:
    return [DEMO / "images" / f"{oid}.jpg" for oid in demo_catalog["objID"]]


@pytest.fixture(scope="session")
def tiny_data(demo_catalog):
    """24 train and 8 validation real galaxies at 16 px: ``(x_train, y_train, x_valid, y_valid)``,
    for the tiny trainings of the unit tests."""
    import numpy as np

    from galmet.imaging import block_average, read_image

    ids = demo_catalog["objID"].to_numpy()[:32]
    x = block_average(np.stack([read_image(DEMO / "images" / f"{i}.jpg") for i in ids]), 16)
    y = demo_catalog["oh_p50"].to_numpy(np.float32)[:32]
    return x[:24], y[:24], x[24:], y[24:]


@pytest.fixture
def sky(sample):
    """A fake SkyServer on 127.0.0.1 serving the module's ``sample`` (catalog, images)."""
    from tests.fakesky import FakeSky

    cat, images = sample
    with FakeSky(cat, images) as s:
        s.slow_s = 1.0
        yield s


# The experiment keys a config must name (galmet.config.EXPERIMENT_KEYS), for tests that build
# a config from a few keys.
EXPERIMENT = {"targets": ["oh_p50"], "resolutions": [64], "seeds": [0], "ensemble": None}


def cutouts_config(**keys) -> dict:
    """A validated ``cutouts`` config section: ``keys`` and the schema's defaults for the rest
    (what the library's cutouts functions take, as the workflow passes them)."""
    from galmet.config import load_config

    return load_config({**EXPERIMENT, "catalog": {"source": "table", "path": "x.csv"}, "cutouts": keys})["cutouts"]
