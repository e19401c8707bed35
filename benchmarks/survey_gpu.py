"""Survey-scale inference on a GPU: galaxies/s through galmet's prediction path on CUDA, against
the same machine's CPU, and what a million galaxies cost there.

Every number is a rate of the library's one prediction path (``galmet.inputs.PathsSource`` ->
:func:`galmet.predict.predict_rows`: JPEG decoding, re-binning, the domain test, the forward
passes, the interval columns) on recycled demo JPEGs, as ``galmet predict --device cuda`` and a
``snakemake infer`` shard job run it:

* **models**: the demo's survey model (``--model``, a model file the workflow wrote: ResNet-18 at
  64 px, one pass a galaxy, the ensemble's domain test); the demo's ensemble architecture (3
  ResNet-18 members at 64 px, 8 TTA views: 24 passes a galaxy) whose members are copies of the
  survey model's network (the time does not depend on the weights, and an ensemble file, 135 MB,
  need not travel to a GPU machine); the paper's configuration, untrained (ResNet-34 at 128 px:
  the survey model, one pass, and the ensemble, 5 members x 8 views = 40 passes), with the
  domain test fitted on the demo's 128 px images;
* **P processes side by side** (``--procs``), each predicting its share of the images: shard jobs
  sharing one GPU (``snakemake infer --resources gpu=P`` on one machine), on the GPU (CUDA,
  bfloat16 autocast, as galmet predicts there) and on the CPU (``--cpu-procs`` processes of one
  thread, PyTorch's graph for CPU inference: the CPU's best layout, ``survey_speed.py``); each
  configuration timed ``--repeats`` times interleaved with the others, medians; the images a
  measurement takes are sized from a warm-up run to last about ``--seconds``;
* the **ceiling**: the GPU's forward passes alone on decoded, re-binned images (one process);
* the **data path** alone (decoding, re-binning, the domain test; one process, no network);
* how far the GPU's **bfloat16 autocast** (the body; the head runs in float32) and its float32
  move the survey model's predictions from float32 on the CPU.

The named baseline is the demo ensemble on the GPU in one process (one shard job a GPU).

    python benchmarks/survey_gpu.py --model results/models/oh_p50/resnet18-64px-seeds0-1-2-survey/model.pt \\
        [--procs 1,4,16] [--cpu-procs 16] [--repeats 3] [--seconds 3] [--json out.json]

Prints the table and, last, one JSON line; ``--json`` is rewritten after each phase, so a run
stopped early keeps what it measured.
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing as mp
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from survey_speed import data_rate, interleaved  # noqa: E402  (beside this file)

from galmet import domain  # noqa: E402
from galmet.ensemble import SPREAD  # noqa: E402
from galmet.imaging import block_average, read_image  # noqa: E402
from galmet.inputs import PathsSource  # noqa: E402
from galmet.model import Ensemble, build_model, normalisation_constants, to_input  # noqa: E402
from galmet.modelfile import load, save  # noqa: E402
from galmet.predict import predict_rows, predict_views, prepare  # noqa: E402

DEMO = ROOT / "resources" / "demo" / "images"
CHUNK = 512  # images decoded and predicted at a time, as survey_speed.py


# ----------------------------------------------------------------------------- models


def model_files(survey_path: Path, work: Path) -> dict[str, tuple[Path, int]]:
    """``{configuration: (model file, TTA views)}``: the survey model, and the three others built
    from it (see the module docstring), written as model files so that every process loads them
    as galmet predict does."""
    net, meta = load(survey_path, "cpu", reproducible=False)
    ens_meta = {**meta, "members": [{"name": f"copy{i}"} for i in range(3)], "tta": 8,
                "calibration": {**meta["calibration"], "tta": 8, "spread": SPREAD}}
    ens_meta.pop("survey", None)
    out = {"demo survey model (ResNet-18, 64 px, 1 pass)": (survey_path, 1)}
    out["demo ensemble (3 x ResNet-18, 64 px, 8 views)"] = (
        save(work / "demo-ensemble.pt", Ensemble([copy.deepcopy(net) for _ in range(3)]), ens_meta), 8)
    x128 = np.stack([read_image(p) for p in sorted(DEMO.glob("*.jpg"))])
    half = len(x128) * 3 // 4
    torch.manual_seed(0)
    paper = {**meta, "arch": "resnet34", "resolution": 128, "domain": domain.fit(x128[:half], x128[half:], 128)}
    paper.pop("survey", None)
    out["paper's survey model (ResNet-34, 128 px, 1 pass; untrained)"] = (
        save(work / "paper-survey.pt", build_model("resnet34"), paper), 1)
    paper_ens = {**paper, "members": [{"name": f"m{i}"} for i in range(5)], "tta": 8,
                 "calibration": {**meta["calibration"], "tta": 8, "spread": SPREAD}}
    out["paper's ensemble (5 x ResNet-34, 128 px, 8 views; untrained)"] = (
        save(work / "paper-ensemble.pt", Ensemble([build_model("resnet34") for _ in range(5)]), paper_ens), 8)
    return out


def recycled(n: int, dest: Path) -> list[Path]:
    """``n`` demo JPEGs (the 400 recycled) under new objIDs in ``dest``, with the demo's cutouts.json."""
    dest.mkdir(parents=True, exist_ok=True)
    files = sorted(DEMO.glob("*.jpg"))
    out = []
    for i in range(n):
        p = dest / f"{900000000000000000 + i}.jpg"
        shutil.copyfile(files[i % len(files)], p)
        out.append(p)
    shutil.copyfile(DEMO / "cutouts.json", dest / "cutouts.json")
    return out


