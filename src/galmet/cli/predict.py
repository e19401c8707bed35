"""``galmet predict``: a trained model on a folder of ``<objID>.jpg`` cutouts or a catalog.

A thin caller of the library's one prediction path (:mod:`galmet.inputs` for the images,
:func:`galmet.predict.prepare` and :func:`galmet.predict.predict_to_table`), as the workflow's
``infer`` target and the notebook API are; this module reads the options and writes ``<out>.log``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from galmet.cli.common import fail, load_model, model_errors, reproducible_option, start_logging, write_skipped_log
from galmet.config import default, section
from galmet.predict import CSV_DECIMALS, predict_to_table, prepare

log = logging.getLogger("galmet.predict")

OUTPUT_COLUMNS = f"""output formats, by the extension of --out:
  .csv            text, plus <out>.meta.json: each column's unit and description, and the provenance
  .parquet        the same in the schema's metadata (key galmet) and each field's (unit, description)
  .fits           binary table in HDU 1: TUNITn, TCOMMn (description), provenance keywords (GMVERSN,
                  MODEL, MODELSHA, TARGET, SURVEY, IMPROV, BANDS, DATAREL, IMLAYER, PIXSCALE, SCALRULE,
                  IMSIZE, CALMETH, CALSPLIT, CAL_N, LEVELS, DOMALPHA, TTA, DATE)
  .ecsv           astropy ECSV: units, descriptions and provenance in its YAML header
  .vot            VOTable (rows in BINARY2): unit and DESCRIPTION per FIELD, provenance as INFO elements
CSV and Parquet are written chunk by chunk; FITS, ECSV and VOTable are collected in memory
(300 to 450 bytes a galaxy) and written at the end (100k rows: Parquet and FITS 0.1 s, CSV 0.5 s,
ECSV 1.5 s, VOTable 5 s; benchmarks/table_formats.py). Units: dex for oh_p50 (12 + log(O/H)),
dex(solMass) for lgm_tot_p50. The provenance: galmet version, model name and the model file's
SHA-256, target, the training images (survey, bands, pixel scale, size), the calibration (method,
split, n, levels), the domain alpha, TTA and the date.

