"""The galaxy catalog: read it from a table, the MPA-JHU DR7 FITS files or SkyServer SQL, clean
it with the paper's cuts, and shard it.

Whatever the source, the cleaning (:func:`clean_catalog`) runs here, locally, so a wrong
server answer cannot slip through. Each row dropped is attributed to the first reason that
applies, in this order, and counted in the cleaning report
``{"rows_in", "rows_out", "dropped": {reason: count}, "skipped_cuts": {cut: why}, "conflicts":
[{"objID", "values": {column: [value per row]}}]}``:

1. ``bad_objID``: objID missing or not positive (SDSS -1 ids).
2. duplicated objIDs: ``duplicate_objID`` counts the later copies of a row repeated whole (the
   first copy is kept); ``conflicting_objID`` the rows of an objID whose rows disagree in any
   column (e.g. oh_p50 9.111 and 8.500, two spectra of one galaxy): all of them are dropped, as
   which one is right cannot be told here, with a warning that names the ids and the differing
   values, and the report lists them under ``conflicts`` (a SkyServer query can avoid them with
   ``sciencePrimary = 1``; a table of your own, by keeping the row you trust).
3. ``unreliable``: ``reliable == 0`` (galSpecInfo's flag for untrusted values), when present.
4. ``bad_<column>``: a missing value in a column that a check needs: NaN, +-inf, SDSS's
   -9999 (any value <= -999); for magnitudes also 0 and >= 99 (Galaxy Zoo's holes). Each
   configured target column (``targets``; ``oh_p50`` for a catalog cleaned on its own) is checked
   so, and its values outside the target's valid range (``galmet.targets``: 6..10.5 dex for
   ``oh_p50``, not a measurement of 12+log(O/H)) are ``bad_<column>`` too. A configured target
   whose column the catalog lacks is an error that names it, never a silent drop.
5. the paper's cuts (``cuts: paper``): ``mag_range`` (10 < u,g,r,i,z < 25),
   ``u_minus_r`` (0 < u - r < 6), ``zErr_range`` (0 < zErr < 0.01), ``z_min`` (z > 0.02),
   ``petroMag_r_max`` (petroMag_r < 18);
6. ``not_star_forming``: ``bptclass != 1`` when ``star_forming_only``.

A cut whose columns the table lacks is skipped and listed in ``skipped_cuts`` with the
reason, never a crash (the bundled demo catalog has only objID and oh_p50). Sentinels in
columns no check needs become NaN. Ids are int64 end to end (never through a float); a column
of ids that went through a float and came back as integers (most ending in 000) is refused.
"""

from __future__ import annotations

import io
import logging
import os
import random
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import requests

from galmet.cutouts.base import USER_AGENT, parse_retry_after
from galmet.io import read_json, write_json
from galmet.tables import IdError, TableFormatError, parse_ids, read_format, read_table, table_columns, write_table
from galmet.targets import METALLICITY, TARGETS

log = logging.getLogger("galmet.catalog")

BANDS = "ugriz"
ID_COLUMNS = ("objID", "specObjID")
_BASE_COLUMNS = (
    ["objID", "specObjID", "ra", "dec", "z", "zErr"]
    + [f"modelMag_{b}" for b in BANDS]
    + [f"modelMagErr_{b}" for b in BANDS]
    + ["petroMag_r", "petroR50_r", "petroR90_r", "oh_p16", "oh_p50", "oh_p84"]
)


def keep_columns() -> list[str]:
    """The columns of the clean catalog, in order: ids, position, photometry, the metallicity's
    percentiles, every registered target's column (galmet.targets.TARGETS), bptclass."""
    return _BASE_COLUMNS + [c for c in TARGETS if c not in _BASE_COLUMNS] + ["bptclass"]


