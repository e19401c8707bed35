"""The paper's whole DAG, run end to end: ``configs/paper.yaml`` itself, with a layer of sizes only.

``snakemake --configfile configs/paper.yaml sizes.yaml``: every rule of the paper's run executes
(catalog query and cleaning, downloads, packing at all eight resolutions, both targets'
trainings and ensembles, the baselines, the mass route, the MZR table, Figures 1-7, the
summary) and then the report, against the fake SkyServer on 127.0.0.1.

The layer changes sizes, never experiments: the number of galaxies (200), the epochs (one in
each stage), the backbone (ResNet-18 for ResNet-34, so the saliency model's name follows), the
shards (2), the figure formats (PNG) and where the services are (the fake SkyServer); and the
CPU kernels: ``train.reproducible: false``, as the paper's run has on its GPU (``auto`` is off on
CUDA). The paper's
``pretrained: imagenet`` stays: torchvision's loading code reads the ResNet-18 weights file from
``$TORCH_HOME/hub/checkpoints`` (randomly initialised here: there is no network to fetch
ImageNet's).

The catalog (:func:`rehearsal_catalog`): 200 real galaxies of the bundled sample (their real
JPEGs and real MPA-JHU ``oh_p50``) at made-up positions; what the sample lacks is made up to
look real and to carry the relations the paper's experiments look for:

- stellar mass ``lgm_tot_p50``: the Tremonti et al. (2004) relation inverted at the galaxy's real
  metallicity (on its rising branch, 8.5-11.5 dex), plus 0.15 dex of Gaussian scatter;
- ugriz ``modelMag_*``: r uniform in 14-17.7 mag, colours that redden with metallicity
  (u-g = 1.4 + 1.2 dZ, g-r = 0.6 + 0.6 dZ, r-i = 0.35 + 0.2 dZ, i-z = 0.25 + 0.1 dZ, dZ = Z - 8.9)
  plus scatter of 0.25, 0.1, 0.06, 0.06 mag, errors 0.01-0.05 mag;
- redshift 0.03-0.15 with zErr 1e-5-1e-4, petroMag_r = r + 0.1, petroR50_r = petroR90_r / 2.5,
  oh_p16/oh_p84 = oh_p50 -/+ 0.05, BPT class 1, reliable 1.

About 260 jobs, each a Python process: 10-15 minutes on 2 free CPU cores (54 min wall, 29 CPU-min
while the machine ran four other workloads).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from galmet.mzr import TREMONTI_COEFFS, TREMONTI_VALID_RANGE

from .conftest import DEMO, ROOT
from .fakesky import FakeSky, made_up_catalog

pytestmark = pytest.mark.slow

N_GALAXIES = 200
RESOLUTIONS = [128, 64, 32, 16, 8, 4, 2, 1]
TARGETS = ["oh_p50", "lgm_tot_p50"]


def _mass_for(z: np.ndarray, rng) -> np.ndarray:
    """log M* on the rising branch of the Tremonti relation at metallicity z, plus 0.15 dex."""
    a0, a1, a2 = TREMONTI_COEFFS
    lo, hi = TREMONTI_VALID_RANGE
    x = np.linspace(lo, hi, 601)
    curve = a0 + a1 * x + a2 * x**2  # increasing over the valid range
    mass = np.interp(z, curve, x)  # clipped to lo..hi outside the curve's range
    return np.clip(mass + rng.normal(0, 0.15, len(z)), lo, hi)


def rehearsal_catalog(n: int = N_GALAXIES, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(positions for the fake service, the SkyServer table of the paper's query, images)."""
    rng = np.random.default_rng(seed)
    cat, images = made_up_catalog(DEMO / "images", n)
    truth = pd.read_csv(DEMO / "catalog.csv", dtype={"objID": "int64"})
    table = cat.merge(truth, on="objID", how="left")
    z = table["oh_p50"].to_numpy()
    dz = z - 8.9
    r = rng.uniform(14.0, 17.7, n)
    colours = {"ug": 1.4 + 1.2 * dz + rng.normal(0, 0.25, n), "gr": 0.6 + 0.6 * dz + rng.normal(0, 0.1, n),
               "ri": 0.35 + 0.2 * dz + rng.normal(0, 0.06, n), "iz": 0.25 + 0.1 * dz + rng.normal(0, 0.06, n)}
    g, i = r + colours["gr"], r - colours["ri"]
    mags = {"u": g + colours["ug"], "g": g, "r": r, "i": i, "z": i - colours["iz"]}
    table = table.assign(
        specObjID=np.arange(n, dtype=np.int64) + 3_000_000_000_000_000_000,
        z=rng.uniform(0.03, 0.15, n).round(5), zErr=rng.uniform(1e-5, 1e-4, n).round(7),
        **{f"modelMag_{b}": m.round(4) for b, m in mags.items()},
        **{f"modelMagErr_{b}": rng.uniform(0.01, 0.05, n).round(4) for b in mags},
        petroMag_r=(r + 0.1).round(4), petroR50_r=(table["petroR90_r"] / 2.5).round(3),
        oh_p16=z - 0.05, oh_p84=z + 0.05, lgm_tot_p50=_mass_for(z, rng).round(4), sfr_tot_p50=0.1,
        bptclass=1, reliable=1,
    )
    return cat, table, images


def _torch_home(root: Path) -> Path:
    """$TORCH_HOME whose hub/checkpoints/ holds torchvision's ResNet-18 weights file (random)."""
    import torch
    import torchvision

    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    path = root / "hub" / "checkpoints" / os.path.basename(weights.url)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return root


