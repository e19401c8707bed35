"""The real workflow, end to end, on a tiny configuration of real galaxies (CPU, ~2 minutes).

The tiny catalog holds 48 real galaxies of the bundled sample plus one row of each kind of bad
input (duplicate objID, NaN and -9999 labels, an image that is missing, one that is not a
JPEG): the run must complete, count each of them, and produce every output.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from galmet.modelfile import read_meta

from .conftest import DEMO, ROOT

pytestmark = pytest.mark.slow

N_GOOD = 48


def snakemake(workdir, *args, check=True, timeout=900, env=None):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def tiny_config(workdir) -> dict:
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["catalog"]["path"] = str(workdir / "catalog.csv")
    cfg["cutouts"]["local_dir"] = str(workdir / "images")
    cfg["resolutions"] = [16]
    cfg["ensemble"] = {"resolution": 16, "seeds": [0, 1]}  # seed 0 reused, seed 1 trained for it
    cfg["survey"] = {"cycles": [1]}  # and its survey model (the measured labels, by default)
    cfg["split"]["fractions"] = {"train": 0.3, "valid": 0.5, "test": 0.2}  # >= 19 galaxies to calibrate 95%
    cfg["shards"] = 2
    cfg["train"].update(TINY_TRAIN)
    cfg["figures"]["formats"] = ["png"]
    cfg["saliency"]["models"] = ["resnet18-16px-seed0"]
    return cfg


# one short epoch: the test checks the plumbing, not the science
TINY_TRAIN = {"stage2": {"cycles": [1], "lrs": [0.001, 0.001, 0.001]}, "batch_size": 16}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tiny")
    catalog = pd.read_csv(DEMO / "catalog.csv", dtype={"objID": "string"})
    good = catalog.iloc[:N_GOOD].copy()
    images = workdir / "images"
    images.mkdir()
    for oid in good["objID"]:
        shutil.copy(DEMO / "images" / f"{oid}.jpg", images / f"{oid}.jpg")
    extra = catalog.iloc[N_GOOD : N_GOOD + 4].copy().reset_index(drop=True)
    missing_id, notjpeg_id, nan_id, bad_id = extra["objID"]
    (images / f"{notjpeg_id}.jpg").write_text("<html><body>Error: no image</body></html>")
    for oid in (nan_id, bad_id):
        shutil.copy(DEMO / "images" / f"{oid}.jpg", images / f"{oid}.jpg")
    extra.loc[2, "oh_p50"] = float("nan")
    extra.loc[3, "oh_p50"] = -9999.0
    dup = good.iloc[[0]]
    pd.concat([good, extra, dup]).to_csv(workdir / "catalog.csv", index=False)
    (workdir / "config.yaml").write_text(yaml.safe_dump(tiny_config(workdir)))
    proc = snakemake(workdir, "--cores", "2", "--resources", "gpu=1")
    return {"dir": workdir, "proc": proc, "missing": missing_id, "notjpeg": notjpeg_id,
            "config": yaml.safe_load((workdir / "config.yaml").read_text())}


def test_summary_has_model_and_constant_baseline(tiny_run):
    summary = json.loads((tiny_run["dir"] / "results" / "summary.json").read_text())
    model, member = summary["models"]  # the study's model, then the ensemble's other member
    assert member["name"] == "resnet18-16px-seed1"
    assert model["name"] == "resnet18-16px-seed0" and model["target"] == "oh_p50" and model["resolution"] == 16
    assert (tiny_run["dir"] / model["path"]).is_file()
    assert model["test"]["n"] > 0 and model["test"]["rmse"] > 0
    names = {b["name"] for b in summary["baselines"]}
    assert "constant" in names


def test_bad_inputs_are_counted_not_fatal(tiny_run):
    d = tiny_run["dir"] / "results"
    report = json.loads((d / "catalog" / "cleaning_report.json").read_text())
    assert report["rows_in"] == N_GOOD + 5
    dropped = json.dumps(report["dropped"])
    assert "dup" in dropped  # the duplicate objID
    clean = pd.read_parquet(d / "catalog" / "clean.parquet")
    assert clean["objID"].dtype == "int64" and clean["objID"].is_unique
    failure_files = sorted((d / "cutouts").glob("*.failures.csv"))
    failures = pd.concat(pd.read_csv(p, dtype={"objID": "int64"}) for p in failure_files)
    assert int(tiny_run["missing"]) in set(failures["objID"])
    rejected = pd.concat(pd.read_csv(p) for p in sorted((d / "images").glob("*/rejected.csv")))
    bad_image_reported = int(tiny_run["notjpeg"]) in set(failures["objID"]) | set(rejected["objID"])
    assert bad_image_reported


def test_the_ensemble_is_calibrated_scored_and_predicts_like_the_workflow(tiny_run, tmp_path):
    d = tiny_run["dir"]
    summary = json.loads((d / "results" / "summary.json").read_text())
    (ens,) = summary["ensembles"]
    assert ens["name"] == "resnet18-16px-seeds0-1" and ens["resolution"] == 16
    assert ens["members"] == ["resnet18-16px-seed0", "resnet18-16px-seed1"]
    test = ens["test"]
    assert test["n"] > 0 and 0 <= test["coverage68"] <= test["coverage95"] <= 1
    assert 0 < test["width68"] < test["width95"]
    unc = json.loads((d / "results" / "uncertainty" / "oh_p50" / f"{ens['name']}.json").read_text())
    assert unc["coverage68"] == test["coverage68"] and len(unc["risk_coverage"]) == 10 and unc["binned"]
    for fig in ("calibration", "risk_coverage", "fig3_scatter"):
        assert (d / "results" / "figures" / "oh_p50" / ens["name"] / f"{fig}.png").is_file()
    assert not (d / "results" / "figures" / "oh_p50" / "resnet18-16px-seed1").exists()  # no member figures
    # the ensemble file through `galmet predict`, on the test galaxies' JPEGs: the workflow's numbers
    preds = pd.read_parquet(d / "results" / "predictions" / "oh_p50" / f"{ens['name']}.parquet")
    images = tmp_path / "images"
    images.mkdir()
    for oid in preds["objID"]:
        shutil.copy(d / "images" / f"{oid}.jpg", images / f"{oid}.jpg")
    # the members were trained in the reproducible mode (CPU): the workflow predicts in it, galmet
    # predict with the fast kernels unless --reproducible true (then to the workflow's digits)
    for setting, atol in (("true", 1e-6), ("auto", 2e-5)):
        out = tmp_path / f"cli-{setting}.parquet"
        subprocess.run([sys.executable, "-m", "galmet.cli", "predict", "--model", str(d / ens["path"]),
                        "--images", str(images), "--out", str(out), "--reproducible", setting],
                       check=True, capture_output=True)
        cli = pd.read_parquet(out)
        assert list(cli.columns) == ["objID", "prediction", "p2p5", "p16", "p84", "p97p5", "domain_p", "in_domain"]
        both = cli.merge(preds, on="objID", suffixes=("", "_wf"))
        assert len(both) == len(preds)
        assert (both["in_domain"] == both["in_domain_wf"]).all()
        for c in ("prediction", "p2p5", "p16", "p84", "p97p5", "domain_p"):
            np.testing.assert_allclose(both[c], both[f"{c}_wf"], atol=atol, err_msg=f"{c}, --reproducible {setting}")


def test_the_survey_model_is_distilled_scored_and_listed(tiny_run):
    """The survey rule distils the ensemble: its model file predicts the test split in one pass with
    intervals of one width, and summary.json lists it with its teacher, throughput and numbers."""
    d = tiny_run["dir"]
    summary = json.loads((d / "results" / "summary.json").read_text())
    (survey,) = summary["survey_models"]
    assert survey["name"] == "resnet18-16px-seeds0-1-survey" and survey["teacher"] == "resnet18-16px-seeds0-1"
    assert survey["path"] == "results/models/oh_p50/resnet18-16px-seeds0-1-survey/model.pt"
    rate = survey["throughput"]
    assert rate["galaxies_per_s"] > 0 and rate["speedup"] == rate["galaxies_per_s"] / rate["ensemble_galaxies_per_s"]
    assert survey["valid"]["n"] > 0 and survey["valid"]["teacher_rmse"] > 0
    test = survey["test"]
    assert test["n"] == summary["ensembles"][0]["test"]["n"]
    assert test["width68"] == pytest.approx(survey["valid"]["width68"])  # one width, the validation split's
    meta = read_meta(d / survey["path"])
    assert meta["tta"] == 1 and meta["survey"]["teacher"]["name"] == survey["teacher"]
    preds = pd.read_parquet(d / "results" / "predictions" / "oh_p50" / f"{survey['name']}.parquet")
    inside = preds[preds["in_domain"]]
    np.testing.assert_allclose(inside["p84"] - inside["p16"], test["width68"], atol=1e-6)
    log = (d / "results" / "logs" / "survey" / "oh_p50" / f"{survey['name']}.log").read_text()
    assert "labels: measured" in log and "galaxies/s against the ensemble's" in log
    assert survey["labels"] == "measured" and meta["survey"]["labels"] == "measured"
    assert (d / "results" / "benchmarks" / "survey" / "oh_p50" / f"{survey['name']}.tsv").is_file()


def test_predictions_cover_the_test_split(tiny_run):
    d = tiny_run["dir"] / "results"
    split = pd.read_parquet(d / "split.parquet")
    preds = pd.read_parquet(d / "predictions" / "oh_p50" / "resnet18-16px-seed0.parquet")
    assert preds["objID"].dtype == "int64"
    assert set(preds["objID"]) <= set(split.loc[split["split"] == "test", "objID"])
    assert preds["prediction"].notna().all() and preds["oh_p50"].between(7, 10).all()


def test_every_prediction_has_a_domain_test(tiny_run):
    """domain_p and in_domain on the test predictions, the flagged fraction in summary.json, the
    shifted-image check and its figure, for single models and the ensemble."""
    d = tiny_run["dir"] / "results"
    summary = json.loads((d / "summary.json").read_text())
    for entry in summary["models"] + summary["ensembles"]:
        preds = pd.read_parquet(d / "predictions" / "oh_p50" / f"{entry['name']}.parquet")
        assert preds["domain_p"].between(0, 1).all() and preds["in_domain"].dtype == bool
        dom = entry["domain"]
        assert dom["n"] == len(preds) and dom["flagged"] == int((preds["domain_p"] < dom["alpha"]).sum())
        block = read_meta(tiny_run["dir"] / entry["path"])["domain"]  # the model's own level is the config's
        assert block["alpha"] == dom["alpha"] == tiny_run["config"].get("predict", {}).get("domain_alpha", 0.05)
        assert block["n"] > dom["n"]  # calibrated on the train and valid galaxies, cross-conformal
        out = ~preds["in_domain"]
        assert (preds["domain_p"][out] < dom["alpha"]).all()
        if "p16" in preds:  # out of the domain: no interval
            assert preds.loc[out, "p16"].isna().all() and preds.loc[~out, "p16"].notna().all()
    for name in ("resnet18-16px-seed0", "resnet18-16px-seeds0-1"):
        check = json.loads((d / "domain" / "oh_p50" / f"{name}.json").read_text())
        assert set(check["sets"]) >= {"as observed", "blank_sky", "band_reversed", "pasted_neighbour"}
        assert check["min_p"] == 1 / (check["n_calibration"] + 1)
        assert (d / "figures" / "oh_p50" / name / "domain.png").is_file()


def test_every_rule_left_a_log_and_a_benchmark(tiny_run):
    d = tiny_run["dir"] / "results"
    for rule in ("pack_images", "rebin_images", "split", "train", "predict", "evaluate", "summary", "saliency"):
        assert list((d / "logs").glob(f"{rule}*")) or list((d / "logs" / rule).rglob("*.log")), rule
        assert list((d / "benchmarks").glob(f"{rule}*")), rule


def test_saliency_maps_checks_and_figure_7(tiny_run):
    d = tiny_run["dir"] / "results"
    preds = pd.read_parquet(d / "predictions" / "oh_p50" / "resnet18-16px-seed0.parquet")
    with np.load(d / "saliency" / "oh_p50" / "resnet18-16px-seed0" / "saliency.npz") as z:
        assert sorted(z["objID"]) == sorted(preds["objID"]) and z["maps"].shape == (len(preds), 16, 16)
        np.testing.assert_allclose(np.sort(z["prediction"]), np.sort(preds["prediction"]), atol=1e-5)
    checks = json.loads((d / "saliency" / "oh_p50" / "resnet18-16px-seed0" / "saliency_checks.json").read_text())
    assert checks["method"] == "gradcam" and checks["n"] == len(preds)
    assert {"spearman_mean", "passes"} <= set(checks["randomisation"])
    assert checks["deletion"]["steps"] == 20 and checks["deletion"]["random_orders"] >= 5
    assert checks["science"]["verdict"] and checks["seconds"]["total"] > 0
    assert (d / "figures" / "oh_p50" / "resnet18-16px-seed0" / "fig7_saliency.png").stat().st_size > 10_000


def test_rerun_has_nothing_to_do(tiny_run):
    proc = snakemake(tiny_run["dir"], "-n", "--cores", "1")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_a_missing_model_file_is_rebuilt_by_a_plain_rerun(tiny_run):
    """An interrupted forced retrain leaves no model.pt: the default run must notice."""
    model = tiny_run["dir"] / "results" / "models" / "oh_p50" / "resnet18-16px-seed0" / "model.pt"
    aside = model.with_name("model.pt.aside")
    model.rename(aside)
    try:
        plan = snakemake(tiny_run["dir"], "-n", "--cores", "1")
        assert "rule train:" in plan.stdout + plan.stderr
    finally:
        aside.rename(model)


def test_config_from_the_command_line(tiny_run):
    """--config list values arrive as strings: coerced to the schema's types, then planned."""
    proc = snakemake(tiny_run["dir"], "-n", "--cores", "1", "--config", "resolutions=[16]", "seeds=[0,2]")
    plan = proc.stdout + proc.stderr
    assert "results/models/oh_p50/resnet18-16px-seed2/model.pt" in plan
    assert plan.count("rule train:") == 1  # seed 0 is trained already
    typo = snakemake(tiny_run["dir"], "-n", "--config", "resolutionz=[16]", check=False)
    assert typo.returncode != 0 and "did you mean 'resolutions'" in typo.stdout + typo.stderr


