"""How to train the survey model: recipes compared on the validation split.

The survey model (``galmet.survey``) is one network standing in for the calibrated ensemble,
trained on the training galaxies with the measured labels (config ``survey.labels: measured``,
chosen on the numbers below) or the ensemble's predictions (``teacher``: the ensemble distilled).
This script trains it by other recipes from the
stores, split and ensemble of a finished workflow run (``make demo``: ``results/``) and prints,
for each, the validation RMSE of one pass against the ensemble's own, and the widths of the
68%/95% intervals that split conformal on the validation split gives it. The test split is never
read. A recipe is ``init:labels:epochs[:lr[:images]]``:

- init ``scratch``: a random network (the members' initialisation, seeded); ``member``: starts
  from a member's weights (member ``k`` for repeat ``k``, through ``galmet.train.train_model``'s
  ``init``), so that one pass starts at a member's accuracy and learns the ensemble's mean of
  members and TTA views;
- labels ``teacher`` (the ensemble's predictions), ``measured`` (the catalogue's values) or
  ``mixed`` (their mean, as distillation often weighs the two);
- epochs: one SGDR cycle of that many epochs; lr: all three groups' (default the config's);
- images ``train`` (the training images) or ``phases``: each training galaxy re-binned from its
  full-size store at the 4 sub-pixel phases of the 2 x 2 re-binning (the same galaxy shifted by
  one full-size pixel), labelled by the ensemble: 4 times the images for the student to match.

Each recipe runs once per ``--repeats`` number k (seed k; a member's start: member k), the
repeats interleaved; compare medians: the same recipe moves by several thousandths of a dex
from seed to seed on 74 validation galaxies.

    .venv/bin/python benchmarks/survey_recipes.py [--results results] [--repeats 0 1 2]
        [--recipe scratch:teacher:60 --recipe member:teacher:30 ...]

Measured on the demo (``make demo`` on a 2-core AMD EPYC, the trainings in the
reproducible mode, one thread each, two recipes at a time), valid RMSE of one pass; the ensemble
0.1010 (its members 0.1146, 0.1065, 0.1128 in one pass, 0.1036, 0.1014, 0.1034 with 8 views):

    recipe                        valid RMSE (by repeat)     - ensemble (median)   width95
    scratch:teacher:60             0.1101, 0.1084, 0.1136    +0.0090               0.50
    member:teacher:30              0.1121                    +0.0111               0.62
    member:teacher:15              0.1189                    +0.0179               0.57
    scratch:teacher:15::phases     0.1145                    +0.0135               0.55
    scratch:teacher:120            0.1099                    +0.0089               0.55
    scratch:measured:60 (galmet's) 0.1028, 0.0990, 0.1016    +0.0006               0.43, 0.52, 0.45
    scratch:mixed:60               0.1031                    +0.0021               0.61

No way of distilling tried here beats plain distillation (``survey.cycles: [60]`` from scratch on
the ensemble's labels, the workflow's recipe until ``survey.labels`` chose ``measured`` on these
numbers); the same schedule on the **measured** labels beats it in each of three seeds, within
0.002 dex of the ensemble: on these 248 training galaxies the longer schedule is the gain and the
ensemble's labels cost (its predictions on its own training galaxies are not its
predictions on new ones). Starting from a member keeps its one-pass noise: a member's single
view scatters 0.103 to 0.124 over the 8 views, while a network trained 60 epochs from scratch is
nearly view-invariant (8 views gain it 0.002, a member 0.011). Twice the schedule (120 epochs)
gains nothing.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from galmet import modelfile  # noqa: E402
from galmet.conformal import score_quantile  # noqa: E402
from galmet.dataset import load_split, split_members  # noqa: E402
from galmet.imaging import block_average  # noqa: E402
from galmet.model import members as member_nets  # noqa: E402
from galmet.names import ensemble_name  # noqa: E402
from galmet.predict import predict_images  # noqa: E402
from galmet.survey import teacher_labels  # noqa: E402
from galmet.train import train_model  # noqa: E402

DEFAULT_RECIPES = ["scratch:measured:60", "scratch:teacher:60", "member:teacher:30"]


def parse_recipe(text: str) -> dict:
    parts = text.split(":")
    images = parts[4] if len(parts) == 5 else "train"
    if (len(parts) not in (3, 4, 5) or parts[0] not in ("scratch", "member")
            or parts[1] not in ("teacher", "measured", "mixed") or images not in ("train", "phases")):
        raise SystemExit(f"--recipe {text!r}: give init:labels:epochs[:lr[:images]], init scratch|member, "
                         "labels teacher|measured|mixed, images train|phases, e.g. member:teacher:30")
    if images == "phases" and parts[1] != "teacher":
        raise SystemExit(f"--recipe {text!r}: images phases with labels teacher only (a shifted image has no "
                         "measured value)")
    return {"name": text, "init": parts[0], "labels": parts[1], "epochs": int(parts[2]),
            "lr": float(parts[3]) if len(parts) >= 4 and parts[3] else None,
            "images": images}


def phases(x_full: np.ndarray, res: int) -> np.ndarray:
    """Each image re-binned from its full-size store at every sub-pixel phase of the re-binning
    (shifted by 0 or 1 full-size pixel in each direction, the edge repeated): ``f*f`` images a
    galaxy for a factor ``f`` (4 from 128 to 64 px), phase (0, 0) being the training image."""
    f = x_full.shape[1] // res
    out = []
    for dy in range(f):
        for dx in range(f):
            shifted = np.pad(x_full[:, dy:, dx:], ((0, 0), (0, dy), (0, dx), (0, 0)), mode="edge")
            out.append(block_average(shifted, res))
    return np.stack(out, axis=1).reshape(-1, res, res, 3)


def load_run(results: Path, config: dict):
    target = config["targets"][0]
    res = int(config["ensemble"]["resolution"])
    name = ensemble_name(config["train"]["arch"], res, config["ensemble"]["seeds"])
    index = sorted(str(p) for p in (results / "images").glob("*/index.parquet"))
    store = [str(Path(p).with_name(f"{res}px.npy")) for p in index]
    members = split_members(results / "catalog" / "clean.parquet", results / "split.parquet", index, target)
    train = load_split(members, "train", target, index, store)
    valid = load_split(members, "valid", target, index, store)
    full = [str(Path(p).with_name(f"{config['cutouts']['width']}px.npy")) for p in index]
    train_full = load_split(members, "train", target, index, full).x if Path(full[0]).is_file() else None
    teacher, tmeta = modelfile.load(results / "models" / target / name / "model.pt", "cpu", reproducible=True)
    return target, name, train, valid, teacher, tmeta, train_full


def phase_set(train_full, res: int, teacher, tmeta) -> tuple[np.ndarray, np.ndarray]:
    """The ``phases`` transfer images of the training galaxies and the ensemble's labels of them."""
    if train_full is None:
        raise SystemExit("images phases: the run has no full-size store (results/images/<shard>/<width>px.npy)")
    x = phases(train_full, res)
    return x, teacher_labels(teacher, tmeta, x)


