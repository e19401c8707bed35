"""``galmet evaluate``: the scatter statistics of a predictions table (:mod:`galmet.metrics`),
printed and, with ``--json``, written. Imports no torch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from galmet.cli.common import fail
from galmet.config import default
from galmet.io import write_json
from galmet.metrics import evaluate_table
from galmet.tables import read_table, table_target
from galmet.targets import METALLICITY

#: the prediction column of every table galmet predict writes (galmet.predict.PredictionWriter)
PREDICTION = "prediction"


def cli_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="RMSE, NMAD (about the median and about zero), median residual and statistics "
        "binned in the true value, of a predictions table (any format galmet writes: CSV, Parquet, FITS, ECSV, "
        "VOTable): printed, and written "
        "as JSON with --json. A table with interval columns (p16/p84, p2p5/p97p5, ... as galmet "
        "predict writes a calibrated ensemble's) also gets each interval's coverage and mean width.",
    )
    p.add_argument("table", help="a table (.csv, .parquet, .fits, .ecsv or .vot) with a truth and a prediction "
                   "column, e.g. galmet predict --catalog CAT --keep oh_p50's output")
    p.add_argument("--truth", default=None,
                   help=f"truth column (default: the target of the table's provenance, as galmet predict records "
                        f"it; else {METALLICITY})")
    p.add_argument("--pred", default=PREDICTION, help=f"prediction column (default: {PREDICTION})")
    p.add_argument("--json", dest="json_out", help="also write every number (binned ones too) to this JSON file")
    bin_width = default("evaluate.bin_width")
    p.add_argument("--bin-width", type=float, default=bin_width,
                   help=f"width of the bins of the true value, in its units (default: {bin_width})")
    return p


def cli_main(args: argparse.Namespace) -> int:
    path = Path(args.table)
    if not path.exists():
        return fail("evaluate", f"{path}: no such file")
    if args.bin_width <= 0:
        return fail("evaluate", f"--bin-width must be positive, got {args.bin_width}")
    try:
        df = read_table(path)
        args.truth = args.truth or table_target(path) or METALLICITY
        out = evaluate_table(df, truth=args.truth, pred=args.pred, bin_width=args.bin_width,
                             source=str(path))
    except (KeyError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        return fail("evaluate", msg)
    if args.json_out:
        write_json(out, args.json_out)
    if out["n_invalid"]:
        print(f"galmet evaluate: {out['n_invalid']} row(s) with a missing or non-numeric "
              f"{args.truth}/{args.pred} left out", file=sys.stderr)
    print(format_metrics(out, title=f"{path} ({args.truth} against {args.pred})"))
    if args.json_out:
        print(f"-> {args.json_out}")
    return 0


def format_metrics(out: dict, title: str = "") -> str:
    """The numbers of :func:`galmet.metrics.evaluate_predictions` as a plain-text table (dex where Z is)."""

    def fmt(x):
        return "nan" if x is None else f"{x:.4f}"

    lines = [title] if title else []
    lines += [f"  n                {out['n']}", f"  rmse             {fmt(out['rmse'])}",
              f"  nmad             {fmt(out['nmad'])}", f"  nmad_about_zero  {fmt(out['nmad_about_zero'])}",
              f"  median_residual  {fmt(out['median_residual'])}"]
    binned = out.get("binned") or []
    if binned:
        lines.append("  binned in the true value:")
        cols = ("lo", "hi", "n", "rmse", "nmad")
        lines.append("    " + "  ".join(f"{k:>10}" for k in cols))
        for row in binned:
            cells = (f"{row['n']:>10}" if k == "n" else f"{fmt(row.get(k)):>10}" for k in cols)
            lines.append("    " + "  ".join(cells))
    for row in out.get("intervals") or []:
        lines.append(f"  {100 * row['level']:g}% interval ({row['lower']}-{row['upper']}): coverage "
                     f"{fmt(row['coverage'])} of {row['n']} (nominal {row['level']:g}), mean width "
                     f"{fmt(row['width_mean'])}")
    return "\n".join(lines)


__all__ = ["cli_parser", "cli_main", "format_metrics"]
