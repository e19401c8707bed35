"""Cutout acquisition: parallel, resumable downloads from any cutout provider (SkyServer
ImgCutout, the Legacy Surveys viewer, ...: :data:`galmet.cutouts.base.PROVIDERS`) into a
persistent cache, or a local directory of ``<objID>.jpg`` (the download loop of the workflow's
cutouts rule and of ``galmet download-cutouts``, :mod:`galmet.cli.download_cutouts`).

Cache layout: one directory per provider, layer and geometry, never shared:
named by the provider (:meth:`galmet.cutouts.base.Provider.cache_name`):
``<cache_root>/<scale>-<W>x<H>/`` for SkyServer (no provider name: existing caches stay valid) and
``<cache_root>/<provider>[-<layer>]-<scale>-<W>x<H>/`` for the others (e.g.
``legacysurvey-ls-dr10-grz-adaptive-128x128``); ``<scale>`` is ``adaptive`` or the fixed
arcsec/px, e.g. ``0.117``. Each holds ``<objID>.jpg`` and ``cutouts.json``, the manifest of what
its images are (:mod:`galmet.cutouts.manifest`): a directory whose manifest says otherwise is refused,
so two kinds of images never mix. A file appears there only after its response was validated
(:func:`galmet.cutouts.base.validate_jpeg`) and is renamed into place atomically, so a run killed
at any moment (``kill -9`` included) leaves no corrupt ``<objID>.jpg``; the next run requests
only the galaxies without one. Temporary files are ``.<objID>.jpg.*.<pid>.part``; those of dead
processes are removed at the start of the next run.

Failures are recorded, never silently dropped: a table ``objID,reason,attempts`` with the
reasons of :mod:`galmet.cutouts.base` (``http_404``, ``http_4xx``, ``http_429``, ``http_5xx``,
``timeout``, ``connection``, ``empty``, ``not_jpeg``, ``truncated``, ``wrong_size``,
``blank``, ``bad_answer``, ``no_coverage``) plus three that make no request (``attempts`` 0):

- ``missing``: source ``local`` and no ``<objID>.jpg`` (or an empty one) in the directory;
- ``bad_position``: ra/dec missing or out of range;
- ``no_scale``: adaptive scale and petroR90_r missing or not positive.

``no_coverage`` (the service has no image there) is remembered in the cache as an empty
``<objID>.no_coverage`` and recorded again, with 0 attempts, without a request.

Scale: fixed (arcsec per pixel) or ``adaptive``, where the field of view is
``2 * petroR90_r / 0.396`` arcsec across (as the images Wu & Boada released), so
``scale = 2 * petroR90_r / 0.396 / width``, whatever the provider.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from galmet.cutouts.base import REMEMBERED, CutoutClient, CutoutError, Provider, get_provider
from galmet.cutouts.manifest import ensure_manifest
from galmet.io import atomic_path
from galmet.tables import read_table, write_table

log = logging.getLogger("galmet.cutouts")

SDSS_PIXEL_ARCSEC = 0.396
FAILURE_COLUMNS = ["objID", "reason", "attempts"]


def scale_label(scale: str | float) -> str:
    """``adaptive`` or the fixed scale written compactly (0.117 -> ``0.117``)."""
    if isinstance(scale, str):
        if scale != "adaptive":
            raise ValueError(f"scale must be 'adaptive' or a number of arcsec per pixel, got {scale!r}")
        return scale
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a positive number of arcsec per pixel, got {scale!r}")
    return f"{float(scale):g}"


def cache_dir(root: str | os.PathLike, scale: str | float, width: int, height: int,
              source: str, layer: str | None = None) -> Path:
    """The cache of one provider (``source``), layer and geometry, named by the provider:
    ``<root>/<scale>-<W>x<H>`` for SkyServer, ``<root>/<provider>[-<layer>]-<scale>-<W>x<H>``
    for the others."""
    label = scale_label(scale)
    return Path(root) / get_provider(source, layer=layer).cache_name(label, width, height)


def config_cache_dir(cfg: dict) -> Path:
    """The cache directory of the ``cutouts`` config section (a download source)."""
    return cache_dir(cfg["cache_dir"], cfg["scale"], cfg["width"], cfg["height"], cfg["source"],
                     cfg["layer"])


def pixel_scales(catalog: pd.DataFrame, scale: str | float, width: int) -> np.ndarray:
    """Arcsec per pixel for every row (NaN where the adaptive scale cannot be computed)."""
    if scale == "adaptive":
        if "petroR90_r" not in catalog:
            raise KeyError(
                "adaptive scale needs a petroR90_r column (arcsec) in the catalog; add it or use "
                "a fixed scale (arcsec per pixel, e.g. 0.117 for 15 arcsec at 128 px)"
            )
        r90 = pd.to_numeric(catalog["petroR90_r"], errors="coerce").to_numpy(float)
        out = 2.0 * r90 / SDSS_PIXEL_ARCSEC / float(width)
        out[~(r90 > 0)] = np.nan
        return out
    scale_label(scale)
    return np.full(len(catalog), float(scale))


def _failures_frame(rows) -> pd.DataFrame:
    df = pd.DataFrame(list(rows), columns=FAILURE_COLUMNS)
    return df.astype({"objID": "int64", "reason": "str", "attempts": "int64"})


def _manifest_frame(rows) -> pd.DataFrame:
    df = pd.DataFrame(list(rows), columns=["objID", "path"])
    return df.astype({"objID": "int64", "path": "str"})


def _check_input_rows(catalog: pd.DataFrame, scales: np.ndarray | None):
    """Split rows into requestable ones and failures that need no request."""
    ra = pd.to_numeric(catalog["ra"], errors="coerce").to_numpy(float)
    dec = pd.to_numeric(catalog["dec"], errors="coerce").to_numpy(float)
    bad_pos = ~(np.isfinite(ra) & np.isfinite(dec) & (ra >= 0) & (ra <= 360)
                & (dec >= -90) & (dec <= 90))
    no_scale = np.zeros(len(catalog), bool) if scales is None else ~np.isfinite(scales)
    no_scale &= ~bad_pos
    return ra, dec, bad_pos, no_scale


def clean_stale_temps(directory: str | os.PathLike, stale_after_s: float = 60.0) -> int:
    """Remove temporary files left by killed downloads (dead writer and older than the limit)."""
    n = 0
    now = time.time()
    for tmp in Path(directory).glob(".*.part"):
        try:
            pid = int(tmp.name.rsplit(".", 2)[-2])
        except (ValueError, IndexError):
            pid = -1
        try:
            age = now - tmp.stat().st_mtime
        except FileNotFoundError:
            continue
        alive = False
        if pid > 0:
            try:
                os.kill(pid, 0)
                alive = True
            except ProcessLookupError:
                alive = False
            except PermissionError:
                alive = True
        if (not alive and age > stale_after_s) or age > 3600:
            tmp.unlink(missing_ok=True)
            n += 1
    return n


@dataclass
class DownloadResult:
    """Good cutouts (objID, path), failures (objID, reason, attempts) and request counts."""

    manifest: pd.DataFrame
    failures: pd.DataFrame
    cached: int = 0
    fetched: int = 0
    requests_sent: int = 0
    answers: int = 0
    reasons: dict = field(default_factory=dict)


def _plan(cat: pd.DataFrame, out: Path, scale, width: int):
    """Per row: ``(ra, dec, scales, ids, good, failures, todo)``: what is cached, what fails
    without a request, and the row indices to request."""
    scales = pixel_scales(cat, scale, width)
    ra, dec, bad_pos, no_scale = _check_input_rows(cat, scales if scale == "adaptive" else None)
    ids = cat["objID"].to_numpy("int64")
    good: dict[int, str] = {}
    failures: list[tuple[int, str, int]] = []
    todo: list[int] = []
    for i, oid in enumerate(ids):
        path = out / f"{oid}.jpg"
        if bad_pos[i]:
            failures.append((int(oid), "bad_position", 0))
        elif no_scale[i]:
            failures.append((int(oid), "no_scale", 0))
        elif path.is_file() and path.stat().st_size > 0:
            good[int(oid)] = str(path)
        elif known := next((r for r in REMEMBERED if (out / f"{oid}.{r}").exists()), None):
            failures.append((int(oid), known, 0))
        else:
            todo.append(i)
    return ra, dec, scales, ids, good, failures, todo


def download_cutouts(
    catalog: pd.DataFrame,
    out_dir: str | os.PathLike,
    client: CutoutClient,
    width: int = 128,
    height: int = 128,
    scale: str | float = "adaptive",
    concurrency: int | None = None,
    progress: bool = True,
) -> DownloadResult:
    """Make sure ``out_dir/<objID>.jpg`` exists for every catalog row that the service can give.

    Galaxies whose file is already there are not requested. The rest are fetched by
    ``concurrency`` threads (default: the provider's) through ``client`` (which retries and
    validates); each good JPEG is written atomically. ``out_dir/cutouts.json`` says what the
    images are; a directory that holds another kind is refused (:class:`CutoutDirMismatch`).
    Returns the manifest of every good cutout of the catalog (cached or new) and the failures
    of this run.
    """
    provider: Provider = client.provider
    provider.check_size(width, height)
    concurrency = provider.default_concurrency if concurrency is None else int(concurrency)
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ensure_manifest(out, provider.info(scale, width, height))
    clean_stale_temps(out)
    cat = catalog.drop_duplicates("objID").reset_index(drop=True)
    ra, dec, scales, ids, good, failures, todo = _plan(cat, out, scale, width)
    cached = len(good)
    sent0, answers0 = client.requests_sent, client.answers
    suffix = f".{os.getpid()}.part"

    def fetch(i: int):
        oid = int(ids[i])
        res = client.get_jpeg(ra[i], dec[i], scales[i], width, height)
        path = out / f"{oid}.jpg"
        with atomic_path(path, suffix=suffix) as tmp:
            tmp.write_bytes(res.content)
        return oid, str(path)

    if todo:
        log.info("%d cutouts cached in %s, %d to download from %s with %d connections",
                 cached, out, len(todo), provider.name, concurrency)
    bar = tqdm(total=len(todo), desc="cutouts", unit="img", disable=not progress or not todo,
               mininterval=1.0, file=sys.stderr)
    window = max(4 * concurrency, 16)
    with cf.ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="cutout") as pool:
        pending: dict[cf.Future, int] = {}
        it = iter(todo)
        exhausted = False
        while pending or not exhausted:
            while not exhausted and len(pending) < window:
                try:
                    i = next(it)
                except StopIteration:
                    exhausted = True
                    break
                pending[pool.submit(fetch, i)] = i
            if not pending:
                break
            done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                i = pending.pop(fut)
                try:
                    oid, path = fut.result()
                    good[oid] = path
                except CutoutError as exc:
                    failures.append((int(ids[i]), exc.reason, exc.attempts))
                    if exc.reason in REMEMBERED:
                        (out / f"{ids[i]}.{exc.reason}").touch()
                    log.debug("objID %d: %s after %d attempt(s)", ids[i], exc, exc.attempts)
                bar.update(1)
    bar.close()

    manifest = _manifest_frame((oid, good[oid]) for oid in ids.tolist() if oid in good)
    fails = _failures_frame(sorted(failures))
    reasons = dict(Counter(fails["reason"]))
    result = DownloadResult(manifest, fails, cached=cached, fetched=len(good) - cached,
                            requests_sent=client.requests_sent - sent0,
                            answers=client.answers - answers0, reasons=reasons)
    log.info("cutouts: %d good (%d cached, %d downloaded), %d failed %s; %d requests sent",
             len(manifest), cached, result.fetched, len(fails), reasons or "", result.requests_sent)
    return result


def collect_local(catalog: pd.DataFrame, local_dir: str | os.PathLike) -> DownloadResult:
    """Source ``local``: ``<local_dir>/<objID>.jpg`` for each row; absent or empty files are
    failures with reason ``missing`` (the images stage checks that the rest decode)."""
    d = Path(local_dir)
    if not d.is_dir():
        raise FileNotFoundError(
            f"cutouts.local_dir {d} is not a directory; set it to the folder of <objID>.jpg files"
        )
    present = {p.name: p for p in d.iterdir() if p.suffix == ".jpg"}
    good, failures = [], []
    for oid in catalog["objID"].drop_duplicates().to_numpy("int64").tolist():
        p = present.get(f"{oid}.jpg")
        if p is not None and p.stat().st_size > 0:
            good.append((oid, str(p)))
        else:
            failures.append((oid, "missing", 0))
    fails = _failures_frame(failures)
    reasons = dict(Counter(fails["reason"]))
    if failures:
        log.warning("%d of %d galaxies have no image in %s (listed as 'missing')",
                    len(failures), len(good) + len(failures), d)
    return DownloadResult(_manifest_frame(good), fails, cached=len(good), reasons=reasons)


def client_from_config(cfg: dict) -> CutoutClient:
    """A CutoutClient of the provider of the ``cutouts`` config section (``source``, ``layer``,
    ``base_url``; null network settings take the provider's defaults)."""
    provider = get_provider(cfg["source"], layer=cfg["layer"], base_url=cfg["base_url"])
    rate = cfg["max_requests_per_second"]
    return CutoutClient(
        provider,
        timeout_s=cfg["timeout_s"],
        max_attempts=cfg["max_attempts"],
        backoff_s=cfg["backoff_s"],
        backoff_max_s=cfg["backoff_max_s"],
        max_requests_per_second="default" if rate is None else (rate or None),
        pool_size=max(int(cfg["concurrency"] or provider.default_concurrency), 1),
    )


class NoCutoutsError(RuntimeError):
    """A shard of the catalog has no usable cutout; the message says why and what to change."""


def why_no_cutouts(result: DownloadResult, cfg: dict) -> str:
    """Why a download gave no cutout, from its failure reasons, and what to change."""
    reasons = result.reasons
    counts = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
    source = cfg["source"]
    only = set(reasons)
    if result.requests_sent and not result.answers:
        return (f"no request reached the {source} service ({counts}): it is unreachable from here (offline, "
                "a firewall, or a wrong cutouts.base_url); rerun when it can be reached (cutouts already "
                "downloaded are kept), or use cutouts.source: local with a folder of <objID>.jpg")
    if only == {"no_coverage"}:
        return (f"the {source} service has no image at any of their positions ({counts}): the galaxies lie "
                "outside its footprint; choose another cutouts.source or cutouts.layer")
    if only == {"missing"}:
        return (f"no <objID>.jpg of theirs in cutouts.local_dir {cfg['local_dir']} ({counts}): check "
                "the folder and that the files are named by objID")
    if only <= {"bad_position", "no_scale"}:
        return (f"their positions or sizes cannot be requested ({counts}): bad_position is ra/dec missing or "
                "out of range, no_scale a petroR90_r missing for cutouts.scale: adaptive (use a fixed scale)")
    return f"every request failed ({counts}); the reasons are described in galmet.cutouts.base"


def cutouts_for_shard(shard: str | os.PathLike, manifest_out: str | os.PathLike,
                      failures_out: str | os.PathLike, cfg: dict,
                      progress: bool = False) -> DownloadResult:
    """Workflow step: a catalog shard -> manifest (objID, path) + failures CSV, written atomically.
    A shard with galaxies but no usable cutout raises :class:`NoCutoutsError`, saying why
    (:func:`why_no_cutouts`: the service unreachable, no coverage, no files, ...).

    ``cfg`` is the validated ``cutouts`` config section (source, layer, local_dir, cache_dir,
    scale, width, height, base_url, concurrency, timeouts...; :func:`galmet.config.load_config`
    fills its defaults, which live in the schema only). Downloads go to
    :func:`config_cache_dir`, which gets its ``cutouts.json``.
    """
    catalog = read_table(shard)
    source = cfg["source"]
    if source == "local":
        result = collect_local(catalog, cfg["local_dir"])
    else:
        missing = [c for c in ("objID", "ra", "dec") if c not in catalog]
        if cfg["scale"] == "adaptive" and "petroR90_r" not in catalog:
            missing.append("petroR90_r")
        if missing:
            raise KeyError(
                f"{shard}: the catalog lacks column(s) {', '.join(missing)} needed to request "
                f"{source} cutouts; use a catalog source that provides them, a fixed "
                "cutouts.scale (for petroR90_r), or cutouts.source: local"
            )
        result = download_cutouts(
            catalog, config_cache_dir(cfg), client_from_config(cfg),
            width=cfg["width"], height=cfg["height"], scale=cfg["scale"],
            concurrency=cfg["concurrency"],
            progress=progress,
        )
    if len(catalog) and not len(result.manifest):
        raise NoCutoutsError(f"{shard}: none of its {len(catalog)} galaxies has a usable cutout: "
                             + why_no_cutouts(result, cfg))
    if len(result.failures):
        log.warning("%s: %d of %d galaxies excluded (no good cutout): %s; see %s", shard,
                    len(result.failures), len(catalog), result.reasons, failures_out)
        if result.requests_sent and not result.answers:
            log.warning("%s: no request reached the cutout service: %s", shard, why_no_cutouts(result, cfg))
    write_table(result.manifest, manifest_out)
    write_table(result.failures, failures_out)
    return result
