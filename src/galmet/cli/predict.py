"""``galmet predict``: a trained model on a folder of ``<objID>.jpg`` cutouts or a catalog.

The loop is :func:`galmet.predict.predict_chunks`, as for the workflow's ``infer`` target; this
module reads the options, lists the images and writes ``<out>.log``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from galmet.cli.common import (
    cli_tta,
    fail,
    iter_directory,
    load_model,
    model_errors,
    start_logging,
    write_skipped_log,
)
from galmet.config import section
from galmet.imaging import IMAGE_SUFFIXES, MAX_PIXELS
from galmet.predict import CSV_DECIMALS, PredictionWriter, interval_levels, predict_chunks

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
  prediction      the model's value of its target, in the target's unit: 12 + log(O/H) in dex for
                  oh_p50, log10(M*/Msun) for lgm_tot_p50 (the mean over TTA views and ensemble members)
  p2p5, p16,      a calibrated ensemble's interval bounds, same unit: p16-p84 is the 68% interval,
  p84, p97p5      p2p5-p97p5 the 95% one; --levels 0.9 adds p5, p95
  domain_p        conformal p-value (0..1) of how usual the image is for the model, relative to its
                  training images (absent for model files without an applicability-domain block)
  in_domain       true when domain_p >= --domain-alpha: the intervals' calibration applies; it tests
                  the image, not the physics
CSV values carry {CSV_DECIMALS} decimals (domain_p 4 significant digits); Parquet keeps float64.
Skipped files are listed with a reason (too_large, not_colour, too_small, undecodable, bad_objid, ...)
in <out>.log; when nothing could be predicted no table is written and the exit code is 1."""


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
    p.add_argument("--device", default=d["device"], help="auto (CUDA if available), cpu or cuda")
    p.add_argument("--levels", type=float, nargs="+", default=(), metavar="L",
                   help="a calibrated ensemble's interval levels besides 0.68 and 0.95 (e.g. 0.9 adds p5, p95)")
    p.add_argument("--domain-alpha", type=float, default=d["domain_alpha"], metavar="A",
                   help=f"in_domain is domain_p >= A (default {d['domain_alpha']}): at most a fraction A of "
                        "galaxies like the model's validation galaxies are flagged")
    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS, metavar="N",
                   help=f"skip images of more than N pixels, unread (too_large; default {MAX_PIXELS:,} = 4096 x 4096)")
    p.add_argument("--allow-survey-mismatch", action="store_true",
                   help="predict even when the images' cutouts.json says another survey, band order or "
                        "pixel scale than the model's training images (a warning in <out>.log)")
    return p


def iter_catalog(catalog: Path, images: Path | None, chunk: int):
    """``(objID, path)`` rows of ``--catalog`` in chunks: its ``path`` column, or
    ``images/<objID>.jpg`` with ``--images``."""
    from galmet.tables import iter_table_chunks, table_columns, table_format

    table_format(catalog, "--catalog")
    _check_catalog_columns(catalog, table_columns(catalog), images)
    cols = ["objID"] + (["path"] if images is None else [])
    for df in iter_table_chunks(catalog, cols, chunk):
        ids = df["objID"].to_numpy(dtype=np.int64)
        if images is not None:
            paths = [image_path(images, i) for i in ids]
        else:
            paths = [Path(p) if isinstance(p, str) and p else None for p in df["path"].tolist()]
        yield [(int(i), p) for i, p in zip(ids, paths)]


def image_path(images: Path, oid: int) -> Path:
    """``images/<objID>.jpg``, or the ``.jpeg`` / upper-case file when that is the one there."""
    first = images / f"{oid}.jpg"
    if not first.exists():
        for suffix in (s for base in IMAGE_SUFFIXES for s in (base, base.upper())):
            if (images / f"{oid}{suffix}").exists():
                return images / f"{oid}{suffix}"
    return first


def _check_catalog_columns(catalog: Path, names, images) -> None:
    if "objID" not in names:
        raise ValueError(f"--catalog {catalog}: no objID column (columns: {', '.join(map(str, names))})")
    if images is None and "path" not in names:
        raise ValueError(
            f"--catalog {catalog}: no path column; add one, or give --images DIR to read DIR/<objID>.jpg"
        )


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
    if args.batch_size < 1 or args.chunk_size < 1 or args.max_pixels < 1:
        return "--batch-size, --chunk-size and --max-pixels must be >= 1"
    if not 0 < args.domain_alpha < 1:
        return f"--domain-alpha {args.domain_alpha}: give a level between 0 and 1, e.g. 0.01"
    return None


def cli_main(args) -> int:
    start_logging()
    problem = _usage_error(args)
    if problem:
        return fail("predict", problem)
    out, images = Path(args.out), Path(args.images) if args.images else None
    try:
        model, meta, survey_notes = load_model(args, "predict", images, args.catalog)
        tta = cli_tta(args.tta, meta)
        levels = interval_levels(meta, args.levels)
    except model_errors() as exc:
        return fail("predict", exc)
    skipped: list = []
    try:
        if args.catalog:
            chunks = iter_catalog(Path(args.catalog), images, args.chunk_size)
        else:
            chunks = iter_directory(images, args.chunk_size, skipped)
    except (ValueError, OSError) as exc:
        return fail("predict", exc)
    dev = str(next(model.parameters()).device)
    kind = f"ensemble of {len(meta['members'])}" if meta["kind"] == "ensemble" else meta["arch"]
    log.info("predicting %s (%s, %s px, TTA x%d%s) on %s", meta.get("target", "target"), kind,
             meta["resolution"], tta, f", intervals at {', '.join(map(str, levels))}" if levels else "", dev)
    n_seen = 0
    try:
        from galmet.tables import provenance

        prov = provenance(meta, args.model, tta, args.domain_alpha, levels)
        with PredictionWriter(out, target=meta.get("target"), provenance=prov) as writer:
            n_seen = predict_chunks(
                chunks, model, meta, writer, skipped, tta=tta, batch_size=args.batch_size, device=dev, levels=levels,
                alpha=args.domain_alpha, max_pixels=args.max_pixels,
                progress=lambda n: log.info("%d images read, %d predicted, %d skipped", n, writer.n, len(skipped)))
            if writer.n == 0:
                raise _NothingPredicted  # no table at all rather than a header-only one
    except _NothingPredicted:
        pass
    except (ValueError, OSError) as exc:
        return fail("predict", exc)
    log_path = out.with_name(out.name + ".log")
    write_skipped_log(log_path, f"model {args.model}, TTA x{tta}; {writer.n} predicted, "
                      f"{len(skipped)} skipped of {n_seen}", skipped, warnings=survey_notes)
    if writer.n:
        log.info("wrote %d predictions to %s (%d skipped, listed in %s)", writer.n, out, len(skipped), log_path)
    if n_seen == 0:
        where = f"the catalog {args.catalog} is empty" if args.catalog else f"no <objID>.jpg in {images}"
        return fail("predict", f"no images to predict ({where}); no table written", 1)
    if writer.n == 0:
        return fail("predict", f"none of the {n_seen} images could be used, no table written; the reasons are "
                    f"in {log_path}", 1)
    return 0


class _NothingPredicted(Exception):
    """Raised inside the writer's block so that no output file appears."""


__all__ = ["OUTPUT_COLUMNS", "cli_parser", "cli_main", "iter_catalog", "image_path"]
