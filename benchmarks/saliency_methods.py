"""Which saliency method (issue 12, point 1): chosen by the sanity checks and cost, on the validation split.

On a model trained by the workflow (default: the demo's 64 px ResNet-18,
``results/models/oh_p50/resnet18-64px-seed0/model.pt``), each candidate of
:mod:`galmet.explain` makes maps for (at most ``--n``) validation galaxies, read from the
workflow's stores as training reads them, and is checked as every run is:

- ``randomisation``: mean (± std over galaxies) Spearman rank correlation of |maps| of the
  trained model and of the same architecture re-initialised (below 0.3 to mean anything);
- ``deletion``: area (dex) between the |change of the prediction| curves when pixels are
  replaced by the border median most-salient-first and in 5 random orders (20 steps of 5%), mean
  ± std over galaxies, and the fraction of galaxies where it is positive;
- seconds per galaxy for the maps (CPU, ``torch.set_num_threads(--threads)``).

Candidates: Grad-CAM at ``layer2`` (8 x 8 at 64 px) and ``layer3`` (4 x 4), integrated
gradients (16 steps), occlusion (res/8 squares, stride res/16), all without TTA so that they are
compared alike; then the chosen default with the workflow's 8-view TTA. The test split is never
touched. The last line is one JSON object.

    .venv/bin/python benchmarks/saliency_methods.py [--model PATH] [--n 40] [--threads 2]

Measured (the demo's model after 30 epochs, 40 validation galaxies, 2 threads on a 2-core machine
shared with other jobs, so the seconds are rough)::

    candidate             tta  Spearman |map| (std)  signed  deletion area, dex (std, sem)      >0  s/galaxy
    gradcam layer2          1   0.107 ± 0.217         0.015  +0.0132 ± 0.0476 (sem 0.0075)   0.62  0.071
    gradcam layer3          1   0.146 ± 0.293        -0.094  -0.0304 ± 0.0505 (sem 0.0080)   0.25  0.010
    integrated gradients    1   0.613 ± 0.041        -0.001  +0.0207 ± 0.0625 (sem 0.0099)   0.60  0.275
    occlusion               1   0.599 ± 0.067        -0.086  +0.0172 ± 0.0584 (sem 0.0092)   0.60  1.938
    gradcam layer2          8   0.162 ± 0.368         0.243  +0.0189 ± 0.0539 (sem 0.0085)   0.65  0.082

Integrated gradients and occlusion fail the randomisation check (their |maps| are nearly those of
a random network: they follow the image); Grad-CAM passes at layer2 and layer3, and at layer3 its
most salient pixels move the prediction *less* than random ones. Grad-CAM at layer2 is the
default: it passes, its deletion area is positive (about 2 standard errors), and it costs least.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

# as the workflow's jobs (common.smk): OpenMP threads that spin steal the cores of the processes
# beside them; on a shared 2-core machine a small attribution batch ran 60x slower without this
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from galmet.dataset import load_split, split_members  # noqa: E402
from galmet.explain import (  # noqa: E402
    ExplainSettings,
    deletion_curves,
    deletion_summary,
    randomisation_check,
    saliency_maps,
)
from galmet.modelfile import load  # noqa: E402

CANDIDATES = [
    ("gradcam layer2", ExplainSettings(method="gradcam", layer="layer2", tta=1)),
    ("gradcam layer3", ExplainSettings(method="gradcam", layer="layer3", tta=1)),
    ("integrated gradients", ExplainSettings(method="ig", tta=1)),
    ("occlusion", ExplainSettings(method="occlusion", tta=1)),
]


def validation_images(results: Path, res: int, target: str, n: int):
    index = sorted(results.glob("images/*/index.parquet"))
    stores = [p.parent / f"{res}px.npy" for p in index]
    members = split_members(results / "catalog" / "clean.parquet", results / "split.parquet", index, target)
    valid = load_split(members, "valid", target, index, stores)
    return valid.x[:n], valid.y[:n]


def check(model, meta, x, settings: ExplainSettings) -> dict:
    t0 = time.perf_counter()
    maps = saliency_maps(model, meta, x, settings)
    seconds = time.perf_counter() - t0
    rand = randomisation_check(model, meta, x, maps, settings)
    dele = deletion_summary(*deletion_curves(model, meta, x, maps, settings), settings.steps)
    return {"method": settings.method, "layer": settings.layer if settings.method == "gradcam" else None,
            "tta": settings.tta, "n": len(x), "spearman_mean": rand["spearman_mean"],
            "spearman_std": rand["spearman_std"],
            "spearman_signed_mean": rand["spearman_signed_mean"], "area_mean": dele["area_between_mean"],
            "area_std": dele["area_between_std"], "area_sem": dele["area_between_sem"],
            "fraction_positive": dele["fraction_positive"], "seconds_per_galaxy": seconds / len(x)}


def row(name: str, r: dict) -> str:
    return (f"{name:<24} {r['tta']:>3} {r['spearman_mean']:>7.3f} ± {r['spearman_std']:.3f} "
            f"{r['spearman_signed_mean']:>7.3f}   {r['area_mean']:+.4f} ± {r['area_std']:.4f} "
            f"(sem {r['area_sem']:.4f})  {r['fraction_positive']:>5.2f}  {r['seconds_per_galaxy']:>7.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "results/models/oh_p50/resnet18-64px-seed0/model.pt"))
    p.add_argument("--results", default=str(ROOT / "results"))
    p.add_argument("--n", type=int, default=40, help="validation galaxies (the first n by objID)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--default", default="gradcam layer2", help="the candidate also run with 8-view TTA")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model, meta = load(args.model)
    x, _ = validation_images(Path(args.results), int(meta["resolution"]), meta.get("target", "oh_p50"), args.n)
    print(f"{args.model}: {len(x)} validation galaxies at {meta['resolution']} px, {args.threads} threads")
    print(f"{'candidate':<24} tta  Spearman |map| (std)  signed   deletion area, dex (std)         >0    s/galaxy")
    results = {}
    runs = CANDIDATES + [(f"{args.default} (TTA)", replace(dict(CANDIDATES)[args.default], tta=8))]
    for name, settings in runs:
        results[name] = check(model, meta, x, settings)
        print(row(name, results[name]), flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
