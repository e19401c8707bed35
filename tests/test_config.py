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
