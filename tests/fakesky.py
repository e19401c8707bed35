"""A fake SDSS SkyServer, a fake Legacy Surveys viewer and a fake PS1 image cutout service for
tests and benchmarks, on 127.0.0.1.

Serves ``.../ImgCutout/getjpeg?ra=&dec=&scale=&width=&height=`` with the real JPEGs of the
bundled sample placed at made-up coordinates, ``.../SearchTools/SqlSearch?cmd=&format=csv``
with a CSV of a given table (``TOP n`` and ``objID > k`` of the SQL honoured, for paging), and,
as the viewer, ``<url>/viewer/cutout.jpg?ra=&dec=&layer=&pixscale=&size=`` with other JPEGs of
the same galaxies (:meth:`FakeSky.viewer_image`: the colour channels reversed, so that the two
services' images differ byte for byte), and, as the PS1 image service (:attr:`FakeSky.ps1_url`),
``<url>/ps1/cgi-bin/ps1filenames.py?ra=&dec=&filters=&type=stack`` (the whitespace table of the
stack files of each band; only the header outside the made-up sky) and
``<url>/ps1/cgi-bin/fitscut.cgi?red=&green=&blue=&ra=&dec=&size=&output_size=&format=jpg`` (a
third JPEG of the galaxy, :meth:`FakeSky.ps1_image`: mirrored, ``output_size`` px; refused with
400 unless red, green and blue are the galaxy's i, r and g files).

Faults are injected per objID: ``sky.faults[objID] = ["500", "429"]`` serves those answers to
the first requests and then the good image; ``sky.faults[objID] = "404"`` serves it forever.
Fault names: ``500``, ``503``, ``429`` (with ``Retry-After: sky.retry_after``), ``slow``
(answers after ``sky.slow_s`` seconds), ``html`` (status 200, an HTML error page), ``empty``
(status 200, 0 bytes), ``truncated`` (the first half of the JPEG), ``blank`` (a uniform JPEG),
``wrong_size`` (a 64x64 JPEG), ``drop`` (closes the connection without an answer), ``404``.
Positions that match no galaxy get a blank (black) image, as outside the survey footprint.
Faults apply to the image request of every service; ``sky.list_faults`` likewise to Pan-STARRS'
file lists. Requests are counted per service and objID (``jpeg_requests``, ``viewer_requests``,
``ps1_requests`` for fitscut, ``ps1_list_requests``; :meth:`FakeSky.total_requests`).

Run standalone (benchmarks, subprocess tests)::

    python tests/fakesky.py --images resources/demo/images --latency 0.05 \
        --catalog-out cat.csv --port-file port.txt
"""

from __future__ import annotations

import argparse
import io
import re
import threading
import time
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
from PIL import Image


def _jpeg(color, size=(128, 128)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="JPEG")
    return buf.getvalue()


def made_up_catalog(images_dir: str | Path, n: int | None = None) -> tuple[pd.DataFrame, dict]:
    """(catalog objID, ra, dec, petroR90_r; {objID: JPEG bytes}) for the first n sample images."""
    files = sorted(Path(images_dir).glob("*.jpg"))[:n]
    rows, images = [], {}
    for i, f in enumerate(files):
        oid = int(f.stem)
        rows.append((oid, round((i * 7.31 + 3.0) % 360, 6), round((i * 1.37) % 120 - 60, 6),
                     4.0 + (i % 9) * 0.75))
        images[oid] = f.read_bytes()
    cat = pd.DataFrame(rows, columns=["objID", "ra", "dec", "petroR90_r"])
    return cat.astype({"objID": "int64"}), images


