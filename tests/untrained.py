"""A randomly initialised model file, for tests and benchmarks of the inference plumbing."""

from __future__ import annotations

from pathlib import Path

import torch

from galmet import __version__, modelfile
from galmet.model import HEAD_DEFAULT, IMAGENET_MEAN, IMAGENET_STD, build_model


def write_untrained_model(path, arch: str = "resnet18", res: int = 64, seed: int = 0,
                          images: dict | None = None) -> Path:
    """A randomly initialised model file that :func:`galmet.modelfile.load` accepts, for
    throughput benchmarks and tests of the inference plumbing (its predictions mean nothing);
    ``images``: its ``images`` block (:func:`galmet.modelfile.images_block`), None by default."""
    torch.manual_seed(seed)
    model = build_model(arch, "none").eval()
    meta = {
        "arch": arch, "resolution": int(res), "target": "untrained", "tta": 1,
        "head": {"hidden": HEAD_DEFAULT["hidden"], "dropout": list(HEAD_DEFAULT["dropout"])},
        "normalisation": {"name": "imagenet", "mean": IMAGENET_MEAN, "std": IMAGENET_STD},
        "galmet_version": __version__, "seed": seed, "images": images,
    }
    return modelfile.save(path, model, meta)
