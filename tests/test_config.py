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
    raw["targets"] = ["oh_p50", "sfr_tot_p50"]
    with pytest.raises(ConfigError, match=r"targets\.1: 'sfr_tot_p50' is not one of"):
        load_config(raw)
    monkeypatch.setitem(TARGETS, "sfr_tot_p50", Target("sfr_tot_p50", "log SFR", unit="dex"))
    assert load_config(raw)["targets"] == ["oh_p50", "sfr_tot_p50"]
