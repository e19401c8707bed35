"""A survey-scale rehearsal of `snakemake infer` with the survey model: wall time, peak memory per
job and galaxies/s per core for N galaxies (synthetic: the 400 demo JPEGs recycled).

    .venv/bin/python benchmarks/survey_rehearsal.py --n 1000000 --shards 10 [--cores 2] [--threads 1] \\
        [--model results/models/oh_p50/resnet18-64px-seeds0-1-2-survey/model.pt] [--keep DIR]

A catalog of N rows (``objID, path``; the paths cycle through resources/demo/images) and an infer
config layered on the demo's (``infer.model`` the survey model, ``infer.shards``) go through
`snakemake infer --cores C` in a fresh working directory, exactly as a user runs it (``--threads
T``: with ``--set-threads infer_shard=T``, T threads a shard job instead of the rule's 4, capped at C;
1 runs one job a core). Afterwards
the rules' benchmark files give each job's seconds and peak memory (max_rss). Prints a table
and, last, one JSON line. The model is that of a demo run (`make demo`); run it by hand, never in
CI (a million galaxies is ~50 min on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "resources" / "demo" / "images"
SURVEY = "results/models/oh_p50/resnet18-64px-seeds0-1-2-survey/model.pt"


def catalog(n: int, path: Path) -> None:
    """N rows of objID and path, the demo JPEGs recycled (objIDs new and unique)."""
    files = np.array(sorted(str(p) for p in DEMO.glob("*.jpg")))
    ids = np.arange(n, dtype=np.int64) + 900_000_000_000_000_000
    pd.DataFrame({"objID": ids, "path": files[np.arange(n) % len(files)]}).to_parquet(path, index=False)


def job_table(work: Path) -> pd.DataFrame:
    rows = []
    for tsv in sorted((work / "results" / "benchmarks" / "infer").glob("*.tsv")):
        b = pd.read_csv(tsv, sep="\t")
        rows.append({"job": tsv.stem, "s": float(b["s"].iloc[0]), "max_rss_mb": float(b["max_rss"].iloc[0])})
    return pd.DataFrame(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--shards", type=int, default=10)
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--threads", type=int, help="threads of each shard job (--set-threads infer_shard=T)")
    ap.add_argument("--model", default=str(ROOT / SURVEY))
    ap.add_argument("--keep", help="work in this folder and keep it (default: a temporary one, removed)")
    args = ap.parse_args()
    model = Path(args.model).resolve()
    if not model.is_file():
        sys.exit(f"{model}: no such model file; run `make demo` first, or give --model")
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="galmet-rehearsal-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        catalog(args.n, work / "survey.parquet")
        t_catalog = time.perf_counter() - t0
        cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
        cfg["catalog"]["path"] = str(ROOT / cfg["catalog"]["path"])
        cfg["cutouts"]["local_dir"] = str(ROOT / cfg["cutouts"]["local_dir"])
        cfg["infer"] = {"model": str(model), "catalog": str(work / "survey.parquet"), "shards": args.shards}
        (work / "config.yaml").write_text(yaml.safe_dump(cfg))
        cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(work), "--configfile",
               str(work / "config.yaml"), "--cores", str(args.cores), "infer"]
        if args.threads:
            cmd += ["--set-threads", f"infer_shard={args.threads}"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            print(proc.stderr[-4000:], file=sys.stderr)
            return proc.returncode
        jobs = job_table(work)
        out = pd.read_parquet(next((work / "results" / "infer").glob("predictions.*")), columns=["objID"])
        shards = jobs[jobs["job"].str.startswith("shard-")]
        rate = args.n / wall
        print(f"snakemake infer, survey model {model.name} ({model.parent.name}), {args.n:,} galaxies (the demo JPEGs "
              f"recycled), {args.shards} shards, --cores {args.cores}, threads a shard job: "
              f"{args.threads or 'the rule`s, capped at --cores'}; catalog written in {t_catalog:.1f} s\n")
        print("| job | s | peak memory (max_rss, MB) |\n|---|---|---|")
        for r in jobs.itertuples():
            print(f"| {r.job} | {r.s:.1f} | {r.max_rss_mb:.0f} |")
        print(f"\nwall {wall / 60:.1f} min for {len(out):,} predicted rows: {rate:.1f} galaxies/s, "
              f"{rate / args.cores:.1f} galaxies/s per core; shard jobs {shards['s'].median():.1f} s median "
              f"({args.n / args.shards / shards['s'].median():.1f} galaxies/s each), peak memory "
              f"{shards['max_rss_mb'].min():.0f}-{shards['max_rss_mb'].max():.0f} MB per shard job")
        print(json.dumps({"n": args.n, "shards": args.shards, "cores": args.cores, "threads": args.threads,
                          "wall_s": wall,
                          "galaxies_per_s": rate, "per_core": rate / args.cores, "rows": int(len(out)),
                          "jobs": jobs.to_dict(orient="records")}))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
