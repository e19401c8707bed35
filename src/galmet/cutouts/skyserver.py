"""The SDSS SkyServer ImgCutout as a cutout provider (:class:`SkyServer`); its SQL search is
catalog code (:func:`galmet.catalog.query_skyserver`).

ImgCutout: ``GET <base_url>/ImgCutout/getjpeg?ra=&dec=&scale=&width=&height=`` returns the
'irg' colour composite (i, r, g as R, G, B) at ``scale`` arcsec per pixel, 64 to 2048 px a
side. Its requests, retries, validation and failure reasons are those of every provider
(:mod:`galmet.cutouts.base`); a uniform image (``blank``) is a transient failure here, retried
as the other transient reasons are. Its cache is ``<cache_root>/<scale>-<W>x<H>/``, without the provider's name that
the other providers' caches start with (:meth:`SkyServer.cache_name`), so that existing SkyServer
caches stay valid.
"""

from __future__ import annotations

import re
import urllib.parse

from galmet.cutouts.base import Provider

DEFAULT_BASE_URL = "https://skyserver.sdss.org/dr14/SkyServerWS"


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
    summary = "SDSS SkyServer ImgCutout (irg composites, any scale)"
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
        return f"{scale_text}-{int(width)}x{int(height)}"  # no provider name: existing caches stay valid