output columns:
  objID           the SDSS objID from the file name or catalog (int64, exact)
  (--keep COL)    the catalog's columns named by --keep, as in the catalog (numbers as float64); a
                  target's column (e.g. oh_p50, the truth galmet evaluate scores against) with its unit
  prediction      the model's value of its target, in the target's unit: 12 + log(O/H) in dex for
                  oh_p50, log10(M*/Msun) for lgm_tot_p50 (the mean over TTA views and ensemble members)
  p2p5, p16,      a calibrated ensemble's interval bounds, same unit: p16-p84 is the 68% interval,
  p84, p97p5      p2p5-p97p5 the 95% one; --levels 0.9 adds p5, p95
  domain_p        conformal p-value (0..1) of how usual the image is for the model, relative to its
                  training images (absent for model files without an applicability-domain block)
  in_domain       true when domain_p >= --domain-alpha (default: the model's level): the intervals'
                  calibration applies; it tests the image, not the physics. Out-of-domain rows
                  (false) keep prediction and domain_p, and their interval bounds are left empty
CSV values carry {CSV_DECIMALS} decimals (domain_p 4 significant digits); Parquet keeps float64.
Skipped files are listed with a reason (too_large, not_colour, too_small, undecodable, bad_objid, ...)
in <out>.log; when nothing could be predicted no table is written and the exit code is 1."""


def _column_list(text: str) -> tuple[str, ...]:
    cols = tuple(c.strip() for c in text.split(",") if c.strip())
    if not cols:
        raise argparse.ArgumentTypeError(f"give column names separated by commas, got {text!r}")
    return cols


def cli_parser() -> argparse.ArgumentParser:
    d = section("predict")  # the defaults of the config's predict section
    p = argparse.ArgumentParser(
        description="Predict with a trained galmet model on <objID>.jpg cutouts, with test-time augmentation.",
        epilog=OUTPUT_COLUMNS, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="model.pt written by the workflow's training")
    p.add_argument("--images", help="directory of <objID>.jpg; alone: predict every *.jpg in it")
    p.add_argument("--catalog", help="CSV, Parquet, FITS, ECSV or VOTable (.vot) with an objID column (64-bit "
                        "integers; and path, without --images); CSV/Parquet read in chunks, the others whole")
    p.add_argument("--out", required=True, help="output table: .csv, .parquet, .fits, .ecsv or .vot (see below)")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="average over the 8 D4 symmetries (default: the model's TTA setting)")
    p.add_argument("--batch-size", type=int, default=d["batch_size"],
                   help=f"images per batch (default {d['batch_size']})")
    p.add_argument("--chunk-size", type=int, default=d["chunk_size"],
                   help=f"images read, predicted and written at a time (default {d['chunk_size']})")
    p.add_argument("--device", default=d["device"],
                   help=f"auto (CUDA if available), cpu or cuda (default {d['device']})")
    reproducible_option(p, d["reproducible"])
    p.add_argument("--levels", type=float, nargs="+", default=(), metavar="L",
                   help="a calibrated ensemble's interval levels besides 0.68 and 0.95 (e.g. 0.9 adds p5, p95)")
    p.add_argument("--domain-alpha", type=float, default=None, metavar="A",
                   help="in_domain is domain_p >= A: at most about a fraction A of galaxies like the model's "
                        "labelled galaxies are flagged (default: the level the model file records, the config's "
                        f"predict.domain_alpha when it was trained, {d['domain_alpha']} by default); a level the "
                        "model's calibration cannot reach is refused with the smallest usable one")
    max_pixels = default("cutouts.max_pixels")
    p.add_argument("--max-pixels", type=int, default=max_pixels, metavar="N",
                   help=f"skip images of more than N pixels, unread (too_large; default {max_pixels:,}, the config's "
                        "cutouts.max_pixels)")
    p.add_argument("--keep", type=_column_list, default=(), metavar="COL[,COL...]",
                   help="catalog columns to carry into the output, between objID and prediction (e.g. --keep "
                        "oh_p50: the truth, so that galmet evaluate scores the table); a registered target's "
                        "column gets its unit and description")
    p.add_argument("--allow-survey-mismatch", action="store_true",
                   help="predict even when the images' cutouts.json says another survey, band order or "
                        "pixel scale than the model's training images (a warning in <out>.log)")
    return p


def _source(args):
    """The image source the options name (:mod:`galmet.inputs`)."""
    from galmet.inputs import CatalogSource, FolderSource

    images = Path(args.images) if args.images else None
    if args.catalog:
        return CatalogSource(args.catalog, images, args.chunk_size, keep=args.keep)
    return FolderSource(images, args.chunk_size)


def _usage_error(args) -> str | None:
    """The message for arguments that cannot work, else None."""
    from galmet.tables import TableFormatError, table_format

    try:
        table_format(args.out, "--out")
    except TableFormatError as exc:
        return str(exc)
    if not args.images and not args.catalog:
        return "give --images DIR, --catalog FILE, or both"
    if args.images and not Path(args.images).is_dir():
        return f"--images {args.images}: not a directory"
    if args.keep and not args.catalog:
        return "--keep names columns of --catalog: give one"
    if args.batch_size < 1 or args.chunk_size < 1 or args.max_pixels < 1:
        return "--batch-size, --chunk-size and --max-pixels must be >= 1"
    if args.domain_alpha is not None and not 0 < args.domain_alpha < 1:
        return f"--domain-alpha {args.domain_alpha}: give a level between 0 and 1, e.g. 0.05"
    return None


def cli_main(args) -> int:
    start_logging()
    problem = _usage_error(args)
    if problem:
        return fail("predict", problem)
    out = Path(args.out)
    try:
        model, meta = load_model(args)
        source = _source(args)
        run = prepare(meta, source, args.model, args.tta, args.levels, args.domain_alpha,
                      args.allow_survey_mismatch, logger="galmet.predict")
    except model_errors() as exc:
        return fail("predict", exc)
    dev = str(next(model.parameters()).device)
    kind = f"ensemble of {len(meta['members'])}" if meta["kind"] == "ensemble" else meta["arch"]
    log.info("predicting %s (%s, %s px, TTA x%d%s) on %s", meta.get("target", "target"), kind, meta["resolution"],
             run.tta, f", intervals at {', '.join(map(str, run.levels))}" if run.levels else "", dev)
    try:
        predict_to_table(source, model, meta, out, run, model_path=args.model, batch_size=args.batch_size,
                         device=dev, max_pixels=args.max_pixels, write_empty=False,
                         progress=lambda n: log.info("%d images read, %d predicted, %d skipped", n,
                                                     run.n_predicted, len(run.skipped)))
    except (ValueError, OSError) as exc:
        return fail("predict", exc)
    log_path = out.with_name(out.name + ".log")
    domain = run.domain_line(meta)
    write_skipped_log(log_path, f"model {args.model}, TTA x{run.tta}; {run.n_predicted} predicted, "
                      f"{len(run.skipped)} skipped of {run.n_seen}" + (f"; {domain}" if domain else ""),
                      run.skipped, warnings=run.notes)
    if run.n_seen == 0:
        return fail("predict", f"no images to predict ({source.empty_message()}); no table written", 1)
    if run.n_predicted == 0:
        return fail("predict", f"none of the {run.n_seen} images could be used, no table written; the reasons "
                    f"are in {log_path}", 1)
    log.info("wrote %d predictions to %s (%d skipped, listed in %s)", run.n_predicted, out, len(run.skipped),
             log_path)
    run.log_domain(meta, "galmet.predict")
    return 0


__all__ = ["OUTPUT_COLUMNS", "cli_parser", "cli_main"]
