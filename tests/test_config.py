import re
import subprocess
import sys

import pytest
import yaml

from galmet.config import ConfigError, load_config

from .conftest import ROOT


def test_default_config_is_valid():
    cfg = load_config(ROOT / "config.yaml")
    assert cfg["split"]["fractions"]["train"] == 0.6


def test_unknown_key_is_named(tmp_path):
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["train"]["epoch"] = 3
    with pytest.raises(ConfigError, match=r"'epoch' was unexpected.*under train"):
        load_config(raw)


def test_wrong_type_is_named():
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["shards"] = "four"
    with pytest.raises(ConfigError, match="config key shards"):
        load_config(raw)


def test_survey_labels_default_to_measured_and_others_are_named():
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["survey"] = {"cycles": [60]}
    assert load_config(raw)["survey"]["labels"] == "measured"
    raw["survey"]["labels"] = "ensemble"
    with pytest.raises(ConfigError, match=r"'ensemble'.*survey\.labels|survey\.labels.*'ensemble'"):
        load_config(raw)


def test_fractions_must_sum_to_one():
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["split"]["fractions"] = {"train": 0.5, "valid": 0.2, "test": 0.2}
    with pytest.raises(ConfigError, match="split.fractions"):
        load_config(raw)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_targets_are_the_registered_ones(monkeypatch):
    """The schema's list of targets is galmet.targets.TARGETS: one entry there, nothing else."""
    from galmet.config import load_schema
    from galmet.targets import TARGETS, Target

    assert load_schema()["properties"]["targets"]["items"] == {"enum": list(TARGETS)}
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["targets"] = ["oh_p50", "d4000_n"]
    with pytest.raises(ConfigError, match=r"targets\.1: 'd4000_n' is not one of"):
        load_config(raw)
    monkeypatch.setitem(TARGETS, "d4000_n", Target("d4000_n", r"$D_n(4000)$"))
    assert load_config(raw)["targets"] == ["oh_p50", "d4000_n"]


def test_command_line_strings_are_coerced_to_the_schema_types():
    """Snakemake hands --config resolutions=[32] seeds=[0,1] over as lists of strings."""
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw.update(resolutions=["32"], seeds=["0", "1"], shards="3")
    raw["train"]["stage2"] = {"cycles": ["2"], "lrs": ["0.01", "1e-3", "0.1"]}
    raw["cutouts"]["scale"] = "0.117"
    raw["split"]["force_test_ids"] = "null"
    cfg = load_config(raw)
    assert cfg["resolutions"] == [32] and cfg["seeds"] == [0, 1] and cfg["shards"] == 3
    assert cfg["train"]["stage2"]["lrs"] == [0.01, 0.001, 0.1] and cfg["train"]["stage2"]["cycles"] == [2]
    assert cfg["cutouts"]["scale"] == 0.117 and cfg["split"]["force_test_ids"] is None
    raw["resolutions"] = ["32px"]  # not a number: still named by validation
    with pytest.raises(ConfigError, match="resolutions.0"):
        load_config(raw)


def test_unknown_key_gets_a_did_you_mean_hint():
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["resolutionz"] = [16]
    with pytest.raises(ConfigError, match=r"'resolutionz': did you mean 'resolutions'\?"):
        load_config(raw)
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["train"]["batchsize"] = 8
    with pytest.raises(ConfigError, match=r"under train \('batchsize': did you mean 'batch_size'\?\)"):
        load_config(raw)


def test_problems_in_the_inputs_are_found_at_start(tmp_path, monkeypatch):
    from galmet.config import check_inputs

    monkeypatch.chdir(tmp_path)
    (tmp_path / "cat.csv").write_text("objID,oh_p50\n1237648702973411999,8.9\n")
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["catalog"]["path"] = "cat.csv"
    with pytest.raises(ConfigError, match=r"cutouts.local_dir: resources/demo/images is not a directory \(relative "
                       rf"to the working directory {tmp_path}\)"):
        check_inputs(load_config(raw))  # the demo's relative folder, from another directory
    raw["cutouts"]["local_dir"] = str(ROOT / "resources" / "demo" / "images")
    raw["targets"] = ["oh_p50", "lgm_tot_p50"]
    with pytest.raises(ConfigError, match=r"lgm_tot_p50 not in the columns of catalog.path cat.csv"):
        check_inputs(load_config(raw))
    raw["targets"] = ["oh_p50"]
    check_inputs(load_config(raw))
    raw["resolutions"] = [256]
    with pytest.raises(ConfigError, match="256 px is larger than the cutouts"):
        load_config(raw)


