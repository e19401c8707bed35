"""The experiments each shipped config plans, read off Snakemake's dry run of the workflow
(galmet.dag), against the experiments written out here: a change to a config, a rule or
galmet.plan that adds or loses an experiment fails this file. Also `galmet plan` itself, its
dry-run parser and its estimate. One dry run per config (~3 s each)."""

from __future__ import annotations

import json
import math

import pytest

from galmet.cli import main
from galmet.config import ConfigError
from galmet.dag import DryRunError, config_files, dry_run, experiments, parse_dry_run
from galmet.estimate import estimate, split_sizes
from galmet.rates import GPU_SCALE_CAP, RATES, rate

from .conftest import ROOT

# ---- the experiments of each shipped config, written out ----

TARGETS_PAPER = ["oh_p50", "lgm_tot_p50"]
PAPER_STUDY = ["resnet34-128px-seed0", "resnet34-64px-seed0", "resnet34-32px-seed0", "resnet34-16px-seed0",
               "resnet34-8px-seed0", "resnet34-4px-seed0", "resnet34-2px-seed0", "resnet34-1px-seed0"]
PAPER_MEMBERS = ["resnet34-128px-seed1", "resnet34-128px-seed2", "resnet34-128px-seed3", "resnet34-128px-seed4"]
PAPER_ENSEMBLE = "resnet34-128px-seeds0-1-2-3-4"

SURVEY_STUDY = ["resnet34-128px-seed0", "resnet34-64px-seed0", "resnet34-32px-seed0", "resnet34-16px-seed0"]

DEMO_STUDY = ["resnet18-64px-seed0", "resnet18-32px-seed0", "resnet18-16px-seed0"]
DEMO_MEMBERS = ["resnet18-64px-seed1", "resnet18-64px-seed2"]
DEMO_ENSEMBLE = "resnet18-64px-seeds0-1-2"

BASELINES = ["constant", "rf_gri", "rf_ugriz"]


def expected(targets, study, members, ensemble, saliency, mzr):
    """The experiments (as :func:`galmet.dag.experiments` gives them, as sets) of a config whose
    study models, extra ensemble members, ensemble and saliency model are these."""
    per_model = {f"{t}/{m}" for t in targets for m in study}
    with_ensemble = per_model | {f"{t}/{ensemble}" for t in targets}
    figures = {
        "Figure 1: examples": per_model,
        "Figure 2: histograms": per_model,
        "Figure 3: predicted vs true": with_ensemble,
        "Figure 4: scatter vs resolution": set(targets),
        "Figure 7: saliency": {f"{t}/{saliency}" for t in targets},
        "calibration (reliability, PIT)": {f"{t}/{ensemble}" for t in targets},
        "risk-coverage": {f"{t}/{ensemble}" for t in targets},
        "applicability domain": with_ensemble,
    }
    if mzr:
        figures["Figure 5: mass route"] = set(mzr)
        figures["Figure 6: mass-metallicity relation"] = set(mzr)
    return {
        "trainings": {(t, m) for t in targets for m in study + members},
        "ensembles": {(t, ensemble) for t in targets},
        "surveys": {(t, f"{ensemble}-survey") for t in targets},  # every shipped config distils its ensemble
        "predictions": {(t, m) for t in targets for m in study + members + [ensemble, f"{ensemble}-survey"]},
        "baselines": {(t, b) for t in targets for b in BASELINES},
        "figures": figures,
        "mass_route": set(mzr),
        "mzr": set(mzr),
        "saliency": {(t, saliency) for t in targets},
    }


PLANS = {
    "config.yaml": expected(["oh_p50"], DEMO_STUDY, DEMO_MEMBERS, DEMO_ENSEMBLE, "resnet18-64px-seed0", []),
    "configs/paper.yaml": expected(TARGETS_PAPER, PAPER_STUDY, PAPER_MEMBERS, PAPER_ENSEMBLE,
                                   "resnet34-128px-seed0", PAPER_STUDY + [PAPER_ENSEMBLE]),
    "configs/legacysurvey.yaml": expected(["oh_p50"], SURVEY_STUDY, PAPER_MEMBERS, PAPER_ENSEMBLE,
                                          "resnet34-128px-seed0", []),
    "configs/panstarrs.yaml": expected(["oh_p50"], SURVEY_STUDY, PAPER_MEMBERS, PAPER_ENSEMBLE,
                                       "resnet34-128px-seed0", []),
}


