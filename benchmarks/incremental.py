"""Benchmark of the incremental rerun of the data stage (issue 3, point 5).

The real workflow (Snakefile of this repository, run in a scratch --directory) on a catalog of
396 of the bundled galaxies with made-up ra / dec / petroR90_r (tests/fakesky.made_up_catalog)
and their oh_p50, catalog.source ``table``, cutouts.source ``skyserver`` from the fake
SkyServer (tests/fakesky.FakeSky in its own process, every answer delayed by --latency),
8 shards, the cutout cache inside the scratch directory. Data stage = results/split.parquet
and every shard's results/images/{shard}/{res}px.npy (pack_images + rebin_images).

Per repeat (interleaved, each in a fresh directory with an empty cache):

1. full: the data stage from empty;
2. incremental: 4 galaxies (1%) appended to the catalog, the same targets again. Checked: the
   fake server got exactly one getjpeg per new galaxy, only the shards holding them were
   re-downloaded / re-packed / re-binned, every old galaxy kept its split;
3. removal: 4 old galaxies dropped from the catalog. Checked: no request, and they are gone
   from clean.parquet, split.parquet, the cutout manifests and the image stores.

Prints a table and, as the last line, one JSON object.

    .venv/bin/python benchmarks/incremental.py [--repeats 3] [--latency 0.05] [--cores 2]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "src"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from galmet.catalog import shard_of  # noqa: E402
from tests.fakesky import FakeSky, made_up_catalog  # noqa: E402

DEMO = ROOT / "resources" / "demo"
N_SHARDS = 8
N_CHANGE = 4  # 1% of 400

# The data stage as one target: the real workflow plus a rule asking for every shard's stores (the
# shards come out of the catalog_shards checkpoint, so the stores cannot be named from an empty
# directory, and `--until split pack_images rebin_images` stops at the checkpoint).
SNAKEFILE = f"""
include: "{ROOT}/Snakefile"

rule data_stage:
    input:
        "results/split.parquet",
        lambda wc: [f for r in STUDY.image_resolutions() for f in stores(r)(wc)["store"]],
"""
DATA_RULES = ("catalog_clean", "catalog_shards", "split", "cutouts", "pack_images", "rebin_images")


# ---- the fake SkyServer, in its own process ---------------------------------------------------
def _serve(conn, latency: float) -> None:
    cat, images = made_up_catalog(DEMO / "images")
    sky = FakeSky(cat, images, latency_s=latency).start()
    conn.send(sky.base_url)
    while conn.recv() != "stop":
        with sky.lock:
            conn.send(dict(sky.jpeg_requests))
    sky.stop()
    conn.send("stopped")


class SkyProcess:
    def __init__(self, latency: float):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, latency), daemon=True)
        self.proc.start()
        if not self.conn.poll(60):
            self.proc.kill()
            raise RuntimeError("the fake SkyServer did not start")
        self.base_url = self.conn.recv()

    def requests(self) -> Counter:
        """getjpeg requests received so far, per objID (None: a position matching no galaxy)."""
        self.conn.send("count")
        return Counter(self.conn.recv())

    def stop(self) -> None:
        self.conn.send("stop")
        self.conn.poll(10)
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()


# ---- the workflow ------------------------------------------------------------------------------
def full_catalog() -> pd.DataFrame:
    """The 400 demo galaxies (demo catalog order) with the fake server's made-up positions."""
    demo = pd.read_csv(DEMO / "catalog.csv", dtype={"objID": "int64"})
    pos, _ = made_up_catalog(DEMO / "images")
    cat = demo.merge(pos, on="objID", how="inner", validate="1:1")
    if len(cat) != len(demo):
        raise RuntimeError(f"{len(demo) - len(cat)} demo galaxies have no image")
    return cat[["objID", "ra", "dec", "petroR90_r", "oh_p50"]]


def write_config(work: Path, base_url: str) -> Path:
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["catalog"].update(source="table", path=str(work / "catalog.csv"))
    cfg["cutouts"].update(source="skyserver", base_url=base_url, cache_dir=str(work / "cache"),
                          concurrency=4, max_requests_per_second=0, timeout_s=10, backoff_s=0.05)
    cfg["shards"] = N_SHARDS
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def data_targets(cfg_path: Path) -> list[str]:
    cfg = yaml.safe_load(cfg_path.read_text())
    size = min(cfg["cutouts"]["width"], cfg["cutouts"]["height"])
    res = sorted({size, *(int(r) for r in cfg["resolutions"])}, reverse=True)
    return ["results/split.parquet"] + [f"results/images/{s}/{r}px.npy"
                                        for s in range(N_SHARDS) for r in res]


