"""Which per-galaxy spread to calibrate (issue 11, point 1): compared once, on the validation split.

On the 400 bundled real galaxies, split as the demo splits them (seed 42, 60/20/20), at 32 px,
with the demo's recipe (ResNet-18 from scratch, 30 epochs, here as SGDR cycles 10+10+10 so that
snapshots exist), each candidate gives a mean and a spread per validation galaxy:

- ``deep ensemble``: 3 seeds, each predicted with 8x TTA; mean and std over the members;
- ``deep ensemble x TTA views``: the same 3 seeds, std over all 24 predictions (3 members x 8
  views): by the law of total variance, the members' disagreement plus their mean TTA variance;
- ``snapshot ensemble``: seed 0's weights at the end of each SGDR cycle (free with the schedule);
- ``TTA spread``: seed 0's final model, std over its 8 D4 views;
- ``MC dropout``: seed 0's final model with dropout on at test time, 16 passes.

Printed per candidate: validation RMSE of its mean, the Spearman rank correlation between
spread and |error| (how well the spread ranks the errors), and the RMSE of the most confident
half against all. The test split is never touched. The last line is one JSON object.

    .venv/bin/python benchmarks/uncertainty_spread.py [--epochs-per-cycle 10] [--res 32]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import galmet.train as gt  # noqa: E402
from galmet import modelfile  # noqa: E402
from galmet.imaging import block_average, read_image  # noqa: E402
from galmet.model import normalisation_constants, to_input  # noqa: E402
from galmet.predict import predict_images  # noqa: E402
from galmet.split import assign_splits  # noqa: E402

DEMO = ROOT / "resources" / "demo"


def data(res: int):
    cat = pd.read_csv(DEMO / "catalog.csv", dtype={"objID": "int64"})
    split = assign_splits(cat["objID"].to_numpy(), seed=42, fractions={"train": 0.6, "valid": 0.2, "test": 0.2})
    x = block_average(np.stack([read_image(DEMO / "images" / f"{i}.jpg") for i in cat["objID"]]), res)
    y = cat["oh_p50"].to_numpy(np.float32)
    tr, va = split == "train", split == "valid"
    return x[tr], y[tr], x[va], y[va]


def train(xt, yt, xv, yv, seed: int, cycles, out: Path, snapshots: dict | None = None):
    params = {"arch": "resnet18", "pretrained": "none", "batch_size": 32, "normalisation": "dataset",
              "stage2": {"cycles": cycles, "lrs": [0.001, 0.001, 0.001]}, "device": "cpu"}
    ends = set(np.cumsum(cycles) - 1)

    def keep(epoch):  # the SGDR cycle ends: snapshot the weights from the checkpoint
        if snapshots is not None and epoch in ends:
            snapshots[epoch] = torch.load(out / "checkpoint.pt", weights_only=True)["model"]

    gt._after_checkpoint = keep
    gt.train_model(xt, yt, xv, yv, params, out, {"seed": seed, "tta": 8})
    gt._after_checkpoint = lambda epoch: None
    return modelfile.load(out / "model.pt")


def views(model, meta, x) -> np.ndarray:
    """Predictions of each of the 8 D4 views (rows)."""
    out = []
    for k in range(8):
        v = x[:, :, ::-1] if k >= 4 else x
        out.append(predict_images(model, meta, np.ascontiguousarray(np.rot90(v, k % 4, axes=(1, 2))), tta=1))
    return np.stack(out)


@torch.no_grad()
def mc_dropout(model, meta, x, passes: int = 16) -> np.ndarray:
    model.eval()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.train()
    scale, shift = normalisation_constants(meta["normalisation"]["mean"], meta["normalisation"]["std"], "cpu")
    inp = to_input(torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2), scale, shift)
    torch.manual_seed(0)
    out = np.stack([model(inp).double().numpy() for _ in range(passes)])
    model.eval()
    return out


def score(name, samples, y) -> dict:
    mean, spread = samples.mean(axis=0), samples.std(axis=0, ddof=1)
    err = np.abs(mean - y)
    confident = spread <= np.median(spread)
    return {"method": name, "valid_rmse": float(np.sqrt(np.mean(err**2))),
            "spearman_spread_vs_error": float(spearmanr(spread, err).statistic),
            "rmse_confident_half": float(np.sqrt(np.mean(err[confident] ** 2))),
            "median_spread": float(np.median(spread))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs-per-cycle", type=int, default=10)
    ap.add_argument("--res", type=int, default=32)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    xt, yt, xv, yv = data(args.res)
    cycles = [args.epochs_per_cycle] * 3
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        snaps: dict = {}
        members = [train(xt, yt, xv, yv, seed, cycles, Path(tmp) / f"s{seed}", snaps if seed == 0 else None)
                   for seed in (0, 1, 2)]
    train_s = time.perf_counter() - t0
    model0, meta0 = members[0]
    member_preds = np.stack([predict_images(m, meta, xv, tta=8) for m, meta in members])
    rows = [score("deep ensemble (3 seeds, TTA)", member_preds, yv)]
    all_views = np.concatenate([views(m, meta, xv) for m, meta in members])
    rows.append(score("deep ensemble x TTA views (24)", all_views, yv))
    snap_preds = []
    for epoch in sorted(snaps):
        model0.load_state_dict(snaps[epoch])
        snap_preds.append(predict_images(model0, meta0, xv, tta=8))
    rows.append(score("snapshot ensemble (3 cycles, TTA)", np.stack(snap_preds), yv))
    model0.load_state_dict(snaps[max(snaps)])  # the final weights again (the snapshots overwrote them)
    rows.append(score("TTA spread (8 views)", views(model0, meta0, xv), yv))
    rows.append(score("MC dropout (16 passes)", mc_dropout(model0, meta0, xv), yv))
    single = float(np.sqrt(np.mean((predict_images(model0, meta0, xv, tta=8) - yv) ** 2)))
    print(f"{len(yt)} train / {len(yv)} valid galaxies at {args.res} px; training {train_s:.0f} s; "
          f"single model (seed 0, TTA) valid RMSE {single:.4f}")
    print(pd.DataFrame(rows).round(4).to_string(index=False))
    print(json.dumps({"n_valid": int(len(yv)), "single_valid_rmse": single, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