@pytest.fixture(scope="module")
def runs():
    """One dry run per shipped config, made when first asked for."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = dry_run([name], cwd=ROOT)
        return cache[name]

    return get


def as_sets(exp: dict) -> dict:
    pairs = {k: {(m["target"], m["model"]) for m in exp[k]}
             for k in ("trainings", "ensembles", "surveys", "predictions")}
    return {**pairs, "baselines": set(exp["baselines"]), "mass_route": set(exp["mass_route"]),
            "mzr": set(exp["mzr"]), "saliency": set(exp["saliency"]),
            "figures": {k: set(v) for k, v in exp["figures"].items()}}


@pytest.mark.parametrize("config", list(PLANS))
def test_the_dry_run_plans_the_expected_experiments(config, runs):
    got = as_sets(experiments(runs(config).jobs))
    want = PLANS[config]
    for key in want:
        assert got[key] == want[key], f"{config}: {key} differ: planned {got[key]!r}"
    # every figure/job list has no repeats (a model planned twice would be one job in the set)
    exp = experiments(runs(config).jobs)
    assert len(exp["trainings"]) == len(want["trainings"])


def test_the_paper_plan_in_numbers(runs):
    run = runs("configs/paper.yaml")
    exp = experiments(run.jobs)
    assert len(exp["trainings"]) == 24 == 2 * 8 + 2 * 4
    assert sorted({m["resolution"] for m in exp["trainings"]}) == [1, 2, 4, 8, 16, 32, 64, 128]
    assert {m["arch"] for m in exp["trainings"]} == {"resnet34"}
    assert [m["seeds"] for m in exp["ensembles"]] == [[0, 1, 2, 3, 4]] * 2
    assert run.counts["train"] == 24 and run.counts["ensemble"] == 2 and run.counts["baseline"] == 6
    assert run.total == sum(run.counts.values()) == len(run.jobs)


# ---- the parser ----

DRY_RUN_TEXT = """\
Building DAG of jobs...
Job stats:
job            count
-----------  -------
fetch              1
train              2
all                1
total              4

[Thu Dec  3 13:26:08 2026]
localrule fetch:
    output: a.txt
    jobid: 3
[Thu Dec  3 13:26:08 2026]
rule train:
    output: results/models/oh_p50/resnet18-64px-seed0/model.pt
    wildcards: target=oh_p50, model=resnet18-64px-seed0
    resources: tmpdir=/tmp
[Thu Dec  3 13:26:08 2026]
rule train:
    wildcards: target=lgm_tot_p50, model=resnet18-32px-seed1
[Thu Dec  3 13:26:08 2026]
localcheckpoint all:
    input: a.txt
