"""Tables with units and provenance: the one place that knows the table formats.

Formats, chosen by the file extension (:data:`FORMATS`):

``.csv``      text; the units, descriptions and provenance in a JSON sidecar ``<file>.meta.json``
              (:func:`sidecar_path`: ``{"columns": {name: {"unit", "description"}}, "provenance": {...}}``)
``.parquet``  the schema's metadata key ``galmet`` holds the same JSON; each field's metadata its
              ``unit`` and ``description``
``.fits``     a binary table (HDU 1): ``TUNITn`` and ``TCOMMn`` (TOPCAT's description keyword) per
              column, the provenance as 8-character keywords with comments (:data:`FITS_KEYWORDS`)
``.ecsv``     astropy's ECSV: units and descriptions in the YAML header, the provenance in ``meta``
``.vot``      VOTable 1.4, rows in BINARY2 (3.5x smaller than TABLEDATA's XML, as fast to write;
              TOPCAT and astropy read it): ``unit`` and ``DESCRIPTION`` per FIELD, the provenance as
              ``INFO`` elements of the table (:func:`read_votable_infos` reads them back)

The units are astropy's: ``dex`` for 12 + log(O/H), ``dex(solMass)`` for a log stellar mass
(:attr:`galmet.targets.Target.table_unit`). FITS and VOUnit have no logarithmic units, so
astropy reads a FITS ``TUNIT`` of ``dex`` back as an ``UnrecognizedUnit`` (``u.Unit(str(unit))``
makes it a real one again) and warns (W50) when it writes one into a VOTable; ECSV keeps them
exactly.

The one owner of tables: every table galmet writes or reads goes through here (the workflow's
CSV/Parquet files, prediction tables, catalogs, ``galmet evaluate``'s input). Writing
(:func:`write_table`): with units, descriptions or provenance as above; without them, plain
pandas CSV / Parquet (no sidecar). Reading (:func:`read_table`, :func:`table_columns`,
:func:`iter_table_chunks`): CSV and Parquet with pandas / pyarrow (streamed in chunks), the three
astropy formats through ``astropy.table.Table`` (read whole, then cut into chunks); reading also
takes :data:`READ_SUFFIXES` (``.csv.gz``, ``.txt``, ``.pq``, ``.fit``, ``.fits.gz``, ...). Id
columns follow the CSV rules (:func:`parse_ids`): 64-bit integers (FITS ``K``, VOTable ``long``,
ECSV ``int64``) are kept exactly, a floating-point or masked id column is an :class:`IdError`
naming the file and the column.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from galmet import io
from galmet.targets import TARGETS, get_target

#: extension -> format name
FORMATS = {".csv": "csv", ".parquet": "parquet", ".fits": "fits", ".ecsv": "ecsv", ".vot": "votable"}
#: the provenance keys written as FITS keywords, with their comments (values <= 68 characters or
#: astropy's CONTINUE long strings)
FITS_KEYWORDS = {
    "galmet_version": ("GMVERSN", "galmet version that wrote this table"),
    "model": ("MODEL", "model name"),
    "model_sha256": ("MODELSHA", "SHA-256 of the model file"),
    "target": ("TARGET", "the catalog column the model predicts"),
    "images.survey": ("SURVEY", "survey of the training images"),
    "images.provider": ("IMPROV", "cutout service of the training images"),
    "images.bands": ("BANDS", "bands of the training images, RGB order"),
    "images.data_release": ("DATAREL", "data release of the training images"),
    "images.layer": ("IMLAYER", "layer of the training images' service"),
    "images.scale": ("PIXSCALE", "training images' arcsec/px, or adaptive"),
    "images.scale_rule": ("SCALRULE", "the rule of an adaptive pixel scale"),
    "images.size": ("IMSIZE", "size of the training cutouts, W x H px"),
    "calibration.method": ("CALMETH", "how the intervals were calibrated"),
    "calibration.split": ("CALSPLIT", "split that calibrated the intervals"),
    "calibration.n": ("CAL_N", "galaxies that calibrated the intervals"),
    "calibration.levels": ("LEVELS", "levels of the intervals in this table"),
    "domain_alpha": ("DOMALPHA", "in_domain is domain_p >= DOMALPHA"),
    "tta": ("TTA", "D4 symmetries averaged per image"),
    "date": ("DATE", "UTC date and time the table was written"),
}


#: other file names read (never written) as one of :data:`FORMATS`: compressed CSV, text, FITS spellings
READ_SUFFIXES = {".csv.gz": "csv", ".txt": "csv", ".pq": "parquet", ".fit": "fits", ".fits.gz": "fits",
                 ".fit.gz": "fits"}


class TableFormatError(ValueError):
    """A table file name whose extension is not one of :data:`FORMATS`."""


class IdError(ValueError):
    """An id column holds values that are not exact 64-bit integers."""


def table_format(path, what: str = "table") -> str:
    """The format name of ``path`` by its extension; :class:`TableFormatError` names the choices."""
    kind = FORMATS.get(Path(path).suffix.lower())
    if kind is None:
        raise TableFormatError(f"{what} {path}: use a {format_list()} file name")
    return kind


def read_format(path, what: str = "table") -> str:
    """The format name of a table to read: :func:`table_format`, or one of :data:`READ_SUFFIXES`."""
    name = Path(path).name.lower()
    for suffix, kind in READ_SUFFIXES.items():
        if name.endswith(suffix):
            return kind
    return table_format(path, what)


def format_list() -> str:
    """``.csv, .parquet, .fits, .ecsv or .vot``."""
    exts = list(FORMATS)
    return ", ".join(exts[:-1]) + " or " + exts[-1]


def sidecar_path(path) -> Path:
    """The JSON beside a CSV table: ``<file>.meta.json``."""
    path = Path(path)
    return path.with_name(path.name + ".meta.json")


# ----------------------------------------------------------------------------- units, provenance


def column_info(target: str | None, columns) -> tuple[dict[str, str], dict[str, str]]:
    """``(units, descriptions)`` of prediction-table ``columns``: the target's unit
    (:attr:`galmet.targets.Target.table_unit`) on its truth, ``prediction``, ``spread`` and the
    interval bounds ``p<q>``; another registered target's column (a catalog column kept by
    ``galmet predict --keep``) its own unit; ``domain_p`` dimensionless, ``in_domain`` bool; ""
    where no unit."""
    t = get_target(target or "target")
    what = t.description
    units, desc = {}, {}
    for c in columns:
        unit, text = "", ""
        if c == "objID":
            text = "SDSS objID (exact 64-bit integer)"
        elif c == t.name:
            unit, text = t.table_unit, f"catalog (true) value: {what}"
        elif c in TARGETS:
            unit, text = TARGETS[c].table_unit, f"catalog value: {TARGETS[c].description}"
        elif c == "prediction":
            unit, text = t.table_unit, f"predicted {what}: mean over the TTA views (and an ensemble's members)"
        elif c == "spread":
            unit, text = t.table_unit, "standard deviation of the members' and TTA views' outputs"
        elif c.startswith("p") and c[1:].replace("p", "").isdigit():
            q = float(c[1:].replace("p", "."))
            level = abs(100 - 2 * q)
            unit = t.table_unit
            text = (f"{'lower' if q < 50 else 'upper'} bound of the calibrated {level:g}% interval "
                    f"({q:g}th percentile)")
        elif c == "domain_p":
            text = "conformal p-value of the image's usualness for the model (dimensionless, 0..1)"
        elif c == "in_domain":
            text = ("true when domain_p >= domain_alpha (FITS: DOMALPHA): the image is like the training images; "
                    "false: out of the model's domain, its interval bounds left empty")
        elif c == "model":
            text = "the model that predicted"
        elif c == "galmet_version":
            text = "galmet version that predicted"
        units[c], desc[c] = unit, text
    return units, desc


def file_sha256(path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_name(model_path) -> str:
    """The model's name: its workflow directory for ``.../<name>/model.pt``, else the file's stem."""
    p = Path(model_path)
    return p.parent.name if p.name == "model.pt" and p.parent.name else p.stem


def provenance(meta: dict, model_path, tta: int, alpha: float | None = None, levels=None,
               name: str | None = None) -> dict:
    """What a prediction table records of its making: ``galmet_version``, ``model`` (``name``, else
    :func:`model_name`), ``model_sha256``, ``target``, ``images`` (the training images' block of
    the model file: survey, bands, scale, size, ...), ``calibration`` (``method``, ``split``,
    ``n``, ``levels``; None for a model without one), ``domain_alpha`` (None without a domain
    block), ``tta`` and ``date`` (UTC, ISO 8601)."""
    from galmet._version import __version__

    cal = meta.get("calibration")
    images = meta.get("images")
    return {
        "galmet_version": __version__,
        "model": name or model_name(model_path),
        "model_sha256": file_sha256(model_path),
        "target": meta.get("target"),
        "images": {k: v for k, v in images.items()} if images else None,
        "calibration": None if cal is None else {
            "method": cal.get("method"), "split": cal.get("split"), "n": cal.get("n"),
            "levels": [float(v) for v in (levels or [])]},
        "domain_alpha": None if meta.get("domain") is None or alpha is None else float(alpha),
        "tta": int(tta),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def _flat(meta: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in (meta or {}).items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _fits_value(key: str, value):
    if isinstance(value, list | tuple):
        return ("x" if key == "images.size" else ",").join(str(v) for v in value)
    return value


# ----------------------------------------------------------------------------- writing


def write_table(df: pd.DataFrame, path, units: dict | None = None, descriptions: dict | None = None,
                meta: dict | None = None) -> None:
    """Write ``df`` to ``path`` atomically in the format of its extension, with each column's
    unit and description and the provenance ``meta`` (:func:`provenance`). CSV: pandas' CSV
    plus :func:`sidecar_path`. Without units, descriptions and ``meta``, CSV and Parquet are
    pandas' own files (no sidecar, pandas' schema metadata): the workflow's plain tables."""
    kind = table_format(path)
    plain = units is None and descriptions is None and meta is None
    units, descriptions = units or {}, descriptions or {}
    with io.atomic_path(path) as tmp:
        if kind == "csv":
            df.to_csv(tmp, index=False)
        elif kind == "parquet" and plain:
            df.to_parquet(tmp, index=False)
        elif kind == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(df, preserve_index=False)
            pq.write_table(table.replace_schema_metadata(None).cast(
                parquet_schema(table.schema, units, descriptions, meta)), tmp)
        else:
            write_astropy(astropy_table(df, units, descriptions), tmp, kind, meta)
    if kind == "csv" and not plain:
        write_sidecar(path, units, descriptions, meta)