# ----------------------------------------------------------------------------- the path, in P processes


def path_rows(model, meta, paths, tta: int, device: str) -> int:
    """Rows predicted by the library's path for ``paths`` (one process)."""
    source = PathsSource(paths, CHUNK)
    run = prepare(meta, source, None, tta, (), None)
    return sum(len(k) for k, _, _ in predict_rows(source, model, meta, run, device=device))


def _worker(rank: int, threads: int, files: dict, paths: list, barrier, tasks, results) -> None:
    """One process of a pool: for each task ``(config, device, n)`` predict its share of the
    first ``n`` paths between two barriers; reports ``(rank, t0, t1, rows)``."""
    torch.set_num_threads(threads)
    cache = {}
    while (task := tasks.get()) is not None:
        config, device, n = task
        if (config, device) not in cache:
            cache[config, device] = load(files[config][0], device, reproducible=False)
        model, meta = cache[config, device]
        mine = paths[:n][rank::barrier.parties]
        barrier.wait()
        t0 = time.perf_counter()
        rows = path_rows(model, meta, mine, files[config][1], device)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        results.put((rank, t0, time.perf_counter(), rows))


class Pool:
    """``procs`` worker processes (spawned once, models cached in each) that run a task together."""

    def __init__(self, procs: int, threads: int, files: dict, paths: list):
        ctx = mp.get_context("spawn")
        self.barrier, self.results = ctx.Barrier(procs), ctx.Queue()
        self.tasks = [ctx.Queue() for _ in range(procs)]
        self.procs = [ctx.Process(target=_worker, args=(r, threads, files, paths, self.barrier, self.tasks[r],
                                                        self.results), daemon=True) for r in range(procs)]
        for p in self.procs:
            p.start()

    def rate(self, config: str, device: str, n: int) -> float:
        """Galaxies/s of all the processes together on the first ``n`` paths: rows over the span
        from the first start to the last end (CLOCK_MONOTONIC is one clock for all processes)."""
        for q in self.tasks:
            q.put((config, device, n))
        got = [self.results.get(timeout=900) for _ in self.procs]
        return sum(g[3] for g in got) / (max(g[2] for g in got) - min(g[1] for g in got))

    def close(self) -> None:
        for q in self.tasks:
            q.put(None)
        for p in self.procs:
            p.join(timeout=30)


# ----------------------------------------------------------------------------- main


