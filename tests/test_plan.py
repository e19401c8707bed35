"""galmet.plan.Study: what the workflow builds for a config, checked without Snakemake (and, for
the image stores, against the workflow's own plan of `snakemake images`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import fields

import pandas as pd
import pytest
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


def _figure_outputs(rules_file: str) -> set[str]:
    """The figure names of the rules' PNG outputs in workflow/rules/<rules_file>, each as the
    path under its figures folder with the wildcards left in (``{target}/{model}/fig1_examples``)."""
    text = (ROOT / "workflow" / "rules" / rules_file).read_text()
    return set(re.findall(r'"results/(?:reference/)?figures/(.+?)\.png"', text))


def test_the_studys_figures_are_the_rules_outputs():
    """Every figure the Study plans is a rule's output (figures.smk, reference.smk), and every
    figure those rules draw per model or ensemble is planned: the lists cannot drift apart."""
    from galmet.plan import ENSEMBLE_FIGURES, MODEL_FIGURES, REFERENCE_FIGURES

    drawn = _figure_outputs("figures.smk")
    per_model = {f.rsplit("/", 1)[1] for f in drawn if f.startswith("{target}/{model}/")}
    assert per_model == set(MODEL_FIGURES) | set(ENSEMBLE_FIGURES)
    assert {"{target}/fig4_resolution", "mass/{model}/fig5_mass", "mzr/{model}/fig6_mzr"} <= drawn
    assert {f.rsplit("/", 1)[1] for f in _figure_outputs("reference.smk")} == set(REFERENCE_FIGURES)
    both = study(targets=[METALLICITY, MASS])
    ensemble = "resnet18-64px-seeds0-1-2"
    figures = both.figures()
    assert len(figures) == len(set(figures))
    assert (METALLICITY, "resnet18-16px-seed0", "fig1_examples") in figures
    assert (MASS, ensemble, "calibration") in figures and (MASS, ensemble, "fig1_examples") not in figures
    assert [f for f in figures if len(f) == 2] == [(METALLICITY, "fig4_resolution"), (MASS, "fig4_resolution")]
    assert both.mzr_figures()[-2:] == [("mass", ensemble, "fig5_mass"), ("mzr", ensemble, "fig6_mzr")]
    assert len(figures) == 6 * len(MODEL_FIGURES) + 2 * len(ENSEMBLE_FIGURES) + 2 + 2 * 4
    assert study().reference_figures()[:2] == [("published-128px", "fig2_histograms"),
                                               ("published-128px", "fig3_scatter")]
    assert study(targets=[MASS]).mzr_figures() == []


def test_figure_files_png_first_then_the_configured_formats():
    raw = demo_raw()
    raw["figures"]["formats"] = ["pdf", "png"]
    assert study(raw).figure_files("a/b") == ["a/b.png", "a/b.pdf"]
    raw["figures"]["formats"] = ["png"]
    assert study(raw).figure_files("a/b") == ["a/b.png"]


def test_the_published_file_a_model_is_compared_with():
    s = study()  # published at 128, 64, 32 and 16 px
    assert s.overlap_resolution(32) == 32
    assert s.overlap_resolution(8) == 128  # none at 8 px: the highest published one
    assert s.published_beside(METALLICITY, 64) and not s.published_beside(METALLICITY, 8)
    assert not s.published_beside(MASS, 64)  # the published predictions are of metallicity only


def test_the_images_params_and_the_download_jobs_resources():
    """A change of what the images are reruns what they feed: the params name the service's
    defaults (a layer for a service with layers, the local folder for local images); the
    download jobs hold `cutout_jobs` and their own service's `<name>_jobs`, never another's."""
    keys = ("source", "scale", "width", "height", "base_url")
    local = study()
    assert local.cutout_provider is None
    assert local.cutout_resources() == {"cutout_jobs": 0, "skyserver_jobs": 0, "legacysurvey_jobs": 0,
                                        "panstarrs_jobs": 0}
    assert local.image_params(*keys) == {"source": "local", "scale": local.config["cutouts"]["scale"],
                                         "width": 128, "height": 128, "base_url": None,
                                         "local_dir": local.config["cutouts"]["local_dir"]}
    assert local.cutout_cache_dir() == local.config["cutouts"]["local_dir"]
    raw = demo_raw()
    raw["cutouts"] = {"source": "skyserver", "width": 64, "height": 64}
    sky = study(raw)
    params = sky.image_params(*keys)
    assert list(params) == list(keys) and params["base_url"] == sky.cutout_provider.default_base_url
    assert sky.cutout_resources()["skyserver_jobs"] == 1 and sky.cutout_resources()["cutout_jobs"] == 1
    assert sky.cutout_resources()["legacysurvey_jobs"] == 0
    assert sky.cutout_cache_dir() == "resources/cutouts/adaptive-64x64"  # SkyServer: <scale>-<W>x<H>
    ls = Study(load_config(ROOT / "configs" / "legacysurvey.yaml"), device_files=NO_GPU)
    assert ls.image_params("source")["layer"] == "ls-dr10-grz"
    assert ls.cutout_resources()["legacysurvey_jobs"] == 1 and ls.cutout_resources()["skyserver_jobs"] == 0


def test_catalog_files_training_params_and_the_infer_inputs():
    from galmet.config import ConfigError

    s = study()
    assert s.catalog_files() == {"table": s.config["catalog"]["path"]}
    raw = demo_raw()
    raw["catalog"] = {"source": "skyserver"}
    assert study(raw).catalog_files() is None  # the workflow writes the SkyServer table itself
    params = s.train_params("resnet18-32px-seed2")
    assert (params["arch"], params["seed"]) == ("resnet18", 2)
    assert {k: v for k, v in params.items() if k not in ("arch", "seed")} == {
        k: v for k, v in s.config["train"].items() if k not in ("arch", "seed")}
    with pytest.raises(ConfigError, match="infer.model is not set"):
        s.infer_input("model")
    raw = demo_raw()
    raw["infer"] = {"model": "m.pt", "catalog": "c.csv"}
    assert study(raw).infer_input("catalog") == "c.csv"
    assert s.summary_models()[-2:] == [{"target": METALLICITY, "name": "resnet18-64px-seeds0-1-2"},
                                       {"target": METALLICITY, "name": "resnet18-64px-seeds0-1-2-survey"}]
    assert len(s.summary_models()) == len(s.scored_models()) + 2


def test_the_saliency_warning_names_the_models_not_trained():
    assert study().saliency_warning() is None
    raw = demo_raw()
    raw["saliency"]["models"] = ["resnet18-8px-seed0"]
    assert "saliency.models: resnet18-8px-seed0 not among the models" in study(raw).saliency_warning()


def test_the_jobs_environment():
    """src first on PYTHONPATH (once), passive OpenMP waiting unless the user chose."""
    from galmet.plan import job_environment

    sep = os.pathsep
    assert job_environment({}, "/g/src") == {"OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": "/g/src"}
    assert job_environment({"PYTHONPATH": f"/a{sep}/b"}, "/g/src")["PYTHONPATH"] == f"/g/src{sep}/a{sep}/b"
    assert job_environment({"PYTHONPATH": f"/a{sep}/g/src", "OMP_WAIT_POLICY": "ACTIVE"}, "/g/src") == {}
    assert job_environment({}, None) == {"OMP_WAIT_POLICY": "PASSIVE"}  # an installed galmet


def test_bundled_paths_are_the_workflows_own_when_not_in_the_working_directory(tmp_path, monkeypatch):
    from galmet.plan import bundled, resolve_bundled

    root = tmp_path / "galmet"
    (root / "resources/demo").mkdir(parents=True)
    (root / "resources/demo/catalog.csv").write_text("objID\n")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert bundled("resources/demo/catalog.csv", root) == str(root / "resources/demo/catalog.csv")
    assert bundled("resources/demo/other.csv", root) == "resources/demo/other.csv"  # in neither
    assert bundled("resources/demo/catalog.csv", None) == "resources/demo/catalog.csv"
    (work / "resources/demo").mkdir(parents=True)
    (work / "resources/demo/catalog.csv").write_text("objID\n")
    assert bundled("resources/demo/catalog.csv", root) == "resources/demo/catalog.csv"  # the user's own
    assert bundled(None, root) is None
    config = {"catalog": {"path": "resources/demo/catalog.csv", "mpajhu": {"a": None}},
              "cutouts": {"local_dir": str(tmp_path)}, "split": {"force_test_ids": None}}
    resolve_bundled(config, root)
    assert config["catalog"] == {"path": "resources/demo/catalog.csv", "mpajhu": {"a": None}}
    assert config["cutouts"]["local_dir"] == str(tmp_path)