KEEP_COLUMNS = keep_columns()
# Other names the same quantities go by (matched case-insensitively); catalog.columns adds more.
ALIASES = {
    "bestobjid": "objID", "specobjid": "specObjID", "redshift": "z", "z_err": "zErr",
    "zerr": "zErr", "reliable": "reliable", "plate": "plate", "mjd": "mjd", "fiberid": "fiberID",
    **{f"mag_{b}": f"modelMag_{b}" for b in BANDS},
    **{f"modelmag_{b}": f"modelMag_{b}" for b in BANDS},
    **{f"modelmagerr_{b}": f"modelMagErr_{b}" for b in BANDS},
    **{c.lower(): c for c in KEEP_COLUMNS},
}
MAG_COLUMNS = [f"modelMag_{b}" for b in BANDS] + ["petroMag_r"]
SF_BPTCLASS = (1,)  # MPA-JHU BPT class 1: star-forming


class CatalogError(ValueError):
    """The catalog cannot be read or lacks what is needed; the message names file and fix."""


# --- ids ----------------------------------------------------------------------------------------

def check_id_damage(ids: pd.Series, column: str = "objID", source: str = "table") -> None:
    """Refuse ids that went through a float and back: most of them end in 000.

    A real 19-digit SDSS id ends in 000 once in a thousand; a float64 keeps ~16 significant
    digits, so exported-as-float ids come back rounded (Galaxy Zoo's ``id`` column: every
    value ends in 000, half of them collide).
    """
    s = pd.Series(ids).dropna().astype("int64")
    s = s[s > 0]
    n = len(s)
    if n < 3:
        return
    k = int((s % 1000 == 0).sum())
    if k >= 3 and k / n >= 0.5:
        example = int(s[s % 1000 == 0].iloc[0])
        dup = int(s.duplicated().sum())
        raise IdError(
            f"{source}: column {column!r} looks float-damaged: {k} of {n} ids end in 000 "
            f"(e.g. {example}) and {dup} are duplicates; 64-bit SDSS ids lose their last digits "
            "in a float64. Re-export the ids as integers (or strings) from the original "
            "database, or match the rows by ra/dec to recover them"
        )


def _ids_from_column(values: pd.Series, column: str, source: str) -> tuple[pd.Series, pd.Series]:
    """(int64 ids with 0 for missing, mask of missing) for an id column of any dtype."""
    s = pd.Series(values).reset_index(drop=True)
    if s.dtype == object and len(s) and isinstance(s.dropna().iloc[0] if s.notna().any() else "", bytes):
        s = s.map(lambda v: v.decode() if isinstance(v, bytes) else v)
    if pd.api.types.is_float_dtype(s.dtype):
        parse_ids(s, column=column, source=source)  # raises with the fix
    if pd.api.types.is_integer_dtype(s.dtype) and not isinstance(s.dtype, pd.api.types.CategoricalDtype):
        missing = s.isna().to_numpy()
        out = s.fillna(0).astype("int64")
    else:
        text = s.astype("string").str.strip()
        missing = (text.isna() | (text == "")).to_numpy()
        out = pd.Series(np.zeros(len(s), "int64"))
        if (~missing).any():
            out[~missing] = parse_ids(text[~missing], column=column, source=source).to_numpy()
    return out.astype("int64"), pd.Series(missing)


# --- reading ------------------------------------------------------------------------------------

def _canonical_names(columns, overrides: dict | None) -> dict:
    """Map a table's column names to ours: explicit overrides, then aliases (case-insensitive)."""
    overrides = dict(overrides or {})
    mapping, taken = {}, set()
    aliases = {**ALIASES, **{c.lower(): c for c in keep_columns()}}
    for c in columns:
        target = overrides.get(c) or aliases.get(str(c).lower())
        if target and target not in taken:
            mapping[c] = target
            taken.add(target)
    return mapping