JOB_RE = re.compile(r"^\s*(?:local)?(?:rule|checkpoint) (\w+):\s*$")
WC_RE = re.compile(r"^\s*wildcards: (.*)$")


def parse_jobs(log: str) -> list[str]:
    """Names of the jobs Snakemake ran, as rule[wildcards], from its log."""
    jobs, current = [], None
    for line in log.splitlines():
        m = JOB_RE.match(line)
        if m:
            if current:
                jobs.append(current)
            current = m.group(1) if m.group(1) != "data_stage" else None
            continue
        m = WC_RE.match(line)
        if m and current and "[" not in current:
            current += "[" + m.group(1).strip() + "]"
    if current:
        jobs.append(current)
    return jobs


def snakemake(work: Path, cfg: Path, cores: int) -> tuple[float, list[str], float]:
    """Run the data stage: (wall seconds, jobs run, sum of the jobs' own seconds)."""
    cmd = [str(Path(sys.executable).parent / "snakemake"), "data_stage", "--cores", str(cores),
           "-s", str(work / "Snakefile"), "--directory", str(work), "--configfile", str(cfg)]
    t0, wall0 = time.perf_counter(), time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    dt = time.perf_counter() - t0
    log = p.stdout + p.stderr
    if p.returncode:
        raise RuntimeError(f"snakemake failed ({p.returncode}):\n{log[-4000:]}")
    jobs = parse_jobs(log)
    if "Nothing to be done" not in log and not jobs:
        raise RuntimeError(f"no job found in the log:\n{log[-3000:]}")
    missing = [t for t in data_targets(cfg) if not (work / t).is_file()]
    other = {j.split("[")[0] for j in jobs} - set(DATA_RULES)
    if missing or other:
        raise RuntimeError(f"data stage: missing {missing}, rules beyond it {other}:\n{log[-3000:]}")
    job_s = sum(float(pd.read_csv(b, sep="\t")["s"].sum())
                for b in (work / "results/benchmarks").rglob("*.tsv") if b.stat().st_mtime >= wall0)
    return dt, jobs, job_s


def shards_of(jobs: list[str], rule: str) -> list[str]:
    return sorted({m.group(1) for j in jobs if (m := re.fullmatch(rf"{rule}\[shard=(\d+).*\]", j))},
                  key=int)


def ids_in(work: Path) -> dict[str, set[int]]:
    """objIDs of every data-stage product, and a check that each store matches its index."""
    r = work / "results"
    out = {"clean": set(pd.read_parquet(r / "catalog/clean.parquet").objID),
           "split": set(pd.read_parquet(r / "split.parquet").objID),
           "manifests": set(), "stores": set()}
    for s in range(N_SHARDS):
        out["manifests"] |= set(pd.read_parquet(r / f"cutouts/{s}.parquet").objID)
        index = pd.read_parquet(r / f"images/{s}/index.parquet")
        out["stores"] |= set(index.objID)
        for store in (r / f"images/{s}").glob("*px.npy"):
            n = np.load(store, mmap_mode="r").shape[0]
            if n != len(index):
                raise RuntimeError(f"{store}: {n} rows but its index has {len(index)}")
    return out


