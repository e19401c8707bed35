"""Images know where they came from: the ``cutouts.json`` manifest of a cutout directory, and
the check that a model is applied to images like those it was trained on.

``cutouts.json`` (written atomically by ``galmet download-cutouts`` and the workflow's cutouts
rule into every cutout directory, from :meth:`galmet.cutouts.base.Provider.info`; the bundled
demo images ship one)::

    {"format_version": 1, "provider": "skyserver", "survey": "SDSS", "layer": null,
     "data_release": "DR14", "bands": "irg", "scale": "adaptive",
     "scale_rule": "2 * petroR90_r / 0.396 arcsec across the width", "size": [128, 128]}

``bands`` are in RGB order (``irg``: i as red, r green, g blue); ``scale`` is arcsec per pixel
or ``adaptive`` (then ``scale_rule`` says how). The model file's ``images`` block
(:func:`galmet.modelfile.images_block`) holds the same fields for its training images, plus
``source`` (how they reached training: a service or ``local``).

The check (:func:`check_survey`): images of another survey (provider), band order or pixel
scale (beyond 1%; ``adaptive`` matches only ``adaptive``) than the model's stop with
:class:`SurveyMismatchError`, whose message names both, unless the mismatch is allowed
(``--allow-survey-mismatch``, config ``infer.allow_survey_mismatch``): then it is a warning.
A folder without a manifest (a user's own JPEGs) gets a warning saying what the model expects,
never an error; so does a model file that does not record its images.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

from galmet.cutouts.base import ADAPTIVE_RULE, PROVIDERS, get_provider
from galmet.io import read_json

log = logging.getLogger("galmet.cutouts.manifest")

MANIFEST_NAME = "cutouts.json"
FORMAT_VERSION = 1
SCALE_TOLERANCE = 0.01  # relative: pixel scales closer than this are the same
CLI_FIX = "--allow-survey-mismatch"
#: the fields that say what a set of images is (compared between directories and models)
FIELDS = ("provider", "survey", "layer", "data_release", "bands", "scale", "scale_rule", "size")


class SurveyMismatchError(ValueError):
    """Images of another survey, band order or pixel scale than the model was trained on."""


class CutoutDirMismatch(ValueError):
    """A cutout directory already holds images of another kind than those about to be added."""


def manifest_path(directory: str | os.PathLike) -> Path:
    return Path(directory) / MANIFEST_NAME


def read_manifest(directory: str | os.PathLike) -> dict | None:
    """The manifest of a cutout directory, None when it has none."""
    path = manifest_path(directory)
    try:
        obj = read_json(path)
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise ValueError(f"not a readable cutouts manifest: {exc}") from None
    except OSError as exc:
        raise ValueError(f"{path}: not a readable cutouts manifest ({exc}); fix or delete it") from None
    if not isinstance(obj, dict) or "provider" not in obj:
        raise ValueError(f"{path}: not a galmet cutouts manifest (no 'provider'); fix or delete it")
    return normalise(obj)


def write_manifest(directory: str | os.PathLike, info: dict) -> Path:
    """Write ``info`` as the directory's ``cutouts.json``, atomically."""
    from galmet._version import __version__
    from galmet.io import atomic_path

    obj = {"format_version": FORMAT_VERSION, **{k: info.get(k) for k in FIELDS},
           "galmet_version": __version__}
    path = manifest_path(directory)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")
    return path


def ensure_manifest(directory: str | os.PathLike, info: dict) -> None:
    """Write the manifest of a directory about to receive cutouts described by ``info``, or
    raise :class:`CutoutDirMismatch` when the directory already holds another kind."""
    have = read_manifest(directory)
    if have is None:
        write_manifest(directory, info)
        return
    differ = [k for k in ("provider", "layer", "data_release", "bands", "size") if have.get(k) != info.get(k)]
    if not _same_scale(have.get("scale"), info.get("scale"), 1e-6):
        differ.append("scale")
    if differ:
        raise CutoutDirMismatch(
            f"{directory} holds cutouts of {describe(have)}; the ones requested are "
            f"{describe(info)} (another {', '.join(differ)}). A cutout directory holds one kind of "
            "image only: choose another directory (--out, or cutouts.cache_dir)")


def normalise(block: dict | None) -> dict | None:
    """A manifest or a model file's ``images`` block (also of files written before the
    providers: ``service`` instead of ``provider``) with every field of :data:`FIELDS`."""
    if not block:
        return None
    out = {k: block.get(k) for k in FIELDS}
    out["provider"] = block.get("provider", block.get("service"))
    if out["survey"] is None and out["provider"]:
        out["survey"] = _survey_of(out["provider"])
    if out["scale"] == "adaptive" and not out["scale_rule"]:
        out["scale_rule"] = ADAPTIVE_RULE
    if "source" in block:
        out["source"] = block["source"]
    return out


