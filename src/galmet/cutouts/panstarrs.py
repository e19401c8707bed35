"""Pan-STARRS1 DR2 stacked images, through the PS1 image cutout service at STScI, as a provider.

A cutout takes two requests (:meth:`PanSTARRS.fetch`):

1. ``GET <base_url>/cgi-bin/ps1filenames.py?ra=&dec=&filters=gri&type=stack`` lists the stack
   FITS files covering the position: a whitespace table whose header is
   ``projcell subcell ra dec filter mjd type filename shortname badflag``, one row a band. No row
   (the position lies outside the survey, south of Dec -30) is ``no_coverage``: permanent, and
   remembered in the cache; an answer that is no such table (an HTML error page) is
   ``bad_answer``, retried.
2. ``GET <base_url>/cgi-bin/fitscut.cgi?red=<i file>&green=<r file>&blue=<g file>&ra=&dec=
   &size=&output_size=&format=jpg`` cuts the colour JPEG from those files: i, r, g as R, G, B,
   the band order of SDSS's ``irg`` composites. ``size`` counts the stacks' own pixels (0.25
   arcsec), so a cutout of ``scale`` arcsec/px and ``width`` px asks for
   ``round(width * scale / 0.25)`` of them, resampled to ``output_size = width``; cutouts are
   square.

The client retries both requests together on a transient failure and validates the JPEG as for
every provider (:mod:`galmet.cutouts.base`). Cache: ``<cache_root>/panstarrs-<scale>-<W>x<H>/``.
"""

from __future__ import annotations

from galmet.cutouts.base import CutoutError, Provider

DEFAULT_BASE_URL = "https://ps1images.stsci.edu"
NATIVE_ARCSEC = 0.25  # the stacks' pixel
LIST_COLUMNS = ("projcell", "subcell", "ra", "dec", "filter", "mjd", "type", "filename", "shortname",
                "badflag")
RGB_BANDS = ("i", "r", "g")  # red, green, blue


def stack_files(text: str) -> dict[str, str]:
    """``{band: filename}`` of a ``ps1filenames.py`` answer; CutoutError ``bad_answer`` when it is
    no such table, ``no_coverage`` when it lists none of the stacks of a band of RGB_BANDS."""
    lines = [ln.split() for ln in text.strip().splitlines()]
    if not lines or tuple(lines[0]) != LIST_COLUMNS:
        head = text[:60].strip().replace("\n", " ")
        raise CutoutError("bad_answer", f"not a ps1filenames table: starts with {head!r}")
    band, name = LIST_COLUMNS.index("filter"), LIST_COLUMNS.index("filename")
    files = {row[band]: row[name] for row in lines[1:] if len(row) == len(LIST_COLUMNS)}
    missing = [b for b in RGB_BANDS if b not in files]
    if missing:
        raise CutoutError("no_coverage", f"no Pan-STARRS {', '.join(missing)} stack at this position")
    return files


class PanSTARRS(Provider):
    """PS1 image cutout service: a list of stack files, then ``fitscut.cgi``; irg, square."""

    name = "panstarrs"
    survey = "Pan-STARRS1"
    summary = "Pan-STARRS1 DR2 stacks, PS1 image cutout service at STScI (irg composites, square)"
    default_base_url = DEFAULT_BASE_URL
    bands_rgb = "".join(RGB_BANDS)
    min_size, max_size = 1, 2048
    square = True
    uniform_reason = "blank"
    default_concurrency = 4
    default_rate = 5.0  # two requests a cutout

    def endpoint(self) -> str:
        """The file list (the first request of every cutout)."""
        return self.base_url.rstrip("/") + "/cgi-bin/ps1filenames.py"

    def cutout_url(self) -> str:
        return self.base_url.rstrip("/") + "/cgi-bin/fitscut.cgi"

    def query(self, ra, dec, scale, width, height) -> dict:
        """The ``fitscut.cgi`` parameters but the files."""
        size = max(1, round(int(width) * float(scale) / NATIVE_ARCSEC))
        return {"ra": f"{ra:.8f}", "dec": f"{dec:.8f}", "size": size, "output_size": int(width),
                "format": "jpg"}

    def fetch(self, get, ra, dec, scale, width, height):
        listing = get(self.endpoint(), {"ra": f"{ra:.8f}", "dec": f"{dec:.8f}",
                                        "filters": "gri", "type": "stack"})
        files = stack_files(listing.text)
        colours = dict(zip(("red", "green", "blue"), (files[b] for b in RGB_BANDS), strict=True))
        return get(self.cutout_url(), {**colours, **self.query(ra, dec, scale, width, height)})

    @property
    def data_release(self) -> str | None:
        return "DR2"
