# Shared set-up: config validation, paths, and the lists of models the workflow builds.

import os
import sys
from pathlib import Path

# The package lives in src/; make it importable by this process and by every job's script,
# also when a job runs elsewhere (SLURM re-reads this file on the compute node).
GALMET_SRC = str(Path(workflow.basedir) / "src")
if GALMET_SRC not in sys.path:
    sys.path.insert(0, GALMET_SRC)
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in [GALMET_SRC, os.environ.get("PYTHONPATH", "")] if p
)

# OpenMP threads that spin while waiting steal the cores of the jobs beside them: with torch's
# default, a training step next to another job ran 6x slower on 2 cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from snakemake.exceptions import WorkflowError  # noqa: E402

from galmet.config import ConfigError, validate_config  # noqa: E402

try:
    validate_config(config)
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None


CUTOUT_SIZE = min(config["cutouts"]["width"], config["cutouts"]["height"])
ARCH = config["train"]["arch"]
RESOLUTIONS = [int(r) for r in config["resolutions"]]
TARGETS = list(config["targets"])
SEEDS = [int(s) for s in config["seeds"]]


wildcard_constraints:
    shard=r"\d+",
    res=r"\d+",
    seed=r"\d+",
    target="|".join(TARGETS),
    arch=r"resnet\d+",
    model=r"resnet\d+-\d+px-seed\d+",


def model_name(arch, res, seed):
    return f"{arch}-{res}px-seed{seed}"


def all_models():
    """(target, model name) for every model the config asks for: targets x resolutions x seeds."""
    return [
        (t, model_name(ARCH, r, s)) for t in TARGETS for r in RESOLUTIONS for s in SEEDS
    ]


def model_outputs(pattern):
    """Expand a path pattern with {target} and {model} over every model."""
    return [pattern.format(target=t, model=m) for t, m in all_models()]