def test_invalid_config_names_the_key(tmp_path):
    cfg = tiny_config(tmp_path)
    cfg["train"]["bogus_key"] = 1
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0
    assert "bogus_key" in proc.stdout + proc.stderr
    # the message alone: no traceback lines of Snakemake's pointing into the workflow's files
    assert "common.smk" not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
    del cfg["train"]["bogus_key"]  # a valid config whose cutouts folder does not exist: stopped at start
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0 and "common.smk" not in proc.stderr
    # the message names the config file it is about, then the key
    assert (f"galmet: {tmp_path / 'config.yaml'}: config key cutouts.local_dir: {tmp_path / 'images'} "
            "is not a directory") in proc.stderr


def test_sfr_is_trained_scored_and_drawn_in_its_unit(tmp_path):
    """sfr_tot_p50, one entry in galmet.targets, runs through the workflow as metallicity does: its
    catalog column is kept and range-checked, a model of it trains (one epoch, 16 px), its metrics
    have no 9.1 dex fraction, and its model file, caption numbers and figures carry its label and
    unit. The bundled sample has no SFR (docs/method.md, section 1): the column here is a stand-in
    (a ramp over the rows), enough for the plumbing, not for the science."""
    from galmet import captions, figures
    from galmet.modelfile import read_meta
    from galmet.targets import get_target

    catalog = pd.read_csv(DEMO / "catalog.csv", dtype={"objID": "string"}).iloc[:40]
    catalog["sfr_tot_p50"] = 0.01 * (catalog.index - 20)
    catalog.loc[39, "sfr_tot_p50"] = -99.0  # no estimate: outside the registered range
    catalog.to_csv(tmp_path / "catalog.csv", index=False)
    cfg = tiny_config(tmp_path)
    cfg["cutouts"]["local_dir"] = str(DEMO / "images")
    cfg["targets"] = ["oh_p50", "sfr_tot_p50"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    model, res = "resnet18-16px-seed0", tmp_path / "results"
    outputs = [f"results/metrics/sfr_tot_p50/{model}.json",
               *(f"results/figures/sfr_tot_p50/{model}/{fig}.png" for fig in ("fig2_histograms", "fig3_scatter"))]
    snakemake(tmp_path, "--cores", "2", *outputs, "--resources", "gpu=1")

    report = json.loads((res / "catalog" / "cleaning_report.json").read_text())
    assert report["dropped"]["bad_sfr_tot_p50"] == 1 and report["rows_out"] == 39
    sfr = get_target("sfr_tot_p50")
    meta = read_meta(res / "models" / "sfr_tot_p50" / model / "model.pt")
    assert (meta["target"], meta["target_units"]) == ("sfr_tot_p50", "log10(SFR / Msun yr^-1)")
    metrics_json = res / "metrics" / "sfr_tot_p50" / f"{model}.json"
    assert not [k for k in json.loads(metrics_json.read_text()) if k.startswith("frac_")]
    numbers = captions.metric_numbers(metrics_json)
    assert numbers["unit"] == "dex" and "threshold" not in numbers
    preds = pd.read_parquet(res / "predictions" / "sfr_tot_p50" / f"{model}.parquet")
    fig = figures.fig3_scatter(preds["sfr_tot_p50"], preds["prediction"], target="sfr_tot_p50")
    assert fig.axes[0].get_xlabel() == r"true $\log\,({\rm SFR}/M_\odot\,{\rm yr}^{-1})$ [dex]" == sfr.label_true
    assert fig.axes[0].get_ylabel() == sfr.label_pred and fig.axes[1].get_ylabel() == "scatter [dex]"
    fig = figures.fig2_histograms(preds["sfr_tot_p50"], preds["prediction"], target="sfr_tot_p50")
    assert fig.axes[0].get_xlabel() == sfr.axis_text and not fig.axes[0].lines  # no threshold marked


def test_a_registered_backbone_is_trained_and_explained(tmp_path):
    """One entry in galmet.backbones is all a new body needs: train.arch efficientnet_b0 trains
    effb0-16px-seed0 through the workflow, whose saliency rule and `galmet explain` explain it at
    the backbone's own Grad-CAM layer (saliency.layer: auto)."""
    from galmet.cli import main as galmet_main

    catalog = pd.read_csv(DEMO / "catalog.csv", dtype={"objID": "string"}).iloc[:40]
    catalog.to_csv(tmp_path / "catalog.csv", index=False)
    cfg = tiny_config(tmp_path)
    cfg["cutouts"]["local_dir"] = str(DEMO / "images")
    cfg["train"]["arch"] = "efficientnet_b0"
    cfg["saliency"].update(models=["effb0-16px-seed0"], layer="auto", steps=2)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    model = tmp_path / "results/models/oh_p50/effb0-16px-seed0/model.pt"
    checks = tmp_path / "results/saliency/oh_p50/effb0-16px-seed0/saliency_checks.json"
    snakemake(tmp_path, "--cores", "2", str(model.relative_to(tmp_path)), str(checks.relative_to(tmp_path)))
    assert json.loads(checks.read_text())["layer"] == "features.3"

    images = tmp_path / "some"
    images.mkdir()
    for oid in catalog["objID"][:3]:
        shutil.copy(DEMO / "images" / f"{oid}.jpg", images / f"{oid}.jpg")
    assert galmet_main(["explain", "--model", str(model), "--images", str(images), "--out", str(tmp_path / "out"),
                        "--no-tta", "--steps", "2", "--random-orders", "1", "--no-png"]) == 0
    cli = json.loads((tmp_path / "out" / "saliency_checks.json").read_text())
    assert cli["layer"] == "features.3" and cli["n"] == 3
    with np.load(tmp_path / "out" / "saliency.npz") as z:
        assert z["maps"].shape == (3, 16, 16) and np.isfinite(z["maps"]).all() and np.abs(z["maps"]).max() > 0


def test_snakemake_lint_is_clean():
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--lint", "-s", str(ROOT / "Snakefile"),
                           "--directory", str(ROOT)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _planned_trainings(workdir, device: str) -> dict[str, tuple[int, int]]:
    """{model: (threads, gpu)} of the train jobs of the demo's plan (`snakemake -n`) on a
    machine that shows torch no GPU, with config train.device = ``device``."""
    import os

    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["catalog"]["path"] = str(DEMO / "catalog.csv")
    cfg["cutouts"]["local_dir"] = str(DEMO / "images")
    cfg["train"]["device"] = device
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake(workdir, "-n", "--cores", "2", "--resources", "gpu=1", timeout=300,
                     env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    jobs = {}
    for block in re.split(r"\n(?=\S)", proc.stdout + proc.stderr):
        if block.startswith("rule train:"):
            model = re.search(r"model=([\w-]+)", block).group(1)
            threads = re.search(r"threads: (\d+)", block)
            jobs[model] = (int(threads.group(1)) if threads else 1, int(re.search(r"gpu=(\d+)", block).group(1)))
    return jobs


def test_trainings_share_the_cores_on_a_machine_without_gpu(tmp_path):
    """Without a GPU, trainings hold no `gpu` and take one core each, so that the demo's five
    models train two at a time on 2 cores; told `cuda`, each holds the GPU (one at a time under
    --resources gpu=1) and every core."""
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cuda").mkdir()
    assert _planned_trainings(tmp_path / "cpu", "auto") == {
        "resnet18-64px-seed0": (1, 0), "resnet18-32px-seed0": (1, 0), "resnet18-64px-seed1": (1, 0),
        "resnet18-64px-seed2": (1, 0), "resnet18-16px-seed0": (1, 0)}
    on_gpu = _planned_trainings(tmp_path / "cuda", "cuda")
    assert set(on_gpu.values()) == {(2, 1)} and len(on_gpu) == 5


@pytest.mark.parametrize("service", ["legacysurvey", "panstarrs"])
def test_service_config_plans(tmp_path, service):
    """configs/legacysurvey.yaml and configs/panstarrs.yaml (the paper's run on Legacy Surveys or
    Pan-STARRS images) plan their whole DAG: with the catalog stage done (a made-up sharded
    catalog), `snakemake -n` lists a cutouts job per shard, each holding one of the service's own
    resource (`--resources <service>_jobs=N` caps them), and the paper's models, as for
    configs/paper.yaml."""
    import time

    from galmet.catalog import write_shards
    from galmet.io import write_json
    from galmet.tables import write_table

    cfg = yaml.safe_load((ROOT / "configs" / f"{service}.yaml").read_text())
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    cat = pd.read_csv(DEMO / "catalog.csv", dtype={"objID": "int64"})
    cat = cat.assign(ra=cat.index * 0.5, dec=30.0, petroR90_r=6.0)
    for name in ("skyserver", "clean"):
        write_table(cat, tmp_path / f"results/catalog/{name}.parquet")
        time.sleep(0.01)
    write_json({"rows_in": len(cat), "rows_out": len(cat), "dropped": {}, "skipped_cuts": {}},
               tmp_path / "results/catalog/cleaning_report.json")
    time.sleep(0.01)
    write_shards(cat, tmp_path / "results/catalog/shards", int(cfg["shards"]),
                 tmp_path / "results/catalog/shards/index.json")
    plan = snakemake(tmp_path, "-n", "--cores", "16", "--resources", "gpu=1", timeout=300)
    text = plan.stdout + plan.stderr
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", text, re.M))
    assert int(counts["cutouts"]) == cfg["shards"], text[-3000:]
    assert int(counts["train"]) >= 1 and "catalog_skyserver" not in counts
    jobs = re.findall(r"^rule cutouts:\n(?:\s+.*\n)*?\s+resources: (.*)$", text, re.M)
    assert len(jobs) == cfg["shards"], text[-3000:]
    assert all(f"{service}_jobs=1" in r and "skyserver_jobs=0" in r and "cutout_jobs=1" in r for r in jobs)
