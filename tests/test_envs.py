"""The conda environments (envs/*.yaml) pin the same versions as pyproject.toml."""

import re

import pytest
import tomllib
import yaml

from .conftest import ROOT


def pyproject_pins() -> dict[str, str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {}
    for dep in deps:
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([\w.]+)", dep.strip())
        assert m, f"pyproject.toml dependency {dep!r} is not pinned with =="
        pins[m[1].lower()] = m[2]
    return pins


def env_pins(path) -> dict[str, str]:
    env = yaml.safe_load(path.read_text())
    pins = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for pip_dep in dep.get("pip", []):
                name, _, version = pip_dep.partition("==")
                pins[name.lower()] = version
        else:
            name, _, version = dep.partition("=")
            if name not in ("python", "pip"):
                pins[name.lower()] = version
    return pins


ENV_FILES = sorted((ROOT / "envs").glob("*.yaml"))


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_pins_match_pyproject(path):
    pins = pyproject_pins()
    for name, version in env_pins(path).items():
        assert name in pins, f"{path.name}: {name} is not a dependency in pyproject.toml"
        assert version == pins[name], f"{path.name}: {name}={version} but pyproject.toml pins {pins[name]}"


def test_every_runtime_dependency_is_in_some_env():
    covered = set().union(*(env_pins(p) for p in ENV_FILES))
    # the workflow engine and its SLURM plugin run Snakemake itself, not inside a rule's env
    engine = {"snakemake", "snakemake-executor-plugin-slurm"}
    assert set(pyproject_pins()) - engine <= covered


def test_every_rule_names_an_existing_conda_env():
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        blocks = re.split(r"^(?=(?:rule|checkpoint) \w+:)", smk.read_text(), flags=re.M)[1:]
        for block in blocks:
            name = block.split(":")[0]
            if not re.search(r"^\s+(script|shell|run|wrapper):", block, flags=re.M):
                continue  # a target rule runs no code
            m = re.search(r"^\s+conda:\s*\n?\s*\"([^\"]+)\"", block, flags=re.M)
            assert m, f"{smk.name}: {name} has no conda: environment"
            assert (smk.parent / m[1]).resolve().is_file(), f"{smk.name}: {name} names a missing env {m[1]}"
