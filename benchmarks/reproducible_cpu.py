"""Which CPU kernel choices move the weights, and what fixing them costs (galmet.reproducible).

The demo's 64 px training (its recipe from config.yaml: resnet18, no pretraining, batch 32; the
first 248 / 74 bundled galaxies as train / valid; ``--epochs`` epochs, one thread as the
workflow's CPU jobs) runs in its own process per setting, since the kernel choices are read from
the environment when torch and MKL first compute. Other CPUs are emulated on this one by capping
what each library may use:

    native   nothing capped (this CPU)
    avx512   ATEN_CPU_CAPABILITY=avx512 ONEDNN_MAX_CPU_ISA=AVX512_CORE MKL_ENABLE_INSTRUCTIONS=AVX512
    avx2     ATEN_CPU_CAPABILITY=avx2   ONEDNN_MAX_CPU_ISA=AVX2        MKL_ENABLE_INSTRUCTIONS=AVX2
             (an AVX2-only CPU, as the AMD EPYC that gave the demo other numbers)
    sse      ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41      MKL_ENABLE_INSTRUCTIONS=SSE4_2

Part 1 (hashes): the SHA-256 of the trained weights (galmet.reproducible.weights_sha256) per
emulated CPU, with the default kernels and with ``train.reproducible: true`` (which sets its own
ATEN_CPU_CAPABILITY over the emulation's, as it does over a real CPU's choice), at 1 thread
(and the mode at 2 threads on two of them). Part 2 (speed): each step towards the mode against
the default kernels, interleaved in each repeat; the medians of the training seconds (the
epochs, without the process's start) and the median over repeats of each repeat's ratio to the
default kernels' (>1: slower).
The last line printed is one JSON object.

    .venv/bin/python benchmarks/reproducible_cpu.py [--epochs 2] [--repeats 3] [--skip-hashes]
                                                    [--skip-speed] [--skip-predict]

Part 3 (prediction): forward passes a second of a ResNet-18 at 64 px (2 TTA views of 128 demo
galaxies, one thread) with the fast kernels and in the mode, interleaved.

Measured on the 2-core CI machine (Intel Xeon with AVX-512 and AMX, shared with other work;
2 epochs, 3 repeats), with torch 2.14.1 (MKL 2024.2, oneDNN 3.12):

    weights' SHA-256 (first 16 hex digits)   native            avx512            avx2              sse
    default kernels, 1 thread                c18855ce2280b8ff  c18855ce2280b8ff  6f8a8b71ea88d035  6ebeaaa870b91e17
    train.reproducible: true, 1 thread       0f8221638384ad0a  0f8221638384ad0a  0f8221638384ad0a  0f8221638384ad0a
    train.reproducible: true, 2 threads      23de2c39885ca42c                                      23de2c39885ca42c

Earlier runs of the same training, one change at a time, found what moves the weights: with
oneDNN and NNPACK off alone, avx512, avx2 and sse still gave three hashes (MKL and ATen follow
the CPU); with MKL_CBWR=COMPATIBLE added, avx512 and avx2 agreed and sse (ATen's DEFAULT build)
did not; with ATEN_CPU_CAPABILITY=default added, all four agreed, at 1 thread and at 2 threads
(but 1 and 2 threads differ: the thread count splits the sums, so the mode fixes it). oneDNN
capped at AVX2 (ONEDNN_MAX_CPU_ISA=AVX2) with MKL_CBWR=AVX2 made native and avx2 agree too, but
only on CPUs with AVX2 and Intel's MKL branch (MKL gives AMD CPUs its AUTO branch instead of
AVX2), and oneDNN's blocking also follows the cache sizes and threads, which no cap emulates.

Speed (1 epoch, 3 repeats; a later run, the machine's load average 10-12 throughout):

    setting                                   median s   ratio
    default kernels                              9.8      1.00
    no oneDNN, NNPACK                           10.6      1.05
    + MKL_CBWR=COMPATIBLE                       25.5      2.60
    + ATen default (all but deterministic)      24.6      2.60
    train.reproducible: true                    29.4      3.01
    variant: MKL_CBWR=AVX2 (Intel only)         16.6      1.75

Prediction (part 3, 5 repeats, the CI machine with a test suite running beside it): fast kernels
301 images/s, the mode 47 images/s: x6.44 (oneDNN's convolutions matter more for inference than
for training; MKL's COMPATIBLE branch does the rest). So predict.reproducible's auto keeps the
mode for the workflow's own evaluation only.

Nearly all of the training mode's cost is MKL's COMPATIBLE branch (SSE2 GEMM where MKL would use
AVX-512). The AVX2 branch costs less but is Intel's only, so the mode does not use it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from galmet.imaging import block_average, read_image  # noqa: E402

N_TRAIN, N_VALID, RES = 248, 74, 64
DEMO_TRAIN = yaml.safe_load((ROOT / "config.yaml").read_text())["train"]  # the demo's recipe

PROFILES = {
    "native": {},
    "avx512": {"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
               "MKL_ENABLE_INSTRUCTIONS": "AVX512"},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "sse": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
}

#: the steps from the default kernels to the mode: (environment, oneDNN and NNPACK off, train.reproducible)
SETTINGS = {
    "default kernels": ({}, False, False),
    "no oneDNN, NNPACK": ({}, True, False),
    "+ MKL_CBWR=COMPATIBLE": ({"MKL_CBWR": "COMPATIBLE"}, True, False),
    "+ ATen default (all but deterministic)": (
        {"MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "default"}, True, False),
    "train.reproducible: true": ({}, False, True),
    "variant: MKL_CBWR=AVX2 (Intel only)": ({"MKL_CBWR": "AVX2", "ATEN_CPU_CAPABILITY": "default"}, True, False),
}

ONE_TRAINING = """
import json, sys, numpy as np, torch
sys.path.insert(0, {src!r})
if {flags_off}:
    torch.backends.mkldnn.enabled = False
    torch.backends.nnpack.set_flags(False)
