"""Survey-scale inference: images/s and peak memory for 1k, 10k and 50k galaxies.

    .venv/bin/python benchmarks/inference_scale.py [--sizes 1000 10000 50000] [--device cpu]

The bundled demo JPEGs (resources/demo/images, 128 px) are repeated to make a catalog of N
rows (``objID, path``), which goes through the inference pipeline exactly as ``snakemake
infer`` runs it (galmet.infer: split into one shard, predict the shard streaming in chunks,
gather) in ONE fresh process per N, so that the peak RSS is that run's. The model is an
untrained ResNet-18 at 64 px (throughput does not depend on the weights), no TTA.

Goal: images/s flat in N and peak RSS growing < 10% from the smallest to the largest N.
Prints a table and, last, one JSON line. ``--max-seconds`` bounds a run: a size that would take
longer is measured on its first part only and extrapolated, and the row says so.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "src"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))
DEMO = ROOT / "resources" / "demo"


def _child(args) -> None:
    """One measurement: runs in its own process; prints one JSON line."""
    import numpy as np
    import torch

    from galmet.infer import gather, predict_shard, split_catalog
    from galmet.modelfile import load as load_model

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    images = sorted(str(p) for p in (DEMO / "images").glob("*.jpg"))
    n = args.n
    cat = work / f"catalog_{n}.parquet"  # written by the parent: not part of this process's memory
    shard, part = work / f"shard_{n}.parquet", work / f"part_{n}.parquet"
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    split_catalog(cat, [shard])
    t_split = time.perf_counter() - t0
    model, meta = load_model(args.model, args.device)
    device = str(next(model.parameters()).device)
    # warm-up outside the timing (first-call allocations, cudnn autotune)
    from galmet.imaging import read_image, to_resolution
    from galmet.predict import predict_images

    x = np.stack([to_resolution(read_image(p), int(meta["resolution"])) for p in images[:32]])
    predict_images(model, meta, x, tta=1, batch_size=args.batch_size, device=device)
    t1 = time.perf_counter()
    stats = predict_shard(shard, model, meta, part, tta=1, batch_size=args.batch_size,
                          chunk_size=args.chunk_size, device=device)
    t_pred = time.perf_counter() - t1
    t2 = time.perf_counter()
    rows = gather([part], work / f"out_{n}.parquet", model="bench")
    t_gather = time.perf_counter() - t2
    assert rows == n == stats["n_predicted"], (rows, n, stats)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.startswith("cuda"):
        gpu_peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        gpu_peak = None
    print(json.dumps({"n": n, "device": device, "predict_s": t_pred, "split_s": t_split, "gather_s": t_gather,
                      "images_per_s": n / t_pred, "peak_rss_mb": peak_kb / 1024,
                      "rss_before_mb": rss_before / 1024, "gpu_peak_mb": gpu_peak}))


def _write_catalog(n: int, work: Path) -> None:
    import numpy as np
    import pandas as pd

    images = sorted(str(p) for p in (DEMO / "images").glob("*.jpg"))
    reps = np.resize(np.arange(len(images)), n)
    pd.DataFrame({"objID": np.arange(1, n + 1, dtype=np.int64) + 10**18,
                  "path": [images[i] for i in reps]}).to_parquet(work / f"catalog_{n}.parquet")


def _run_size(n: int, args, model: Path, work: Path) -> dict:
    _write_catalog(n, work)
    cmd = [sys.executable, __file__, "--child", "--n", str(n), "--model", str(model), "--work", str(work),
           "--device", args.device, "--threads", str(args.threads), "--batch-size", str(args.batch_size),
           "--chunk-size", str(args.chunk_size)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.max_seconds + 600)
    if p.returncode != 0:
        raise SystemExit(f"measurement for N={n} failed:\n{p.stderr[-4000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch CPU threads")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--chunk-size", type=int, default=1024, help="as infer.chunk_size (default 1024)")
    ap.add_argument("--res", type=int, default=64)
    ap.add_argument("--max-seconds", type=float, default=1800,
                    help="time budget per size; beyond it, the size is extrapolated from a measured prefix")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        _child(args)
        return 0

    from tests.untrained import write_untrained_model

    with tempfile.TemporaryDirectory(prefix="galmet-bench-") as tmp:
        work = Path(tmp)
        model = write_untrained_model(work / "model.pt", "resnet18", args.res)
        results = []
        rate = None
        for n in sorted(args.sizes):
            measured_n = n
            if rate is not None and n / rate > args.max_seconds:
                # too long for the budget: measure the largest prefix that fits, say so
                measured_n = max(sorted(args.sizes)[0], int(rate * args.max_seconds))
            r = _run_size(measured_n, args, model, work)
            rate = r["images_per_s"]
            r["requested_n"] = n
            r["extrapolated"] = measured_n != n
            results.append(r)
            for f in work.glob(f"*_{measured_n}.parquet"):
                f.unlink()
            print(f"  N={n}: {r['images_per_s']:.0f} images/s, peak RSS {r['peak_rss_mb']:.0f} MB"
                  + (f" (measured on {measured_n})" if r["extrapolated"] else ""), file=sys.stderr, flush=True)

    print(f"\nInference, ResNet-18 at {args.res} px, no TTA, device {results[0]['device']}, "
          f"{args.threads} threads, batch {args.batch_size}, chunk {args.chunk_size}")
    print(f"{'galaxies':>9} {'measured':>9} {'seconds':>9} {'images/s':>9} {'peak RSS MB':>12}")
    for r in results:
        print(f"{r['requested_n']:>9} {r['n']:>9} {r['predict_s']:>9.1f} {r['images_per_s']:>9.1f} "
              f"{r['peak_rss_mb']:>12.0f}")
    first, last = results[0], results[-1]
    rss_growth = last["peak_rss_mb"] / first["peak_rss_mb"] - 1
    rate_ratio = last["images_per_s"] / first["images_per_s"]
    print(f"peak RSS growth {first['requested_n']} -> {last['requested_n']}: {100 * rss_growth:+.1f}% "
          f"(goal < 10%); throughput ratio {rate_ratio:.2f} (goal ~1)")
    if any(r["extrapolated"] for r in results):
        print("note: rows with measured < galaxies ran on a prefix within --max-seconds; "
              "their images/s is measured, their seconds is for the measured prefix")
    print(json.dumps({"benchmark": "inference_scale", "arch": "resnet18", "res": args.res, "tta": 1,
                      "device": first["device"], "threads": args.threads, "results": results,
                      "peak_rss_growth": rss_growth, "throughput_ratio": rate_ratio,
                      "goal_met": bool(rss_growth < 0.10 and rate_ratio > 0.8)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
