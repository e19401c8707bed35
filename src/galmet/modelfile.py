"""The model file: a trained galmet model in one torch file, its only writer and reader.

Format
    ``torch.save`` of a plain dict ``{"state_dict": {name: tensor}, "meta": {...}}``, loadable
    with ``torch.load(path, weights_only=True)`` (``meta`` holds JSON types only). ``meta``:

    ``format_version``  1 (files written before the key existed read as 0)
    ``kind``            ``single`` (one network) or ``ensemble`` (see below)
    ``arch``, ``head`` (``hidden``, ``dropout``), ``pretrained``
                        what :func:`galmet.model.build_model` needs to rebuild the network
    ``resolution``      input size in px; images of another size are re-binned to it
    ``normalisation``   ``name``, ``mean``, ``std`` (per channel, 0..1 units)
    ``target``, ``target_units``, ``tta`` (D4 elements averaged by default)
    ``images``          provenance of the training images: the fields of a cutout
                        directory's ``cutouts.json`` (:mod:`galmet.cutouts.manifest`: ``provider``,
                        ``survey``, ``layer``, ``data_release``, ``bands`` in RGB order,
                        ``scale`` in arcsec/px or ``adaptive`` with its ``scale_rule``,
                        ``size`` [W, H] px) and ``source`` (a service, or ``local``); ``None``
                        where unknown. Files written before the providers have ``service``
                        where ``provider`` is now (:func:`galmet.cutouts.manifest.normalise` reads both).
    and what training adds: ``seed``, ``train_params``, ``n_train``, ``n_valid``, ``epochs``,
    ``kept_epoch``, ``valid_rmse``, ``valid_rmse_tta``, versions and hashes, and ``reproducible``:
    the kernels it ran with (:func:`galmet.reproducible.state`: ``enabled``, ``cpu_capability``,
    ``mkldnn``, ``nnpack``, ``mkl_cbwr``, ``deterministic``, ``threads``); :func:`load` applies
    the mode again to a model trained with it when ``predict.reproducible`` asks for it
    (:func:`galmet.reproducible.for_prediction`), so that its predictions are the same everywhere.

An ensemble (``kind: ensemble``, built by :mod:`galmet.ensemble`) holds its members' weights in
one file: ``state_dict`` of a :class:`galmet.model.Ensemble` (keys ``members.<i>.…``); ``meta``
has the keys above that every member shares (``arch``, ``head``, ``resolution``,
``normalisation``, ``target``, ...), ``members`` (one dict per member: ``name``, ``seed``,
``valid_rmse``, ...) and, once calibrated, ``calibration``: ``method``, ``split`` (the galaxies
it used), ``n``, ``tta`` (the D4 elements its spread was measured with: prediction must use the
same), ``spread`` (how the per-galaxy spread is computed) and ``scores`` (the sorted
normalised calibration scores, plain floats; :mod:`galmet.conformal` turns them into intervals).

Both kinds may carry a ``domain`` block (the applicability-domain test, :mod:`galmet.domain`):
a dict of plain tensors (the training images' statistics and the calibration scores: a few
kilobytes), floats, ints and strings, stored beside ``meta`` (key ``domain`` of the file's dict) and handed
to callers as ``meta["domain"]``. A file without it (written before galmet had it) loads and
predicts as before, without ``domain_p``.

The training checkpoint (``checkpoint.pt`` beside the model, :mod:`galmet.train`) is another
file with its own format; pretrained body weights are read by :mod:`galmet.model`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from galmet.io import atomic_path

FORMAT_VERSION = 1
KINDS = ("single", "ensemble")
#: meta keys without which a network cannot be rebuilt.
REQUIRED = ("arch", "resolution", "normalisation", "head")


class ModelFileError(ValueError):
    """A model file is missing, damaged, or not a galmet model; the message names the file."""


def images_block(source: str, scale, width: int, height: int, base_url: str | None = None,
                 layer: str | None = None, local_dir: str | None = None) -> dict:
    """The ``images`` provenance block of cutouts configured as ``cutouts.source`` etc.

    A service (``skyserver``, ``legacysurvey``, ...) says what its images are (a SkyServer
    ``base_url`` such as ``.../dr14/SkyServerWS`` gives the data release, ``DR14``). ``local``
    images are what the ``cutouts.json`` of ``local_dir`` says; without one, their survey and
    bands are unknown (``None``).
    """
    from galmet.cutouts.base import PROVIDERS, get_provider, images_info
    from galmet.cutouts.manifest import read_manifest

    if source in PROVIDERS:
        info = get_provider(source, layer=layer, base_url=base_url).info(scale, width, height)
    else:
        info = (read_manifest(local_dir) if local_dir else None) or images_info(
            None, None, None, None, None, scale, width, height)
    return {"source": str(source), **info}


def save(path, model: torch.nn.Module, meta: dict) -> Path:
    """Write ``model``'s weights (on the CPU) and ``meta`` to ``path`` atomically."""
    from galmet.model import Ensemble

    kind = "ensemble" if isinstance(model, Ensemble) else "single"
    meta = dict(meta)
    domain = meta.pop("domain", None)
    meta = _plain({"format_version": FORMAT_VERSION, "images": None, **meta, "kind": kind})
    _check_meta(meta, path)
    from galmet.model import cpu_state

    obj = {"state_dict": cpu_state(model), "meta": meta}
    if domain is not None:
        obj["domain"] = _check_domain(domain, path)
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return path


