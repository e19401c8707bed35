"""galmet.names: the one format of model names, built, parsed and matched by the workflow."""

from __future__ import annotations

import re

import pytest

from galmet.names import MODEL_PATTERN, model_name, parse_model_name, seed_group


def test_build_and_parse_round_trip():
    name = model_name("resnet34", 128, 2)
    assert name == "resnet34-128px-seed2"
    assert parse_model_name(name) == {"arch": "resnet34", "resolution": 128, "seed": 2}
    assert model_name("resnet18", "16", "0") == "resnet18-16px-seed0"  # wildcard strings too


@pytest.mark.parametrize("bad", ["resnet18-64px", "resnet18-64-seed0", "ResNet18-64px-seed0",
                                 "resnet18-64px-seed0.json", "oh_p50/resnet18-64px-seed0", ""])
def test_parse_rejects_and_names_the_bad_name(bad):
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        parse_model_name(bad)


def test_model_name_refuses_an_arch_that_would_not_parse_back():
    with pytest.raises(ValueError, match="not of the form"):
        model_name("res-net", 64, 0)


def test_pattern_is_the_wildcard_constraint():
    """What the workflow's {model} matches: a name, never a path or a name with a suffix."""
    assert re.fullmatch(MODEL_PATTERN, "resnet50-8px-seed11")
    assert not re.fullmatch(MODEL_PATTERN, "resnet18-64px-seed0/shard-0")
    assert not re.fullmatch(MODEL_PATTERN, "published-16px")
    assert "(" not in MODEL_PATTERN  # no groups: Snakemake wraps it in its own named group


def test_seed_group_is_the_name_without_the_seed():
    assert seed_group("resnet18", 64) == "resnet18-64px"
    assert model_name("resnet18", 64, 3).startswith(seed_group("resnet18", 64) + "-")


def test_ensemble_names_round_trip_and_match_only_the_ensemble_pattern():
    from galmet.names import ANY_MODEL_PATTERN, ENSEMBLE_PATTERN, ensemble_name

    name = ensemble_name("resnet18", 32, [0, 1, 2])
    assert name == "resnet18-32px-seeds0-1-2"
    assert parse_model_name(name) == {"arch": "resnet18", "resolution": 32, "seeds": [0, 1, 2]}
    assert re.fullmatch(ENSEMBLE_PATTERN, name) and not re.fullmatch(MODEL_PATTERN, name)
    assert not re.fullmatch(ENSEMBLE_PATTERN, "resnet18-32px-seed0")
    for either in (name, "resnet18-32px-seed0"):
        assert re.fullmatch(ANY_MODEL_PATTERN, either)
    assert not re.fullmatch(ANY_MODEL_PATTERN, name + "/x")
    with pytest.raises(ValueError, match="two or more distinct seeds"):
        ensemble_name("resnet18", 32, [0])
    with pytest.raises(ValueError, match="two or more distinct seeds"):
        ensemble_name("resnet18", 32, [1, 1])
