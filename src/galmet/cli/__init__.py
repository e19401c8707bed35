"""The ``galmet`` command: ``galmet <subcommand> [options]``.

Each subcommand's options and messages live in a module of this package (``galmet.cli.predict``,
``galmet.cli.explain``, ``galmet.cli.evaluate``, ``galmet.cli.download_cutouts``,
``galmet.cli.plan``; helpers they
share in :mod:`galmet.cli.common`) over the library module that does the work, and are imported
only when used (``galmet evaluate`` does not pay for importing torch). A module provides
``cli_parser() -> argparse.ArgumentParser`` and ``cli_main(args) -> int``.
"""

from __future__ import annotations

import importlib
import sys

from galmet._version import __version__
from galmet.cutouts.base import PROVIDERS

SUBCOMMANDS = {
    "predict": ("galmet.cli.predict", "predict with a trained model on a directory of <objID>.jpg cutouts"),
    "explain": ("galmet.cli.explain",
                "saliency maps of a trained model on <objID>.jpg cutouts, with their sanity checks"),
    "evaluate": ("galmet.cli.evaluate", "RMSE, NMAD, median residual and binned statistics of a predictions table"),
    "download-cutouts": ("galmet.cli.download_cutouts",
                         f"download cutouts from a service ({', '.join(PROVIDERS)}), retried and cached"),
    "plan": ("galmet.cli.plan", "what a config will run (from Snakemake's dry run) and how long it takes"),
}


def _usage() -> str:
    width = max(len(n) for n in SUBCOMMANDS)
    rows = "\n".join(f"  {name:<{width}}  {help_}" for name, (_, help_) in SUBCOMMANDS.items())
    return (
        f"usage: galmet <command> [options]   (galmet {__version__})\n\ncommands:\n{rows}\n\n"
        "galmet <command> --help shows a command's options."
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] == "--version":
        print(f"galmet {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"galmet: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    parser = module.cli_parser()
    parser.prog = f"galmet {name}"
    args = parser.parse_args(rest)
    try:
        return int(module.cli_main(args) or 0)
    except KeyboardInterrupt:  # Ctrl-C: a sentence, not a traceback; the shell's code for SIGINT
        print(f"galmet {name}: interrupted (Ctrl-C); nothing half-written is left: run the same command again",
              file=sys.stderr)
        return 130