def read_meta(path) -> dict:
    """The metadata of a model file (older files completed with this format's defaults)."""
    return _read(path)["meta"]


def load(path, device="cpu", reproducible: bool | None = None):
    """``(model in eval mode on device, meta)`` from a model file; an ensemble's model is a
    :class:`galmet.model.Ensemble` (its output has one column per member).

    ``reproducible``: predict in the reproducible mode (True), with the fast kernels (False), or as
    the model was trained (None: the mode when its ``meta["reproducible"]`` says so), as
    :func:`galmet.reproducible.for_prediction` resolves ``predict.reproducible``."""
    from galmet.model import FOR_INFERENCE, Ensemble, build_model, resolve_device
    from galmet.reproducible import apply

    obj = _read(path)
    meta = obj["meta"]
    head = meta["head"]
    dev = resolve_device(device)
    if reproducible is None:
        reproducible = bool((meta.get("reproducible") or {}).get("enabled"))
    # before the network is built: the kernels it runs (off undoes only what the mode set here)
    apply(reproducible, dev.type, threads=None, strict=False)

    def network():
        return build_model(meta["arch"], "none", hidden=int(head["hidden"]), dropout=tuple(head["dropout"]))

    model = Ensemble([network() for _ in meta["members"]]) if meta["kind"] == "ensemble" else network()
    try:
        model.load_state_dict(obj["state_dict"])
    except RuntimeError as exc:
        raise ModelFileError(f"{path}: weights do not fit a {meta['arch']} with this head ({exc})") from None
    model.to(dev).eval()
    setattr(model, FOR_INFERENCE, True)  # weights from a file: galmet.model.inference_graph may run it on the CPU
    if dev.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return model, meta


