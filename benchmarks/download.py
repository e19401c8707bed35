"""Benchmark of the acquisition stage (issues 3 and 13).

1. Cutouts per second against the fake SkyServer, or with ``--source legacysurvey`` the fake
   Legacy Surveys viewer, ``--source panstarrs`` the fake PS1 image service (two requests a
   cutout) (tests/fakesky.py, in its own process, every answer delayed by
   --latency, 50 ms by default) at concurrency 1 and 16, interleaved repeats, medians, and
   their ratio (goal >= 10x).
2. Time to plan the paper's DAG, ``snakemake -n --configfile configs/paper.yaml``, on a
   made-up 142,000-row catalog already sharded (goal < 30 s): the real catalog and shard files
   are made in a scratch directory, then Snakemake plans every job after them.

    .venv/bin/python benchmarks/download.py [--source legacysurvey|panstarrs] [--n 48] [--repeats 3] [--skip-plan]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from galmet.catalog import write_shards  # noqa: E402
from galmet.cutouts.base import CutoutClient, get_provider  # noqa: E402
from galmet.cutouts.download import download_cutouts  # noqa: E402
from galmet.io import write_json  # noqa: E402
from galmet.tables import write_table  # noqa: E402


def start_fake_sky(tmp: Path, n: int, latency: float):
    port_file = tmp / "port"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fakesky.py"), "--images",
         str(ROOT / "resources" / "demo" / "images"), "-n", str(n), "--latency", str(latency),
         "--catalog-out", str(tmp / "cat.csv"), "--port-file", str(port_file)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    deadline = time.monotonic() + 30
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("the fake SkyServer did not start")
        time.sleep(0.05)
    return proc, port_file.read_text().strip()


#: where each service lives on the fake server (tests/fakesky.py)
FAKE_PATHS = {"skyserver": "/dr14/SkyServerWS", "legacysurvey": "/viewer", "panstarrs": "/ps1"}


def download_rate(source: str, url: str, catalog: pd.DataFrame, concurrency: int, tmp: Path) -> float:
    out = Path(tempfile.mkdtemp(dir=tmp))
    base_url = url + FAKE_PATHS[source]
    client = CutoutClient(get_provider(source, base_url=base_url), timeout_s=10, max_attempts=3,
                          backoff_s=0.05, max_requests_per_second=None, pool_size=concurrency)
    t0 = time.perf_counter()
    res = download_cutouts(catalog, out, client, scale="adaptive", concurrency=concurrency,
                           progress=False)
    dt = time.perf_counter() - t0
    if len(res.manifest) != len(catalog):
        raise RuntimeError(f"only {len(res.manifest)} of {len(catalog)} cutouts: {res.reasons}")
    return len(catalog) / dt


def bench_download(n: int, repeats: int, latency: float, source: str = "skyserver") -> dict:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        proc, url = start_fake_sky(tmp, n, latency)
        try:
            cat = pd.read_csv(tmp / "cat.csv", dtype={"objID": "int64"})
            rates = {1: [], 16: []}
            for _ in range(repeats):
                for c in (1, 16):
                    rates[c].append(download_rate(source, url, cat, c, tmp))
        finally:
            proc.terminate()
            proc.wait()
    med = {c: statistics.median(v) for c, v in rates.items()}
    return {"source": source, "images": n, "repeats": repeats, "latency_s": latency,
            "cutouts_per_s": {str(c): round(m, 2) for c, m in med.items()},
            "all_runs": {str(c): [round(x, 2) for x in v] for c, v in rates.items()},
            "ratio_16_vs_1": round(med[16] / med[1], 2), "goal_ratio": 10}


def made_up_catalog(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = 1237645000000000000 + np.sort(rng.choice(10**13, n, replace=False)).astype(np.int64)
    df = pd.DataFrame({"objID": ids, "specObjID": ids + 7, "ra": rng.uniform(0, 360, n),
                       "dec": rng.uniform(-10, 70, n), "z": rng.uniform(0.021, 0.3, n),
                       "zErr": rng.uniform(1e-5, 1e-3, n)})
    for b, m in zip("ugriz", (19.0, 17.5, 16.8, 16.4, 16.1), strict=True):
        df[f"modelMag_{b}"] = m + rng.normal(0, 0.5, n)
        df[f"modelMagErr_{b}"] = 0.02
    df["petroMag_r"] = df.modelMag_r.clip(upper=17.9)
    df["petroR50_r"] = rng.uniform(1, 5, n)
    df["petroR90_r"] = df.petroR50_r * 2.5
    df["oh_p50"] = rng.normal(8.9, 0.2, n)
    df["oh_p16"], df["oh_p84"] = df.oh_p50 - 0.05, df.oh_p50 + 0.05
    df["lgm_tot_p50"] = rng.normal(10.3, 0.5, n)
    df["sfr_tot_p50"] = rng.normal(0.2, 0.5, n)
    df["bptclass"] = 1
    return df


def bench_plan(rows: int) -> dict:
    import yaml

    config = yaml.safe_load((ROOT / "configs" / "paper.yaml").read_text())
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        cat = made_up_catalog(rows)
        write_table(cat, work / "results/catalog/skyserver.parquet")
        time.sleep(0.01)
        write_table(cat, work / "results/catalog/clean.parquet")
        write_json({"rows_in": rows, "rows_out": rows, "dropped": {}, "skipped_cuts": {}},
                   work / "results/catalog/cleaning_report.json")
        time.sleep(0.01)
        write_shards(cat, work / "results/catalog/shards", int(config["shards"]),
                     work / "results/catalog/shards/index.json")
        cmd = [str(Path(sys.executable).parent / "snakemake"), "-n", "-q", "--cores", "16",
               "-s", str(ROOT / "Snakefile"), "--directory", str(work),
               "--configfile", str(ROOT / "configs" / "paper.yaml")]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        dt = time.perf_counter() - t0
    out = {"rows": rows, "shards": config["shards"], "plan_s": round(dt, 2), "goal_s": 30,
           "returncode": p.returncode}
    if p.returncode:
        out["error"] = (p.stderr or p.stdout)[-1500:]
    else:
        out["summary"] = [ln for ln in p.stdout.splitlines() if ln.strip()][-25:]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", choices=list(FAKE_PATHS), default="skyserver",
                    help="which fake service to download from (default skyserver)")
    ap.add_argument("--n", type=int, default=48, help="cutouts per run (default 48)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--rows", type=int, default=142_000)
    ap.add_argument("--skip-plan", action="store_true")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    result = {"download": bench_download(args.n, args.repeats, args.latency, args.source)}
    print(json.dumps(result["download"], indent=2), flush=True)
    if not args.skip_plan:
        result["plan"] = bench_plan(args.rows)
        print(json.dumps(result["plan"], indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
