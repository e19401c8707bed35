"""Cutout services as interchangeable providers, the registry of them, and the one HTTP
client they share.

A provider (:class:`Provider`) says everything that differs between two public cutout
services: its default base URL, how a cutout is requested (one request by default,
:meth:`Provider.fetch` for a service that needs more), its size limits, its politeness
defaults, the bands of its colour composite in RGB order, what "no data here" looks like, how
its cache directory is named and the Snakemake resource that caps its download jobs.
Everything else is shared: :class:`CutoutClient` (one ``requests.Session`` per thread, a rate
cap across threads, retries with exponential backoff and full jitter honouring
``Retry-After``, validation of every answer before anyone may cache it) and the failure
vocabulary below. :mod:`galmet.cutouts.download` downloads, caches and resumes for any
provider; :mod:`galmet.cutouts.manifest` writes what a provider says into each cutout
directory.

The services are listed in :data:`PROVIDERS`; everything that names them is built from it:
the ``cutouts.source`` enum of the config schema (:func:`galmet.config.load_schema`), the help
of ``galmet download-cutouts``, the cache names and the workflow's ``<name>_jobs`` resources.
A new public service is one small module with a ``Provider`` subclass (as
:mod:`galmet.cutouts.legacysurvey`) plus its line in ``PROVIDERS``.

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
``blank``       a uniform image (SkyServer: retried, may be transient)       yes
``bad_answer``  status 200 but an intermediate answer of a service that      yes
                needs several requests does not read (e.g. an HTML page, not
                a list)
``no_coverage`` no image there: a uniform (black) image from a service that  no
                draws the sky outside its footprint so (the Legacy Surveys
                viewer), or no file listed there (Pan-STARRS)
=============== ============================================================ =========

(:mod:`galmet.cutouts.download` adds ``missing``, ``bad_position`` and ``no_scale``, which make no
request.) "Retried" means within one run, up to ``max_attempts`` requests; a recorded
failure is tried again on the next run, except ``no_coverage``: the cache remembers it (an
empty ``<objID>.no_coverage`` beside the JPEGs; delete it to ask again) and the next run
records it with 0 attempts. Nothing but a validated JPEG is ever cached as an image.
"""

from __future__ import annotations

import email.utils
import importlib
import io
import random
import threading
import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import requests
from PIL import Image
from requests.adapters import HTTPAdapter
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from galmet._version import __version__

USER_AGENT = (
    f"galmet/{__version__} (galaxy metallicity workflow, Wu & Boada 2019 reproduction; "
    "python-requests; polite, rate-capped)"
)
JPEG_SOI = b"\xff\xd8\xff"
TRANSIENT = frozenset(
    {"http_429", "http_5xx", "timeout", "connection", "empty", "not_jpeg", "truncated",
     "wrong_size", "blank", "bad_answer"}
)
PERMANENT = frozenset({"http_404", "http_4xx", "no_coverage"})
REASONS = TRANSIENT | PERMANENT
# Reasons for which no HTTP answer at all came back from the server.
NO_ANSWER = frozenset({"timeout", "connection"})
# Permanent failures that are facts about the sky, not about a request: remembered in the cache
# (an empty ``<objID>.<reason>`` file) so that a rerun does not ask again.
REMEMBERED = frozenset({"no_coverage"})

#: name -> "module:class" of every provider (imported when first asked for).
PROVIDERS = {
    "skyserver": "galmet.cutouts.skyserver:SkyServer",
    "legacysurvey": "galmet.cutouts.legacysurvey:LegacySurvey",
    "panstarrs": "galmet.cutouts.panstarrs:PanSTARRS",
}
#: how the adaptive scale is chosen (``scale_rule`` of a manifest; galmet.cutouts.download)
ADAPTIVE_RULE = "2 * petroR90_r / 0.396 arcsec across the width"


class CutoutError(Exception):
    """A request or a response that did not give a good cutout; ``reason`` is from REASONS."""

    def __init__(self, reason: str, detail: str = "", retry_after: float | None = None):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after
        self.attempts = 0


