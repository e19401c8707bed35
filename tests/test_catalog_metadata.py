"""The Snakemake workflow catalog's metadata (.snakemake-workflow-catalog.yml at the repository
root): it parses, has what the catalog reads (usage: mandatory-flags desc and flags; the
software-stack-deployment switches), its flags are Snakemake's, and what it claims holds."""

from __future__ import annotations

import re

import pytest
import yaml

from .conftest import ROOT
from .test_module import USER_SNAKEFILE

PATH = ROOT / ".snakemake-workflow-catalog.yml"
DEPLOYMENT = {"conda", "apptainer", "apptainer+conda", "report"}


@pytest.fixture(scope="module")
def usage() -> dict:
    meta = yaml.safe_load(PATH.read_text())
    assert set(meta) == {"usage"}, f"{PATH.name}: the catalog reads `usage` only, not {sorted(meta)}"
    return meta["usage"]


def flags(usage) -> list[str]:
    value = usage["mandatory-flags"]["flags"]
    return value.split() if isinstance(value, str) else list(value)  # a string or a list, as the catalog takes


def test_the_catalog_finds_its_keys(usage):
    assert set(usage) == {"mandatory-flags", "software-stack-deployment"}
    assert set(usage["mandatory-flags"]) == {"desc", "flags"} and usage["mandatory-flags"]["desc"].strip()
    deployment = usage["software-stack-deployment"]
    assert set(deployment) == DEPLOYMENT and all(isinstance(v, bool) for v in deployment.values())


def test_the_mandatory_flags_are_snakemakes_and_say_how_many_gpus(usage):
    from snakemake.cli import get_argument_parser

    args = get_argument_parser().parse_args(flags(usage))
    assert "gpu" in args.resources and args.rerun_incomplete
    for flag in flags(usage):
        if flag.startswith("--"):
            assert flag in usage["mandatory-flags"]["desc"], f"{flag} is not explained in desc"


def test_the_module_usage_is_the_one_tested(usage):
    """desc tells how to use galmet as a module with the statements tests/test_module.py runs."""
    desc = " ".join(usage["mandatory-flags"]["desc"].split())
    for statement in ("module galmet:", "use rule * from galmet as galmet_*", 'configfile: "config.yaml"',
                      "config: config"):
        assert statement in desc and " ".join(statement.split()) in " ".join(USER_SNAKEFILE.split())
    assert "--workflow-profile <galmet>/profiles/default" in desc and (ROOT / "profiles" / "default").is_dir()


def test_conda_deployment_has_an_environment_for_every_rule(usage):
    """conda: true means `--sdm conda` works: every rule that runs a script names an environment
    file that exists (the target rules run nothing)."""
    assert usage["software-stack-deployment"]["conda"]
    scripts = 0
    for path in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        blocks = re.split(r"^(?=(?:rule|checkpoint) \w+:)", path.read_text(), flags=re.M)[1:]
        for block in blocks:
            name = block.split(":", 1)[0]
            if "\n    script:" not in block:
                continue
            env = re.search(r"^    conda:\s+\"([^\"]+)\"", block, flags=re.M)
            assert env, f"{path.name}: {name} runs a script without a conda: environment"
            assert (path.parent / env.group(1)).resolve().is_file(), f"{path.name}: {env.group(1)} does not exist"
            scripts += 1
    assert scripts >= 30  # every rule file was read (35 script rules today)
