"""The DESI Legacy Imaging Surveys sky viewer as a cutout provider.

``GET <base_url>/cutout.jpg?ra=&dec=&layer=&pixscale=&size=`` (``base_url`` is the viewer's
root, ``https://www.legacysurvey.org/viewer``) returns a square JPEG, ``size`` px a side (512
at most), resampled to ``pixscale`` arcsec per pixel (0.262 is the surveys' native pixel).
Outside its footprint the viewer answers with a black image: ``no_coverage``, a permanent
failure (never retried, never cached).

Layers and their colour composites (legacypipe's ``sdss_rgb``: g as blue, r as green, i and z
as red), from https://www.legacysurvey.org/dr10/description/ ("Obtaining Images and Raw Data"):

- ``ls-dr10-grz`` (default): DR10 merges the northern BASS/MzLS images (from DR9; DR10 did not
  reprocess them) with the southern DECam images at Dec = 32.375 deg; ``-grz`` keeps the
  g, r, z composite everywhere, so the whole SDSS spectroscopic footprint (mostly north of
  32 deg in the NGC) has one colour mapping.
- ``ls-dr10``: the same footprint, but DECam areas use i as well (red = i + z), the north not.
- ``ls-dr10-south``: DECam only, no BASS/MzLS north: most SDSS galaxies above Dec 32.4 get
  ``no_coverage``.
- ``ls-dr9`` (= DR9 north + south, grz), ``ls-dr9-north``, ``ls-dr9-south``; ``sdss`` (SDSS
  images drawn by the viewer, g, r, i).
"""

from __future__ import annotations

import re

from galmet.cutouts.base import Provider

DEFAULT_BASE_URL = "https://www.legacysurvey.org/viewer"
GRZ = "zrg"  # bands in RGB order: z red, r green, g blue


class LegacySurvey(Provider):
    """Legacy Surveys viewer ``cutout.jpg``: square, at most 512 px, black outside the footprint."""

    name = "legacysurvey"
    survey = "Legacy Surveys"
    summary = "the DESI Legacy Surveys sky viewer's cutout.jpg (square, one of its layers)"
    default_base_url = DEFAULT_BASE_URL
    layers = {
        "ls-dr10-grz": GRZ, "ls-dr10": "(iz)rg", "ls-dr10-south": "(iz)rg",
        "ls-dr10-south-grz": GRZ, "ls-dr9": GRZ, "ls-dr9-north": GRZ, "ls-dr9-south": GRZ,
        "sdss": "irg",
    }
    default_layer = "ls-dr10-grz"
    min_size, max_size = 1, 512
    square = True
    uniform_reason = "no_coverage"
    default_concurrency = 4
    default_rate = 5.0

    def endpoint(self) -> str:
        base = self.base_url.rstrip("/")
        return base if base.endswith(("/cutout.jpg", "/jpeg-cutout")) else base + "/cutout.jpg"

    def query(self, ra, dec, scale, width, height) -> dict:
        return {"ra": f"{ra:.8f}", "dec": f"{dec:.8f}", "layer": self.layer,
                "pixscale": f"{scale:.6g}", "size": int(width)}

    @property
    def data_release(self) -> str | None:
        m = re.match(r"ls-dr(\d+)", self.layer or "")
        return f"DR{m.group(1)}" if m else None