def validate_jpeg(content: bytes, width: int, height: int, content_type: str = "",
                  uniform_reason: str = "blank") -> None:
    """Raise CutoutError unless ``content`` is a complete, non-uniform ``width`` x ``height`` JPEG.

    A uniform image raises ``uniform_reason`` (``blank``, or ``no_coverage`` for a service that
    answers outside its footprint with a black image).
    """
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
        raise CutoutError(uniform_reason, f"uniform image (all pixels within {arr.min()}..{arr.max()})")


class Provider:
    """One public cutout service: what differs between services, and nothing else.

    Subclasses set the class attributes and implement :meth:`endpoint` and :meth:`query` (one
    request per cutout), or override :meth:`fetch` (a service that needs several requests).
    ``layer`` picks one of ``layers`` (services with several image sets); ``base_url``
    defaults to ``default_base_url``.
    """

    name: ClassVar[str]                  # cutouts.source / --source
    survey: ClassVar[str]                # the imaging survey, for messages ("SDSS")
    summary: ClassVar[str]               # one line for the schema and --help ("SDSS SkyServer ...")
    default_base_url: ClassVar[str]
    #: layer -> bands of its colour composite in RGB order; empty: the service has no layers
    layers: ClassVar[dict[str, str | None]] = {}
    default_layer: ClassVar[str | None] = None
    bands_rgb: ClassVar[str | None] = None   # bands in RGB order of a service without layers
    min_size: ClassVar[int] = 1
    max_size: ClassVar[int] = 2048
    square: ClassVar[bool] = False           # the service takes one size for width and height
    uniform_reason: ClassVar[str] = "blank"  # what a uniform image means (see REASONS)
    default_concurrency: ClassVar[int] = 8
    default_rate: ClassVar[float] = 10.0     # requests per second per download job

    def __init__(self, layer: str | None = None, base_url: str | None = None):
        if layer and not self.layers:
            raise ValueError(f"{self.name} has no layers (got layer {layer!r})")
        self.layer = (layer or self.default_layer) if self.layers else None
        self.base_url = base_url or self.default_base_url

    # --- requests ------------------------------------------------------------------------
    def endpoint(self) -> str:
        """The URL that cutout requests go to."""
        raise NotImplementedError

    def query(self, ra: float, dec: float, scale: float, width: int, height: int) -> dict:
        """The query parameters of one cutout request."""
        raise NotImplementedError

    def fetch(self, get, ra: float, dec: float, scale: float, width: int,
              height: int) -> requests.Response:
        """The answer that holds one cutout's JPEG, asked for through ``get(url, params)``.

        ``get`` is the client's: it waits for the rate cap, counts the request and raises
        :class:`CutoutError` for no answer or an HTTP error status, else returns the
        ``requests.Response``. The default is one request, :meth:`query` to :meth:`endpoint`;
        a service that needs several (a list of files first, then the cutout) overrides this and
        raises ``CutoutError`` (e.g. ``no_coverage``, ``bad_answer``) for what it reads in
        between. The client retries the whole call on a transient reason and validates the
        JPEG of the answer returned.
        """
        return get(self.endpoint(), self.query(ra, dec, scale, width, height))

    def check_size(self, width: int, height: int) -> None:
        """Raise ValueError (naming the service's limits) for a size the service refuses."""
        lo, hi = self.min_size, self.max_size
        if not (lo <= int(width) <= hi and lo <= int(height) <= hi):
            raise ValueError(f"{self.name}: width and height must be {lo} to {hi} px (the "
                             f"service's limits), got {width}x{height}; smaller images are made "
                             "by re-binning")
        if self.square and int(width) != int(height):
            raise ValueError(f"{self.name}: the service makes square cutouts only (one size); "
                             f"got {width}x{height}: give the same width and height")

    def validate(self, content: bytes, width: int, height: int, content_type: str = "") -> None:
        validate_jpeg(content, width, height, content_type, uniform_reason=self.uniform_reason)

    # --- what the images are -------------------------------------------------------------
    @property
    def bands(self) -> str | None:
        """Bands of the colour composite in RGB order (``irg``: i as red), None if unknown."""
        return self.layers.get(self.layer) if self.layers else self.bands_rgb

    @property
    def data_release(self) -> str | None:
        return None

    def cache_name(self, scale_text: str, width: int, height: int) -> str:
        """Directory name of this provider's cache for one geometry (never shared with another
        provider, layer, scale or size)."""
        layer = f"-{self.layer}" if self.layer else ""
        return f"{self.name}{layer}-{scale_text}-{int(width)}x{int(height)}"

    @property
    def resource(self) -> str:
        """The workflow resource that caps this service's download jobs
        (``--resources <name>_jobs=N``, e.g. ``skyserver_jobs``)."""
        return f"{self.name}_jobs"

    def info(self, scale, width: int, height: int) -> dict:
        """What cutouts of this provider at this geometry are (the fields of a ``cutouts.json``,
        :mod:`galmet.cutouts.manifest`)."""
        return images_info(provider=self.name, survey=self.survey, layer=self.layer,
                           data_release=self.data_release, bands=self.bands, scale=scale,
                           width=width, height=height)