def read_any_table(path: str | os.PathLike, columns: dict | None = None) -> pd.DataFrame:
    """Read a CSV / FITS / Parquet table, rename its columns to ours and parse the ids exactly.

    Rows with an empty objID keep objID 0 (dropped later as ``bad_objID``).
    """
    path = Path(path)
    if not path.exists():
        raise CatalogError(f"catalog table {path} does not exist; check catalog.path")
    try:
        read_format(path)
    except TableFormatError:
        raise CatalogError(f"{path}: unknown table format; use .csv, .parquet, .fits, .ecsv or .vot (catalog.path)") \
            from None
    try:  # the format is galmet.tables'; the ids are parsed below (a missing one kept as 0)
        mapping = _canonical_names(table_columns(path), columns) if read_format(path) == "csv" else {}
        df = read_table(path, id_columns=(), text_columns=[src for src, dst in mapping.items() if dst in ID_COLUMNS])
    except (OSError, ValueError) as exc:
        if isinstance(exc, CatalogError | IdError):
            raise
        raise CatalogError(f"cannot read catalog table {path}: {exc}") from None
    mapping = _canonical_names(df.columns, columns)
    df = df[list(mapping)].rename(columns=mapping).reset_index(drop=True)
    if "objID" not in df:
        raise CatalogError(
            f"{path}: no objID column (has {', '.join(map(str, mapping)) or 'nothing we know'}); "
            "name it objID or map it with catalog.columns: {your_name: objID}"
        )
    for c in ID_COLUMNS:
        if c in df:
            ids, missing = _ids_from_column(df[c], c, str(path))
            check_id_damage(ids[~missing.to_numpy()], c, str(path))
            df[c] = ids.to_numpy()
            if c == "specObjID":
                df.loc[missing.to_numpy(), c] = -1
    return df


MPAJHU_COLUMNS = {
    "gal_info": {"PLATEID": "plate", "MJD": "mjd", "FIBERID": "fiberID", "RA": "ra",
                 "DEC": "dec", "Z": "z", "Z_ERR": "zErr", "RELIABLE": "reliable",
                 "BPTCLASS": "bptclass"},
    "fiboh": {"P16": "oh_p16", "MEDIAN": "oh_p50", "P84": "oh_p84", "BPTCLASS": "bptclass"},
    "totlgm": {"MEDIAN": "lgm_tot_p50"},
    "totsfr": {"MEDIAN": "sfr_tot_p50", "BPTCLASS": "bptclass"},
}
JOIN_KEYS = ("plate", "mjd", "fiberID")


def read_mpajhu(files: dict) -> tuple[pd.DataFrame, int]:
    """Join the MPA-JHU DR7 FITS files row by row (they share one row order) and match them to
    a photometry table on plate/mjd/fiberID. Returns the table and the number of MPA-JHU rows
    without photometry (dropped, reason ``no_photometry``)."""
    need = ["gal_info", "fiboh", "photometry"]
    absent = [k for k in need if not files.get(k)]
    if absent:
        raise CatalogError(
            "catalog.source mpajhu-fits needs catalog.mpajhu." + ", catalog.mpajhu.".join(absent)
            + " (gal_info_dr7_v5_2.fit, gal_fiboh_dr7_v5_2.fits and a photometry table with "
            "objID, plate, mjd, fiberID and the magnitudes)"
        )
    parts, length = [], None
    for key, cols in MPAJHU_COLUMNS.items():
        if not files.get(key):
            continue
        path = Path(files[key])
        if not path.exists():
            raise CatalogError(f"catalog.mpajhu.{key}: {path} does not exist")
        raw = read_table(path, id_columns=())
        upper = {c.upper(): c for c in raw.columns}
        sub = pd.DataFrame({dst: raw[upper[src]].to_numpy() for src, dst in cols.items()
                            if src in upper})
        if length is not None and len(sub) != length:
            raise CatalogError(
                f"catalog.mpajhu.{key}: {path} has {len(sub)} rows but gal_info has {length}; "
                "the MPA-JHU files are joined row by row and must come from the same release")
        length = len(sub)
        parts.append(sub.drop(columns=[c for c in sub if any(c in p for p in parts)]))
    mpa = pd.concat(parts, axis=1)
    phot = read_any_table(files["photometry"], None)
    keys = [k for k in JOIN_KEYS if k in mpa]
    missing_keys = [k for k in keys if k not in phot]
    if missing_keys or len(keys) < 3:
        raise CatalogError(
            f"catalog.mpajhu.photometry {files['photometry']}: needs columns plate, mjd, fiberID "
            f"to match the MPA-JHU rows (missing: {', '.join(missing_keys) or 'in gal_info'})")
    for k in keys:
        mpa[k] = pd.to_numeric(mpa[k]).astype("int64")
        phot[k] = pd.to_numeric(phot[k]).astype("int64")
    phot = phot.drop_duplicates(list(keys))
    overlap = [c for c in phot.columns if c in mpa.columns and c not in keys]
    # photometric positions (the cutout centres) win; the spectroscopic values stay.
    prefer_phot = {"ra", "dec"}
    mpa = mpa.drop(columns=[c for c in overlap if c in prefer_phot])
    phot = phot.drop(columns=[c for c in overlap if c not in prefer_phot])
    merged = mpa.merge(phot, on=list(keys), how="left", indicator=True)
    unmatched = int((merged["_merge"] == "left_only").sum())
    merged = merged[merged["_merge"] == "both"].drop(columns=["_merge", *keys])
    merged["objID"] = merged["objID"].astype("int64")
    return merged.reset_index(drop=True), unmatched