from galmet import reproducible
from galmet.train import TrainOutputs, train_model
x = np.load({store!r}, mmap_mode="r"); y = np.load({labels!r})
out = {out!r}
r = train_model(x[:{nt}], y[:{nt}], x[{nt}:], y[{nt}:],
                params={{**{train!r}, "seed": 0, "num_threads": {threads}, "device": "cpu",
                         "reproducible": {mode}, "stage2": {{**{train!r}["stage2"], "cycles": [{epochs}]}}}},
                out=TrainOutputs(model=out + "/model.pt", log=out + "/log.csv"),
                meta={{"target": "oh_p50", "seed": 0, "tta": 8}}, device="cpu")
state = torch.load(out + "/model.pt", weights_only=True)
print(json.dumps({{"sha256": reproducible.weights_sha256(state["state_dict"]), "seconds": r["train_seconds"],
                  "valid_rmse": r["valid_rmse"], "kernels": state["meta"]["reproducible"]}}))
"""


def _data(tmp: Path) -> tuple[Path, Path]:
    cat = pd.read_csv(ROOT / "resources" / "demo" / "catalog.csv", dtype={"objID": "int64"}).iloc[: N_TRAIN + N_VALID]
    full = np.stack([read_image(ROOT / "resources" / "demo" / "images" / f"{i}.jpg") for i in cat["objID"]])
    store, labels = tmp / f"{RES}px.npy", tmp / "y.npy"
    np.save(store, block_average(full, RES))
    np.save(labels, cat["oh_p50"].to_numpy(np.float32))
    return store, labels


def train(setting: str, profile: str, threads: int, epochs: int, data: tuple[Path, Path], tmp: Path) -> dict:
    """One training in its own process under ``setting`` on the emulated CPU ``profile``."""
    env_extra, flags_off, mode = SETTINGS[setting]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", **PROFILES[profile], **env_extra}
    code = ONE_TRAINING.format(src=str(ROOT / "src"), flags_off=flags_off, store=str(data[0]), labels=str(data[1]),
                               out=tempfile.mkdtemp(dir=tmp), nt=N_TRAIN, train=DEMO_TRAIN, threads=threads,
                               mode=mode, epochs=epochs)
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"the training under {setting!r} on {profile} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def hashes(args, data, tmp) -> dict:
    """Weights' SHA-256 (first 16 hex digits) per setting, emulated CPU and thread count."""
    table = {}
    runs = [("default kernels", 1, list(PROFILES)), ("train.reproducible: true", 1, list(PROFILES)),
            ("train.reproducible: true", 2, ["native", "sse"])]
    for setting, threads, profiles in runs:
        row = {prof: train(setting, prof, threads, args.epochs, data, tmp)["sha256"][:16] for prof in profiles}
        table[f"{setting}, {threads} thread(s)"] = row
        same = "identical" if len(set(row.values())) == 1 else "DIFFER"
        print(f"{setting:>26}, {threads} thread(s): " + "  ".join(f"{k} {v}" for k, v in row.items())
              + f"   {same}", flush=True)
    return table