def _columns_doc(names, units: dict, descriptions: dict, meta: dict | None) -> dict:
    """``{"columns": {name: {"unit", "description"}}, "provenance": meta}``: the CSV sidecar's
    JSON and the Parquet schema's ``galmet`` key."""
    return {"columns": {c: {"unit": units.get(c, ""), "description": descriptions.get(c, "")} for c in names},
            "provenance": meta}


def write_sidecar(path, units: dict, descriptions: dict, meta: dict | None) -> None:
    """The JSON beside a CSV table (:func:`sidecar_path`)."""
    io.write_json(_columns_doc(descriptions or units, units, descriptions, meta), sidecar_path(path))


def parquet_schema(schema, units: dict, descriptions: dict, meta: dict | None):
    """``schema`` with each field's ``unit`` and ``description`` and the JSON of the columns and
    ``meta`` under the schema's key ``galmet``."""
    doc = _columns_doc([f.name for f in schema], units, descriptions, meta)
    fields = [f.with_metadata(doc["columns"][f.name]) for f in schema]
    import pyarrow as pa

    return pa.schema(fields, metadata={"galmet": json.dumps(doc)})


def astropy_table(df: pd.DataFrame, units: dict, descriptions: dict):
    """An astropy Table of ``df``'s columns (int64 and bool kept), with units and descriptions."""
    import astropy.units as u
    from astropy.table import Table

    t = Table()
    for c in df.columns:
        values = df[c].to_numpy()
        if values.dtype == object:
            values = values.astype(str)
        t[c] = values
        if units.get(c):
            t[c].unit = u.Unit(units[c])
        if descriptions.get(c):
            t[c].description = descriptions[c]
    return t