def images_info(provider, survey, layer, data_release, bands, scale, width, height) -> dict:
    """The manifest fields of cutouts of one provider/layer at one geometry."""
    adaptive = scale == "adaptive"
    return {
        "provider": provider, "survey": survey, "layer": layer, "data_release": data_release,
        "bands": bands, "scale": "adaptive" if adaptive else float(scale),
        "scale_rule": ADAPTIVE_RULE if adaptive else None, "size": [int(width), int(height)],
    }


def get_provider(name: str, layer: str | None = None, base_url: str | None = None) -> Provider:
    """The provider called ``name`` (a key of :data:`PROVIDERS`)."""
    try:
        target = PROVIDERS[name]
    except KeyError:
        raise ValueError(f"unknown cutout service {name!r}; one of {', '.join(PROVIDERS)}") from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)(layer=layer, base_url=base_url)


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


def parse_retry_after(value: str | None) -> float | None:
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


class CutoutClient:
    """Thread-safe client of one provider's cutout service (one ``requests.Session`` per thread).

    ``max_requests_per_second``: ``"default"`` for the provider's own, None or 0 for no cap.
    """

    def __init__(
        self,
        provider: Provider,
        timeout_s: float = 30.0,
        max_attempts: int = 5,
        backoff_s: float = 1.0,
        backoff_max_s: float = 60.0,
        max_retry_after_s: float = 300.0,
        max_requests_per_second: float | str | None = "default",
        user_agent: str = USER_AGENT,
        pool_size: int = 16,
    ):
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        if max_requests_per_second == "default":
            max_requests_per_second = provider.default_rate
        self.provider = provider
        self.base_url = provider.base_url
        self.url = provider.endpoint()  # where the (first) request of each cutout goes
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

    def _request(self, url: str, params: dict) -> requests.Response:
        """One GET (rate-capped, counted); CutoutError for no answer or an HTTP error status."""
        self.limiter.wait()
        with self._count_lock:
            self.requests_sent += 1
        try:
            r = self._session().get(url, params=params, timeout=self.timeout_s)
            r.content  # noqa: B018 - read the body now: a dropped connection is a failure here
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
                              retry_after=parse_retry_after(r.headers.get("Retry-After")))
        if r.status_code >= 500:
            raise CutoutError("http_5xx", f"HTTP {r.status_code}",
                              retry_after=parse_retry_after(r.headers.get("Retry-After")))
        if r.status_code == 404:
            raise CutoutError("http_404", "HTTP 404")
        if r.status_code >= 400 or r.status_code < 200 or r.status_code >= 300:
            raise CutoutError("http_4xx", f"HTTP {r.status_code}")
        return r

    def _get_once(self, ra: float, dec: float, scale: float, width: int, height: int) -> bytes:
        r = self.provider.fetch(self._request, ra, dec, scale, width, height)
        self.provider.validate(r.content, width, height, r.headers.get("Content-Type", ""))
        return r.content

    def get_jpeg(self, ra: float, dec: float, scale: float, width: int, height: int) -> FetchResult:
        """Fetch one validated cutout; raise CutoutError (with ``attempts``) when it cannot."""
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
                    content = self._get_once(ra, dec, scale, width, height)
        except CutoutError as exc:
            exc.attempts = attempts
            raise
        return FetchResult(content, attempts)
