"""``galmet plan``: what a config will run (from Snakemake's dry run, :mod:`galmet.dag`) and an
estimate of how long its CNN jobs take (:mod:`galmet.estimate`), as plain-text tables or JSON.
Imports torch only with ``--measure``.
"""

from __future__ import annotations

import argparse
import json
import os
import textwrap
from pathlib import Path

from galmet.cli.common import fail
from galmet.config import ConfigError


def cli_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="What a config will run, before running it: the trainings (target x backbone x "
        "resolution x seed), ensembles, baselines, figures and the number of jobs of each rule, read off "
        "Snakemake's dry run of galmet's workflow (in an empty temporary folder unless --directory is "
        "given), and an estimate of the time of its CNN jobs on a GPU and on the CPU, from rates of "
        "images a second whose basis is printed (galmet's shipped rates, or --measure on this machine).",
    )
    p.add_argument("--configfile", nargs="+", metavar="FILE", default=[],
                   help="config file(s) of the run, merged in order, as snakemake --configfile "
                   "(default: config.yaml of --directory or of the current folder)")
    p.add_argument("--directory", "-d", metavar="DIR",
                   help="plan the jobs still to run in this working directory (its results/ kept); "
                   "default: an empty temporary folder, so every job of the run is listed")
    p.add_argument("--galaxies", type=int, metavar="N",
                   help="galaxies in the catalog for the estimate (default: the rows of catalog.path "
                   "for a table catalog, else the paper's selection, 142,000)")
    p.add_argument("--measure", action="store_true",
                   help="measure the training and prediction rates of the config's backbone at its "
                   "resolutions on this machine (CUDA when torch sees one, else the CPU; about 30 s, a minute or "
                   "more on a small CPU) "
                   "and use them instead of the shipped ones for that device")
    p.add_argument("--cores", type=int, metavar="N",
                   help="CPU cores for the CPU-only wall time (default: this machine's)")
    p.add_argument("--json", dest="as_json", action="store_true", help="print the plan as one JSON object")
    return p


def cli_main(args: argparse.Namespace) -> int:
    from galmet.dag import GALMET_ROOT, DryRunError, dry_run, experiments, shard_jobs
    from galmet.estimate import estimate, galaxies
    from galmet.rates import RATES

    cores = (os.cpu_count() or 1) if args.cores is None else args.cores
    if cores < 1:
        return fail("plan", f"--cores must be at least 1, got {cores}")
    try:
        run = dry_run(args.configfile, args.directory)
        n, n_source = galaxies(run.config, GALMET_ROOT, override=args.galaxies)
    except (ConfigError, DryRunError, ValueError) as exc:
        return fail("plan", exc)
    exp = experiments(run.jobs)
    tables = {"gpu": dict(RATES), "cpu": dict(RATES)}
    if args.measure:
        from galmet.rates import measure

        res = sorted({m["resolution"] for m in exp["trainings"] + exp["predictions"]})
        measured = measure(run.config["train"]["arch"], res or run.config["resolutions"], "auto",
                           train_batch=run.config["train"]["batch_size"],
                           predict_batch=run.config["predict"]["batch_size"])
        tables[next(iter(measured))[0]] = {**RATES, **measured}
    try:
        est = estimate(exp, run.config, n, tables, cores)
    except KeyError as exc:
        return fail("plan", exc.args[0])
    est["galaxies_source"] = n_source
    plan = {"configfiles": run.configfiles, "directory": run.directory, "experiments": exp,
            "jobs": run.counts, "total_jobs": run.total, "shards": run.config["shards"],
            "shard_jobs": shard_jobs(run.config), "estimate": est}
    print(json.dumps(plan, indent=1, default=list) if args.as_json else format_plan(plan, run.config))
    return 0


