"""What a run will do, read off Snakemake's dry run: its jobs, and the experiments they make.

:func:`dry_run` runs ``python -m snakemake -s <galmet's Snakefile> -d <dir> --configfile ... -n``
in a subprocess (by default in an empty temporary folder, so that results already made elsewhere
hide no job) and :func:`parse_dry_run` reads the job blocks (``rule NAME:`` /
``checkpoint NAME:`` / ``localrule NAME:`` lines and the ``wildcards: k=v, ...`` line under each)
and the job counts. :func:`experiments` turns the jobs into the study they carry out: the
trainings (rule ``train``), ensembles, baselines, figures, mass-route/MZR and saliency jobs, so
that what ``galmet plan`` shows is what Snakemake would run, not what the config seems to say.

Per-shard jobs (cutout downloads, packing, re-binning) are added by Snakemake only after the
checkpoint ``catalog_shards`` has run: a dry run cannot list them, :func:`shard_jobs` counts them
from config ``shards`` and :class:`galmet.plan.Study`. Imports neither torch nor Snakemake.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from galmet.config import ConfigError, load_config
from galmet.names import parse_model_name
from galmet.plan import Study

__all__ = ["Job", "DryRun", "DryRunError", "FIGURE_RULES", "SHARD_RULES", "GALMET_ROOT", "snakefile",
           "config_files", "dry_run", "parse_dry_run", "experiments", "shard_jobs"]

#: the folder of galmet's workflow (Snakefile, workflow/, resources/) when galmet runs from its source tree.
GALMET_ROOT = Path(__file__).resolve().parents[2]

#: the rule of each figure and what it shows.
FIGURE_RULES = {
    "figure_examples": "Figure 1: examples",
    "figure_histograms": "Figure 2: histograms",
    "figure_scatter": "Figure 3: predicted vs true",
    "figure_resolution": "Figure 4: scatter vs resolution",
    "figure_mass": "Figure 5: mass route",
    "figure_mzr": "Figure 6: mass-metallicity relation",
    "figure_saliency": "Figure 7: saliency",
    "figure_calibration": "calibration (reliability, PIT)",
    "figure_risk_coverage": "risk-coverage",
    "figure_domain": "applicability domain",
}

#: the rules that run once per catalog shard (rebin_images once per shard and store resolution).
SHARD_RULES = ("cutouts", "pack_images", "rebin_images")

_JOB = re.compile(r"^(?:local)?(rule|checkpoint) (\w+):\s*$")
_WILDCARDS = re.compile(r"^\s+wildcards: (.*)$")
_STAT = re.compile(r"^(\w+)\s+(\d+)\s*$")


class DryRunError(RuntimeError):
    """The dry run failed or could not start; the message says why (Snakemake's own lines)."""


@dataclass
class Job:
    rule: str
    kind: str  # "rule" or "checkpoint"
    wildcards: dict = field(default_factory=dict)


@dataclass
class DryRun:
    jobs: list  # [Job]
    counts: dict  # rule -> jobs, as Snakemake's "Job stats"
    total: int
    config: dict  # the validated config of the run
    configfiles: list  # absolute paths, in order
    directory: str | None  # the working directory of the dry run; None: an empty temporary one
    command: list = field(default_factory=list)


def snakefile() -> Path:
    """galmet's Snakefile; DryRunError when this installation has no workflow beside the package."""
    path = GALMET_ROOT / "Snakefile"
    if not path.is_file():
        raise DryRunError(f"no galmet workflow at {GALMET_ROOT} (the Snakefile is not there): galmet plan needs "
                          "galmet's source tree (git clone), not an installed package alone")
    return path


def config_files(configfiles=(), directory=None, cwd=None) -> list[Path]:
    """The config files of the run, absolute: ``configfiles`` (relative to ``cwd``), else the
    working directory's ``config.yaml`` (``directory``, else ``cwd``), as the Snakefile reads it.
    ConfigError naming the path and the working directory for a file that is not there."""
    cwd = Path(cwd or os.getcwd())
    if configfiles:
        paths = [cwd / p for p in configfiles]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise ConfigError(f"config file {missing[0]} not found (working directory {cwd})")
        return paths
    own = (cwd / directory if directory else cwd) / "config.yaml"
    if not own.is_file():
        raise ConfigError(f"no config.yaml in {own.parent} and no --configfile given; give one, e.g. "
                          f"--configfile {GALMET_ROOT / 'config.yaml'} (the demo) or "
                          f"--configfile {GALMET_ROOT / 'configs' / 'paper.yaml'} (the paper's run)")
    return [own]


def _link_inputs(config: dict, cwd: Path, work: Path) -> None:
    """Symlink into ``work`` the config's relative input paths that exist in ``cwd`` (a user's
    catalog table or cutouts folder), so that the dry run in an empty folder finds them as the
    run in ``cwd`` would; the workflow's own bundled files it finds by itself."""
    cat, cut = config["catalog"], config["cutouts"]
    paths = [cat.get("path"), cut.get("local_dir"), config["split"].get("force_test_ids"),
             *(cat.get("mpajhu") or {}).values()]
    for p in paths:
        if p and not os.path.isabs(p) and (cwd / p).exists() and not (work / p).exists():
            (work / p).parent.mkdir(parents=True, exist_ok=True)
            (work / p).symlink_to(cwd / p)


def dry_run(configfiles=(), directory=None, cwd=None, timeout=300) -> DryRun:
    """Snakemake's dry run of galmet's workflow with ``configfiles`` (see :func:`config_files`)
    in ``directory`` (jobs still to run there), or in an empty temporary folder (every job of
    the run). ConfigError for a bad config, DryRunError when Snakemake fails (its message)."""
    cwd = Path(cwd or os.getcwd())
    paths = config_files(configfiles, directory, cwd)
    config = load_config(list(paths))  # merged in order, as snakemake merges them
    with tempfile.TemporaryDirectory(prefix="galmet-plan-") as tmp:
        work = cwd / directory if directory else Path(tmp)
        if directory and not work.is_dir():
            raise DryRunError(f"--directory {work} is not a directory (working directory {cwd})")
        if not directory:
            _link_inputs(config, cwd, work)
        cmd = [sys.executable, "-m", "snakemake", "-s", str(snakefile()), "-d", str(work), "-n",
               "--configfile", *map(str, paths)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in [str(GALMET_ROOT / "src"), os.environ.get("PYTHONPATH", "")] if p)}
        try:
            done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DryRunError(f"the dry run took longer than {timeout} s: {' '.join(cmd)}") from None
    text = done.stdout + done.stderr
    if done.returncode != 0:
        tail = "\n".join(line for line in text.splitlines()[-15:] if line.strip())
        raise DryRunError(f"snakemake -n failed (exit {done.returncode}): {' '.join(cmd)}\n{tail}")
    jobs, counts = parse_dry_run(text)
    return DryRun(jobs=jobs, counts=counts, total=sum(counts.values()), config=config,
                  configfiles=[str(p) for p in paths], directory=str(work) if directory else None, command=cmd)