# --- SkyServer SQL ------------------------------------------------------------------------------

def paper_sql(top: int, after_objid: int, cuts: str = "paper") -> str:
    """The selection as one page of SkyServer SQL (keyset paging on objID)."""
    mags = ", ".join(f"p.modelMag_{b}" for b in BANDS)
    errs = ", ".join(f"p.modelMagErr_{b}" for b in BANDS)
    where = [f"p.objID > {int(after_objid)}", "e.oh_p50 > -9999"]
    if cuts == "paper":
        where += [f"p.modelMag_{b} > 10 AND p.modelMag_{b} < 25" for b in BANDS]
        where += ["p.modelMag_u - p.modelMag_r > 0", "p.modelMag_u - p.modelMag_r < 6",
                  "s.zErr > 0", "s.zErr < 0.01", "s.z > 0.02", "p.petroMag_r < 18"]
    return (
        f"SELECT TOP {int(top)} p.objID, s.specObjID, p.ra, p.dec, s.z, s.zErr, {mags}, {errs}, "
        "p.petroMag_r, p.petroR50_r, p.petroR90_r, e.oh_p16, e.oh_p50, e.oh_p84, "
        "e.lgm_tot_p50, e.sfr_tot_p50, e.bptclass, i.reliable "
        "FROM SpecObj AS s "
        "JOIN PhotoObj AS p ON s.bestObjID = p.objID "
        "JOIN galSpecInfo AS i ON i.specObjID = s.specObjID "
        "JOIN galSpecExtra AS e ON e.specObjID = s.specObjID "
        f"WHERE {' AND '.join(where)} ORDER BY p.objID"
    )


# --- the SkyServer SQL search: plain HTTP or astroquery.sdss, both retrying transient errors ---

class SkyServerError(RuntimeError):
    """The SQL search failed; the message names the URL, the status and the server's words."""


def sql_url(base_url: str, data_release: int = 14) -> str:
    """SqlSearch endpoint of a SkyServer host (``https://skyserver.sdss.org``)."""
    base = base_url.rstrip("/")
    if base.endswith("/SqlSearch"):
        return base
    return f"{base}/dr{data_release}/SkyServerWS/SearchTools/SqlSearch"


def parse_sql_csv(text: str, source: str = "SkyServer") -> pd.DataFrame:
    """Parse SkyServer's CSV answer (``#Table1`` line, then a header); ids stay exact int64."""
    if "error_message" in text[:2000] or text.lstrip().lower().startswith(("<!doctype", "<html")):
        raise SkyServerError(f"{source} answered with an error: {text[:500]!r}")
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    if not lines or not lines[0].strip():
        return pd.DataFrame()
    body = "\n".join(lines)
    header = pd.read_csv(io.StringIO(body), nrows=0).columns
    ids = {c: "string" for c in header if c.lower() in ("objid", "specobjid", "bestobjid")}
    df = pd.read_csv(io.StringIO(body), dtype=ids)
    for c in ids:
        df[c] = parse_ids(df[c], column=c, source=source)
    return df


