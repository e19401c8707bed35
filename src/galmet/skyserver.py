"""HTTP client for the SDSS SkyServer: ImgCutout JPEGs and the SQL search, polite and paranoid.

Every request carries a User-Agent naming galmet, a connect/read timeout, goes through a
request-rate cap shared by all threads of the process, and is retried with exponential
backoff and full jitter (honouring ``Retry-After``) when the failure may be transient.
Every JPEG is validated before anyone may cache it (:func:`validate_jpeg`).

Failure reasons (the vocabulary of ``failures.csv``):

=============== ============================================================ =========
reason          meaning                                                      retried
=============== ============================================================ =========
``http_404``    the service answered 404 Not Found                           no
``http_4xx``    any other 4xx but 429 (bad request parameters)               no
``http_429``    Too Many Requests (``Retry-After`` honoured)                 yes
``http_5xx``    server error                                                 yes
``timeout``     no answer within ``timeout_s``                               yes
``connection``  connection refused / reset / dropped                         yes
``empty``       status 200 with a 0-byte body                                yes
``not_jpeg``    status 200 but the body is no JPEG (e.g. an HTML error page)  yes
``truncated``   a JPEG that does not decode to the end                       yes
``wrong_size``  a JPEG of another size than requested                        yes
``blank``       a uniform image (outside the survey footprint)               yes
=============== ============================================================ =========

(:mod:`galmet.cutouts` adds ``missing``, ``bad_position`` and ``no_scale``, which make no
request.) "Retried" means within one run, up to ``max_attempts`` requests; a recorded
failure is tried again on the next run.
"""

from __future__ import annotations

import email.utils
import io
import logging
import random
import threading
import time
import urllib.parse
from dataclasses import dataclass

import numpy as np
import pandas as pd
import requests
from PIL import Image
from requests.adapters import HTTPAdapter
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from galmet import __version__
from galmet.io import parse_ids

log = logging.getLogger("galmet.skyserver")

DEFAULT_BASE_URL = "https://skyserver.sdss.org/dr14/SkyServerWS"
USER_AGENT = (
    f"galmet/{__version__} (galaxy metallicity workflow, Wu & Boada 2019 reproduction; "
    "python-requests; polite, rate-capped)"
)
JPEG_SOI = b"\xff\xd8\xff"
TRANSIENT = frozenset(
    {"http_429", "http_5xx", "timeout", "connection", "empty", "not_jpeg", "truncated",
     "wrong_size", "blank"}
)
PERMANENT = frozenset({"http_404", "http_4xx"})
REASONS = TRANSIENT | PERMANENT
# Reasons for which no HTTP answer at all came back from the server.
NO_ANSWER = frozenset({"timeout", "connection"})


class CutoutError(Exception):
    """A request or a response that did not give a good cutout; ``reason`` is from REASONS."""

    def __init__(self, reason: str, detail: str = "", retry_after: float | None = None):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after
        self.attempts = 0


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


def validate_jpeg(content: bytes, width: int, height: int, content_type: str = "") -> None:
    """Raise CutoutError unless ``content`` is a complete, non-uniform ``width`` x ``height`` JPEG."""
    if len(content) == 0:
        raise CutoutError("empty", "0-byte body")
    if not content.startswith(JPEG_SOI):
        head = content[:60].decode("latin-1", "replace").strip().replace("\n", " ")
        raise CutoutError("not_jpeg", f"body starts with {head!r} (content-type {content_type!r})")
    if not content.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise CutoutError("truncated", f"no JPEG end marker after {len(content)} bytes")
    try:
        with Image.open(io.BytesIO(content)) as im:
            im.load()  # full decode: raises on truncated or corrupt data
            size = im.size
            arr = np.asarray(im.convert("RGB"))
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for bad data
        raise CutoutError("truncated", f"does not decode: {exc}") from None
    if size != (width, height):
        raise CutoutError("wrong_size", f"{size[0]}x{size[1]} instead of {width}x{height}")
    tail = arr[-8:]
    if tail.min() == 128 and tail.max() == 128 and arr.max() != arr.min():
        # libjpeg fills what it could not decode with mid-grey: data missing before the end
        raise CutoutError("truncated", "the last rows are decoder fill (data missing)")
    if int(arr.max()) - int(arr.min()) <= 2:
        raise CutoutError("blank", f"uniform image (all pixels within {arr.min()}..{arr.max()})")