def gap(diff: np.ndarray) -> dict:
    """How far predictions moved: ``n``, rms and largest absolute difference (dex)."""
    return {"n": len(diff), "rms_dex": float(np.sqrt(np.mean(diff ** 2))), "max_abs_dex": float(np.abs(diff).max())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="the demo's survey model file")
    ap.add_argument("--procs", default="1,4,16", help="processes sharing the GPU")
    ap.add_argument("--cpu-procs", type=int, default=os.cpu_count(),
                    help="processes of one thread on the CPU (0: none)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0, help="about how long each measurement runs")
    ap.add_argument("--max-images", type=int, default=48000)
    ap.add_argument("--ceiling-images", type=int, default=2000, help="images of the ceiling at 64 px (2/5 at 128 px)")
    ap.add_argument("--device", default="cuda",
                    help="cpu: try this script on a machine without a GPU (with a small --max-images)")
    ap.add_argument("--json")
    args = ap.parse_args()
    gpu = args.device
    if gpu == "cuda" and not torch.cuda.is_available():
        print("survey_gpu.py: CUDA is not available here: run it on a machine with a GPU "
              "(benchmarks/survey_speed.py measures the CPU)", file=sys.stderr)
        return 2
    procs = [int(p) for p in args.procs.split(",")]
    cores = os.cpu_count()
    sync = torch.cuda.synchronize if gpu == "cuda" else (lambda: None)
    out = {"machine": {"gpu": torch.cuda.get_device_name(0) if gpu == "cuda" else "none (--device cpu)",
                       "cpus": cores, "torch": torch.__version__, "python": platform.python_version()},
           "procs": procs, "cpu_procs": args.cpu_procs}

    def dump():
        if args.json:
            tmp = Path(args.json + ".tmp")
            tmp.write_text(json.dumps(out, indent=2))
            tmp.replace(args.json)

    work = Path(tempfile.mkdtemp(prefix="galmet-survey-gpu-"))
    pools = {}
    try:
        t_setup = time.perf_counter()
        files = model_files(Path(args.model), work)
        paths = recycled(args.max_images, work / "images")
        out["setup_s"] = time.perf_counter() - t_setup
        x128 = np.stack([read_image(p) for p in sorted(DEMO.glob("*.jpg"))])

        # bfloat16 on the GPU against float32 on the CPU: the survey model on the 400 demo galaxies
        survey_cfg = next(iter(files))
        gpu_net, meta = load(files[survey_cfg][0], gpu, reproducible=False)
        cpu_net, _ = load(files[survey_cfg][0], "cpu", reproducible=False)
        x64 = block_average(x128, 64)
        cpu_views = predict_views(cpu_net, meta, x64, 1)[:, 0, 0]
        out["bf16_vs_fp32"] = gap(predict_views(gpu_net, meta, x64, 1, device=gpu)[:, 0, 0] - cpu_views)
        scale, shift = normalisation_constants(meta["normalisation"]["mean"], meta["normalisation"]["std"], gpu)
        with torch.no_grad():  # float32 on the GPU (no autocast; convolutions in TF32 as PyTorch's default)
            fp32 = gpu_net(to_input(torch.from_numpy(x64).to(gpu).permute(0, 3, 1, 2), scale, shift))
        out["fp32_gpu_vs_fp32"] = gap(fp32.double().cpu().numpy() - cpu_views)
        for k, what in (("bf16_vs_fp32", "bfloat16 autocast (as galmet predicts there)"),
                        ("fp32_gpu_vs_fp32", "float32")):
            print(f"{what} on the GPU against float32 on the CPU (survey model, {len(x64)} demo galaxies): "
                  f"{out[k]['rms_dex']:.4f} dex rms, max {out[k]['max_abs_dex']:.4f}", flush=True)
        del gpu_net, cpu_net

        # the ceiling: the forward passes alone on the GPU; the data path alone
        nets = {c: load(f, gpu, reproducible=False) for c, (f, _) in files.items()}
        n64 = args.ceiling_images
        xs = {64: np.resize(x64, (n64, *x64.shape[1:])), 128: np.resize(x128, (n64 * 2 // 5, *x128.shape[1:]))}

        def ceiling(c):
            model, m = nets[c]
            x = xs[int(m["resolution"])]
            sync()
            t0 = time.perf_counter()
            predict_views(model, m, x, files[c][1], batch_size=256, device=gpu)
            sync()
            return len(x) / (time.perf_counter() - t0)

        for c in files:
            ceiling(c)  # warm-up: cuDNN's choice of kernels
        data_cfg = {"64 px": survey_cfg, "128 px": list(files)[2]}
        got = interleaved({("ceiling", c): lambda c=c: ceiling(c) for c in files}
                          | {("data", r): lambda c=c: data_rate(nets[c][1], PathsSource(paths[:n64], CHUNK))
                             for r, c in data_cfg.items()}, args.repeats)
        out["ceiling"] = {c: got["ceiling", c] for c in files}
        out["data_path"] = {r: got["data", r] for r in data_cfg}
        nets.clear()
        if gpu == "cuda":
            torch.cuda.empty_cache()
        print("ceiling (GPU passes alone): " + "; ".join(f"{c}: {v:.0f}/s" for c, v in out["ceiling"].items()))
        print("data path alone, one process: " + "; ".join(f"{k}: {v:.0f}/s" for k, v in out["data_path"].items()),
              flush=True)
        dump()

        # the path, P processes side by side, interleaved repeats
        for p in procs:
            pools[gpu, p] = Pool(p, max(1, min(4, cores // p)), files, paths)
        if args.cpu_procs:
            pools["cpu", args.cpu_procs] = Pool(args.cpu_procs, 1, files, paths)
        n_for = {}
        for (device, p), pool in pools.items():  # warm-up (models loaded, graphs built), then sized
            for c in files:
                if device == "cpu" and c.startswith("paper's ensemble"):
                    continue  # ~1 galaxy/s a core: the CPU ensemble at 128 px is not a survey option
                n0 = min(args.max_images, 32 * p)
                pool.rate(c, device, n0)
                r = pool.rate(c, device, n0)
                n_for[device, p, c] = int(min(args.max_images, max(n0, r * args.seconds)))
        print(f"pools started and warm in {time.perf_counter() - t_setup:.0f} s", flush=True)
        rates = {k: [] for k in n_for}
        for rep in range(args.repeats):
            for (device, p, c), n in n_for.items():
                rates[device, p, c].append(pools[device, p].rate(c, device, n))
            out["path"] = [{"device": d, "procs": p, "config": c, "images": n_for[d, p, c],
                            "galaxies_per_s": float(np.median(v)), "repeats": len(v)}
                           for (d, p, c), v in rates.items()]
            dump()
            print(f"repeat {rep + 1} of {args.repeats} done", flush=True)
    finally:
        for pool in pools.values():
            pool.close()
        shutil.rmtree(work, ignore_errors=True)

    base = next(r["galaxies_per_s"] for r in out["path"]
                if r["device"] == gpu and r["procs"] == procs[0] and "demo ensemble" in r["config"])
    print(f"\n{out['machine']['gpu']}, {cores} CPU cores, torch {out['machine']['torch']}; {args.repeats} "
          f"interleaved repeats, medians; baseline: the demo ensemble on the GPU, {procs[0]} process\n")
    print("| configuration | where | processes | galaxies/s | vs baseline | a million galaxies | GPU ceiling |")
    print("|---|---|---|---|---|---|---|")
    for r in out["path"]:
        where = "GPU" if r["device"] == gpu else f"CPU, {r['procs']} x 1 thread"
        print(f"| {r['config']} | {where} | {r['procs']} | {r['galaxies_per_s']:.0f} | "
              f"{r['galaxies_per_s'] / base:.1f}x | {1e6 / r['galaxies_per_s'] / 60:.1f} min | "
              f"{out['ceiling'][r['config']]:.0f} |")
    dump()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