def sql_query_http(sql: str, base_url: str, data_release: int = 14, timeout_s: float = 600.0,
                   max_attempts: int = 3, backoff_s: float = 5.0,
                   user_agent: str = USER_AGENT) -> pd.DataFrame:
    """Run one SQL query through SkyServer's SqlSearch with plain HTTP; retries transient errors."""
    url = sql_url(base_url, data_release)
    params = {"cmd": " ".join(sql.split()), "format": "csv", "searchtool": "SQL"}
    last = ""
    for attempt in range(1, max_attempts + 1):
        try:
            r = requests.get(url, params=params, timeout=timeout_s,
                             headers={"User-Agent": user_agent})
        except requests.RequestException as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if r.status_code == 200:
                return parse_sql_csv(r.text, source=url)
            last = f"HTTP {r.status_code}: {r.text[:300]!r}"
            if r.status_code < 500 and r.status_code != 429:
                break
            ra = parse_retry_after(r.headers.get("Retry-After"))
            if ra is not None and attempt < max_attempts:
                time.sleep(min(ra, 300))
                continue
        if attempt < max_attempts:
            time.sleep(random.uniform(0, backoff_s * 2 ** (attempt - 1)))
    raise SkyServerError(f"SQL search at {url} failed after {attempt} attempt(s): {last}")


def sql_query_astroquery(sql: str, base_url: str, data_release: int = 14,
                         timeout_s: float = 600.0) -> pd.DataFrame:
    """Run one SQL query through ``astroquery.sdss`` pointed at ``base_url``."""
    from astroquery.sdss import SDSS, conf

    with conf.set_temp("skyserver_baseurl", base_url.rstrip("/")):
        table = SDSS.query_sql(sql, data_release=data_release, timeout=timeout_s, cache=False)
    if table is None:
        return pd.DataFrame()
    df = table.to_pandas()
    for c in df.columns:
        if c.lower() in ("objid", "specobjid", "bestobjid"):
            df[c] = parse_ids(df[c].astype("int64"), column=c, source=base_url)
    return df


def query_skyserver(cfg: dict, cuts: str = "paper") -> pd.DataFrame:
    """Page through the selection: ``page_size`` rows a query (the service stops at 500,000),
    at least ``min_interval_s`` between queries (it allows ~60 a minute)."""
    page = int(cfg.get("page_size", 100_000))
    if not 1 <= page <= 500_000:
        raise CatalogError(f"catalog.skyserver.page_size {page}: must be 1..500000 (service limit)")
    url = cfg.get("url", "https://skyserver.sdss.org")
    dr = int(cfg.get("data_release", 14))
    timeout = float(cfg.get("timeout_s", 600))
    interval = float(cfg.get("min_interval_s", 1.0))
    max_rows = cfg.get("max_rows")
    client = cfg.get("client", "http")
    pages, after, last_start, n = [], 0, None, 0
    while True:
        if last_start is not None:
            wait = interval - (time.monotonic() - last_start)
            if wait > 0:
                time.sleep(wait)
        last_start = time.monotonic()
        sql = paper_sql(page, after, cuts)
        if client == "astroquery":
            df = sql_query_astroquery(sql, url, dr, timeout)
        else:
            df = sql_query_http(sql, url, dr, timeout,
                                max_attempts=int(cfg.get("max_attempts", 3)))
        if len(df) == 0:
            break
        if "objID" not in df:
            raise CatalogError(f"SkyServer answer from {url} has no objID column: {list(df.columns)}")
        pages.append(df)
        n += len(df)
        last = int(df["objID"].max())
        log.info("SkyServer page %d: %d rows (objID > %d), %d in all", len(pages), len(df), after, n)
        if last <= after:
            raise CatalogError(f"SkyServer paging at {url} did not advance past objID {after}")
        after = last
        if len(df) < page or (max_rows and n >= max_rows):
            break
    out = pd.concat(pages, ignore_index=True) if pages else pd.DataFrame(columns=["objID"])
    if max_rows:
        out = out.iloc[: int(max_rows)]
    return out.reset_index(drop=True)


# --- cleaning -----------------------------------------------------------------------------------

def _bad_values(col: str, values: pd.Series) -> np.ndarray:
    x = pd.to_numeric(values, errors="coerce").to_numpy(float)
    bad = ~np.isfinite(x) | (x <= -999)
    if col in MAG_COLUMNS:
        bad |= (x == 0) | (x >= 99)
    if col in TARGETS:
        bad |= TARGETS[col].out_of_range(x)
    return bad