def write_astropy(t, path, kind: str, meta: dict | None) -> None:
    """Write an astropy Table as FITS, ECSV or VOTable with the provenance ``meta``."""
    import warnings

    from astropy.io import fits
    from astropy.units import UnitsWarning
    from astropy.utils.exceptions import AstropyUserWarning

    if kind == "ecsv":
        t.meta.update(meta or {})
        _write_ecsv(t, path)
    elif kind == "fits":
        with warnings.catch_warnings():  # dex is not a FITS unit: written as the string, said in the docstring
            warnings.simplefilter("ignore", UnitsWarning)
            warnings.simplefilter("ignore", AstropyUserWarning)  # "could not be saved": TUNITn is set below
            hdu = fits.table_to_hdu(t)
        for i, c in enumerate(t.colnames, 1):
            if t[c].unit is not None:
                hdu.header[f"TUNIT{i}"] = t[c].unit.to_string()
            if t[c].description:
                hdu.header.insert(f"TFORM{i}", (f"TCOMM{i}", t[c].description), after=True)
        flat = _flat(meta)
        for key, (word, comment) in FITS_KEYWORDS.items():
            if flat.get(key) is not None:
                value = _fits_value(key, flat[key])
                fits_in = len(f"{word:8}= '{value}' / {comment}") <= 80  # else the value alone (CONTINUE when long)
                hdu.header[word] = (value, comment) if fits_in else value
        hdu.header["EXTNAME"] = "PREDICTIONS"
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)
    else:
        _write_votable(t, path, meta)