def _survey_of(provider: str) -> str:
    return get_provider(provider).survey if provider in PROVIDERS else provider


def describe(info: dict | None) -> str:
    """``SDSS DR14 (skyserver; bands irg in RGB order; adaptive scale, 2 * petroR90_r / 0.396
    arcsec across the width; 128x128 px)``."""
    info = normalise(info)
    if info is None or not info.get("provider"):
        return "images of an unrecorded survey" + (f" ({_geometry(info)})" if info else "")
    name = " ".join(str(x) for x in (info["survey"], info.get("layer") or info.get("data_release")) if x)
    bands = f"bands {info['bands']} in RGB order" if info.get("bands") else "bands unknown"
    return f"{name} ({info['provider']}; {bands}; {_geometry(info)})"


def _geometry(info: dict) -> str:
    scale = info.get("scale")
    if scale == "adaptive":
        text = f"adaptive scale, {info.get('scale_rule') or ADAPTIVE_RULE}"
    elif scale is None:
        text = "scale unknown"
    else:
        text = f'{float(scale):g}"/px'
    size = info.get("size")
    return f"{text}; {size[0]}x{size[1]} px" if size else text


def _same_scale(a, b, tol: float = SCALE_TOLERANCE) -> bool:
    if a == "adaptive" or b == "adaptive":
        return a == b
    if a is None or b is None:
        return a is b
    return math.isclose(float(a), float(b), rel_tol=tol)


def differences(images: dict, model: dict) -> list[str]:
    """What differs between two known sets of images: ``survey``, ``band order``, ``pixel scale``."""
    out = []
    if images.get("provider") != model.get("provider"):
        out.append("survey")
    if images.get("bands") and model.get("bands") and images["bands"] != model["bands"]:
        out.append("band order")
    if images.get("scale") is not None and model.get("scale") is not None and \
            not _same_scale(images["scale"], model["scale"]):
        out.append("pixel scale")
    return out


def check_survey(images: dict | None, model_images: dict | None, allow: bool = False,
                 where: str = "the images", model: str = "the model", fix: str = CLI_FIX) -> str | None:
    """None when the images match the model's training images; a warning text when that
    cannot be checked or the mismatch is allowed; else raise :class:`SurveyMismatchError`.

    ``images``: the directory's manifest (None: it has none); ``model_images``: the model
    file's ``images`` block; ``fix``: how the user allows a mismatch (named in the message).
    """
    images, trained = normalise(images), normalise(model_images)
    known = bool(trained and trained.get("provider"))
    if images is None:
        if not known:
            return None
        return (f"{where} have no {MANIFEST_NAME}: cannot check them against {model}, trained on "
                f"{describe(trained)}; make sure they are of that survey, band order and pixel scale")
    if not known:
        return (f"{model} does not record the survey of its training images; {where} "
                f"({describe(images)}) not checked against it")
    diffs = differences(images, trained)
    if not diffs:
        return None
    differ = " and ".join([", ".join(diffs[:-1]), diffs[-1]] if len(diffs) > 1 else diffs)
    msg = (f"{where} are {describe(images)}, but {model} was trained on {describe(trained)}: they "
           f"differ in {differ}, so its predictions on them would be meaningless. Use images like its "
           f"training images (galmet download-cutouts), or pass {fix} to predict anyway")
    if not allow:
        raise SurveyMismatchError(msg)
    return f"survey mismatch allowed ({fix}): {msg}"


def check_image_dirs(model_images: dict | None, dirs, allow: bool = False, model: str = "the model",
                     fix: str = CLI_FIX) -> list[str]:
    """:func:`check_survey` for the manifest of each directory; the warnings (also logged)."""
    notes = []
    for d in dict.fromkeys(str(d) for d in dirs):
        note = check_survey(read_manifest(d), model_images, allow, where=f"the images in {d or '.'}",
                            model=model, fix=fix)
        if note:
            log.warning("%s", note)
            notes.append(note)
    return notes


def catalog_dirs(catalog: str | os.PathLike, chunk_size: int = 65536) -> list[str]:
    """The distinct folders of a catalog's ``path`` column (relative ones as written), streamed."""
    from galmet.tables import iter_table_chunks, table_columns

    if "path" not in table_columns(catalog):
        return []
    dirs: dict[str, None] = {}
    for df in iter_table_chunks(catalog, ["path"], chunk_size):
        for d in df["path"].dropna().astype(str).map(os.path.dirname).unique():
            dirs.setdefault(d or ".", None)
    return list(dirs)
