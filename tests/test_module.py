"""galmet as a Snakemake module of another workflow (a user's, in a folder outside the repository).

The user's Snakefile declares `module galmet:` (this repository's Snakefile, the user's config)
and `use rule * from galmet as galmet_*`, and is run from its own folder. The run trains, predicts
and evaluates one tiny model: results land under the user's folder, the workflow's own files
(the bundled demo cutouts, the schema, the package in src/) are found from the repository, and
nothing is written into the repository.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from .conftest import DEMO, ROOT
from .test_workflow import TINY_TRAIN

pytestmark = pytest.mark.slow

N_GALAXIES = 40
MODEL = "resnet18-16px-seed0"
METRICS = f"results/metrics/oh_p50/{MODEL}.json"
# Figure 4 beside the published scores: the bundled reference predictions, read from the repository
FIG4 = "results/figures/oh_p50/fig4_resolution.png"

USER_SNAKEFILE = """\
configfile: "config.yaml"


module galmet:
    snakefile:
        "{snakefile}"
    config:
        config


use rule * from galmet as galmet_*
"""


def user_config() -> dict:
    """The demo config made tiny. catalog.path is the user's own file (relative: from the working
    directory); cutouts.local_dir is the repository's bundled demo folder, written as in the
    repository's config.yaml (relative: not in the user's folder, so taken from the workflow's)."""
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["catalog"]["path"] = "my_catalog.csv"
    assert cfg["cutouts"]["local_dir"] == "resources/demo/images"
    cfg["resolutions"] = [16]
    cfg["ensemble"] = None
    cfg["saliency"]["models"] = []
    cfg["split"]["fractions"] = {"train": 0.5, "valid": 0.25, "test": 0.25}
    cfg["train"].update(TINY_TRAIN)
    cfg["figures"]["formats"] = ["png"]
    return cfg


def written_since(root: Path, t0: float) -> list[str]:
    """Files under `root` modified since t0 (byte-code caches and git's own files aside)."""
    skip = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache"}
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in skip]
        out += [os.path.join(dirpath, f) for f in filenames if os.stat(os.path.join(dirpath, f)).st_mtime >= t0]
    return out


def run(workdir: Path, *args) -> subprocess.CompletedProcess:
    """`snakemake ARGS` in the user's folder, as a user runs it: no -s, no --directory."""
    proc = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir, capture_output=True,
                          text=True, timeout=900)
    if proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture(scope="module")
def module_run(tmp_path_factory):
    user = tmp_path_factory.mktemp("user_workflow")
    assert not user.resolve().is_relative_to(ROOT)
    pd.read_csv(DEMO / "catalog.csv", dtype={"objID": "string"}).iloc[:N_GALAXIES].to_csv(
        user / "my_catalog.csv", index=False)
    (user / "config.yaml").write_text(yaml.safe_dump(user_config()))
    (user / "Snakefile").write_text(USER_SNAKEFILE.format(snakefile=ROOT / "Snakefile"))
    t0 = time.time()
    proc = run(user, METRICS, FIG4, "--cores", "2", "--resources", "gpu=1", "--workflow-profile",
               str(ROOT / "profiles" / "default"))
    return {"dir": user, "proc": proc, "t0": t0}


def test_the_module_trains_predicts_and_evaluates_into_the_users_folder(module_run):
    d = module_run["dir"]
    log = module_run["proc"].stderr
    assert "galmet_train" in log  # the prefixed rules of `use rule * ... as galmet_*`
    assert "Using workflow specific profile" in log  # --workflow-profile <galmet>/profiles/default
    assert "localrules directive specifies rules that are not present" not in log  # the download rules stay local
    metrics = json.loads((d / METRICS).read_text())
    assert metrics["n"] > 0 and metrics["rmse"] > 0
    assert (d / "results" / "models" / "oh_p50" / MODEL / "model.pt").is_file()
    preds = pd.read_parquet(d / "results" / "predictions" / "oh_p50" / f"{MODEL}.parquet")
    assert len(preds) == metrics["n"]
    # the user's catalog, read from the user's folder
    clean = pd.read_parquet(d / "results" / "catalog" / "clean.parquet")
    assert len(clean) == N_GALAXIES
    # the cutouts are the repository's bundled demo images, found from the workflow's folder
    manifest = pd.concat(pd.read_parquet(p) for p in (d / "results" / "cutouts").glob("*.parquet"))
    assert len(manifest) == N_GALAXIES
    assert all(Path(p).parent == DEMO / "images" for p in manifest["path"])
    # the published scores of Figure 4, from the bundled reference predictions
    published = json.loads((d / "results" / "reference" / "metrics" / "published-16px.json").read_text())
    assert published["n"] > 0 and (d / FIG4).stat().st_size > 10_000


def test_nothing_is_written_into_the_repository(module_run):
    assert written_since(ROOT, module_run["t0"]) == []


def test_the_default_target_is_the_modules_all_and_finds_the_bundled_reference(module_run):
    """A dry run of the whole workflow from the user's folder: `galmet_all` is the default target,
    the published predictions (config reference.predictions, relative) are the repository's."""
    proc = run(module_run["dir"], "-n", "--cores", "1")
    out = proc.stdout + proc.stderr
    jobs = dict(re.findall(r"^(galmet_\w+)\s+(\d+)$", out, flags=re.M))  # the dry run's job counts
    assert jobs.get("galmet_all") == "1"
    assert "galmet_reference_histograms" in jobs and "galmet_reference_scatter" in jobs
    assert "galmet_train" not in jobs  # the model is there, up to date