#: rows formatted at a time by :func:`_write_ecsv` (astropy's ECSV writer holds ~1.2 kB a row: 20 MB a slice)
ECSV_SLICE = 16384


def _write_ecsv(t, path) -> None:
    """astropy's ECSV, ``ECSV_SLICE`` rows at a time: the header with the first slice, then the
    data lines of each further slice (the same writer, so the same formatting)."""
    import io as textio

    with open(path, "w", newline="") as out:
        for s in range(0, max(len(t), 1), ECSV_SLICE):
            buf = textio.StringIO()
            t[s:s + ECSV_SLICE].write(buf, format="ascii.ecsv")
            text = buf.getvalue()
            if s:  # drop the header: its comment lines and the line of column names
                lines = text.splitlines(keepends=True)
                start = next(i for i, line in enumerate(lines) if not line.startswith("#")) + 1
                text = "".join(lines[start:])
            out.write(text)


def _write_votable(t, path, meta: dict | None) -> None:
    import warnings

    from astropy.io import votable
    from astropy.io.votable.exceptions import VOWarning
    from astropy.io.votable.tree import Info

    with warnings.catch_warnings():  # W50: dex is not a VOUnit; it is written as astropy's string
        warnings.simplefilter("ignore", VOWarning)
        doc = votable.from_table(t)
        table = doc.get_first_table()
        for key, value in _flat(meta).items():
            if value is not None:
                table.infos.append(Info(name=key, value=json.dumps(value) if not isinstance(value, str) else value))
        doc.to_xml(str(path), tabledata_format="binary2")


