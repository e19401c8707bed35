"""The whole workflow at the paper's scale on one machine (issue 10, point 6). Run by hand, never in CI.

Builds an N-galaxy catalog from the 400 bundled real cutouts under new objIDs (image i is a
hard link to bundled image i mod 400, its oh_p50 that galaxy's), with made-up ugriz magnitudes
whose colours follow the metallicity (so the random forests have something to learn), and
runs the real Snakefile on it in a scratch directory: local cutouts (no HTTP), the paper's 64
shards and its random-forest settings (configs/paper.yaml), one resolution (16 px), one epoch
of ResNet-18, the published 16 px reference. Then reads every job's benchmark file and prints,
per rule, the number of jobs, the summed and the longest job seconds and the peak memory
(max_rss), the wall time of the whole DAG, and the forests' share of the summed job time.

    .venv/bin/python benchmarks/full_scale.py 142000 [--res 16] [--shards 64] [--cores 2] [--keep DIR]

The last line printed is one JSON object with the same numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "resources" / "demo"
FIRST_ID = 1_237_600_000_000_000_000  # made-up ids, clear of the real DR14 objIDs of the sample


def make_catalog(n: int, workdir: Path, seed: int = 0) -> Path:
    """``workdir/catalog.csv`` and ``workdir/images/<objID>.jpg`` (hard links) for n galaxies."""
    demo = pd.read_csv(DEMO / "catalog.csv", dtype={"objID": "int64"})
    rng = np.random.default_rng(seed)
    src = np.arange(n) % len(demo)
    z = demo["oh_p50"].to_numpy()[src]
    ids = FIRST_ID + np.arange(n, dtype=np.int64)
    images = workdir / "images"
    images.mkdir(parents=True, exist_ok=True)
    for oid, k in zip(ids, src):
        target = images / f"{oid}.jpg"
        if not target.exists():
            os.link(DEMO / "images" / f"{demo['objID'].iat[k]}.jpg", target)
    r = rng.uniform(14.0, 17.7, n)
    dz = z - 8.9
    colours = {  # u-g, g-r, r-i, i-z: redder with metallicity, as galaxies are, plus scatter
        "ug": 1.4 + 1.2 * dz + rng.normal(0, 0.25, n), "gr": 0.6 + 0.6 * dz + rng.normal(0, 0.1, n),
        "ri": 0.35 + 0.2 * dz + rng.normal(0, 0.06, n), "iz": 0.25 + 0.1 * dz + rng.normal(0, 0.06, n),
    }
    g = r + colours["gr"]
    i = r - colours["ri"]
    mags = {"u": g + colours["ug"], "g": g, "r": r, "i": i, "z": i - colours["iz"]}
    table = pd.DataFrame({"objID": ids.astype(str), "oh_p50": z,
                          **{f"modelMag_{b}": np.round(m, 4) for b, m in mags.items()}})
    path = workdir / "catalog.csv"
    table.to_csv(path, index=False)
    return path


def make_config(workdir: Path, res: int, shards: int) -> Path:
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    paper = yaml.safe_load((ROOT / "configs" / "paper.yaml").read_text())
    cfg["catalog"]["path"] = str(workdir / "catalog.csv")
    cfg["cutouts"]["local_dir"] = str(workdir / "images")
    cfg["shards"] = shards
    cfg["resolutions"] = [res]
    cfg["train"].update({"batch_size": 256, "stage2": {"cycles": [1], "lrs": [0.001, 0.001, 0.001]}})
    cfg["predict"] = paper["predict"]
    cfg["baselines"] = paper["baselines"]
    cfg["figures"] = {"formats": ["png"]}
    cfg["reference"] = {"resolutions": [16] if res == 16 else []}
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def rule_costs(workdir: Path) -> pd.DataFrame:
    """Per rule: jobs, summed and longest job seconds, peak max_rss (MB), from benchmark files."""
    rows = []
    for tsv in sorted((workdir / "results" / "benchmarks").rglob("*.tsv")):
        rel = tsv.relative_to(workdir / "results" / "benchmarks")
        rule = rel.parts[0].removesuffix(".tsv")
        if rule == "baseline":
            rule = f"baseline {rel.stem}"  # constant / rf_gri / rf_ugriz apart
        b = pd.read_csv(tsv, sep="\t")
        rss = pd.to_numeric(b["max_rss"], errors="coerce").max()
        rows.append({"rule": rule, "s": float(b["s"].iloc[-1]), "max_rss_mb": rss})
    df = pd.DataFrame(rows)
    return (df.groupby("rule").agg(jobs=("s", "size"), seconds=("s", "sum"), longest=("s", "max"),
                                   peak_mb=("max_rss_mb", "max"))
            .sort_values("seconds", ascending=False))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("n", type=int, help="number of galaxies (the paper: 142000)")
    ap.add_argument("--res", type=int, default=16)
    ap.add_argument("--shards", type=int, default=64)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--keep", help="work in this directory and keep it (default: a temporary one)")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="galmet-full-") as tmp:
        workdir = Path(args.keep or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        make_catalog(args.n, workdir)
        make_config(workdir, args.res, args.shards)
        setup_s = time.perf_counter() - t0
        cmd = [str(Path(sys.executable).with_name("snakemake")), "-s", str(ROOT / "Snakefile"),
               "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"),
               "--cores", str(args.cores), "--resources", "gpu=1"]
        t0 = time.perf_counter()
        with open(workdir / "snakemake.log", "w") as log:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            print(f"snakemake failed (rc {proc.returncode}); see {workdir / 'snakemake.log'}", file=sys.stderr)
            return 1
        costs = rule_costs(workdir)
        summary = json.loads((workdir / "results" / "summary.json").read_text())
    total = float(costs["seconds"].sum())
    forests = float(costs.loc[[r for r in costs.index if r.startswith("baseline rf_")], "seconds"].sum())
    pd.set_option("display.width", 120)
    print(f"N = {args.n} galaxies, {args.res} px, {args.shards} shards, {args.cores} cores: "
          f"whole DAG {wall / 60:.1f} min wall (catalog and links built in {setup_s:.0f} s)")
    print(costs.round({"seconds": 1, "longest": 1, "peak_mb": 0}).to_string())
    print(f"summed job time {total / 60:.1f} min; forests {forests / 60:.1f} min = {forests / total:.0%} of it; "
          f"peak job memory {costs['peak_mb'].max():.0f} MB ({costs['peak_mb'].idxmax()})")
    out = {"n": args.n, "res": args.res, "shards": args.shards, "cores": args.cores, "wall_s": round(wall, 1),
           "job_seconds": round(total, 1), "forest_seconds": round(forests, 1),
           "forest_share": round(forests / total, 3), "peak_mb": float(costs["peak_mb"].max()),
           "rules": json.loads(costs.reset_index().to_json(orient="records")),
           "test": {m["name"]: m["test"] for m in summary["models"]},
           "baselines": {b["name"]: (b["test"] or {}).get("rmse") for b in summary["baselines"]}}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