class RateLimiter:
    """At most ``rate`` calls of :meth:`wait` per second across threads (None: no cap)."""

    def __init__(self, rate: float | None):
        self.interval = 1.0 / rate if rate else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass
class FetchResult:
    content: bytes
    attempts: int


class SkyServerClient:
    """Thread-safe client of the ImgCutout service (one ``requests.Session`` per thread)."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        timeout_s: float = 30.0,
        max_attempts: int = 5,
        backoff_s: float = 1.0,
        backoff_max_s: float = 60.0,
        max_retry_after_s: float = 300.0,
        max_requests_per_second: float | None = 10.0,
        user_agent: str = USER_AGENT,
        pool_size: int = 16,
    ):
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.base_url = base_url
        self.url = getjpeg_url(base_url)
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.max_retry_after_s = max_retry_after_s
        self.limiter = RateLimiter(max_requests_per_second)
        self.user_agent = user_agent
        self.pool_size = pool_size
        self._local = threading.local()
        self._count_lock = threading.Lock()
        self.requests_sent = 0
        self.answers = 0  # requests that got any HTTP answer back

    def _session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            s.headers["User-Agent"] = self.user_agent
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=self.pool_size, max_retries=0)
            s.mount("http://", adapter)
            s.mount("https://", adapter)
            self._local.session = s
        return s

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, CutoutError) and exc.retry_after is not None:
            return min(exc.retry_after, self.max_retry_after_s)
        cap = min(self.backoff_max_s, self.backoff_s * 2 ** (state.attempt_number - 1))
        return random.uniform(0, cap)  # "full jitter"

    def _get_once(self, params: dict, width: int, height: int) -> bytes:
        self.limiter.wait()
        with self._count_lock:
            self.requests_sent += 1
        try:
            r = self._session().get(self.url, params=params, timeout=self.timeout_s)
            content = r.content
        except requests.Timeout as exc:
            raise CutoutError("timeout", str(exc)) from None
        except requests.ConnectionError as exc:
            raise CutoutError("connection", str(exc)) from None
        except requests.RequestException as exc:
            raise CutoutError("connection", f"{type(exc).__name__}: {exc}") from None
        with self._count_lock:
            self.answers += 1
        if r.status_code == 429:
            raise CutoutError("http_429", "Too Many Requests",
                              retry_after=_parse_retry_after(r.headers.get("Retry-After")))
        if r.status_code >= 500:
            raise CutoutError("http_5xx", f"HTTP {r.status_code}",
                              retry_after=_parse_retry_after(r.headers.get("Retry-After")))
        if r.status_code == 404:
            raise CutoutError("http_404", "HTTP 404")
        if r.status_code >= 400 or r.status_code < 200 or r.status_code >= 300:
            raise CutoutError("http_4xx", f"HTTP {r.status_code}")
        validate_jpeg(content, width, height, r.headers.get("Content-Type", ""))
        return content

    def get_jpeg(self, ra: float, dec: float, scale: float, width: int, height: int) -> FetchResult:
        """Fetch one validated cutout; raise CutoutError (with ``attempts``) when it cannot."""
        params = {"ra": f"{ra:.8f}", "dec": f"{dec:.8f}", "scale": f"{scale:.6g}",
                  "width": int(width), "height": int(height)}
        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            retry=retry_if_exception(lambda e: isinstance(e, CutoutError) and e.reason in TRANSIENT),
            reraise=True,
        )
        attempts = 0
        try:
            for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    content = self._get_once(params, width, height)
        except CutoutError as exc:
            exc.attempts = attempts
            raise
        return FetchResult(content, attempts)


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
            ra = _parse_retry_after(r.headers.get("Retry-After"))
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