def _h(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h" if seconds >= 360 else f"{seconds / 60:,.1f} min"


def _trainings(exp: dict, config: dict) -> list[str]:
    t = exp["trainings"]
    train = config["train"]
    lines = [f"Trainings: {len(t)} (backbone {train['arch']}, pretrained {train['pretrained']})",
             f"  {'target':<14}{'model':<26}{'arch':<10}{'res':>5}{'seed':>6}"]
    lines += [f"  {m['target']:<14}{m['model']:<26}{m['arch']:<10}{m['resolution']:>5}{m['seed']:>6}" for m in t]
    res = sorted({m["resolution"] for m in t}, reverse=True)
    lines.append(f"  resolutions: {', '.join(map(str, res))} px; seeds: "
                 f"{', '.join(map(str, sorted({m['seed'] for m in t})))}")
    lines.append(f"Ensembles: {len(exp['ensembles'])}")
    lines += [f"  {m['target']:<14}{m['model']:<32} seeds {', '.join(map(str, m['seeds']))} at {m['resolution']} px"
              for m in exp["ensembles"]]
    if exp.get("surveys"):
        lines.append(f"Survey models: {len(exp['surveys'])} (one network standing in for each ensemble)")
        lines += [f"  {m['target']:<14}{m['model']}" for m in exp["surveys"]]
    by_target = {}
    for target, name in exp["baselines"]:
        by_target.setdefault(target, []).append(name)
    lines.append(f"Baselines: {len(exp['baselines'])}")
    lines += [f"  {target:<14}{', '.join(names)}" for target, names in by_target.items()]
    return lines


def _figures(exp: dict) -> list[str]:
    lines = ["Figures (jobs):"]
    for figure, what in exp["figures"].items():
        shown = ", ".join(what[:2]) + (f", ... ({len(what) - 2} more)" if len(what) > 2 else "")
        lines.append(f"  {figure:<38}{len(what):>4}  {shown}")
    lines.append(f"Mass route / MZR (Figures 5, 6): {len(exp['mass_route'])} / {len(exp['mzr'])} models"
                 + (f": {', '.join(exp['mzr'])}" if exp["mzr"] else ""))
    lines.append(f"Saliency maps: {', '.join('/'.join(s) for s in exp['saliency']) or 'none'}")
    return lines


def _jobs(plan: dict) -> list[str]:
    where = (f"still to run in {plan['directory']}" if plan["directory"]
             else "in an empty folder: every job of the run")
    lines = [f"Jobs (Snakemake's dry run, {where}): {plan['total_jobs']}"]
    lines += [f"  {rule:<24}{count:>6}" for rule, count in plan["jobs"].items()]
    extra = plan["shard_jobs"]
    lines.append(f"  + after the checkpoint catalog_shards, per shard (shards: {plan['shards']}): "
                 + ", ".join(f"{rule} {n}" for rule, n in extra.items())
                 + f" = {plan['total_jobs'] + sum(extra.values())} jobs in all")
    return lines


def _estimate(est: dict) -> list[str]:
    sp = est["split"]
    head = (f"Time of the CNN jobs (ESTIMATES) for {est['galaxies']:,} galaxies ({est['galaxies_source']}): "
            f"train {sp['train']:,} / valid {sp['valid']:,} / test {sp['test']:,}; {est['epochs']} epochs a "
            f"training, TTA x{est['tta']}")
    lines = textwrap.wrap(head, width=100, subsequent_indent="  ")
    for device, d in est["devices"].items():
        basis = d["rates"][0]["basis"] if d["rates"] else "none used"
        lines += textwrap.wrap(f"{device.upper()} rates, basis: {basis}", width=100, initial_indent="  ",
                               subsequent_indent="    ")
        lines += [f"    {r['arch']} {r['resolution']:>3} px: train {r['train']:>7,.0f} img/s, predict "
                  f"{r['predict']:>7,.0f} img/s ({r['how']})" for r in d["rates"]]
    for device, d in est["devices"].items():
        s = d["seconds"]
        survey = f", survey models {_h(s['survey'])}" if s.get("survey") else ""
        lines.append(f"  {device.upper()} time: trainings {_h(s['train'])}, ensemble calibration {_h(s['ensemble'])}"
                     f"{survey}, predictions {_h(s['predict'])}; total {_h(d['total'])}")
    gpu, cpu = est["devices"].get("gpu"), est["devices"].get("cpu")
    if gpu:
        lines.append(f"  estimated wall time, one GPU box (--resources gpu=1, CNN jobs one after another): "
                     f"{_h(gpu['total'])}")
        lines.append(f"  estimated wall time, a cluster (a GPU per job, all at once: the longest chain): "
                     f"{_h(gpu['longest_chain'])}")
    if cpu:
        lines.append(f"  estimated wall time, CPU only with --cores {cpu['cores']}: {_h(cpu['wall_cores'])}")
    lines.append(f"  not estimated: {est['not_estimated']}")
    return lines


def format_plan(plan: dict, config: dict) -> str:
    """The plan as plain-text tables: experiments, figures, jobs, the time estimate."""
    head = [f"galmet plan: {', '.join(Path(p).name for p in plan['configfiles'])} ({', '.join(plan['configfiles'])})"]
    parts = [head, _trainings(plan["experiments"], config), _figures(plan["experiments"]), _jobs(plan),
             _estimate(plan["estimate"])]
    return "\n\n".join("\n".join(p) for p in parts)


__all__ = ["cli_parser", "cli_main", "format_plan"]
