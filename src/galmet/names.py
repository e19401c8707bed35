"""Model names: the one place that builds and parses ``<arch>-<res>px-seed<seed>``.

A trained model is named by its architecture, its input resolution (px) and its seed, e.g.
``resnet18-64px-seed0``. The workflow's paths (``results/models/{target}/{model}/model.pt``,
``results/metrics/{target}/{model}.json``, ...) carry that name as the single ``{model}``
wildcard, constrained by :data:`MODEL_PATTERN`; rules and the package read the parts back with
:func:`parse_model_name`.
"""

from __future__ import annotations

import re

__all__ = ["MODEL_PATTERN", "model_name", "parse_model_name", "seed_group"]

_GROUP = "{arch}-{res}px"  # the models that differ only by seed
_TEMPLATE = _GROUP + "-seed{seed}"
_PARTS = {"arch": r"[a-z][a-z0-9]*", "res": r"\d+", "seed": r"\d+"}

#: Regex of a model name, without groups (Snakemake puts it inside its own named group).
MODEL_PATTERN = _TEMPLATE.format(**_PARTS)
_PARSE = re.compile(_TEMPLATE.format(**{k: f"(?P<{k}>{v})" for k, v in _PARTS.items()}))


def model_name(arch: str, res: int, seed: int) -> str:
    """``("resnet18", 64, 0)`` -> ``"resnet18-64px-seed0"``; ValueError for an unusable part."""
    name = _TEMPLATE.format(arch=arch, res=int(res), seed=int(seed))
    parse_model_name(name)  # an arch with '-' or capitals would not parse back
    return name


def seed_group(arch: str, res: int) -> str:
    """``("resnet18", 64)`` -> ``"resnet18-64px"``: the key of the models that differ by seed."""
    return _GROUP.format(arch=arch, res=int(res))


def parse_model_name(name: str) -> dict:
    """``resnet18-64px-seed0`` -> ``{"arch": "resnet18", "resolution": 64, "seed": 0}``."""
    m = _PARSE.fullmatch(str(name))
    if not m:
        raise ValueError(
            f"model name {name!r} is not of the form <arch>-<res>px-seed<seed> "
            "(e.g. resnet18-64px-seed0)"
        )
    return {"arch": m["arch"], "resolution": int(m["res"]), "seed": int(m["seed"])}