def table_target(path) -> str | None:
    """The ``target`` of a prediction table's provenance (:func:`provenance`: the CSV sidecar, the
    Parquet schema's ``galmet`` key, the FITS ``TARGET`` keyword, ECSV meta, VOTable INFO), or None."""
    kind = read_format(path)
    try:
        if kind == "csv":
            side = sidecar_path(path)
            doc = io.read_json(side) if side.exists() else {}
        elif kind == "parquet":
            import pyarrow.parquet as pq

            raw = (pq.read_schema(path).metadata or {}).get(b"galmet")
            doc = json.loads(raw) if raw else {}
        elif kind == "fits":
            from astropy.io import fits

            return fits.getheader(path, 1).get("TARGET") or None
        elif kind == "votable":
            return read_votable_infos(path).get("target") or None
        else:
            return read_astropy(path).meta.get("target") or None
    except (OSError, ValueError):
        return None
    return ((doc or {}).get("provenance") or {}).get("target") or None


def read_votable_infos(path) -> dict:
    """The ``INFO`` elements of a VOTable's first table, ``{name: value}`` (JSON values decoded)."""
    from astropy.io import votable

    out = {}
    for info in votable.parse(str(path)).get_first_table().infos:
        try:
            out[info.name] = json.loads(info.value)
        except ValueError:
            out[info.name] = info.value
    return out


# ----------------------------------------------------------------------------- reading


def read_astropy(path):
    """The astropy Table of a FITS (HDU 1), ECSV or VOTable file."""
    from astropy.table import Table

    kind = read_format(path)
    fmt = {"fits": "fits", "ecsv": "ascii.ecsv", "votable": "votable"}[kind]
    return Table.read(path, format=fmt, **({"hdu": 1} if kind == "fits" else {}))


def to_frame(t, path, id_columns=("objID", "specObjID")) -> pd.DataFrame:
    """A DataFrame of an astropy Table's 1-d columns: strings decoded, ids exact int64 (a float
    or masked id column: :class:`IdError` naming ``path`` and the column)."""
    cols = {}
    for c in t.colnames:
        col = t[c]
        if len(col.shape) > 1:
            continue
        if c in id_columns:
            mask = np.ma.getmaskarray(col)
            if mask.any():
                i = int(mask.nonzero()[0][0])
                raise IdError(f"{path}: row {i + 1} of column {c!r} is empty ({int(mask.sum())} such rows); "
                                 "every row needs its 64-bit integer id")
            cols[c] = parse_ids(np.asarray(col), column=c, source=path).to_numpy()
            continue
        mask = np.ma.getmaskarray(col)
        if mask.any() and col.dtype.kind in "iu":  # nullable integers: missing stays missing
            cols[c] = pd.array(np.asarray(col.data), dtype="Int64")
            cols[c][mask] = pd.NA
            continue
        values = np.asarray(np.ma.filled(col, np.nan) if mask.any() and col.dtype.kind == "f" else col)
        if values.dtype.byteorder not in ("=", "|"):  # FITS is big-endian; pandas needs native order
            values = values.astype(values.dtype.newbyteorder("="))
        if values.dtype.kind == "S":
            values = np.char.decode(values, "utf-8")
        if values.dtype.kind == "U":
            values = np.char.strip(values).astype(object)
        cols[c] = values
    return pd.DataFrame(cols)