class FakeSky:
    def __init__(self, catalog: pd.DataFrame, images: dict, sql_table: pd.DataFrame | None = None,
                 latency_s: float = 0.0, host: str = "127.0.0.1", port: int = 0):
        self.images = images
        self.where = {(round(float(r.ra), 5), round(float(r.dec), 5)): int(r.objID)
                      for r in catalog.itertuples()}
        self.sql_table = sql_table
        self.latency_s = latency_s
        self.faults: dict[int, list[str] | str] = {}
        self.retry_after = "1"
        self.slow_s = 2.0
        self.lock = threading.Lock()
        self.jpeg_requests: Counter = Counter()
        self.scales: dict = {}  # objID -> last requested arcsec/px
        self.viewer_requests: Counter = Counter()
        self.viewer_queries: dict = {}  # objID -> last viewer query (layer, pixscale, size)
        self._viewer_images: dict[int, bytes] = {}
        self.list_faults: dict[int, list[str] | str] = {}
        self.ps1_requests: Counter = Counter()
        self.ps1_list_requests: Counter = Counter()
        self.ps1_queries: dict = {}  # objID -> last fitscut query (size, output_size, format)
        self._ps1_images: dict[tuple[int, int], bytes] = {}
        self.sql_queries: list[str] = []
        self.user_agents: set[str] = set()
        self.blank = _jpeg((0, 0, 0))
        self.small = _jpeg((90, 40, 20), (64, 64))
        sky = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # noqa: N802
                try:
                    sky._handle(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        return self.url + "/dr14/SkyServerWS"

    def start(self) -> FakeSky:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def viewer_url(self) -> str:
        return self.url + "/viewer"

    @property
    def ps1_url(self) -> str:
        return self.url + "/ps1"

    def total_requests(self) -> int:
        """Requests of every service (SQL aside)."""
        with self.lock:
            return sum(sum(c.values()) for c in (self.jpeg_requests, self.viewer_requests,
                                                 self.ps1_requests, self.ps1_list_requests))

    def total_jpeg_requests(self) -> int:
        with self.lock:
            return sum(self.jpeg_requests.values())

    def total_viewer_requests(self) -> int:
        with self.lock:
            return sum(self.viewer_requests.values())

    def viewer_image(self, oid: int) -> bytes:
        """The viewer's JPEG of a galaxy: its SkyServer image with the channels reversed."""
        with self.lock:
            if oid not in self._viewer_images:
                with Image.open(io.BytesIO(self.images[oid])) as im:
                    rgb = im.convert("RGB")
                buf = io.BytesIO()
                Image.merge("RGB", rgb.split()[::-1]).save(buf, format="JPEG", quality=90)
                self._viewer_images[oid] = buf.getvalue()
            return self._viewer_images[oid]

    def ps1_image(self, oid: int, size: int = 128) -> bytes:
        """The PS1 service's JPEG of a galaxy: its SkyServer image mirrored, ``size`` px a side."""
        with self.lock:
            if (oid, size) not in self._ps1_images:
                with Image.open(io.BytesIO(self.images[oid])) as im:
                    rgb = im.convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                if rgb.size != (size, size):
                    rgb = rgb.resize((size, size))
                buf = io.BytesIO()
                rgb.save(buf, format="JPEG", quality=90)
                self._ps1_images[oid, size] = buf.getvalue()
            return self._ps1_images[oid, size]

    @staticmethod
    def ps1_file(oid: int, band: str) -> str:
        return f"/rings.v3.skycell/{oid}/rings.v3.skycell.{oid}.stk.{band}.unconv.fits"

    # -- handlers ---------------------------------------------------------------------------------
    def _send(self, h, status: int, body: bytes, ctype: str, headers: dict | None = None):
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)

    def _handle(self, h):
        url = urllib.parse.urlsplit(h.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        with self.lock:
            self.user_agents.add(h.headers.get("User-Agent", ""))
        if self.latency_s:
            time.sleep(self.latency_s)
        if url.path.endswith("/getjpeg"):
            return self._getjpeg(h, q)
        if url.path.endswith("/cutout.jpg"):
            return self._viewer(h, q)
        if url.path.endswith("/cgi-bin/ps1filenames.py"):
            return self._ps1_list(h, q)
        if url.path.endswith("/cgi-bin/fitscut.cgi"):
            return self._fitscut(h, q)
        if url.path.endswith(("/SqlSearch", "/x_results.aspx")):
            return self._sql(h, q)
        self._send(h, 404, b"<html>not found</html>", "text/html")

    def _getjpeg(self, h, q):
        try:
            key = (round(float(q["ra"]), 5), round(float(q["dec"]), 5))
            int(q["width"]), int(q["height"]), float(q["scale"])
        except (KeyError, ValueError):
            return self._send(h, 400, b"bad parameters", "text/plain")
        oid = self.where.get(key)
        with self.lock:
            self.jpeg_requests[oid] += 1
            self.scales[oid] = float(q["scale"])
            fault = self._next_fault(oid)
        return self._serve(h, fault, self.images.get(oid, self.blank))

    def _viewer(self, h, q):
        try:
            key = (round(float(q["ra"]), 5), round(float(q["dec"]), 5))
            query = {"layer": q["layer"], "pixscale": float(q["pixscale"]), "size": int(q["size"])}
        except (KeyError, ValueError):
            return self._send(h, 400, b"bad parameters", "text/plain")
        oid = self.where.get(key)
        with self.lock:
            self.viewer_requests[oid] += 1
            self.viewer_queries[oid] = query
            fault = self._next_fault(oid)
        return self._serve(h, fault, self.viewer_image(oid) if oid in self.images else self.blank)

    def _ps1_list(self, h, q):
        try:
            key = (round(float(q["ra"]), 5), round(float(q["dec"]), 5))
            bands, kind = q["filters"], q["type"]
        except (KeyError, ValueError):
            return self._send(h, 400, b"bad parameters", "text/plain")
        oid = self.where.get(key)
        with self.lock:
            self.ps1_list_requests[oid] += 1
            fault = self._next_fault(oid, self.list_faults)
        rows = ["projcell subcell ra dec filter mjd type filename shortname badflag"]
        if oid in self.images and kind == "stack":
            rows += [f"2381 056 {q['ra']} {q['dec']} {b} 0 stack {self.ps1_file(oid, b)} "
                     f"{self.ps1_file(oid, b).rsplit('/', 1)[1]} 0" for b in bands]
        return self._serve(h, fault, ("\n".join(rows) + "\n").encode(), "text/plain")

    def _fitscut(self, h, q):
        try:
            key = (round(float(q["ra"]), 5), round(float(q["dec"]), 5))
            query = {"size": int(q["size"]), "output_size": int(q["output_size"]), "format": q["format"]}
            files = [re.search(r"skycell\.(\d+)\.stk\.(\w)\.", q[c]) for c in ("red", "green", "blue")]
        except (KeyError, ValueError):
            return self._send(h, 400, b"bad parameters", "text/plain")
        if not all(files) or [m.group(2) for m in files] != ["i", "r", "g"] or \
                {int(m.group(1)) for m in files} != {self.where.get(key)} or query["format"] != "jpg":
            return self._send(h, 400, b"red, green, blue must be the i, r, g stacks here", "text/plain")
        oid = self.where[key]
        with self.lock:
            self.ps1_requests[oid] += 1
            self.ps1_queries[oid] = query
            fault = self._next_fault(oid)
        return self._serve(h, fault, self.ps1_image(oid, query["output_size"]))

    def _next_fault(self, oid, faults=None):
        f = (self.faults if faults is None else faults).get(oid)
        if isinstance(f, str):
            return f
        return f.pop(0) if f else None

    def _serve(self, h, fault, good: bytes, ctype: str = "image/jpeg"):
        if fault is None:
            return self._send(h, 200, good, ctype)
        if fault in ("500", "503"):
            return self._send(h, int(fault), b"<html>Server Error</html>", "text/html")
        if fault == "429":
            return self._send(h, 429, b"slow down", "text/plain", {"Retry-After": self.retry_after})
        if fault == "404":
            return self._send(h, 404, b"<html>Not Found</html>", "text/html")
        if fault == "slow":
            time.sleep(self.slow_s)
            return self._send(h, 200, good, ctype)
        if fault == "html":
            return self._send(h, 200, b"<!DOCTYPE html><html><body>Error: the service is "
                              b"temporarily unavailable</body></html>", "text/html")
        if fault == "empty":
            return self._send(h, 200, b"", "image/jpeg")
        if fault == "truncated":
            return self._send(h, 200, good[: len(good) // 2], "image/jpeg")
        if fault == "blank":
            return self._send(h, 200, self.blank, "image/jpeg")
        if fault == "wrong_size":
            return self._send(h, 200, self.small, "image/jpeg")
        if fault == "drop":
            h.close_connection = True
            return None
        raise ValueError(f"unknown fault {fault!r}")

    def _sql(self, h, q):
        sql = q.get("cmd", "")
        with self.lock:
            self.sql_queries.append(sql)
        if self.sql_table is None or q.get("format", "").lower() != "csv":
            return self._send(h, 500, b"error_message: no table", "text/plain")
        df = self.sql_table.sort_values("objID")
        m = re.search(r"objID\s*>\s*(-?\d+)", sql, re.I)
        if m:
            df = df[df["objID"] > int(m.group(1))]
        m = re.search(r"\bTOP\s+(\d+)", sql, re.I)
        if m:
            df = df.head(int(m.group(1)))
        body = "#Table1\n" + df.to_csv(index=False)
        return self._send(h, 200, body.encode(), "text/plain")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", required=True)
    p.add_argument("-n", type=int, default=None)
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--catalog-out", required=True)
    p.add_argument("--port-file", required=True)
    args = p.parse_args()
    cat, images = made_up_catalog(args.images, args.n)
    cat.to_csv(args.catalog_out, index=False)
    sky = FakeSky(cat, images, latency_s=args.latency).start()
    tmp = Path(args.port_file + ".tmp")
    tmp.write_text(sky.url)
    tmp.replace(args.port_file)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        sky.stop()


if __name__ == "__main__":
    main()
