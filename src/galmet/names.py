"""Model names: the one place that builds and parses ``<arch>-<res>px-seed<seed>``.

A trained model is named by its architecture, its input resolution (px) and its seed, e.g.
``resnet18-64px-seed0``; an ensemble of such models by their seeds, e.g.
``resnet18-32px-seeds0-1-2`` (:func:`ensemble_name`); the survey model standing in for an
ensemble by its name and ``-survey``, e.g. ``resnet18-64px-seeds0-1-2-survey``
(:func:`survey_name`). The workflow's paths
(``results/models/{target}/{model}/model.pt``, ``results/metrics/{target}/{model}.json``, ...)
carry any of these names as the single ``{model}`` wildcard, constrained by :data:`ANY_MODEL_PATTERN`;
rules and the package read the parts back with :func:`parse_model_name`.

The ``<arch>`` part is the backbone's name token (galmet.backbones: ``resnet18``, ``effb0`` for
``efficientnet_b0``, as a token has no ``_``): the functions here take the ``train.arch`` name (or
the token) and :func:`parse_model_name` gives the ``train.arch`` name back. A token no
backbone registers passes through as it is.
"""

from __future__ import annotations

import re

from galmet.backbones import BACKBONES, by_token

__all__ = ["MODEL_PATTERN", "ENSEMBLE_PATTERN", "SURVEY_PATTERN", "ANY_MODEL_PATTERN", "model_name",
           "ensemble_name", "survey_name", "parse_model_name", "seed_group"]

_GROUP = "{arch}-{res}px"  # the models that differ only by seed
_TEMPLATE = _GROUP + "-seed{seed}"
#: every registered token must match the ``arch`` part (tests/test_names.py checks they all round-trip).
_PARTS = {"arch": r"[a-z][a-z0-9]*", "res": r"\d+", "seed": r"\d+"}

#: Regex of a model name, without groups (Snakemake puts it inside its own named group).
MODEL_PATTERN = _TEMPLATE.format(**_PARTS)
_PARSE = re.compile(_TEMPLATE.format(**{k: f"(?P<{k}>{v})" for k, v in _PARTS.items()}))
_ENSEMBLE = _GROUP + "-seeds{seeds}"
#: Regex of an ensemble name (seeds joined by '-', at least two).
ENSEMBLE_PATTERN = _ENSEMBLE.format(arch=_PARTS["arch"], res=_PARTS["res"], seeds=r"\d+(?:-\d+)+")
_SURVEY = "-survey"
#: Regex of a survey model's name: its ensemble's (its teacher's) and ``-survey``.
SURVEY_PATTERN = ENSEMBLE_PATTERN + _SURVEY
#: Any kind: the workflow's ``{model}`` wildcard.
ANY_MODEL_PATTERN = f"(?:{MODEL_PATTERN}|{ENSEMBLE_PATTERN}|{SURVEY_PATTERN})"
_PARSE_ENSEMBLE = re.compile(_ENSEMBLE.format(arch=f"(?P<arch>{_PARTS['arch']})", res=f"(?P<res>{_PARTS['res']})",
                                              seeds=r"(?P<seeds>\d+(?:-\d+)+)"))


def _token(arch: str) -> str:
    """The name token of a ``train.arch`` name (a token, or an unregistered name, as it is)."""
    return BACKBONES[arch].token if arch in BACKBONES else arch


def _arch(token: str) -> str:
    """The ``train.arch`` name of a token (an unregistered token as it is)."""
    spec = by_token(token)
    return spec.name if spec is not None else token


def model_name(arch: str, res: int, seed: int) -> str:
    """``("resnet18", 64, 0)`` -> ``"resnet18-64px-seed0"``; ValueError for an unusable part."""
    name = _TEMPLATE.format(arch=_token(arch), res=int(res), seed=int(seed))
    parse_model_name(name)  # an arch with '-' or capitals would not parse back
    return name


def ensemble_name(arch: str, res: int, seeds) -> str:
    """``("resnet18", 32, [0, 1, 2])`` -> ``"resnet18-32px-seeds0-1-2"`` (two or more distinct seeds)."""
    seeds = [int(s) for s in seeds]
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise ValueError(f"an ensemble needs two or more distinct seeds, got {seeds}")
    name = _ENSEMBLE.format(arch=_token(arch), res=int(res), seeds="-".join(map(str, seeds)))
    parse_model_name(name)
    return name


def survey_name(ensemble: str) -> str:
    """``"resnet18-64px-seeds0-1-2"`` -> ``"resnet18-64px-seeds0-1-2-survey"``: the survey model
    standing in for that ensemble (:mod:`galmet.survey`)."""
    if "seeds" not in parse_model_name(ensemble) or str(ensemble).endswith(_SURVEY):
        raise ValueError(f"{ensemble!r} is not an ensemble's name: a survey model stands in for an ensemble")
    return f"{ensemble}{_SURVEY}"


def seed_group(arch: str, res: int) -> str:
    """``("resnet18", 64)`` -> ``"resnet18-64px"``: the key of the models that differ by seed."""
    return _GROUP.format(arch=_token(arch), res=int(res))


def parse_model_name(name: str) -> dict:
    """``resnet18-64px-seed0`` -> ``{"arch": "resnet18", "resolution": 64, "seed": 0}``;
    an ensemble's name gives ``seeds`` (a list) in place of ``seed``, a survey model's name its
    teacher's parts and ``"survey": True``."""
    name = str(name)
    if name.endswith(_SURVEY) and _PARSE_ENSEMBLE.fullmatch(name[: -len(_SURVEY)]):
        return {**parse_model_name(name[: -len(_SURVEY)]), "survey": True}
    m = _PARSE.fullmatch(name)
    if m:
        return {"arch": _arch(m["arch"]), "resolution": int(m["res"]), "seed": int(m["seed"])}
    m = _PARSE_ENSEMBLE.fullmatch(name)
    if m:
        return {"arch": _arch(m["arch"]), "resolution": int(m["res"]),
                "seeds": [int(s) for s in m["seeds"].split("-")]}
    raise ValueError(
        f"model name {name!r} is not of the form <arch>-<res>px-seed<seed> (e.g. resnet18-64px-seed0) "
        "nor <arch>-<res>px-seeds<s1>-<s2>... (an ensemble, e.g. resnet18-32px-seeds0-1-2), nor an "
        "ensemble's name and -survey (its survey model)"
    )