def sizes_layer(sky: FakeSky, workdir: Path) -> dict:
    """What the rehearsal changes in configs/paper.yaml: sizes and the services' addresses."""
    return {
        "catalog": {"skyserver": {"url": sky.url, "page_size": 80, "min_interval_s": 0, "timeout_s": 30}},
        "cutouts": {"base_url": sky.base_url, "cache_dir": str(workdir / "cutout-cache"), "concurrency": 4,
                    "max_requests_per_second": 0, "timeout_s": 10, "backoff_s": 0.01},
        "shards": 2,
        # reproducible: false as on the paper's GPU, where auto leaves the mode off (on this CPU it would
        # triple the 24 trainings and make every prediction ~6x slower)
        "train": {"arch": "resnet18", "batch_size": 32, "stage1": {"epochs": 1}, "stage2": {"cycles": [1]},
                  "reproducible": False},
        "figures": {"formats": ["png"]},
        "saliency": {"models": ["resnet18-128px-seed0"]},
    }


def _ran_jobs(log: str) -> dict[str, int]:
    """Jobs per rule that Snakemake started, from its log."""
    rules = re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):$", log, re.M)
    return pd.Series(rules, dtype=str).value_counts().to_dict()


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    work = tmp_path_factory.mktemp("paper")
    cat, table, images = rehearsal_catalog()
    env = {**os.environ, "TORCH_HOME": str(_torch_home(work / "torch")), "PYTHONPATH": str(ROOT / "src")}
    sizes = work / "sizes.yaml"
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(work / "run"),
           "--configfile", str(ROOT / "configs" / "paper.yaml"), str(sizes)]
    with FakeSky(cat, images, sql_table=table) as sky:
        sizes.write_text(yaml.safe_dump(sizes_layer(sky, work)))
        proc = subprocess.run([*cmd, "--cores", "2", "--resources", "gpu=1"], capture_output=True, text=True,
                              timeout=5400, env=env)
        if proc.returncode != 0:
            raise AssertionError(f"the paper's DAG failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
        report = subprocess.run([*cmd, "--cores", "1", "--report", str(work / "run" / "report.html")],
                                capture_output=True, text=True, timeout=600, env=env)
        assert report.returncode == 0, report.stderr[-4000:]
        requests = sky.total_jpeg_requests()
    return {"dir": work / "run", "jobs": _ran_jobs(proc.stdout + proc.stderr), "requests": requests,
            "table": table}


def test_every_rule_of_the_papers_dag_runs(rehearsal):
    jobs = rehearsal["jobs"]
    n_models = len(TARGETS) * len(RESOLUTIONS)
    expected = {
        "catalog_skyserver": 1, "catalog_clean": 1, "catalog_shards": 1, "split": 1, "cutouts": 2,
        "pack_images": 2, "rebin_images": 2 * (len(RESOLUTIONS) - 1),
        # predict/evaluate: the 16 models, the ensembles' 8 other members (scored too), the 2 ensembles
        # and their 2 survey models
        "train": n_models + 2 * 4, "ensemble": 2, "survey": 2, "predict": n_models + 2 * 4 + 4,
        "evaluate": n_models + 2 * 4 + 4, "domain_check": n_models + 2, "uncertainty": 4, "baseline": 6,
        "mass_route": len(RESOLUTIONS) + 1, "mzr": len(RESOLUTIONS) + 1,
        "figure_examples": n_models, "figure_histograms": n_models, "figure_scatter": n_models + 2,
        "figure_domain": n_models + 2, "figure_resolution": 2, "figure_mass": len(RESOLUTIONS) + 1,
        "figure_mzr": len(RESOLUTIONS) + 1, "figure_calibration": 2, "figure_risk_coverage": 2,
        "saliency": 2, "figure_saliency": 2, "reference_evaluate": 4, "reference_histograms": 4,
        "reference_scatter": 4, "reference_overlap": len(RESOLUTIONS), "summary": 1, "all": 1,
    }
    assert {r: jobs.get(r, 0) for r in expected} == expected
    assert rehearsal["requests"] == N_GALAXIES  # every cutout downloaded once


def test_the_paper_run_scores_both_targets_baselines_and_the_mass_route(rehearsal):
    run = rehearsal["dir"]
    summary = json.loads((run / "results" / "summary.json").read_text())
    text = json.dumps(summary)
    for target in TARGETS:
        for res in RESOLUTIONS:
            assert f"resnet18-{res}px-seed0" in text
        for name in ("constant", "rf_gri", "rf_ugriz"):
            base = json.loads((run / "results" / "baselines" / target / f"{name}.json").read_text())
            assert np.isfinite(base["test"]["rmse"]), (target, name, base)
    for model in [f"resnet18-{r}px-seed0" for r in RESOLUTIONS] + ["resnet18-128px-seeds0-1-2-3-4"]:
        route = json.loads((run / "results" / "mzr" / model / "mass_route.json").read_text())
        assert route["mzr"]["n"] > 0 and route["mass"]["n"] > 0 and route["direct"]["n"] > 0
        table = pd.read_csv(run / "results" / "tables" / "mzr" / f"{model}.csv")
        assert len(table) > 0
        for fig in (f"figures/mass/{model}/fig5_mass.png", f"figures/mzr/{model}/fig6_mzr.png"):
            assert (run / "results" / fig).stat().st_size > 10_000
    assert (run / "report.html").stat().st_size > 100_000