def speed(args, data, tmp) -> dict:
    """Median training seconds per setting (native CPU, one thread), interleaved repeats."""
    seconds = {s: [] for s in SETTINGS}
    for _ in range(args.repeats):
        for s in SETTINGS:
            seconds[s].append(train(s, "native", 1, args.epochs, data, tmp)["seconds"])
    base = seconds["default kernels"]
    out = {}
    for s, v in seconds.items():
        med = statistics.median(v)
        # the ratio within each repeat, then their median: robust to the machine's load changing between repeats
        ratio = statistics.median(x / b for x, b in zip(v, base))
        out[s] = {"median_s": round(med, 2), "ratio": round(ratio, 2), "seconds": [round(x, 2) for x in v]}
        print(f"{s:>40}: {med:6.1f} s   x{ratio:.2f}", flush=True)
    return out


ONE_PREDICTION = """
import json, sys, time, numpy as np, torch
sys.path.insert(0, {src!r})
from galmet import reproducible
from galmet.model import build_model
from galmet.predict import predict_views
torch.set_num_threads(1)
reproducible.apply({mode}, "cpu", threads=None)
torch.manual_seed(0)
net = build_model("resnet18", "none").eval()
x = np.load({store!r})[:{n}]
meta = {{"resolution": {res}, "normalisation": {{"mean": [100.0] * 3, "std": [50.0] * 3}}}}
predict_views(net, meta, x[:8], tta=1, batch_size=64)  # warm-up
t = time.perf_counter()
predict_views(net, meta, x, tta=2, batch_size=64)
print(json.dumps({{"images_per_s": 2 * len(x) / (time.perf_counter() - t)}}))
"""


def predict_speed(args, data, tmp) -> dict:
    """Forward passes a second of a ResNet-18 at 64 px, one thread, with the fast kernels and in the
    mode (a fresh process each, interleaved repeats): what predicting in the mode costs."""
    rates = {"fast kernels": [], "reproducible mode": []}
    for _ in range(args.repeats):
        for name, mode in (("fast kernels", False), ("reproducible mode", True)):
            env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
            code = ONE_PREDICTION.format(src=str(ROOT / "src"), mode=mode, store=str(data[0]), n=128, res=RES)
            p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
            if p.returncode:
                raise SystemExit(f"the prediction ({name}) failed:\n{p.stderr[-3000:]}")
            rates[name].append(json.loads(p.stdout.strip().splitlines()[-1])["images_per_s"])
    ratio = statistics.median(f / m for f, m in zip(rates["fast kernels"], rates["reproducible mode"]))
    out = {k: {"median_images_per_s": round(statistics.median(v), 1)} for k, v in rates.items()}
    out["cost"] = round(ratio, 2)
    print(f"prediction, 1 thread: fast kernels {out['fast kernels']['median_images_per_s']} images/s, mode "
          f"{out['reproducible mode']['median_images_per_s']} images/s: the mode costs x{ratio:.2f}", flush=True)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-hashes", action="store_true")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-predict", action="store_true")
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="galmet-repro-"))
    data = _data(tmp)
    result = {"epochs": args.epochs, "repeats": args.repeats, "res": RES, "n_train": N_TRAIN}
    if not args.skip_hashes:
        result["hashes"] = hashes(args, data, tmp)
    if not args.skip_speed:
        result["speed"] = speed(args, data, tmp)
    if not args.skip_predict:
        result["predict"] = predict_speed(args, data, tmp)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
