"""CPU trainings: one at a time on every core (baseline) or side by side on one core each.

On a machine without a GPU the workflow gives each training job one thread and no ``gpu``
resource, so that Snakemake runs as many at once as there are cores (galmet.plan,
``Study.train_threads``); with a GPU, one at a time on every core. This measures why, on the bundled
demo galaxies (248 train / 74 valid, the demo's recipe, ``--epochs`` epochs), for each resolution:

  (a) baseline: two trainings one after the other, each ``torch.set_num_threads(cores)``;
  (b) side by side: the same two trainings at once, each ``torch.set_num_threads(1)``
      (cores = 2: the demo's machine; with more cores, that many at once).

Each training is its own process (``galmet.train.train_model``), as a Snakemake job is; the
seconds include its start (imports, model). The two ways are interleaved in each repeat; medians
are reported, and the ratio (a)/(b) of the wall times (>1: side by side finishes sooner). The
last line printed is one JSON object.

    .venv/bin/python benchmarks/cpu_training_threads.py [--epochs 6] [--repeats 3] [--res 16 32 64]

Measured on the 2-core CI machine (4 epochs, 3 repeats; each training's ~7 s start included)::

     res   2 one at a time, 2 threads   2 side by side, 1 thread   ratio
    16 px            41.2 s                     18.5 s            2.22
    32 px            40.4 s                     21.5 s            1.88
    64 px            61.2 s                     35.9 s            1.71

A ratio near 2 says that on these small inputs, with the workflow's ``OMP_WAIT_POLICY=PASSIVE``
(which keeps a job from stealing the cores of the jobs beside it), a training's second thread
does little while a second training on that core nearly doubles the throughput.
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
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from galmet.imaging import block_average, read_image  # noqa: E402

N_TRAIN, N_VALID = 248, 74
DEMO_TRAIN = yaml.safe_load((ROOT / "config.yaml").read_text())["train"]  # the demo's recipe

ONE_TRAINING = """
import sys, numpy as np, torch
sys.path.insert(0, {src!r})
from galmet.train import TrainOutputs, train_model
torch.set_num_threads({threads})
x = np.load({store!r}, mmap_mode="r"); y = np.load({labels!r})
out = {out!r}
train_model(x[:{nt}], y[:{nt}], x[{nt}:], y[{nt}:],
            params={{**{train!r}, "seed": {seed}, "stage2": {{**{train!r}["stage2"], "cycles": [{epochs}]}}}},
            out=TrainOutputs(model=out + "/model.pt", log=out + "/log.csv", curve=out + "/curve.png"),
            meta={{"target": "oh_p50", "seed": {seed}, "tta": 8}}, device="cpu")
"""


def _stores(tmp: Path, resolutions) -> tuple[dict[int, Path], Path]:
    cat = pd.read_csv(ROOT / "resources" / "demo" / "catalog.csv", dtype={"objID": "int64"}).iloc[: N_TRAIN + N_VALID]
    full = np.stack([read_image(ROOT / "resources" / "demo" / "images" / f"{i}.jpg") for i in cat["objID"]])
    labels = tmp / "y.npy"
    np.save(labels, cat["oh_p50"].to_numpy(np.float32))
    stores = {}
    for res in resolutions:
        stores[res] = tmp / f"{res}px.npy"
        np.save(stores[res], block_average(full, res) if res != full.shape[1] else full)
    return stores, labels


def _trainings(n: int, threads: int, at_once: bool, store: Path, labels: Path, epochs: int, tmp: Path) -> float:
    """Wall seconds for ``n`` trainings (seeds 0..n-1), at once or one after the other."""
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}  # as the workflow's jobs (common.smk)
    codes = []
    for seed in range(n):
        out = tempfile.mkdtemp(dir=tmp)
        codes.append(ONE_TRAINING.format(src=str(ROOT / "src"), threads=threads, store=str(store), train=DEMO_TRAIN,
                                         labels=str(labels), nt=N_TRAIN, seed=seed, epochs=epochs, out=out))
    t0 = time.perf_counter()
    if at_once:
        procs = [subprocess.Popen([sys.executable, "-c", c], stderr=subprocess.DEVNULL, env=env) for c in codes]
        rcs = [p.wait() for p in procs]
    else:
        rcs = [subprocess.run([sys.executable, "-c", c], stderr=subprocess.DEVNULL, env=env).returncode for c in codes]
    if any(rcs):
        raise SystemExit(f"a training failed (exit codes {rcs})")
    return time.perf_counter() - t0


def run(args) -> dict:
    cores = os.cpu_count() or 1
    tmp = Path(tempfile.mkdtemp(prefix="galmet-bench-"))
    stores, labels = _stores(tmp, args.res)
    results = {}
    for res in args.res:
        serial, side = [], []
        for _ in range(args.repeats):  # interleaved
            serial.append(_trainings(cores, cores, False, stores[res], labels, args.epochs, tmp))
            side.append(_trainings(cores, 1, True, stores[res], labels, args.epochs, tmp))
        a, b = statistics.median(serial), statistics.median(side)
        results[f"{res}px"] = {"one_at_a_time_s": round(a, 2), "side_by_side_s": round(b, 2), "ratio": round(a / b, 3)}
        print(f"{res:>4} px   {cores} one at a time, {cores} threads: {a:6.1f} s   {cores} side by side, "
              f"1 thread: {b:6.1f} s   ratio {a / b:.2f}", flush=True)
    return {"cores": cores, "epochs": args.epochs, "repeats": args.repeats, "results": results}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--res", type=int, nargs="+", default=[16, 32, 64])
    args = p.parse_args(argv)
    print(json.dumps(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