def parse_ids(values, column: str = "objID", source: str | os.PathLike = "table") -> pd.Series:
    """Parse SDSS ids to int64 exactly, refusing anything that went through a float.

    Accepts integer dtypes and strings of digits. A float column, or a string such as
    ``1.2376e+18`` or ``1237648702973411443.0``, is refused with the offending row named:
    a 19-digit id does not survive a float64 (53-bit mantissa).
    """
    s = pd.Series(values)
    if pd.api.types.is_integer_dtype(s.dtype):
        return s.astype("int64")
    if pd.api.types.is_float_dtype(s.dtype):
        raise IdError(
            f"{source}: column {column!r} was stored as floating point, so its 64-bit ids are "
            "rounded; re-export it as integers (in pandas read it with dtype={'objID': str})"
        )
    text = s.astype("string").str.strip()
    bad = ~text.fillna("").str.fullmatch(r"-?\d{1,19}")
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise IdError(
            f"{source}: row {i + 1} of column {column!r} is {text.iloc[i]!r}, not an integer id; "
            f"{int(bad.sum())} such rows. SDSS ids are 64-bit integers: export them as integers, "
            "not floats or scientific notation"
        )
    return text.astype("int64").rename(column)


def read_table(path, id_columns=("objID", "specObjID"), text_columns=()) -> pd.DataFrame:
    """Any table (:data:`FORMATS`, :data:`READ_SUFFIXES`) as a DataFrame, ids exact: the
    ``id_columns`` it has are parsed with :func:`parse_ids` (a CSV's read as text, never through
    a float); ``text_columns`` of a CSV are read as text too (left unparsed: a caller's own ids)."""
    kind = read_format(path)
    if kind == "parquet":
        df = pd.read_parquet(path)
    elif kind == "csv":
        header = pd.read_csv(path, nrows=0).columns
        df = pd.read_csv(path, dtype={c: "string" for c in (*id_columns, *text_columns) if c in header})
    else:
        return to_frame(read_astropy(path), path, id_columns)
    for c in id_columns:
        if c in df.columns:
            df[c] = parse_ids(df[c], column=c, source=path)
    return df


def table_columns(path) -> list[str]:
    """Column names of a table of any :data:`FORMATS` (CSV/Parquet: without reading rows)."""
    kind = read_format(path)
    if kind == "parquet":
        import pyarrow.parquet as pq

        return list(pq.ParquetFile(path).schema_arrow.names)
    if kind == "csv":
        return list(pd.read_csv(path, nrows=0).columns)
    return list(read_astropy(path).colnames)


def iter_table_chunks(path, columns: list[str], chunk_size: int):
    """``columns`` of a table in chunks of ``chunk_size`` rows, ``objID`` exact int64
    (:func:`parse_ids`): CSV and Parquet streamed (memory flat in the table's length),
    FITS/ECSV/VOTable read whole first (their memory is the table's). Other columns as in the
    file (CSV: ``path`` as text, the others as pandas reads them)."""
    kind = read_format(path)
    if kind == "parquet":
        import pyarrow.parquet as pq

        frames = (b.to_pandas() for b in pq.ParquetFile(path).iter_batches(batch_size=chunk_size, columns=columns))
    elif kind == "csv":
        text = {c: "string" for c in columns if c in ("objID", "specObjID", "path")}
        frames = pd.read_csv(path, usecols=columns, dtype=text, chunksize=chunk_size, keep_default_na=False)
    else:
        t = read_astropy(path)
        missing = [c for c in columns if c not in t.colnames]
        if missing:
            raise ValueError(f"{path}: no column {', '.join(missing)} (columns: {', '.join(t.colnames)})")
        whole = to_frame(t[columns], path)
        frames = (whole.iloc[s:s + int(chunk_size)].reset_index(drop=True)
                  for s in range(0, len(whole), int(chunk_size)))
    for df in frames:
        if "objID" in df:
            df["objID"] = parse_ids(df["objID"], column="objID", source=path).to_numpy()
        yield df


__all__ = ["FORMATS", "READ_SUFFIXES", "FITS_KEYWORDS", "TableFormatError", "IdError", "table_format", "read_format",
           "format_list", "parse_ids",
           "sidecar_path", "column_info", "file_sha256", "model_name", "provenance", "write_table",
           "write_sidecar", "parquet_schema", "astropy_table", "write_astropy", "read_votable_infos",
           "read_astropy", "to_frame", "read_table", "table_target", "table_columns", "iter_table_chunks"]