def _read(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file (train one with the workflow, or check --model)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - torch's messages (zip error numbers, pickle keys) mean nothing to a user
        raise ModelFileError(f"{path}: {_what_it_is(path)}, not a galmet model that can be read: copy it again, or "
                             "give the model.pt that the workflow's training wrote") from None
    if isinstance(obj, dict) and {"fingerprint", "optimizer", "epoch"} <= set(obj):
        beside = path.with_name("model.pt")
        done = "" if beside.is_file() else "; it is written when the training finishes: rerun the workflow to finish it"
        raise ModelFileError(f"{path}: a training checkpoint (saved after epoch {int(obj['epoch']) + 1}), not a "
                             f"model: use the model.pt beside it, {beside}{done}")
    if not isinstance(obj, dict) or "state_dict" not in obj or "meta" not in obj:
        raise ModelFileError(f"{path}: a torch file but not a galmet model (it has no state_dict and meta): give the "
                             "model.pt that the workflow's training wrote")
    meta = {"format_version": 0, "kind": "single", "images": None, **obj["meta"]}
    _check_meta(meta, path)
    if obj.get("domain") is not None:
        meta["domain"] = _check_domain(obj["domain"], path)
    return {"state_dict": obj["state_dict"], "meta": meta}


#: what a domain block must hold (:mod:`galmet.domain`; ``DOMAIN_KEYS_V2`` besides from version 2 on).
DOMAIN_KEYS = ("version", "resolution", "stats_loc", "stats_scale", "stats_precision", "scores", "n")
DOMAIN_KEYS_V2 = ("folds", "band_weight", "stats_grid", "band_grid", "band_coef", "band_intercept", "fold_sizes",
                  "alpha")


def _check_domain(block: dict, path) -> dict:
    from galmet.domain import BAND_NAMES, GRID, STAT_NAMES, VERSION

    version = int(block.get("version", 0))
    missing = [k for k in DOMAIN_KEYS + (DOMAIN_KEYS_V2 if version >= 2 else ()) if k not in block]
    if missing:
        raise ModelFileError(f"{path}: its domain block lacks {', '.join(missing)}; rebuild the model file")
    if version > VERSION:
        raise ModelFileError(f"{path}: domain block version {block['version']} is newer than this galmet reads "
                             f"({VERSION}): upgrade galmet")
    s, n = len(STAT_NAMES), int(block["n"])
    k = int(block["folds"]) if version >= 2 else None
    want = ({"stats_loc": (s,), "stats_scale": (s,), "stats_precision": (s, s), "scores": (n,)} if version < 2 else
            {"stats_loc": (k, s), "stats_scale": (k, s), "stats_precision": (k, s, s), "scores": (n,),
             "stats_grid": (k, GRID), "band_grid": (k, GRID), "band_coef": (k, len(BAND_NAMES)),
             "band_intercept": (k,), "fold_sizes": (k,)})
    shapes = {key: tuple(block[key].shape) if torch.is_tensor(block[key]) else None for key in want}
    bad = {key: shape for key, shape in shapes.items() if shape != want[key]}
    if bad or (version >= 2 and int(np.asarray(block["fold_sizes"]).sum()) != n):  # numpy: no torch kernel runs
        raise ModelFileError(f"{path}: its domain block's tensors have the wrong shapes {bad or shapes} for {s} "
                             "statistics; rebuild the model file with this galmet")
    return block


def _what_it_is(path: Path) -> str:
    """What an unreadable file looks like, in words."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    size = path.stat().st_size
    if not size:
        return "an empty file"
    if head.startswith(b"PK"):
        return f"a torch file cut short or damaged ({size:,} bytes)"
    return f"not a torch file ({size:,} bytes)"


def _check_meta(meta: dict, path) -> None:
    if int(meta["format_version"]) > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model file format {meta['format_version']} is newer than this galmet reads "
            f"({FORMAT_VERSION}): upgrade galmet")
    if meta["kind"] not in KINDS:
        raise ModelFileError(f"{path}: model kind {meta['kind']!r} is not one of {', '.join(KINDS)}")
    for key in REQUIRED:
        if key not in meta:
            raise ModelFileError(f"{path}: model metadata lacks {key!r}; was it written by galmet.train?")
    if meta["kind"] == "ensemble" and len(meta.get("members") or []) < 2:
        raise ModelFileError(f"{path}: an ensemble needs a 'members' list of two or more models")
    cal = meta.get("calibration")
    if cal is not None and not (cal.get("scores") and int(cal.get("tta", 0)) >= 1):
        raise ModelFileError(f"{path}: its calibration has no scores or no tta; calibrate it again")


def _plain(obj):
    """A JSON round trip: plain dict/list/str/int/float/None only, non-finite floats as None
    (``weights_only`` loading refuses anything else)."""

    def clean(o):
        if isinstance(o, dict):
            return {str(k): clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        if isinstance(o, float) and not math.isfinite(o):
            return None
        return o

    return json.loads(json.dumps(clean(json.loads(json.dumps(obj, default=str)))))


__all__ = ["FORMAT_VERSION", "DOMAIN_KEYS", "ModelFileError", "images_block", "save", "load", "read_meta"]