def parse_dry_run(text: str) -> tuple[list[Job], dict]:
    """``(jobs, counts)`` of a dry run's output: a :class:`Job` per job block, and the first
    "Job stats" table (rule -> count; its ``total`` row left out). DryRunError when the output
    has job blocks but no table, or the two disagree."""
    jobs, counts, current = [], {}, None
    lines = text.splitlines()
    for line in lines:
        m = _JOB.match(line)
        if m:
            current = Job(rule=m.group(2), kind=m.group(1))
            jobs.append(current)
            continue
        m = _WILDCARDS.match(line)
        if m and current is not None:
            current.wildcards = dict(kv.split("=", 1) for kv in m.group(1).split(", ") if "=" in kv)
    if "Job stats:" in lines:
        for line in lines[lines.index("Job stats:") + 3:]:
            m = _STAT.match(line)
            if not m or m.group(1) == "total":
                break
            counts[m.group(1)] = int(m.group(2))
    found = {}
    for job in jobs:
        found[job.rule] = found.get(job.rule, 0) + 1
    if found != counts:
        raise DryRunError(f"the dry run's job blocks ({sum(found.values())}) and its job stats "
                          f"({sum(counts.values())}) do not agree: {found} vs {counts}")
    return jobs, counts


def _model(job: Job) -> dict:
    parts = parse_model_name(job.wildcards["model"])
    return {"target": job.wildcards.get("target"), "model": job.wildcards["model"], **parts}


def experiments(jobs) -> dict:
    """The study the jobs carry out: ``trainings`` (target, model, arch, resolution, seed),
    ``ensembles`` (target, model, arch, resolution, seeds), ``surveys`` (the same, with ``survey``),
    ``predictions`` (target, model),
    ``baselines`` (target, name), ``figures`` (figure -> [target/model or target]), ``mass_route``,
    ``mzr`` and ``saliency`` (models), each sorted."""
    def models(rule):
        return sorted((_model(j) for j in jobs if j.rule == rule),
                      key=lambda m: (m["target"] or "", -m["resolution"], m.get("seed", -1), m["model"]))

    figures = {}
    for j in jobs:
        if j.rule in FIGURE_RULES:
            what = "/".join(v for k, v in sorted(j.wildcards.items(), key=lambda kv: kv[0] != "target"))
            figures.setdefault(FIGURE_RULES[j.rule], []).append(what)
    return {
        "trainings": models("train"),
        "ensembles": models("ensemble"),
        "surveys": models("survey"),
        "predictions": models("predict"),
        "baselines": sorted((j.wildcards["target"], j.wildcards["name"]) for j in jobs if j.rule == "baseline"),
        "figures": {k: sorted(figures[k]) for k in FIGURE_RULES.values() if k in figures},
        "mass_route": sorted(j.wildcards["model"] for j in jobs if j.rule == "mass_route"),
        "mzr": sorted(j.wildcards["model"] for j in jobs if j.rule == "mzr"),
        "saliency": sorted((j.wildcards["target"], j.wildcards["model"]) for j in jobs if j.rule == "saliency"),
    }


def shard_jobs(config: dict) -> dict:
    """The per-shard jobs Snakemake adds after the checkpoint ``catalog_shards`` (rule -> jobs):
    a download/copy and a packing job per shard, a re-binning job per shard and store resolution."""
    shards = int(config["shards"])
    return {"cutouts": shards, "pack_images": shards,
            "rebin_images": shards * len(Study(config).store_resolutions())}
