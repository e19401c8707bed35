"""Training and inference throughput: galmet's packed-store path against the common baseline.

For ResNet-18 at 16 and 64 px and ResNet-34 at 128 px, on the bundled demo galaxies, training
images per second for

  (a) ours: the packed uint8 store (memory-mapped ``.npy``) through ``galmet.train.train_one_epoch``
      -- gather, one random D4 element per image and normalisation on the device, SGD step;
  (b) baseline: a torch ``DataLoader`` (``num_workers`` = cores, persistent workers) decoding
      the JPEGs with PIL and torchvision transforms (Resize, ToTensor, Normalize, random flips
      and transpose = the 8 D4 elements) every epoch;
  (c) ceiling: the same model and optimizer stepping on one fixed, already normalised batch
      (compute only);

and inference images per second (``galmet.predict.predict_images``) without and with 8x TTA.
Methods are interleaved within each repeat; medians are reported. The last line printed is
one JSON object with ``speedup_16px`` ((a)/(b) at 16 px), ``efficiency`` (min over configs of
(a)/(c)) and every median.

    python benchmarks/train_throughput.py [--quick] [--device cpu|cuda] [--batch-size N]
"""

from __future__ import annotations

import os

# Passive OpenMP waiting: with the DataLoader's worker processes on the same cores, spinning
# compute threads starve them (and any other job on a shared machine). Set before torch loads;
# it helps the baseline, not only ours. Override by exporting OMP_WAIT_POLICY.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from galmet.imaging import block_average, read_image  # noqa: E402
from galmet.model import IMAGENET_MEAN, IMAGENET_STD, build_model, normalisation_constants, to_input  # noqa: E402
from galmet.predict import predict_images  # noqa: E402
from galmet.stores import load_store  # noqa: E402
from galmet.train import ImageSource, make_optimizer, split_batches, train_one_epoch  # noqa: E402

CONFIGS = [("resnet18", 16), ("resnet18", 64), ("resnet34", 128)]
PARAMS = {"stage1": {"lr": 0.01}, "stage2": {"lrs": [1e-3, 1e-3, 1e-3]}, "momentum": 0.9, "weight_decay": 0.0}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class JpegDataset(Dataset):
    """The common baseline: decode each JPEG with PIL every epoch, torchvision transforms."""

    def __init__(self, paths, labels, res: int):
        from torchvision import transforms

        self.paths, self.labels = list(paths), np.asarray(labels, np.float32)
        self.tf = transforms.Compose([
            transforms.Resize((res, res), antialias=True),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            transforms.RandomHorizontalFlip(),
            transforms.RandomVerticalFlip(),
            transforms.RandomApply([transforms.Lambda(lambda t: t.transpose(-1, -2))], p=0.5),
        ])

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        from PIL import Image

        with Image.open(self.paths[i]) as im:
            img = im.convert("RGB")
        return self.tf(img), self.labels[i]


