"""The SDSS SkyServer: the ImgCutout provider (:class:`SkyServer`) and the SQL search.

ImgCutout: ``GET <base_url>/ImgCutout/getjpeg?ra=&dec=&scale=&width=&height=`` returns the
'irg' colour composite (i, r, g as R, G, B) at ``scale`` arcsec per pixel, 64 to 2048 px a
side. Its requests, retries, validation and failure reasons are those of every provider
(:mod:`galmet.provider`); a uniform image (``blank``) stays a transient failure here, retried
as before. Its cache keeps the layout it had before there were several providers,
``<cache_root>/<scale>-<W>x<H>/``.

SQL search: plain HTTP (:func:`sql_query_http`) or ``astroquery.sdss``
(:func:`sql_query_astroquery`), both retrying transient errors.
"""

from __future__ import annotations

import io
import logging
import random
import re
import time
import urllib.parse

import pandas as pd
import requests

from galmet.io import parse_ids
from galmet.provider import (  # noqa: F401 - re-exported: the names this module always had
    NO_ANSWER,
    PERMANENT,
    REASONS,
    TRANSIENT,
    USER_AGENT,
    CutoutClient,
    CutoutError,
    FetchResult,
    Provider,
    RateLimiter,
    parse_retry_after,
    validate_jpeg,
)

log = logging.getLogger("galmet.skyserver")

DEFAULT_BASE_URL = "https://skyserver.sdss.org/dr14/SkyServerWS"


class SkyServerError(RuntimeError):
    """The SQL search failed; the message names the URL, the status and the server's words."""


def getjpeg_url(base_url: str) -> str:
    """The getjpeg endpoint for ``base_url``.

    ``base_url`` is the SkyServerWS root (``https://skyserver.sdss.org/dr14/SkyServerWS``);
    a URL already ending in ``/getjpeg`` is used as is, one ending in ``/ImgCutout`` gets
    ``/getjpeg``, and a bare host (``http://127.0.0.1:8000``) gets the DR14 path.
    """
    base = base_url.rstrip("/")
    path = urllib.parse.urlsplit(base).path
    if path.endswith("/getjpeg"):
        return base
    if path.endswith("/ImgCutout"):
        return base + "/getjpeg"
    if path in ("", "/"):
        return base + "/dr14/SkyServerWS/ImgCutout/getjpeg"
    return base + "/ImgCutout/getjpeg"


class SkyServer(Provider):
    """SDSS SkyServer ImgCutout (``getjpeg``): irg composites, any scale, 64 to 2048 px."""

    name = "skyserver"
    survey = "SDSS"
    default_base_url = DEFAULT_BASE_URL
    bands_rgb = "irg"
    min_size, max_size = 64, 2048
    uniform_reason = "blank"
    default_concurrency = 8
    default_rate = 20.0

    def endpoint(self) -> str:
        return getjpeg_url(self.base_url)

    def query(self, ra, dec, scale, width, height) -> dict:
        return {"ra": f"{ra:.8f}", "dec": f"{dec:.8f}", "scale": f"{scale:.6g}",
                "width": int(width), "height": int(height)}

    @property
    def data_release(self) -> str | None:
        """``DR14`` from a base URL such as ``.../dr14/SkyServerWS`` (a bare host means DR14)."""
        url = self.endpoint().lower()
        m = re.search(r"/dr(\d+)/", url)
        return f"DR{m.group(1)}" if m else None

    def cache_name(self, scale_text: str, width: int, height: int) -> str:
        return f"{scale_text}-{int(width)}x{int(height)}"  # the layout of the first caches


class SkyServerClient(CutoutClient):
    """A :class:`CutoutClient` of SkyServer ImgCutout at ``base_url``."""

    def __init__(self, base_url: str = DEFAULT_BASE_URL, **kwargs):
        super().__init__(SkyServer(base_url=base_url), **kwargs)


# --- SQL search ---------------------------------------------------------------------------------

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
