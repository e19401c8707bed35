"""Helpers shared by the ``galmet`` subcommands that read images with a trained model
(``galmet predict``, ``galmet explain``): logging, the model file and its messages, the
skipped-files log. The images, the TTA choice and the domain notes are the library's
(:mod:`galmet.inputs`, :func:`galmet.predict.prepare`).

Light at import (no torch): each helper imports what it needs when called.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def start_logging() -> None:
    """Log to the terminal unless the caller (a test, a script) already set up logging."""
    from galmet.logs import setup_logging

    if not logging.getLogger().handlers:
        setup_logging()


def fail(command: str, message, code: int = 2) -> int:
    """Print ``galmet <command>: message`` to stderr; returns the exit code."""
    print(f"galmet {command}: {message}", file=sys.stderr)
    return code


def load_model(args):
    """``(model, meta)`` of ``--model`` on ``--device`` (:func:`galmet.modelfile.load`, weights only).
    Raises :class:`galmet.modelfile.ModelFileError` with the message for the user."""
    from galmet.modelfile import load
    from galmet.reproducible import for_prediction

    return load(args.model, args.device, reproducible=for_prediction(reproducible_setting(args.reproducible), False))


def reproducible_option(p, setting) -> None:
    """``--reproducible auto|true|false`` (config ``predict.reproducible``; default ``setting``)."""
    p.add_argument("--reproducible", default=str(setting).lower(), choices=["auto", "true", "false"],
                   help="true: predict in the reproducible mode, bit-identical on every x86-64 CPU at about 6.5x "
                        "the CPU time; auto/false: the fast kernels, predictions that agree across CPUs to "
                        f"float32 rounding (default {str(setting).lower()})")


def reproducible_setting(value):
    """The config value of a ``--reproducible`` answer (``auto``, True, False)."""
    return {"true": True, "false": False}.get(str(value).lower(), value)


def model_errors() -> tuple[type[Exception], ...]:
    """The exceptions whose message loading a model or preparing a prediction meant for the user."""
    from galmet.modelfile import ModelFileError

    return (ModelFileError, ValueError, OSError)


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


__all__ = ["start_logging", "fail", "load_model", "model_errors", "write_skipped_log"]