def _checked_targets(d: pd.DataFrame, targets, skipped: dict) -> list[str]:
    """The target columns whose missing or out-of-range values are dropped (``bad_<column>``);
    a configured target the catalog lacks is a :class:`CatalogError`. ``targets`` None: oh_p50
    if present, else listed in ``skipped``."""
    if targets is None:
        if METALLICITY not in d:
            skipped[f"bad_{METALLICITY}"] = f"no {METALLICITY!r} column: the metallicity label is not checked"
        targets = [METALLICITY] if METALLICITY in d else []
    missing = [t for t in targets if t not in d]
    if missing:
        raise CatalogError(
            f"the catalog has no column {', '.join(map(repr, missing))} for the configured target(s) (config key "
            f"targets); its columns are {list(d.columns)}: add it to the catalog, map its name with catalog.columns: "
            f"{{your_name: {missing[0]}}}, or remove it from targets")
    return list(targets)


def _paper_cuts(df: pd.DataFrame):
    """(name, columns needed, function -> keep mask) of the paper's cuts."""
    def mag(d):
        keep = np.ones(len(d), bool)
        for b in BANDS:
            c = f"modelMag_{b}"
            if c in d:
                keep &= (d[c] > 10) & (d[c] < 25)
        return keep
    present = [f"modelMag_{b}" for b in BANDS if f"modelMag_{b}" in df]
    return [
        ("mag_range", present or ["modelMag_u"], mag),
        ("u_minus_r", ["modelMag_u", "modelMag_r"],
         lambda d: ((d.modelMag_u - d.modelMag_r) > 0) & ((d.modelMag_u - d.modelMag_r) < 6)),
        ("zErr_range", ["zErr"], lambda d: (d.zErr > 0) & (d.zErr < 0.01)),
        ("z_min", ["z"], lambda d: d.z > 0.02),
        ("petroMag_r_max", ["petroMag_r"], lambda d: d.petroMag_r < 18),
    ]


#: conflicting objIDs named in the warning (all of them go to the cleaning report).
CONFLICTS_SHOWN = 5


