"""Helpers shared by the ``galmet`` subcommands that read images with a trained model
(``galmet predict``, ``galmet explain``): logging, the model file and its messages, the TTA
choice, the images folder, the skipped-files log.

Light at import (no torch): each helper imports what it needs when called.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import numpy as np

#: files of an images folder that are neither images nor worth a line in the log.
QUIET_FILES = ("cutouts.json",)


def start_logging() -> None:
    """Log to the terminal unless the caller (a test, a script) already set up logging."""
    from galmet.logs import setup_logging

    if not logging.getLogger().handlers:
        setup_logging()


def fail(command: str, message, code: int = 2) -> int:
    """Print ``galmet <command>: message`` to stderr; returns the exit code."""
    print(f"galmet {command}: {message}", file=sys.stderr)
    return code


def load_model(args, command: str, images: Path | None, catalog=None):
    """``(model, meta, notes)`` for ``--model``, ``--device``, ``--allow-survey-mismatch`` and
    ``--domain-alpha``: the model file loaded, the images' ``cutouts.json`` checked against its
    training images (:func:`galmet.cutouts.manifest.check_cli_images`) and the warnings of both checks
    (:func:`domain_notes`, logged as ``galmet.<command>``). Raises
    :class:`galmet.modelfile.ModelFileError`, ValueError or OSError with the message for the user."""
    from galmet.cutouts.manifest import check_cli_images
    from galmet.modelfile import load

    model, meta = load(args.model, args.device)
    notes = check_cli_images(meta, args.model, images, catalog, args.allow_survey_mismatch)
    notes += domain_notes(meta, args.domain_alpha, command)
    return model, meta, notes


def model_errors() -> tuple[type[Exception], ...]:
    """The exceptions whose message :func:`load_model` meant for the user."""
    from galmet.modelfile import ModelFileError

    return (ModelFileError, ValueError, OSError)


def cli_tta(requested: bool | None, meta: dict) -> int:
    """D4 elements to average: the model's own setting unless --tta/--no-tta says otherwise; a
    calibrated model's is the one it was calibrated with (ValueError for --no-tta)."""
    from galmet.augment import D4_SIZE

    cal = meta.get("calibration")
    default_tta = int(cal["tta"] if cal else meta.get("tta", 8))
    if requested is None:
        return default_tta
    tta = (default_tta if default_tta > 1 else D4_SIZE) if requested else 1
    if cal and tta != default_tta:
        raise ValueError(f"--no-tta: this ensemble's intervals were calibrated with TTA over {default_tta} "
                         "symmetries and would be wrong without it; drop --no-tta")
    return tta


def domain_notes(meta: dict, alpha: float, command: str = "predict") -> list[str]:
    """Warnings about the applicability-domain test of a model at ``alpha`` (also logged, by the
    logger ``galmet.<command>``)."""
    from galmet.domain import check_alpha

    block = meta.get("domain")
    if block is None:
        notes = ["this model file has no applicability-domain block (written before galmet had one): its "
                 "predictions carry no domain_p / in_domain column; retrain (or rebuild the ensemble) to get them"]
    else:
        notes = [n for n in [check_alpha(block, alpha)] if n]
    for note in notes:
        logging.getLogger(f"galmet.{command}").warning("%s", note)
    return notes


def list_directory(images: Path) -> tuple[list[str], list[str]]:
    """``(image names, other names)`` of a folder, sorted: images have a suffix of
    :data:`galmet.imaging.IMAGE_SUFFIXES` in any case; hidden files and ``cutouts.json`` are
    in neither list."""
    from galmet.imaging import is_image_name

    names = sorted(e.name for e in os.scandir(images) if e.is_file() and not e.name.startswith("."))
    return ([n for n in names if is_image_name(n)],
            [n for n in names if not is_image_name(n) and n not in QUIET_FILES])


def iter_directory(images: Path, chunk: int, skipped: list | None = None):
    """(objID or None, path) for every image of a directory, sorted by name, in chunks; other
    files are appended to ``skipped`` (``not_an_image``)."""
    names, others = list_directory(images)
    if skipped is not None:
        skipped.extend((None, images / n, "not_an_image: not a .jpg/.jpeg file; galmet reads <objID>.jpg")
                       for n in others)
    for s in range(0, len(names), chunk):
        yield [(objid_from_name(n), images / n) for n in names[s:s + chunk]]


def objid_from_name(name: str):
    """The objID of ``<objID>.jpg``: a positive 64-bit integer, else None."""
    stem = name.rsplit(".", 1)[0]
    if stem.isdigit() and len(stem) <= 19 and 0 < int(stem) <= np.iinfo(np.int64).max:
        return int(stem)
    return None


def write_skipped_log(path: Path, headline: str, skipped: list, command: str = "galmet predict",
                      warnings=()) -> None:
    """The skipped files, one ``objID<TAB>path<TAB>reason`` line each, under a ``# command:
    headline`` line and the ``# warning:`` lines; each skipped file is also logged (by the logger
    ``galmet.<subcommand>``)."""
    from galmet.io import atomic_path

    log = logging.getLogger(command.replace(" ", "."))
    for oid, p, reason in skipped:
        log.warning("skipped %s: %s", p or oid, reason)
    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            fh.write(f"# {command}: {headline}\n")
            fh.writelines(f"# warning: {w}\n" for w in warnings)
            fh.write("objID\tpath\treason\n")
            for oid, p, reason in skipped:
                fh.write(f"{'' if oid is None else oid}\t{p or ''}\t{reason}\n")


__all__ = ["QUIET_FILES", "start_logging", "fail", "load_model", "model_errors", "cli_tta", "domain_notes",
           "list_directory", "iter_directory", "objid_from_name", "write_skipped_log"]