def run_recipe(recipe: dict, k: int, config: dict, train, valid, labels, teacher, tmeta, tmp: Path,
               phased=None) -> dict:
    params = {**config["train"], "device": "cpu", "stage2": {**config["train"]["stage2"], "cycles": [recipe["epochs"]]}}
    if recipe["lr"] is not None:
        params["stage2"]["lrs"] = [recipe["lr"]] * 3
    init = None
    if recipe["init"] == "member":
        nets = member_nets(teacher)
        init = {n: t.detach().clone() for n, t in nets[k % len(nets)].state_dict().items()}
    x, y = train.x, {"teacher": labels, "measured": train.y, "mixed": (labels + train.y) / 2}[recipe["labels"]]
    if recipe["images"] == "phases":
        x, y = phased  # made once for every repeat (labelling 4 x the images is the slow part)
    out = tmp / f"{recipe['name'].replace(':', '_')}_{k}"
    t0 = time.perf_counter()
    train_model(x, y, valid.x, valid.y, params, out, {"seed": k, "tta": 1, "domain_alpha": 0.05}, "cpu",
                init=init)
    seconds = time.perf_counter() - t0
    model, meta = modelfile.load(out / "model.pt", "cpu", reproducible=True)
    pred = predict_images(model, meta, valid.x, 1, 256, "cpu")
    err = np.abs(valid.y - pred)
    return {"rmse": float(np.sqrt(np.mean(err ** 2))), "width68": 2 * float(score_quantile(err, 0.68)),
            "width95": 2 * float(score_quantile(err, 0.95)), "seconds": seconds}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=ROOT / "results")
    ap.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    ap.add_argument("--repeats", type=int, nargs="+", default=[0, 1, 2],
                    help="repeat numbers: seeds, and member k %% members for a member's start")
    ap.add_argument("--recipe", action="append", help="init:labels:epochs[:lr[:images]] (repeatable)")
    args = ap.parse_args(argv)
    config = yaml.safe_load(args.config.read_text())
    recipes = [parse_recipe(r) for r in (args.recipe or DEFAULT_RECIPES)]
    target, name, train, valid, teacher, tmeta, train_full = load_run(args.results, config)
    t_rmse = float(tmeta["calibration"]["valid_rmse"])
    labels = teacher_labels(teacher, tmeta, train.x)
    phased = phase_set(train_full, int(train.x.shape[1]), teacher, tmeta) \
        if any(r["images"] == "phases" for r in recipes) else None
    print(f"{name} ({target}): {len(train.x)} train, {len(valid.x)} valid galaxies; the ensemble's valid RMSE "
          f"{t_rmse:.4f} ({len(tmeta['members'])} members x {tmeta['calibration']['tta']} views)", flush=True)
    print(f"{'recipe':28s} {'repeat':>6s} {'valid RMSE':>10s} {'- ensemble':>10s} {'width68':>8s} {'width95':>8s} "
          f"{'s':>6s}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in args.repeats:  # repeats interleaved: recipe A, B, ... then again
            for r in recipes:
                row = {"recipe": r["name"], "repeat": k,
                       **run_recipe(r, k, config, train, valid, labels, teacher, tmeta, Path(tmp), phased)}
                rows.append(row)
                print(f"{r['name']:28s} {k:6d} {row['rmse']:10.4f} {row['rmse'] - t_rmse:+10.4f} "
                      f"{row['width68']:8.3f} {row['width95']:8.3f} {row['seconds']:6.0f}", flush=True)
    print("medians:")
    summary = {}
    for r in recipes:
        mine = [x for x in rows if x["recipe"] == r["name"]]
        med = {key: float(np.median([x[key] for x in mine])) for key in ("rmse", "width68", "width95", "seconds")}
        summary[r["name"]] = {**med, "gap": med["rmse"] - t_rmse, "runs": [x["rmse"] for x in mine]}
        print(f"{r['name']:28s} {'':6s} {med['rmse']:10.4f} {med['rmse'] - t_rmse:+10.4f} {med['width68']:8.3f} "
              f"{med['width95']:8.3f} {med['seconds']:6.0f}")
    out = {"ensemble": name, "ensemble_valid_rmse": t_rmse, "recipes": summary}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
