"""galmet.plan.Study: what the workflow builds for a config, checked without Snakemake (and, for
the image stores, against the workflow's own plan of `snakemake images`)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import fields

import pandas as pd
import yaml

from galmet.config import load_config
from galmet.plan import Study
from galmet.targets import MASS, METALLICITY

from .conftest import DEMO, ROOT

NO_GPU = ("/nonexistent/nvidiactl",)


def demo_raw() -> dict:
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def study(raw: dict | None = None, device_files=NO_GPU, **changes) -> Study:
    """The Study of the demo config (or ``raw``) with top-level keys ``changes``, validated."""
    raw = demo_raw() if raw is None else raw
    raw.update(changes)
    return Study(load_config(raw), device_files=device_files)


def test_the_demo_study():
    s = study()
    study_models = ["resnet18-64px-seed0", "resnet18-32px-seed0", "resnet18-16px-seed0"]
    assert s.models() == [(METALLICITY, m) for m in study_models]
    assert s.ensembles() == [(METALLICITY, "resnet18-64px-seeds0-1-2")]
    assert s.members("resnet18-64px-seeds0-1-2") == ["resnet18-64px-seed0", "resnet18-64px-seed1",
                                                     "resnet18-64px-seed2"]
    # the members the study lacks are trained and scored too, after the study's own models
    assert s.scored_models() == [(METALLICITY, m) for m in
                                 [*study_models, "resnet18-64px-seed1", "resnet18-64px-seed2"]]
    assert s.store_resolutions() == [64, 32, 16]  # 128 px is the cutouts' own store
    assert s.image_resolutions() == [16, 32, 64, 128]
    assert s.overlap_models() == study_models
    assert s.mzr_models() == []  # stellar mass is not a target
    assert s.saliency_models() == [(METALLICITY, "resnet18-64px-seed0")]
    assert s.saliency_unknown() == []
    assert s.baseline_names == ["constant", "rf_gri", "rf_ugriz"]
    assert s.reference_resolutions == [128, 64, 32, 16]


def test_without_an_ensemble_nothing_of_it_is_planned():
    s = study(ensemble=None, resolutions=[32, 128])
    assert s.ensembles() == []
    assert s.scored_models() == s.models() == [(METALLICITY, "resnet18-32px-seed0"),
                                               (METALLICITY, "resnet18-128px-seed0")]
    assert s.store_resolutions() == [32]
    assert s.image_resolutions() == [32, 128]


def test_an_ensemble_at_a_resolution_outside_the_study_gets_its_store_and_members():
    s = study(ensemble={"resolution": 8, "seeds": [0, 1]})
    assert s.ensembles() == [(METALLICITY, "resnet18-8px-seeds0-1")]
    assert s.scored_models()[3:] == [(METALLICITY, "resnet18-8px-seed0"), (METALLICITY, "resnet18-8px-seed1")]
    assert s.store_resolutions() == [64, 32, 16, 8]
    assert s.image_resolutions() == [8, 16, 32, 64, 128]  # what `snakemake images` builds
    # its members have no figures of their own: not among the study's models, nor in the overlap
    assert "resnet18-8px-seed0" not in s.overlap_models()


def test_the_papers_ensemble_at_the_cutout_size_uses_the_cutouts_store():
    s = Study(load_config(ROOT / "configs" / "paper.yaml"), device_files=NO_GPU)
    resolutions = [128, 64, 32, 16, 8, 4, 2, 1]
    assert s.models() == [(t, f"resnet34-{r}px-seed0") for t in (METALLICITY, MASS) for r in resolutions]
    assert s.store_resolutions() == resolutions[1:]  # 128 px is the cutouts' own store
    assert s.image_resolutions() == sorted(resolutions)
    scored = [(t, m) for t, m in s.scored_models() if t == METALLICITY]
    assert [m for _, m in scored] == [f"resnet34-{r}px-seed0" for r in resolutions] + [
        f"resnet34-128px-seed{i}" for i in range(1, 5)]


def test_saliency_of_the_ensemble_and_of_a_model_not_trained():
    raw = demo_raw()
    raw["saliency"]["models"] = ["resnet18-64px-seeds0-1-2", "resnet18-8px-seed0", "resnet18-16px-seed0"]
    s = study(raw)
    # in the study's order, the ensemble last; the model this config does not train is reported
    assert s.saliency_models() == [(METALLICITY, "resnet18-16px-seed0"), (METALLICITY, "resnet18-64px-seeds0-1-2")]
    assert s.saliency_unknown() == ["resnet18-8px-seed0"]


def test_mzr_needs_both_targets():
    both = study(targets=[METALLICITY, MASS])
    # the metallicity models, then the ensemble's (Figures 5 and 6 with its intervals)
    assert both.mzr_models() == ["resnet18-64px-seed0", "resnet18-32px-seed0", "resnet18-16px-seed0",
                                 "resnet18-64px-seeds0-1-2"]
    assert [t for t, _ in both.models()] == [METALLICITY] * 3 + [MASS] * 3
    assert both.ensembles() == [(METALLICITY, "resnet18-64px-seeds0-1-2"), (MASS, "resnet18-64px-seeds0-1-2")]
    assert both.overlap_models() == ["resnet18-64px-seed0", "resnet18-32px-seed0", "resnet18-16px-seed0"]
    mass_only = study(targets=[MASS])
    assert mass_only.mzr_models() == []
    assert mass_only.overlap_models() == []  # the published predictions are of metallicity only


def test_no_published_file_no_overlap():
    raw = demo_raw()
    raw.setdefault("reference", {})["resolutions"] = []
    s = study(raw)
    assert s.reference_resolutions == [] and s.overlap_models() == []


def test_gpu_jobs_and_training_threads(tmp_path, monkeypatch):
    """Without a GPU a training takes one core and no `gpu`, so that trainings run side by
    side; with one, each holds the GPU and 8 threads. `cpu` never holds the GPU."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpu = tmp_path / "nvidia0"
    gpu.touch()
    on_cpu = study()
    assert (on_cpu.train_gpu, on_cpu.predict_gpu, on_cpu.train_threads) == (0, 0, 1)
    on_gpu = study(device_files=(str(gpu),))
    assert (on_gpu.train_gpu, on_gpu.predict_gpu, on_gpu.train_threads) == (1, 1, 8)
    raw = demo_raw()
    raw["train"]["device"] = "cpu"
    raw["predict"]["device"] = "cuda"
    forced = study(raw)  # no GPU visible: cuda still asks for one
    assert (forced.train_gpu, forced.predict_gpu, forced.train_threads) == (0, 1, 1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    hidden = study(device_files=(str(gpu),))
    assert (hidden.train_gpu, hidden.train_threads) == (0, 1)


def test_explain_settings_are_the_saliency_rules():
    from galmet.explain import ExplainSettings

    raw = demo_raw()
    raw["predict"]["tta"] = 4
    settings = study(raw).explain_settings()
    # every ExplainSettings field comes from the config: one added there must be planned here
    assert set(settings) == {f.name for f in fields(ExplainSettings)}
    made = ExplainSettings(**settings)
    assert (made.method, made.layer, made.tta, made.check_max) == ("gradcam", "layer2", 4, 1000)
    # the rule's params as they were (their repr, key order included): no saliency job reruns
    assert list(settings) == ["method", "layer", "ig_steps", "steps", "random_orders", "check_max", "seed",
                              "batch_size", "tta"]
    # layer auto is the backbone's own: the params name the layer the maps are made at
    raw["saliency"]["layer"] = "auto"
    assert study(raw).explain_settings()["layer"] == "layer2"
    raw["train"]["arch"] = "efficientnet_b0"
    assert study(raw).explain_settings()["layer"] == "features.3"


def _plan_images(workdir, cfg: dict) -> str:
    """`snakemake -n images` with the catalog stage done (the demo catalog in 2 shards)."""
    from galmet.catalog import write_shards
    from galmet.io import write_json
    from galmet.tables import write_table

    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))
    cat = pd.read_csv(DEMO / "catalog.csv", dtype={"objID": "int64"})
    time.sleep(0.01)
    write_table(cat, workdir / "results/catalog/clean.parquet")
    write_json({"rows_in": len(cat), "rows_out": len(cat), "dropped": {}, "skipped_cuts": {}},
               workdir / "results/catalog/cleaning_report.json")
    time.sleep(0.01)
    write_shards(cat, workdir / "results/catalog/shards", 2, workdir / "results/catalog/shards/index.json")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory",
                           str(workdir), "--configfile", str(workdir / "config.yaml"), "-n", "--cores", "1",
                           "images"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_snakemake_images_builds_every_store_of_the_study(tmp_path):
    """`snakemake images` makes a store at every resolution the Study plans, the ensemble's
    included when it is not among `resolutions` (it used to be left out: the ensemble's
    trainings then re-binned it later, outside the data stage)."""
    cfg = demo_raw()
    cfg["catalog"]["path"] = str(DEMO / "catalog.csv")
    cfg["cutouts"]["local_dir"] = str(DEMO / "images")
    cfg["shards"] = 2
    cfg["ensemble"] = {"resolution": 8, "seeds": [0, 1]}
    plan = _plan_images(tmp_path, cfg)
    planned = set(re.findall(r"results/images/(\d+)/(\d+)px\.npy", plan))
    expected = Study(load_config(cfg)).image_resolutions()
    assert 8 in expected
    assert planned == {(shard, str(r)) for shard in ("0", "1") for r in expected}
