"""Backbones (issue 18): ResNet-18, the named baseline, against another registered torchvision body.

On the demo (config.yaml: its catalog, cuts and split; 64 px, block-averaged from the bundled
128 px cutouts as the workflow's stores are), each backbone is trained by
``galmet.train.train_model`` with the demo's recipe (``train`` of config.yaml, only ``arch``
changed) on the train split and scored on the validation split: RMSE without and with 8-view TTA,
and the training wall time (``train_seconds``: the epochs, without start-up and the final scoring).
The test split is never read. Trainings are interleaved (resnet18 seed 0, other seed 0, resnet18
seed 1, ...); medians over seeds are reported, with the ratios other / resnet18.

    .venv/bin/python benchmarks/backbones.py [--other efficientnet_b0] [--seeds 0 1] [--epochs N]

``--epochs`` shortens the demo's schedule (one SGDR cycle of N epochs) for both alike; the output
says so. The last line printed is one JSON object.

Measured on the 2-core demo machine (shared with other jobs; the demo recipe: 30 epochs, random
weights, batch 32, seeds 0 1 2; 248 train / 74 valid galaxies)::

                      valid RMSE (dex)   with 8-view TTA   training
    resnet18              0.1078             0.1010          53.4 s
    efficientnet_b0       0.2478             0.2102          50.0 s
    ratio to resnet18     x2.30              x2.08           x0.93
    (the train mean for every galaxy: 0.1946 dex)

Per seed, resnet18 0.1147 / 0.1043 / 0.1078 and efficientnet_b0 0.2276 / 0.2783 / 0.2478 (no TTA).
From random weights on 248 galaxies, EfficientNet-B0 at 64 px does not even beat the constant on
the validation split, for the same training time on a CPU; ResNet-18 stays the default.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from galmet.backbones import BACKBONES  # noqa: E402
from galmet.catalog import clean_catalog, load_catalog  # noqa: E402
from galmet.config import validate_config  # noqa: E402
from galmet.imaging import block_average, read_image  # noqa: E402
from galmet.split import assign_splits  # noqa: E402
from galmet.train import train_model  # noqa: E402

BASELINE = "resnet18"
RES = 64
TARGET = "oh_p50"


def demo_splits(cfg: dict, res: int = RES):
    """``(x_train, y_train, x_valid, y_valid)`` of the demo at ``res`` px: its clean catalog and split."""
    raw, extra = load_catalog({**cfg["catalog"], "path": str(ROOT / cfg["catalog"]["path"])})
    clean, _ = clean_catalog(raw, cfg["catalog"]["cuts"], cfg["catalog"]["star_forming_only"], extra)
    clean = clean.dropna(subset=[TARGET])
    labels = assign_splits(clean["objID"], cfg["split"]["seed"], cfg["split"]["fractions"])
    images = ROOT / cfg["cutouts"]["local_dir"]
    out = []
    for part in ("train", "valid"):
        rows = clean[labels == part].sort_values("objID")
        x = np.stack([read_image(images / f"{i}.jpg") for i in rows["objID"]])
        out += [block_average(x, res), rows[TARGET].to_numpy(np.float32)]
    return tuple(out)


def one_training(arch: str, seed: int, data, train: dict, tmp: Path) -> dict:
    params = {**train, "arch": arch, "device": "cpu"}
    t0 = time.perf_counter()
    r = train_model(*data, params, Path(tempfile.mkdtemp(dir=tmp)), {"seed": seed, "target": TARGET, "tta": 8})
    return {"valid_rmse": float(r["valid_rmse"]), "valid_rmse_tta": float(r["valid_rmse_tta"]),
            "train_seconds": float(r["train_seconds"]), "wall_seconds": time.perf_counter() - t0}


def run(args) -> dict:
    cfg = validate_config(yaml.safe_load((ROOT / "config.yaml").read_text()))
    train = dict(cfg["train"])
    if args.epochs:
        train["stage2"] = {**train["stage2"], "cycles": [int(args.epochs)]}
    epochs = sum(int(c) for c in train["stage2"]["cycles"])
    data = demo_splits(cfg)
    print(f"demo at {RES} px: {len(data[0])} train / {len(data[2])} valid galaxies; {epochs} epochs "
          f"({'shortened from the demo recipe, for both alike' if args.epochs else 'the demo recipe'})", flush=True)
    runs: dict[str, list[dict]] = {BASELINE: [], args.other: []}
    with tempfile.TemporaryDirectory(prefix="galmet-backbones-") as tmp:
        for seed in args.seeds:  # interleaved
            for arch in runs:
                r = one_training(arch, seed, data, train, Path(tmp))
                runs[arch].append({"seed": seed, **r})
                print(f"{arch:>16} seed {seed}: valid RMSE {r['valid_rmse']:.4f} (TTA {r['valid_rmse_tta']:.4f}) "
                      f"dex, training {r['train_seconds']:.1f} s", flush=True)
    med = {arch: {k: statistics.median(r[k] for r in rows)
                  for k in ("valid_rmse", "valid_rmse_tta", "train_seconds")} for arch, rows in runs.items()}
    ratios = {k: med[args.other][k] / med[BASELINE][k] for k in med[BASELINE]}
    constant = float(np.sqrt(np.mean((data[3] - data[1].mean()) ** 2)))  # the train mean for every galaxy
    print(f"medians over seeds {args.seeds}:")
    for arch, m in med.items():
        print(f"{arch:>16}: valid RMSE {m['valid_rmse']:.4f} (TTA {m['valid_rmse_tta']:.4f}) dex, "
              f"training {m['train_seconds']:.1f} s")
    print(f"{args.other} / {BASELINE}: RMSE x{ratios['valid_rmse']:.3f} (TTA x{ratios['valid_rmse_tta']:.3f}), "
          f"training time x{ratios['train_seconds']:.2f}")
    print(f"for scale: the train mean predicted for every valid galaxy has RMSE {constant:.4f} dex")
    return {"resolution": RES, "epochs": epochs, "shortened": bool(args.epochs), "n_train": len(data[0]),
            "n_valid": len(data[2]), "baseline": BASELINE, "other": args.other, "seeds": args.seeds, "runs": runs,
            "medians": med, "ratios_to_baseline": ratios, "constant_rmse": constant}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--other", default="efficientnet_b0", choices=[b for b in BACKBONES if b != BASELINE])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--epochs", type=int, default=None, help="one SGDR cycle of this many epochs (default: the demo's)")
    args = p.parse_args(argv)
    print(json.dumps(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