Job stats:
job            count
-----------  -------
fetch              1
"""


def test_parse_dry_run_reads_job_blocks_and_stats():
    jobs, counts = parse_dry_run(DRY_RUN_TEXT)
    assert [(j.rule, j.kind, j.wildcards) for j in jobs] == [
        ("fetch", "rule", {}),
        ("train", "rule", {"target": "oh_p50", "model": "resnet18-64px-seed0"}),
        ("train", "rule", {"target": "lgm_tot_p50", "model": "resnet18-32px-seed1"}),
        ("all", "checkpoint", {}),
    ]
    assert counts == {"fetch": 1, "train": 2, "all": 1}
    trainings = experiments(jobs)["trainings"]
    assert [(m["target"], m["resolution"], m["seed"]) for m in trainings] == [("lgm_tot_p50", 32, 1),
                                                                              ("oh_p50", 64, 0)]


def test_parse_dry_run_refuses_blocks_that_disagree_with_the_stats():
    with pytest.raises(DryRunError, match="do not agree"):
        parse_dry_run(DRY_RUN_TEXT.replace("train              2", "train              3"))


def test_a_missing_configfile_names_the_path_and_the_working_directory(tmp_path):
    with pytest.raises(ConfigError, match=f"config file {tmp_path}/nope.yaml not found .working directory {tmp_path}"):
        config_files(["nope.yaml"], cwd=tmp_path)
    with pytest.raises(ConfigError, match=f"no config.yaml in {tmp_path}"):
        config_files([], cwd=tmp_path)


def test_a_bad_config_stops_before_the_dry_run(tmp_path):
    (tmp_path / "bad.yaml").write_text("targets: [oh_p50]\nresolutions: [64]\nseeds: [0]\n")
    with pytest.raises(ConfigError, match="ensemble"):
        dry_run(["bad.yaml"], cwd=tmp_path)


# ---- rates and the estimate ----

def test_rates_are_measured_interpolated_or_scaled_and_say_so():
    table = {("gpu", "resnet34"): {"basis": "b", "threads": 1, "rates": {64: {"train": 400.0, "predict": 1000.0},
                                                                         128: {"train": 100.0, "predict": 250.0}}}}
    assert rate(table, "gpu", "resnet34", 128)["train"] == 100.0
    mid = rate(table, "gpu", "resnet34", 90)
    assert 100.0 < mid["train"] < 400.0 and "interpolated" in mid["how"]
    assert rate(table, "gpu", "resnet34", 256)["train"] == pytest.approx(25.0)  # 4x the pixels
    assert rate(table, "gpu", "resnet34", 1)["train"] == pytest.approx(400.0 * GPU_SCALE_CAP)  # capped
    assert "resnet34's rates" in rate(table, "gpu", "effnet", 64)["how"]
    with pytest.raises(KeyError, match="no cpu rates"):
        rate(table, "cpu", "resnet34", 64)


def test_every_shipped_rate_is_positive_with_its_basis():
    for (device, arch), entry in RATES.items():
        assert device in ("cpu", "gpu") and entry["basis"] and entry["threads"] >= 1
        assert all(v["train"] > 0 and v["predict"] > 0 for v in entry["rates"].values()), (device, arch)


def test_the_estimate_adds_up():
    config = {"split": {"fractions": {"train": 0.5, "valid": 0.25, "test": 0.25}}, "predict": {"tta": 2},
              "train": {"pretrained": "imagenet", "stage1": {"epochs": 1}, "stage2": {"cycles": [1, 2]}}}
    exp = {"trainings": [{"target": "t", "model": "a-8px-seed0", "arch": "a", "resolution": 8, "seed": 0}],
           "ensembles": [], "predictions": [{"target": "t", "model": "a-8px-seed0", "arch": "a", "resolution": 8,
                                             "seed": 0}]}
    table = {("cpu", "a"): {"basis": "b", "threads": 2, "rates": {8: {"train": 10.0, "predict": 100.0}}}}
    est = estimate(exp, config, 1000, {"cpu": table}, cores=4)
    assert split_sizes(config, 1000) == {"train": 500, "valid": 250, "test": 250}
    cpu = est["devices"]["cpu"]
    # 1 + 1 + 2 epochs x 500 / 10 + (4 validation passes + the TTA score, 2 views) x 250 / 100;
    # prediction 250 x 2 / 100
    assert est["epochs"] == 4
    assert cpu["seconds"]["train"] == pytest.approx(200 + 15)
    assert cpu["seconds"]["predict"] == pytest.approx(5.0)
    assert cpu["longest_chain"] == pytest.approx(220)
    assert math.isclose(cpu["total"], 220)
    assert cpu["wall_cores"] == pytest.approx(220)  # 4 cores: never under the longest chain
    one_core = estimate(exp, config, 1000, {"cpu": table}, cores=1)["devices"]["cpu"]
    assert one_core["wall_cores"] == pytest.approx(440)  # measured on 2 threads, run on 1
    config["train"]["pretrained"] = "none"  # no stage 1
    assert estimate(exp, config, 1000, {"cpu": table}, cores=4)["epochs"] == 3


# ---- galmet plan ----

def test_galmet_plan_shows_the_paper_run(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(["plan", "--configfile", "configs/paper.yaml", "--cores", "16"]) == 0
    out = capsys.readouterr().out
    assert "Trainings: 24 (backbone resnet34, pretrained imagenet)" in out
    assert "resolutions: 128, 64, 32, 16, 8, 4, 2, 1 px; seeds: 0, 1, 2, 3, 4" in out
    assert "  train                       24" in out
    assert "cutouts 64, pack_images 64, rebin_images 448" in out
    flat = " ".join(out.split())  # the long lines are wrapped
    assert "142,000 galaxies (the paper's selection from skyserver, after its cuts" in flat
    assert "train 85,200 / valid 28,400 / test 28,400; 9 epochs a training" in flat
    assert "GPU rates, basis: the paper's reported cost, not measured by galmet" in flat
    assert "CPU rates, basis: measured by galmet.rates.measure" in flat
    assert "resnet34 128 px: train 1,400 img/s, predict 1,000 img/s (measured at 128 px)" in flat
    assert "resnet34 1 px: train 22,400 img/s, predict 16,000 img/s (128 px rate x 16: pixel scaling capped)" in flat
    for line in ("estimated wall time, one GPU box (--resources gpu=1", "estimated wall time, a cluster",
                 "estimated wall time, CPU only with --cores 16", "not estimated: downloads"):
        assert line in out


def test_galmet_plan_json(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(["plan", "--configfile", "configs/paper.yaml", "--galaxies", "10000", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert len(plan["experiments"]["trainings"]) == 24
    assert plan["jobs"]["train"] == 24 and plan["total_jobs"] == sum(plan["jobs"].values())
    est = plan["estimate"]
    assert est["galaxies"] == 10000 and est["split"] == {"train": 6000, "valid": 2000, "test": 2000}
    gpu, cpu = est["devices"]["gpu"], est["devices"]["cpu"]
    assert 0 < gpu["longest_chain"] < gpu["total"] < cpu["total"]
    assert {r["resolution"] for r in gpu["rates"]} == {1, 2, 4, 8, 16, 32, 64, 128}


def test_galmet_plan_refuses_a_missing_configfile(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["plan", "--configfile", "missing.yaml"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path}/missing.yaml not found (working directory {tmp_path})" in err


def test_a_config_with_its_own_relative_inputs_plans_from_its_folder(tmp_path):
    """The dry run's empty folder sees the user's relative catalog and cutouts folder (linked in),
    as a run in the user's folder would; without them the workflow stops at start."""
    (tmp_path / "mycat.csv").symlink_to(ROOT / "resources" / "demo" / "catalog.csv")
    (tmp_path / "imgs").symlink_to(ROOT / "resources" / "demo" / "images")
    raw = (ROOT / "config.yaml").read_text()
    raw = raw.replace("path: resources/demo/catalog.csv", "path: mycat.csv")
    raw = raw.replace("local_dir: resources/demo/images", "local_dir: imgs")
    raw = raw.replace("resolutions: [64, 32, 16]", "resolutions: [64]")
    (tmp_path / "mine.yaml").write_text(raw)
    run = dry_run(["mine.yaml"], cwd=tmp_path)
    assert {m["model"] for m in experiments(run.jobs)["trainings"]} == {
        "resnet18-64px-seed0", "resnet18-64px-seed1", "resnet18-64px-seed2"}
    (tmp_path / "imgs").unlink()
    with pytest.raises(DryRunError, match="cutouts.local_dir: imgs is not a directory"):
        dry_run(["mine.yaml"], cwd=tmp_path)


def test_measure_times_training_and_prediction_on_this_machine():
    from galmet.rates import measure

    table = measure("resnet18", [8], "cpu", seconds=1.0, train_batch=8, predict_batch=16)
    (device, arch), entry = next(iter(table.items()))
    assert (device, arch) == ("cpu", "resnet18") and "measured by galmet plan --measure" in entry["basis"]
    assert entry["rates"][8]["train"] > 0 and entry["rates"][8]["predict"] > 0
    assert rate(table, "cpu", "resnet18", 8)["how"] == "measured at 8 px"