def test_cnn_jobs_ask_for_a_gpu_only_where_there_is_one(tmp_path, monkeypatch):
    """A CNN job holds `gpu=1` (one per GPU at a time) on a machine with a GPU or when told
    `cuda`; on a machine without one it holds none, and runs beside the others on the cores."""
    from galmet.config import gpu_jobs, gpu_visible

    card = tmp_path / "nvidia0"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert not gpu_visible([tmp_path / "absent"]) and gpu_visible([card]) is False
    card.touch()
    assert gpu_visible([card])
    assert [gpu_jobs(d, [card]) for d in ("auto", "cuda", "cpu")] == [1, 1, 0]
    assert [gpu_jobs(d, [tmp_path / "absent"]) for d in ("auto", "cuda", "cpu")] == [0, 1, 0]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # hides the GPU from torch, so from the plan
    assert gpu_jobs("auto", [card]) == 0


def test_section_fills_the_schema_defaults_that_library_and_command_line_use(capsys):
    """config.section / config.default: the one place defaults come from (the schema), for
    train_model, the baselines and the galmet commands' options."""
    from galmet import config
    from galmet.cli import main

    given = {"stage2": {"cycles": [1]}}
    train = config.section("train", given)
    assert given == {"stage2": {"cycles": [1]}}  # the caller's dict is not changed
    assert train["stage2"] == {"cycles": [1], "lrs": [0.001, 0.01, 0.1]} and train["head"]["hidden"] == 512
    with pytest.raises(config.ConfigError, match="config key predict.tta"):
        config.section("predict", {"tta": 9})
    with pytest.raises(KeyError, match="predict.nope"):
        config.default("predict.nope")
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    assert f"(default {config.default('predict.chunk_size')})" in " ".join(capsys.readouterr().out.split())



def test_a_config_must_name_its_experiments():
    """targets, resolutions, seeds and ensemble have no default: a config that leaves one out is
    refused, naming the keys (it used to run the schema's or the demo's experiments)."""
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    del raw["resolutions"], raw["ensemble"]
    with pytest.raises(ConfigError, match=r"config keys resolutions, ensemble not set: the experiment keys"):
        load_config(raw)
    raw["resolutions"], raw["ensemble"] = [32], None  # null is a choice: no ensemble
    assert load_config(raw)["ensemble"] is None


def _dry_run(workdir, *args):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir), "-n", "--cores", "1",
           *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_a_configfile_is_the_whole_run_and_a_missing_config_is_named(tmp_path):
    """`--configfile X` is not merged over config.yaml: a partial X is refused naming X and the
    keys; a working directory (-d) without config.yaml and no --configfile stops naming the
    directory and the shipped configs; two --configfile are layered in order."""
    partial = tmp_path / "partial.yaml"
    partial.write_text(yaml.safe_dump({"targets": ["oh_p50"], "resolutions": [16]}))
    proc = _dry_run(tmp_path, "--configfile", str(partial))
    assert proc.returncode != 0
    assert f"galmet: {partial}: invalid configuration" in proc.stderr
    assert "config keys seeds, ensemble not set" in proc.stderr
    # the layering the message shows is one that Snakemake merges (one flag, both files; a second
    # --configfile flag would replace the first, and the same refusal would come back)
    shown = re.search(r"--configfile (\S+) (\S+)$", proc.stderr, re.M)
    assert shown and shown[1] == "config.yaml" and shown[2] == "my.yaml", proc.stderr[-2000:]
    twice = _dry_run(tmp_path, "--configfile", str(ROOT / "config.yaml"), "--configfile", str(partial))
    assert twice.returncode != 0 and "config keys seeds, ensemble not set" in twice.stderr
    empty = tmp_path / "run"
    empty.mkdir()
    proc = _dry_run(empty)
    assert proc.returncode != 0
    assert f"no config.yaml in the working directory {empty}" in proc.stderr
    assert f"--configfile {ROOT}/configs/paper.yaml" in proc.stderr
    # layered on the demo: the demo's experiments at 16 px only, from another working directory
    proc = _dry_run(empty, "--configfile", str(ROOT / "config.yaml"), str(partial), "--quiet", "rules")
    assert proc.returncode == 0, proc.stderr[-3000:]
    trains = re.findall(r"^train\s+(\d+)$", proc.stdout, re.M)
    assert trains[0] == "4"  # 16 px seed 0; the ensemble's 64 px seeds 0, 1, 2