def _step(model, opt, inp, yb, amp, device):
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        pred = model(inp)
    loss = torch.sqrt(((pred.float() - yb) ** 2).mean())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _bench_config(arch, res, args, device, amp, cores, paths, y, stores, n):
    key = f"{arch}@{res}px"
    bs = args.batch_size
    steps = args.steps if not (arch == "resnet34" and args.quick) else max(2, args.steps // 2)
    n_img = min(n, steps * bs)
    torch.manual_seed(0)
    model = build_model(arch, "none").to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    model.train()
    opt = make_optimizer(model, 2, PARAMS)
    scale, shift = normalisation_constants(IMAGENET_MEAN, IMAGENET_STD, device)
    src = ImageSource(stores[res], device, resident=True)
    y_t = torch.as_tensor(y, device=device)
    factors = np.ones(steps + 1)
    g = torch.Generator().manual_seed(0)

    def ours():
        order = torch.randperm(n, generator=g).numpy()[:n_img]
        ks = torch.randint(0, 8, (n,), generator=g)
        batches = split_batches(order, bs)
        _sync(device)
        t = time.perf_counter()
        train_one_epoch(model, opt, src, y_t, batches, ks, PARAMS["stage2"]["lrs"], factors, scale, shift, amp)
        _sync(device)
        return n_img / (time.perf_counter() - t)

    ds = JpegDataset(paths[:n_img], y[:n_img], res)
    loader = DataLoader(ds, batch_size=bs, shuffle=True, num_workers=cores, persistent_workers=True,
                        pin_memory=device.type == "cuda", drop_last=False)
    for _ in loader:  # start the workers outside the timing
        break

    def baseline():
        _sync(device)
        t = time.perf_counter()
        seen = 0
        for xb, yb in loader:
            xb = xb.to(device, non_blocking=True)
            if device.type == "cuda":
                xb = xb.contiguous(memory_format=torch.channels_last)
            _step(model, opt, xb, yb.to(device), amp, device)
            seen += len(xb)
        _sync(device)
        return seen / (time.perf_counter() - t)

    fixed = to_input(src.batch(np.arange(bs)), scale, shift).clone()
    y_fixed = y_t[:bs].clone()

    def ceiling():
        batches = split_batches(np.arange(n_img), bs)
        _sync(device)
        t = time.perf_counter()
        for b in batches:
            _step(model, opt, fixed[: len(b)], y_fixed[: len(b)], amp, device)
        _sync(device)
        return n_img / (time.perf_counter() - t)

    def infer(tta):
        def f():
            model.eval()
            _sync(device)
            t = time.perf_counter()
            predict_images(model, {"resolution": res, "normalisation": {"mean": IMAGENET_MEAN,
                           "std": IMAGENET_STD}}, stores[res][:n_img], tta=tta, batch_size=256,
                           device=str(device))
            _sync(device)
            model.train()
            return n_img / (time.perf_counter() - t)
        return f

    methods = {"ours": ours, "baseline": baseline, "ceiling": ceiling,
               "infer": infer(1), "infer_tta8": infer(8)}
    ceiling()  # warm-up: allocator, oneDNN / cuDNN kernel choice
    ours()
    samples = {m: [] for m in methods}
    for rep in range(args.repeats):
        names = list(methods)
        names = names[rep % len(names):] + names[:rep % len(names)]  # rotate the order
        for m in names:
            samples[m].append(methods[m]())
    med = {m: statistics.median(v) for m, v in samples.items()}
    out = {**{m: round(v, 1) for m, v in med.items()}, "batch": bs, "images": n_img,
           "repeats": args.repeats}
    print(f"{key:18s} ours {med['ours']:9.1f}  baseline {med['baseline']:9.1f}  ceiling "
          f"{med['ceiling']:9.1f}  img/s   infer {med['infer']:9.1f}  infer TTA x8 "
          f"{med['infer_tta8']:9.1f}", file=sys.stderr, flush=True)
    return key, out


def run(args) -> dict:
    device = torch.device(args.device)
    amp = device.type == "cuda"
    cores = os.cpu_count() or 1
    cat = pd.read_csv(ROOT / "resources" / "demo" / "catalog.csv", dtype={"objID": "int64"})
    n = args.images
    cat = cat.iloc[:n]
    paths = [ROOT / "resources" / "demo" / "images" / f"{i}.jpg" for i in cat["objID"]]
    y = cat["oh_p50"].to_numpy(np.float32)
    full = np.stack([read_image(p) for p in paths])
    tmp = Path(tempfile.mkdtemp(prefix="galmet-bench-"))
    stores = {}
    for _, res in CONFIGS:
        path = tmp / f"{res}px.npy"
        np.save(path, block_average(full, res) if res != full.shape[1] else full)
        stores[res] = load_store(path)  # memory-mapped, as in training

    results = {}
    for arch, res in CONFIGS:
        key, out = _bench_config(arch, res, args, device, amp, cores, paths, y, stores, n)
        results[key] = out
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer steps and repeats (a few minutes on 2 CPU cores)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=None, help="default 32 on CPU, 256 on CUDA")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args(argv)
    cuda = args.device.startswith("cuda")
    if args.batch_size is None:
        args.batch_size = 256 if cuda else 32
    args.steps = (4 if args.quick else 12) if not cuda else (8 if args.quick else 40)
    args.repeats = 3 if args.quick else 5
    args.images = 400
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    results = run(args)
    r = results
    print()
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, batch {args.batch_size}, "
          f"medians of {args.repeats} interleaved repeats (images/s)")
    print(f"{'config':18s} {'(a) ours':>10s} {'(b) DataLoader':>15s} {'(c) ceiling':>12s} {'a/b':>6s} "
          f"{'a/c':>6s} {'infer':>9s} {'infer TTA8':>11s}")
    for k, v in r.items():
        print(f"{k:18s} {v['ours']:10.1f} {v['baseline']:15.1f} {v['ceiling']:12.1f} "
              f"{v['ours'] / v['baseline']:6.2f} {v['ours'] / v['ceiling']:6.2f} {v['infer']:9.1f} "
              f"{v['infer_tta8']:11.1f}")
    summary = {
        "speedup_16px": round(r["resnet18@16px"]["ours"] / r["resnet18@16px"]["baseline"], 3),
        "efficiency": round(min(v["ours"] / v["ceiling"] for v in r.values()), 3),
        "speedup": {k: round(v["ours"] / v["baseline"], 3) for k, v in r.items()},
        "device": args.device, "threads": torch.get_num_threads(), "batch_size": args.batch_size,
        "quick": args.quick, "seconds": round(time.perf_counter() - t0, 1), "configs": r,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