def duplicate_rows(d: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Rows of repeated objIDs: ``(repeated, conflicting, conflicts)``. ``repeated`` marks the
    later copies of rows repeated whole, ``conflicting`` every row of an objID whose rows differ in
    some column (NaN equals NaN), ``conflicts`` those objIDs with the differing values (one list per
    column, in row order); a warning names them."""
    n = len(d)
    same_id = d["objID"].duplicated(keep=False).to_numpy()
    if not same_id.any():
        return np.zeros(n, bool), np.zeros(n, bool), []
    sub = d[same_id]
    distinct = sub.groupby("objID", sort=True).nunique(dropna=False)
    bad_ids = distinct.index[(distinct > 1).any(axis=1)]
    conflicting = d["objID"].isin(bad_ids).to_numpy()
    repeated = d.duplicated(keep="first").to_numpy() & ~conflicting
    conflicts = []
    for oid in bad_ids:
        rows = sub[sub["objID"] == oid]
        cols = [c for c in distinct.columns if distinct.loc[oid, c] > 1]
        conflicts.append({"objID": int(oid), "values": {c: [_plain(v) for v in rows[c]] for c in cols}})
    if conflicts:
        shown = "; ".join(f"objID {c['objID']}: " + ", ".join(f"{k} {' vs '.join(map(str, v))}"
                                                              for k, v in c["values"].items())
                          for c in conflicts[:CONFLICTS_SHOWN])
        more = f" (and {len(conflicts) - CONFLICTS_SHOWN} more)" if len(conflicts) > CONFLICTS_SHOWN else ""
        log.warning("%d objID(s) appear in rows that disagree: %s%s; all %d of their rows are dropped "
                    "(conflicting_objID; listed under 'conflicts' in the cleaning report): keep one row per "
                    "galaxy in the catalog to use them", len(conflicts), shown, more, int(conflicting.sum()))
    if repeated.any():
        log.info("%d repeated row(s) of the same galaxy dropped (duplicate_objID)", int(repeated.sum()))
    return repeated, conflicting, conflicts


def _plain(value):
    """A table cell as a JSON value (NaN as None)."""
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        value = value.item()
    if value is pd.NA or (isinstance(value, float) and not np.isfinite(value)):
        return None
    return value if isinstance(value, (int, float, bool, str)) or value is None else str(value)


def clean_catalog(df: pd.DataFrame, cuts: str = "paper", star_forming_only: bool = False,
                  extra_dropped: dict | None = None, targets=None) -> tuple[pd.DataFrame, dict]:
    """Apply the checks and cuts of the module docstring; return (clean table, report).

    ``targets``: the configured target columns (config key ``targets``), each checked against its
    registered valid range; None checks oh_p50 where the catalog has it."""
    if cuts not in ("paper", "none"):
        raise CatalogError(f"catalog.cuts {cuts!r}: use 'paper' or 'none'")
    d = df.reset_index(drop=True).copy()
    dropped: dict[str, int] = dict(extra_dropped or {})
    rows_in = len(d) + sum(dropped.values())
    skipped: dict[str, str] = {}

    def drop(reason: str, mask) -> None:
        nonlocal d
        mask = np.asarray(mask, bool)
        dropped[reason] = dropped.get(reason, 0) + int(mask.sum())
        d = d[~mask].reset_index(drop=True)

    if "objID" not in d:
        raise CatalogError("the catalog has no objID column")
    drop("bad_objID", d["objID"].astype("int64").to_numpy() <= 0)
    repeated, conflicting, conflicts = duplicate_rows(d)
    drop("duplicate_objID", repeated)
    drop("conflicting_objID", conflicting[~repeated])
    if "reliable" in d:
        rel = pd.to_numeric(d["reliable"], errors="coerce")
        drop("unreliable", (rel == 0).to_numpy())
    else:
        skipped["unreliable"] = "no 'reliable' column (galSpecInfo.reliable)"
    for t in _checked_targets(d, targets, skipped):
        drop(f"bad_{t}", _bad_values(t, d[t]))

    active = []
    if cuts == "paper":
        for name, cols, fn in _paper_cuts(d):
            absent = [c for c in cols if c not in d]
            if absent:
                skipped[name] = f"column(s) {', '.join(absent)} absent"
            else:
                active.append((name, cols, fn))
        absent_bands = [f"modelMag_{b}" for b in BANDS if f"modelMag_{b}" not in d]
        if absent_bands and "mag_range" not in skipped:
            skipped["mag_range:" + ",".join(absent_bands)] = "absent bands not checked"
        needed = sorted({c for _, cols, _ in active for c in cols},
                        key=lambda c: _BASE_COLUMNS.index(c))
        for c in needed:
            drop(f"bad_{c}", _bad_values(c, d[c]))
        for name, _cols, fn in active:
            drop(name, ~np.asarray(fn(d), bool))
    if star_forming_only:
        if "bptclass" in d:
            bpt = pd.to_numeric(d["bptclass"], errors="coerce")
            drop("not_star_forming", ~bpt.isin(SF_BPTCLASS).to_numpy())
        else:
            skipped["not_star_forming"] = "no 'bptclass' column"
            log.warning("star_forming_only is set but the catalog has no bptclass: not applied")

    # sentinels left in columns no check needed become missing values
    for c in d.columns:
        if c in ID_COLUMNS or c == "bptclass" or not pd.api.types.is_numeric_dtype(d[c]):
            continue
        x = d[c].astype(float)
        d[c] = x.where(np.isfinite(x) & (x > -999))
    keep = [c for c in keep_columns() if c in d]
    d = d[keep].sort_values("objID", kind="stable").reset_index(drop=True)
    for c in ID_COLUMNS:
        if c in d:
            d[c] = d[c].astype("int64")
    if "bptclass" in d:
        d["bptclass"] = pd.to_numeric(d["bptclass"], errors="coerce").fillna(-1).astype("int64")
    report = {"rows_in": int(rows_in), "rows_out": int(len(d)), "dropped": dropped,
              "skipped_cuts": skipped, "conflicts": conflicts}
    assert report["rows_in"] - report["rows_out"] == sum(dropped.values())
    return d, report


def load_catalog(cfg: dict, raw_table: str | os.PathLike | None = None) -> tuple[pd.DataFrame, dict]:
    """Read the configured source (``catalog`` config section) -> (raw table, extra drops)."""
    source = cfg.get("source", "table")
    columns = cfg.get("columns") or {}
    if source == "table" or (source == "skyserver" and raw_table):
        path = raw_table or cfg.get("path")
        if not path:
            raise CatalogError("catalog.path is required when catalog.source is 'table'")
        return read_any_table(path, columns), {}
    if source == "mpajhu-fits":
        df, unmatched = read_mpajhu(cfg.get("mpajhu") or {})
        return df, ({"no_photometry": unmatched} if unmatched else {})
    if source == "skyserver":
        return query_skyserver(cfg.get("skyserver") or {}, cfg.get("cuts", "paper")), {}
    raise CatalogError(f"catalog.source {source!r}: use table, mpajhu-fits or skyserver")


def build_catalog(cfg: dict, clean_out, report_out, raw_table=None, targets=None) -> dict:
    """Workflow step: source -> ``clean.parquet`` + ``cleaning_report.json`` (atomically);
    ``targets``: the configured target columns (:func:`clean_catalog`)."""
    raw, extra = load_catalog(cfg, raw_table)
    clean, report = clean_catalog(raw, cfg.get("cuts", "paper"),
                                  bool(cfg.get("star_forming_only", False)), extra, targets)
    write_table(clean, clean_out)
    write_json(report, report_out)
    log.info("catalog: %d rows in, %d out; dropped %s; skipped %s", report["rows_in"],
             report["rows_out"], report["dropped"], report["skipped_cuts"])
    return report


# --- shards -------------------------------------------------------------------------------------

def shard_of(objids, n_shards: int) -> np.ndarray:
    """Stable shard of each objID: splitmix64(objID) mod n_shards (independent of row order,
    of the other galaxies and of the Python version)."""
    x = np.asarray(objids, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(n_shards)).astype(np.int64)


def _same_table(path: Path, df: pd.DataFrame) -> bool:
    try:
        old = pd.read_parquet(path)
    except Exception:  # noqa: BLE001 - an unreadable old shard is simply rewritten
        return False
    if list(old.columns) != list(df.columns) or [str(t) for t in old.dtypes] != [
        str(t) for t in df.dtypes
    ]:
        return False
    return old.reset_index(drop=True).equals(df.reset_index(drop=True))


def write_shards(clean: str | os.PathLike | pd.DataFrame, shard_dir: str | os.PathLike,
                 n_shards: int, index_out: str | os.PathLike | None = None) -> dict:
    """Split the clean catalog into ``<shard_dir>/<i>.parquet``, i = 0..n_shards-1 (rows sorted
    by objID). A shard file is rewritten only when its content changes, so its mtime tells
    Snakemake whether the shard's downstream jobs must rerun; shard files beyond n_shards are
    removed. Returns (and writes to ``index_out``) ``{"shards": [...], "rows": {...},
    "changed": [...]}``."""
    df = pd.read_parquet(clean) if not isinstance(clean, pd.DataFrame) else clean
    if n_shards < 1:
        raise CatalogError(f"shards must be >= 1, got {n_shards}")
    shard_dir = Path(shard_dir)
    shard_dir.mkdir(parents=True, exist_ok=True)
    which = shard_of(df["objID"].to_numpy(), n_shards)
    ids = [str(i) for i in range(n_shards)]
    changed, rows = [], {}
    for i, sid in enumerate(ids):
        sub = df[which == i].sort_values("objID", kind="stable").reset_index(drop=True)
        rows[sid] = int(len(sub))
        path = shard_dir / f"{sid}.parquet"
        if path.exists() and _same_table(path, sub):
            continue
        write_table(sub, path)
        changed.append(sid)
    for p in shard_dir.glob("*.parquet"):
        if re.fullmatch(r"\d+", p.stem) and p.stem not in ids:
            p.unlink()
    index = {"shards": ids, "rows": rows, "changed": changed}
    if index_out is not None:
        write_json(index, index_out)
    log.info("%d shards; rewritten: %s", n_shards, changed or "none")
    return index


def read_shard_index(path: str | os.PathLike) -> list[str]:
    """Shard ids listed by :func:`write_shards`' index file."""
    return list(read_json(path)["shards"])
