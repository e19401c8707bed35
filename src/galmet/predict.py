"""Prediction with a trained model, with test-time augmentation (TTA).

TTA averages the model's outputs over the first ``tta`` elements of the D4 group
(:func:`galmet.augment.d4`: identity, the three quarter turns, then the same after a flip).
Images of another size than the model's are first brought to its resolution with
:func:`galmet.imaging.to_resolution` (block average when the size is a multiple, area
resampling otherwise), as the workflow's re-binning does.

Command line (:mod:`galmet.cli.predict`)::

    galmet predict --model model.pt --images DIR --out predictions.csv [--tta | --no-tta]
    galmet predict --model model.pt --catalog galaxies.parquet [--images DIR] --out preds.parquet

With ``--images`` alone every ``DIR/*.jpg`` named ``<objID>.jpg`` is predicted; with
``--catalog`` (CSV/Parquet with ``objID`` and, without ``--images``, a ``path`` column; relative
paths are taken from the current directory) the catalog's galaxies are, read in chunks so that
memory stays flat for millions of rows. The output has the columns ``objID`` (exact int64) and
``prediction``; for a calibrated ensemble (:mod:`galmet.ensemble`) ``prediction`` is the mean of
its members and TTA views, followed by the calibrated interval bounds ``p2p5, p16, p84, p97p5``
(and ``--levels 0.9`` adds ``p5, p95``); ``--keep COL,...`` carries catalog columns (e.g. the truth
``oh_p50``) between ``objID`` and ``prediction``. CSV, Parquet, FITS, ECSV or VOTable by the
extension of ``--out`` (:mod:`galmet.tables`: units and provenance). An image that cannot be read
is skipped with a warning and listed, with the reason, in ``<out>.log``: never a NaN row.

One prediction path, from images to rows to a written table: an image source of
:mod:`galmet.inputs` (a folder, a catalog, a list of paths, an array; the skip reasons),
:func:`prepare` (TTA, interval levels, the domain test's level and notes, the survey check),
:func:`predict_rows` (guards, TTA, members, intervals, domain test; not-finite outputs skipped)
and :func:`predict_to_table` (:class:`PredictionWriter` with the provenance). ``galmet predict``
(:mod:`galmet.cli.predict`), the workflow's ``infer`` target (:func:`galmet.infer.predict_shard`)
and the notebook API (:meth:`galmet.api.Model.predict`, which keeps the rows in memory) are thin
callers of it. The workflow's test-split prediction passes image-store arrays to
:func:`predict_columns` directly and writes through :class:`PredictionWriter` too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from galmet.augment import D4_SIZE, d4
from galmet.config import default
from galmet.imaging import bring_to_resolution
from galmet.inputs import read_ahead, skip_reason
from galmet.io import atomic_path
from galmet.model import inference_graph, members, normalisation_constants, resolve_device, to_input


@torch.no_grad()
def predict_views(model, meta, x_uint8_nhwc, tta=None, batch_size=None, device="cpu") -> np.ndarray:
    """Every member's output on every TTA view: float64 ``N x M x tta`` for uint8 ``N x H x W x 3``.

    ``M`` is 1 for a single network, the number of members for an ensemble
    (:class:`galmet.model.Ensemble`). ``tta``: number of D4 elements (1 = none, 8 = all). The
    model is moved to ``device`` and put in eval mode; batches of ``batch_size`` images run once
    per element. ``tta`` and ``batch_size`` default to the config's ``predict.tta`` and
    ``predict.batch_size``. On the CPU a model from a model file runs through
    :func:`galmet.model.inference_graph` (PyTorch's graph for CPU inference; with the fast kernels
    only, not in the reproducible mode).
    """
    tta = int(default("predict.tta") if tta is None else tta)
    batch_size = int(default("predict.batch_size") if batch_size is None else batch_size)
    if not 1 <= tta <= D4_SIZE:
        raise ValueError(f"tta={tta}: give the number of D4 symmetries to average, 1 to 8")
    x = x_uint8_nhwc
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected uint8 N x H x W x 3 images, got {x.dtype} {tuple(x.shape)}")
    dev = resolve_device(device)
    model.to(dev).eval()
    res = int(meta["resolution"])
    norm = meta["normalisation"]
    scale, shift = normalisation_constants(norm["mean"], norm["std"], dev)
    amp = dev.type == "cuda"
    n_members = len(members(model))  # an Ensemble's output has one column per member
    net = inference_graph(model)  # on the CPU, a model file's network: PyTorch's graph for CPU inference
    out = np.empty((len(x), n_members, tta), dtype=np.float64)
    for s in range(0, len(x), int(batch_size)):
        chunk = bring_to_resolution(np.ascontiguousarray(x[s:s + int(batch_size)]), res)
        xb = torch.from_numpy(chunk)
        if dev.type == "cuda":
            xb = xb.pin_memory().to(dev, non_blocking=True)
        inp = to_input(xb.permute(0, 3, 1, 2), scale, shift)
        for k in range(tta):
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                y = net(d4(inp, k)).float()
            out[s:s + len(chunk), :, k] = y.reshape(len(chunk), n_members).double().cpu().numpy()
    return out


def predict_images(model, meta, x_uint8_nhwc, tta=None, batch_size=None, device="cpu") -> np.ndarray:
    """Predictions (float64, one per image) for uint8 ``N x H x W x 3`` images: the mean over the
    ``tta`` D4 views (and over an ensemble's members) of :func:`predict_views`."""
    return predict_views(model, meta, x_uint8_nhwc, tta, batch_size, device).mean(axis=(1, 2))


def mean_and_spread(views: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, spread)`` per galaxy of ``N x M x V`` outputs: the mean and the standard deviation
    of all ``M x V`` values (by the law of total variance, the members' disagreement plus their
    mean TTA variance). The spread calibrated by :mod:`galmet.ensemble`."""
    flat = views.reshape(len(views), -1)
    return flat.mean(axis=1), flat.std(axis=1)


#: The calibration ``spread`` of a model whose intervals have one width for every galaxy (a
#: survey model, :mod:`galmet.survey`: one pass a galaxy has no spread to measure).
CONSTANT_SPREAD = "constant: intervals of one width"


def calibrated_mean_and_spread(meta: dict, views: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, spread)`` of ``N x M x V`` outputs as the model's calibration defines its spread:
    :func:`mean_and_spread`'s, or ones where the calibration's ``spread`` is
    :data:`CONSTANT_SPREAD` (its intervals then have one width)."""
    mean, spread = mean_and_spread(views)
    if (meta.get("calibration") or {}).get("spread") == CONSTANT_SPREAD:
        spread = np.ones_like(mean)
    return mean, spread


def check_tta(meta: dict, tta: int) -> None:
    """A calibrated model predicts with the TTA it was calibrated with; anything else is refused."""
    cal = meta.get("calibration")
    if cal is not None and int(tta) != int(cal["tta"]):
        raise ValueError(
            f"this model's intervals were calibrated with TTA over {cal['tta']} symmetries; predicting "
            f"with {tta} would make them wrong: use tta={cal['tta']} (on the command line: drop --no-tta)")


def predict_columns(model, meta, x_uint8_nhwc, tta=None, batch_size=None, device="cpu", levels=None,
                    spread=False, alpha=None) -> dict[str, np.ndarray]:
    """``{"prediction": ...}`` and, for a calibrated model, ``spread`` (when asked) and the
    interval columns at ``levels`` (default 0.68 and 0.95: ``p2p5, p16, p84, p97p5``); for a model
    with a ``domain`` block, ``domain_p`` and ``in_domain`` at ``alpha`` (default: the config's
    ``predict.domain_alpha``; :mod:`galmet.domain`: a test of the images, so ``tta`` does not
    change it). ``tta`` and ``batch_size`` as for :func:`predict_views`."""
    tta = default("predict.tta") if tta is None else tta
    check_tta(meta, tta)
    alpha = domain_alpha(meta, alpha)
    levels = interval_levels(meta, levels) if meta.get("calibration") is not None else []
    cols = _columns(model, meta, x_uint8_nhwc, tta, batch_size, device, levels, spread, alpha)
    return out_of_domain_rows(cols, levels)


def domain_alpha(meta: dict, alpha=None, option: str = "--domain-alpha") -> float:
    """The level of ``in_domain``: ``alpha`` or, when None, the model's own
    (:func:`galmet.domain.default_alpha`); :class:`galmet.domain.DomainAlphaError` (a ValueError
    naming the smallest usable value and ``option``) when the model's calibration cannot reach it."""
    from galmet.domain import check_alpha, default_alpha

    block = meta.get("domain")
    alpha = default_alpha(block) if alpha is None else alpha
    if block is not None:
        check_alpha(block, alpha, option=option)
    return float(alpha)


def out_of_domain_rows(cols: dict[str, np.ndarray], levels) -> dict[str, np.ndarray]:
    """``cols`` with the interval bounds at ``levels`` (:func:`galmet.conformal.interval_names`) of
    out-of-domain rows (``in_domain`` false) left empty (NaN): they were calibrated on images like
    the training images, and an interval on any other image would claim a coverage it does not
    have. ``prediction`` (the network's answer, for whoever studies such images), ``domain_p`` and
    ``in_domain`` stay."""
    from galmet.conformal import interval_names

    if "in_domain" not in cols or cols["in_domain"].all() or not levels:
        return cols
    return {**cols, **{name: np.where(cols["in_domain"], cols[name], np.nan) for name in interval_names(levels)}}


def _columns(model, meta, x, tta, batch_size, device, levels, spread, alpha, dom=None) -> dict[str, np.ndarray]:
    """:func:`predict_columns` with its settings resolved (``levels`` from :func:`interval_levels`);
    ``dom``: the images' domain columns when already computed (:func:`predict_rows`)."""
    from galmet.conformal import interval_columns
    from galmet.domain import columns as domain_columns

    views = predict_views(model, meta, x, tta, batch_size, device)
    if dom is None:
        dom = domain_columns(meta.get("domain"), x, alpha)
    if meta.get("calibration") is None:
        return {"prediction": views.mean(axis=(1, 2)), **dom}
    mean, sd = calibrated_mean_and_spread(meta, views)
    return {"prediction": mean, **({"spread": sd} if spread else {}),
            **interval_columns(mean, sd, meta["calibration"]["scores"], levels), **dom}


def interval_levels(meta: dict, levels) -> list[float]:
    """The interval levels of a calibrated model: 0.68, 0.95 and ``levels``, each checked against
    its calibration set (:class:`galmet.conformal.ConformalError` names the shortfall); ``[]``
    for a model without calibration (ValueError when ``levels`` asks for more)."""
    from galmet.conformal import DEFAULT_LEVELS, score_quantile

    levels = sorted(set(DEFAULT_LEVELS) | set(levels or ()))
    cal = meta.get("calibration")
    if cal is None:
        if set(levels) != set(DEFAULT_LEVELS):
            raise ValueError("this model has no calibration, so no intervals: --levels needs a calibrated "
                             "ensemble (the workflow's `ensemble:` config key builds one)")
        return []
    for level in levels:
        score_quantile(cal["scores"], level)  # ConformalError: too few calibration galaxies
    return levels


# ----------------------------------------------------------------------------- the one prediction path


@dataclass
class PredictionRun:
    """The settings of one prediction and what it did: ``tta`` (D4 views), ``levels`` (a calibrated
    model's interval levels, ``[]`` without calibration), ``alpha`` (the domain test's level),
    ``notes`` (warnings: the survey check's, ``survey_notes``, then the domain test's), then, after
    :func:`predict_rows`, ``source`` (:class:`galmet.inputs.ImageSource`: ``n_seen``, ``skipped``),
    ``n_predicted`` and ``n_out_of_domain`` (rows with ``in_domain`` false: their intervals are
    empty, :func:`out_of_domain_rows`); :meth:`domain_line` says it in words."""

    tta: int
    levels: list
    alpha: float
    notes: list = field(default_factory=list)
    survey_notes: list = field(default_factory=list)
    source: object = None
    n_predicted: int = 0
    n_out_of_domain: int = 0

    @property
    def skipped(self) -> list:
        return [] if self.source is None else self.source.skipped

    @property
    def n_seen(self) -> int:
        return 0 if self.source is None else self.source.n_seen

    def domain_line(self, meta: dict) -> str | None:
        """``"K of N predicted images are out of the model's domain (domain_p < alpha): ..."``, or
        None for a model without a domain test."""
        if meta.get("domain") is None:
            return None
        return (f"{self.n_out_of_domain} of {self.n_predicted} predicted images are out of the model's domain "
                f"(domain_p < {self.alpha:g}): in_domain false, their intervals left empty")

    def log_domain(self, meta: dict, logger: str, prefix: str = "") -> str | None:
        """:meth:`domain_line`, logged by ``logger`` (a warning when a row is out of the domain)."""
        line = self.domain_line(meta)
        if line is not None:
            level = logging.WARNING if self.n_out_of_domain else logging.INFO
            logging.getLogger(logger).log(level, "%s%s", prefix, line)
        return line

    def columns(self, meta: dict) -> list[str]:
        """The columns of its rows after ``objID`` (and kept catalog columns): :func:`output_columns`."""
        return _column_names(meta, self.levels)


def choose_tta(requested, meta: dict) -> int:
    """D4 elements to average: the model's own setting (a calibrated model's, the one it was
    calibrated with) when ``requested`` is None; True / False as ``--tta`` / ``--no-tta``; an
    integer as it is (:func:`check_tta` refuses one a calibrated model was not calibrated with)."""
    cal = meta.get("calibration")
    own = int(cal["tta"] if cal else meta.get("tta", default("predict.tta")))
    if requested is None:
        return own
    if not isinstance(requested, bool):
        check_tta(meta, int(requested))
        return int(requested)
    tta = (own if own > 1 else D4_SIZE) if requested else 1
    if cal and tta != own:
        flag = "--tta (tta=True)" if requested else "--no-tta (tta=False)"
        raise ValueError(f"{flag}: this model's intervals were calibrated with TTA over {own} symmetries and would "
                         f"be wrong with {tta}; drop it")
    return tta


def domain_notes(meta: dict, logger: str = "galmet.predict") -> list[str]:
    """Warnings about the applicability-domain test of a model (also logged by ``logger``): one for
    a model file without it, none otherwise (an alpha it cannot use is refused by
    :func:`domain_alpha`)."""
    if meta.get("domain") is not None:
        return []
    note = ("this model file has no applicability-domain block (written before galmet had one): its predictions "
            "carry no domain_p / in_domain column; retrain (or rebuild the ensemble) to get them")
    logging.getLogger(logger).warning("%s", note)
    return [note]


def prepare(meta: dict, source, model_path=None, tta=None, levels=(), alpha=None, allow_survey_mismatch=False,
            fix: str | None = None, logger: str = "galmet.predict",
            alpha_option: str = "--domain-alpha") -> PredictionRun:
    """Everything decided before the first image is read, the same for every entry point: the TTA
    (:func:`choose_tta`), the interval levels (:func:`interval_levels`), the domain test's level
    ``alpha`` (default: the model's, :func:`domain_alpha`; refused when the model cannot reach it,
    the message naming ``alpha_option``) and its notes, and the survey check
    of the source's folders (:func:`galmet.cutouts.manifest.check_image_dirs`: raises
    :class:`galmet.cutouts.manifest.SurveyMismatchError` unless ``allow_survey_mismatch``; ``fix``
    names the caller's option)."""
    from galmet.cutouts.manifest import CLI_FIX, check_image_dirs

    alpha = domain_alpha(meta, alpha, option=alpha_option)
    run = PredictionRun(tta=choose_tta(tta, meta), levels=interval_levels(meta, levels), alpha=alpha)
    check_tta(meta, run.tta)
    dirs = source.image_dirs() if source is not None else []
    run.survey_notes = check_image_dirs(meta.get("images"), dirs, allow_survey_mismatch,
                                        model=f"the model {model_path or meta.get('target', '')}".rstrip(),
                                        fix=fix or CLI_FIX) if dirs else []
    run.notes = run.survey_notes + domain_notes(meta, logger)
    run.source = source
    return run


def predict_rows(source, model, meta: dict, run: PredictionRun, batch_size=None, device="cpu",
                 max_pixels: int | None = None, progress=None):
    """The rows of every usable image of ``source`` (:mod:`galmet.inputs`), a chunk at a time:
    ``(keys, {column: values}, {kept catalog column: values})`` with the columns of
    :func:`output_columns` (:func:`predict_columns` at ``run``'s TTA, levels and alpha). Images the
    source refuses and outputs that are not finite go to ``source.skipped``; ``progress(n_seen)``
    after each chunk; ``run.n_predicted`` counts the rows. The settings are ``run``'s, resolved once
    by :func:`prepare`. The next chunk is decoded and its domain test computed (numpy, the GIL
    released) while the network predicts this one (:func:`galmet.inputs.read_ahead`)."""
    from galmet.domain import columns as domain_columns

    res = int(meta["resolution"])
    chunks = ((keys, x, extra, source.n_seen, domain_columns(meta.get("domain"), x, run.alpha) if len(keys) else {})
              for keys, x, extra in source.chunks(res, max_pixels))
    for keys, x, extra, n_seen, dom in read_ahead(chunks):
        if len(keys):
            cols = _columns(model, meta, x, run.tta, batch_size, device, run.levels, False, run.alpha, dom)
            ok = np.all([np.isfinite(v) for v in cols.values()], axis=0)
            source.skip(keys[~ok], skip_reason("not_finite"))
            run.n_predicted += int(ok.sum())
            cols = out_of_domain_rows(cols, run.levels)
            if "in_domain" in cols:
                run.n_out_of_domain += int((ok & ~cols["in_domain"]).sum())
            yield keys[ok], {k: v[ok] for k, v in cols.items()}, {k: np.asarray(v)[ok] for k, v in extra.items()}
        if progress is not None:
            progress(n_seen)


def predict_to_table(source, model, meta: dict, out, run: PredictionRun, model_path=None, batch_size=None,
                     device="cpu", max_pixels: int | None = None, progress=None, write_empty: bool = True):
    """:func:`predict_rows` written to the table ``out`` (:class:`PredictionWriter`, format by
    extension) with its provenance (:func:`galmet.tables.provenance`, when ``model_path`` is given)
    and the target's units; the kept catalog columns come between ``objID`` and ``prediction``.
    With ``write_empty=False`` a run that predicted nothing leaves no file (the command line).
    Returns ``run``."""
    from galmet.tables import provenance

    prov = None if model_path is None else provenance(meta, model_path, run.tta, run.alpha, run.levels)
    try:
        with PredictionWriter(out, target=meta.get("target"), provenance=prov) as writer:
            writer.empty_after = run.columns(meta)[1:]
            writer.empty_extra = {c: "float64" for c in getattr(source, "extra_names", ())}
            for keys, cols, extra in predict_rows(source, model, meta, run, batch_size, device, max_pixels,
                                                  progress):
                preds = cols.pop("prediction")
                writer.write(keys, preds, extra=_extra_columns(extra), after=cols)
            if writer.n == 0 and not write_empty:
                raise _NothingPredicted
    except _NothingPredicted:
        pass
    return run


class _NothingPredicted(Exception):
    """Raised inside the writer's block so that no output file appears."""


def _extra_columns(extra: dict) -> dict:
    """Kept catalog columns as the table carries them: ``specObjID`` exact int64
    (:func:`galmet.tables.parse_ids`), numbers float64 (the same type in every chunk, empty cells
    NaN), anything else as text."""
    import pandas as pd

    from galmet.tables import parse_ids

    out = {}
    for name, values in extra.items():
        if name == "specObjID":
            out[name] = parse_ids(pd.Series(values, dtype=object), column=name, source="--keep").to_numpy(np.int64)
            continue
        num = pd.to_numeric(pd.Series(values, dtype=object).replace("", None), errors="coerce")
        text = pd.Series(values, dtype=object)
        if (num.notna() | text.isna() | (text.astype(str) == "")).all():
            out[name] = num.to_numpy(np.float64)
        else:
            out[name] = text.astype(str).to_numpy()
    return out


#: digits after the point of the float columns in a CSV table (Parquet keeps float64): 1e-4 dex
#: is far below any model's scatter (~0.1 dex) and any interval's width.
CSV_DECIMALS = 4


class PredictionWriter:
    """Streams prediction rows to a table file (format by extension, :data:`galmet.tables.FORMATS`), atomically.

    Columns: ``objID`` (int64), then ``extra`` columns in the order first given (e.g. the
    truth), then ``prediction`` (float64), then ``after`` columns (a calibrated model's spread
    and interval bounds, :func:`predict_columns`). Use as a context manager: the file appears
    under its name only when the block succeeds. CSV and Parquet are appended chunk by chunk;
    FITS, ECSV and VOTable are collected in memory and written once at the end (300 to 450 bytes
    a row). ``target`` gives the columns' units and descriptions (:func:`galmet.tables.column_info`),
    ``provenance`` (:func:`galmet.tables.provenance`) what the table records of its making: with it,
    Parquet gains schema metadata and a CSV its ``<file>.meta.json`` (the CSV itself is unchanged);
    FITS, ECSV and VOTable always carry the units.
    """

    def __init__(self, path, target: str | None = None, provenance: dict | None = None):
        from galmet.tables import FORMATS, format_list

        self.path = Path(path)
        self.kind = FORMATS.get(self.path.suffix.lower())
        if self.kind is None:
            raise ValueError(f"{self.path}: use a {format_list()} file name")
        self.target, self.provenance = target, provenance
        self.n = 0
        self._atomic = self._tmp = self._out = None
        self._schema = None
        self._chunks: list[pa.Table] = []  # FITS, ECSV, VOTable: written at the end
        self.empty_after: list[str] = []  # the ``after`` columns of an empty table
        self.empty_extra: dict[str, str] = {}  # its ``extra`` columns and their types

    def __enter__(self) -> PredictionWriter:
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        return self

    def write(self, ids, preds, extra: dict | None = None, after: dict | None = None) -> None:
        table = pa.table({"objID": pa.array(np.asarray(ids, dtype=np.int64), pa.int64()),
                          **{k: pa.array(np.asarray(v)) for k, v in (extra or {}).items()},
                          "prediction": pa.array(np.asarray(preds, dtype=np.float64), pa.float64()),
                          **{k: _after_array(v) for k, v in (after or {}).items()}})
        self._open(table.schema)
        self.n += table.num_rows
        if self.kind == "csv":
            fmt = [_csv_format(f.name, f.type) for f in table.schema]
            cols = [c.to_pylist() for c in table.columns]
            self._out.writelines(",".join(f(v) for f, v in zip(fmt, row)) + "\n" for row in zip(*cols))
        elif self.kind == "parquet":
            self._out.write_table(table.cast(self._schema))
        else:
            self._chunks.append(table.cast(self._schema))

    def _columns(self, schema: pa.Schema) -> tuple[dict, dict]:
        from galmet.tables import column_info

        return column_info(self.target, schema.names)

    def _open(self, schema: pa.Schema) -> None:
        if self._schema is not None:
            return
        self._schema = schema
        if self.kind == "csv":
            self._out = open(self._tmp, "w", newline="")
            self._out.write(",".join(schema.names) + "\n")
        elif self.kind == "parquet":
            if self.provenance is not None:
                from galmet.tables import parquet_schema

                self._schema = parquet_schema(schema, *self._columns(schema), self.provenance)
            self._out = pq.ParquetWriter(self._tmp, self._schema)

    def __exit__(self, *exc):
        from galmet.tables import astropy_table, write_astropy, write_sidecar

        if self._schema is None:  # nothing written: still a valid, empty table
            self._open(pa.schema([("objID", pa.int64())]
                                 + [(c, pa.from_numpy_dtype(np.dtype(t))) for c, t in self.empty_extra.items()]
                                 + [("prediction", pa.float64())]
                                 + [(c, pa.bool_() if c == "in_domain" else pa.float64()) for c in self.empty_after]))
        if self._out is not None:
            self._out.close()
        if exc[0] is None and self.kind not in ("csv", "parquet"):
            table = pa.concat_tables(self._chunks) if self._chunks else self._schema.empty_table()
            self._chunks = []
            try:
                write_astropy(astropy_table(table.to_pandas(), *self._columns(table.schema)), self._tmp, self.kind,
                              self.provenance)
            except BaseException as err:
                self._atomic.__exit__(type(err), err, err.__traceback__)
                raise
        result = self._atomic.__exit__(*exc)
        if exc[0] is None and self.kind == "csv" and self.provenance is not None:
            write_sidecar(self.path, *self._columns(self._schema), self.provenance)
        return result


def _after_array(values) -> pa.Array:
    v = np.asarray(values)
    return pa.array(v, pa.bool_()) if v.dtype == bool else pa.array(v.astype(np.float64), pa.float64())


def _csv_format(name: str, dtype: pa.DataType):
    """How a CSV cell of this column is written: integers exact, floats to :data:`CSV_DECIMALS`
    decimals (``domain_p`` to 4 significant digits: p-values can be small), NaN as an empty cell,
    booleans as true/false, text (a kept catalog column) quoted as CSV quotes it."""
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return _csv_text
    if pa.types.is_integer(dtype):
        return lambda v: f"{int(v)}"
    if pa.types.is_boolean(dtype):
        return lambda v: "true" if v else "false"
    if name == "domain_p":
        return lambda v: f"{float(v):.4g}"
    return lambda v: "" if v != v else f"{float(v):.{CSV_DECIMALS}f}"  # NaN (an out-of-domain row's bounds): empty


def _csv_text(value) -> str:
    text = "" if value is None else str(value)
    return f'"{text.replace(chr(34), 2 * chr(34))}"' if any(c in text for c in ',"\r\n') else text


def output_columns(meta: dict, levels=None) -> list[str]:
    """The columns :func:`predict_rows` gives for this model, after ``objID`` and any kept catalog columns."""
    return _column_names(meta, interval_levels(meta, levels))


def _column_names(meta: dict, levels: list) -> list[str]:
    from galmet.conformal import interval_names

    return (["prediction"] + (interval_names(levels) if levels else [])
            + (["domain_p", "in_domain"] if meta.get("domain") is not None else []))


__all__ = ["predict_views", "predict_images", "mean_and_spread", "calibrated_mean_and_spread", "CONSTANT_SPREAD",
           "predict_columns", "check_tta", "interval_levels", "output_columns", "PredictionRun", "choose_tta",
           "domain_notes", "domain_alpha", "out_of_domain_rows", "prepare", "predict_rows", "predict_to_table",
           "PredictionWriter", "CSV_DECIMALS"]