def one_repeat(sky: SkyProcess, cat: pd.DataFrame, new: pd.DataFrame, cores: int,
               scratch: Path, removal: bool) -> dict:
    work = Path(tempfile.mkdtemp(prefix="incr-", dir=scratch))
    cfg = write_config(work, sky.base_url)
    (work / "Snakefile").write_text(SNAKEFILE)
    cat.to_csv(work / "catalog.csv", index=False)
    res: dict = {}

    # 1. full run from empty
    before = sky.requests()
    res["full_s"], jobs, res["full_job_s"] = snakemake(work, cfg, cores)
    res["jobs_full"] = len(jobs)
    res["requests_full"] = sum((sky.requests() - before).values())

    # the same again, nothing changed: Snakemake's fixed cost, and nothing may rerun
    before = sky.requests()
    res["noop_s"], jobs, _ = snakemake(work, cfg, cores)
    res["jobs_noop"] = jobs
    res["requests_noop"] = sum((sky.requests() - before).values())
    split0 = pd.read_parquet(work / "results/split.parquet").set_index("objID")["split"]

    # 2. append 1% and rerun
    time.sleep(0.01)  # a later mtime for the catalog
    pd.concat([cat, new]).to_csv(work / "catalog.csv", index=False)
    before = sky.requests()
    res["incremental_s"], jobs, res["incremental_job_s"] = snakemake(work, cfg, cores)
    got = sky.requests() - before
    res["requests_incremental"] = sum(got.values())
    res["requested_ids_are_new"] = set(got) == set(new.objID) and all(v == 1 for v in got.values())
    res["jobs_incremental"] = len(jobs)
    res["job_names_incremental"] = jobs
    res["expected_shards"] = sorted({str(s) for s in shard_of(new.objID, N_SHARDS)}, key=int)
    for rule in ("cutouts", "pack_images", "rebin_images"):
        res[f"shards_{rule}"] = shards_of(jobs, rule)
    split1 = pd.read_parquet(work / "results/split.parquet").set_index("objID")["split"]
    res["old_kept_split"] = bool(split1.reindex(split0.index).eq(split0).all())
    res["new_in_split"] = set(new.objID) <= set(split1.index)
    ids = ids_in(work)
    res["new_in_stores"] = all(set(new.objID) <= v for k, v in ids.items() if k != "clean")

    # 3. remove 4 old galaxies and rerun
    if removal:
        gone = cat.objID.iloc[:N_CHANGE]
        time.sleep(0.01)
        pd.concat([cat.iloc[N_CHANGE:], new]).to_csv(work / "catalog.csv", index=False)
        before = sky.requests()
        res["removal_s"], jobs, _ = snakemake(work, cfg, cores)
        res["requests_removal"] = sum((sky.requests() - before).values())
        res["jobs_removal"] = len(jobs)
        res["job_names_removal"] = jobs
        res["removal_expected_shards"] = sorted({str(s) for s in shard_of(gone, N_SHARDS)}, key=int)
        res["removal_shards_pack_images"] = shards_of(jobs, "pack_images")
        ids = ids_in(work)
        res["removed_gone_everywhere"] = not any(set(gone) & v for v in ids.values())
        res["removal_counts"] = {k: len(v) for k, v in ids.items()}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--removal", choices=("last", "all", "none"), default="last",
                    help="run the removal step in the last repeat (default), every one, or none")
    args = ap.parse_args()

    allcat = full_catalog()
    cat, new = allcat.iloc[:-N_CHANGE].reset_index(drop=True), allcat.iloc[-N_CHANGE:]
    sky = SkyProcess(args.latency)
    runs = []
    t_start, load0 = time.perf_counter(), os.getloadavg()[0]
    try:
        with tempfile.TemporaryDirectory(prefix="galmet-incr-") as d:
            for i in range(args.repeats):
                removal = args.removal == "all" or (args.removal == "last" and i == args.repeats - 1)
                r = one_repeat(sky, cat, new, args.cores, Path(d), removal)
                runs.append(r)
                print(f"repeat {i + 1}: full {r['full_s']:.1f} s ({r['jobs_full']} jobs, "
                      f"{r['requests_full']} requests), incremental {r['incremental_s']:.1f} s "
                      f"({r['jobs_incremental']} jobs, {r['requests_incremental']} requests)"
                      + (f", removal {r['removal_s']:.1f} s ({r['jobs_removal']} jobs, "
                         f"{r['requests_removal']} requests)" if removal else ""), flush=True)
    finally:
        sky.stop()

    full = statistics.median(r["full_s"] for r in runs)
    inc = statistics.median(r["incremental_s"] for r in runs)
    noop = statistics.median(r["noop_s"] for r in runs)
    last = runs[-1]
    checks = {
        "requests_incremental_eq_new": all(r["requests_incremental"] == N_CHANGE for r in runs),
        "requested_ids_are_new": all(r["requested_ids_are_new"] for r in runs),
        "only_new_shards_rerun": all(r[f"shards_{k}"] == r["expected_shards"]
                                     for r in runs for k in ("cutouts", "pack_images", "rebin_images")),
        "noop_reruns_nothing": all(not r["jobs_noop"] and not r["requests_noop"] for r in runs),
        "old_kept_split": all(r["old_kept_split"] for r in runs),
        "new_in_split_and_stores": all(r["new_in_split"] and r["new_in_stores"] for r in runs),
    }
    removal_runs = [r for r in runs if "removal_s" in r]
    if removal_runs:
        checks["removal_zero_requests"] = all(r["requests_removal"] == 0 for r in removal_runs)
        checks["removed_gone_everywhere"] = all(r["removed_gone_everywhere"] for r in removal_runs)

    rule_counts = Counter(j.split("[")[0] for j in last["job_names_incremental"])
    print()
    print(f"{'run':<14}{'median s':>10}{'all runs s':>26}{'jobs':>6}{'requests':>10}")
    for key, label, jk, rk, rs in (("full_s", "full", "jobs_full", "requests_full", runs),
                                   ("noop_s", "no change", "jobs_noop", "requests_noop", runs),
                                   ("incremental_s", "incremental", "jobs_incremental",
                                    "requests_incremental", runs),
                                   ("removal_s", "removal", "jobs_removal", "requests_removal",
                                    removal_runs)):
        if not rs:
            continue
        vals = [r[key] for r in rs]
        jobs = rs[-1][jk] if isinstance(rs[-1][jk], int) else len(rs[-1][jk])
        print(f"{label:<14}{statistics.median(vals):>10.2f}{', '.join(f'{v:.2f}' for v in vals):>26}"
              f"{jobs:>6}{rs[-1][rk]:>10}")
    print(f"ratio incremental / full: {inc / full:.3f}   (speed-up {full / inc:.1f}x); above the no-change "
          f"run: {(inc - noop) / (full - noop):.3f}; jobs' own seconds "
          f"(benchmark files): full {statistics.median(r['full_job_s'] for r in runs):.1f}, "
          f"incremental {statistics.median(r['incremental_job_s'] for r in runs):.1f}")
    print(f"new galaxies' shards: {last['expected_shards']}; re-downloaded {last['shards_cutouts']}, "
          f"re-packed {last['shards_pack_images']}, re-binned {last['shards_rebin_images']}")
    print("incremental jobs by rule: " + ", ".join(f"{k} {v}" for k, v in sorted(rule_counts.items())))
    print("incremental jobs: " + " ".join(last["job_names_incremental"]))
    if removal_runs:
        rr = removal_runs[-1]
        print(f"removal: shards of the removed {rr['removal_expected_shards']}, re-packed "
              f"{rr['removal_shards_pack_images']}; rows now {rr['removal_counts']}")
        print("removal jobs: " + " ".join(rr["job_names_removal"]))
    print("checks: " + ", ".join(f"{k}={'ok' if v else 'FAIL'}" for k, v in checks.items()))

    out = {
        "full_s": round(full, 2), "incremental_s": round(inc, 2), "ratio": round(inc / full, 3),
        "requests_incremental": last["requests_incremental"], "requests_full": last["requests_full"],
        "jobs_full": last["jobs_full"], "jobs_incremental": last["jobs_incremental"],
        "jobs_incremental_by_rule": dict(sorted(rule_counts.items())),
        "new_galaxy_shards": last["expected_shards"], "repacked_shards": last["shards_pack_images"],
        "full_runs_s": [round(r["full_s"], 2) for r in runs],
        "incremental_runs_s": [round(r["incremental_s"], 2) for r in runs],
        "noop_s": round(noop, 2),
        # above the cost of a run that does nothing (start-up, DAG, checkpoint): the work itself
        "ratio_above_noop": round((inc - noop) / (full - noop), 3) if full > noop else None,
        "full_job_s": round(statistics.median(r["full_job_s"] for r in runs), 2),
        "incremental_job_s": round(statistics.median(r["incremental_job_s"] for r in runs), 2),
        "galaxies": len(cat), "added": N_CHANGE, "removed": N_CHANGE if removal_runs else 0,
        "shards": N_SHARDS, "latency_s": args.latency, "cores": args.cores, "repeats": args.repeats,
        "total_s": round(time.perf_counter() - t_start, 1),
        "loadavg_1m_start_end": [round(load0, 2), round(os.getloadavg()[0], 2)], "checks": checks,
    }
    if removal_runs:
        out.update(removal_s=round(statistics.median(r["removal_s"] for r in removal_runs), 2),
                   requests_removal=removal_runs[-1]["requests_removal"],
                   jobs_removal=removal_runs[-1]["jobs_removal"])
    print(json.dumps(out))
    if not all(checks.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
