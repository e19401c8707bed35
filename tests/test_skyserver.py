"""SkyServer client: validation of every response, retries, Retry-After, rate cap, SQL paging."""

from __future__ import annotations

import io
import time

import pandas as pd
import pytest
from PIL import Image

from galmet import catalog
from galmet.cutouts.base import CutoutClient, CutoutError, RateLimiter, validate_jpeg
from galmet.cutouts.skyserver import SkyServer, getjpeg_url
from tests.conftest import DEMO
from tests.fakesky import FakeSky, made_up_catalog


@pytest.fixture(scope="module")
def sample():
    return made_up_catalog(DEMO / "images", 12)


def fast_client(sky, **kw):
    args = dict(timeout_s=0.4, max_attempts=4, backoff_s=0.01, backoff_max_s=0.05,
                max_requests_per_second=None)
    args.update(kw)
    return CutoutClient(SkyServer(base_url=args.pop("base_url", sky.base_url)), **args)


def _jpeg(size=(128, 128), color=None):
    buf = io.BytesIO()
    im = Image.effect_noise(size, 40).convert("RGB") if color is None else Image.new("RGB", size, color)
    im.save(buf, format="JPEG")
    return buf.getvalue()


def test_validate_accepts_real_cutout():
    data = next((DEMO / "images").glob("*.jpg")).read_bytes()
    validate_jpeg(data, 128, 128)


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"", "empty"),
        (b"<!DOCTYPE html><html>Error</html>", "not_jpeg"),
        (None, "truncated"),
        (_jpeg(color=(0, 0, 0)), "blank"),
        (_jpeg(color=(200, 200, 200)), "blank"),
        (_jpeg(size=(64, 64)), "wrong_size"),
    ],
)
def test_validate_rejects(body, reason):
    if body is None:
        data = next((DEMO / "images").glob("*.jpg")).read_bytes()
        body = data[: len(data) // 2]
    with pytest.raises(CutoutError) as err:
        validate_jpeg(body, 128, 128)
    assert err.value.reason == reason


def test_validate_rejects_corrupt_middle_with_end_marker():
    data = bytearray(next((DEMO / "images").glob("*.jpg")).read_bytes())
    data = bytes(data[:600]) + b"\xff\xd9"
    with pytest.raises(CutoutError) as err:
        validate_jpeg(data, 128, 128)
    assert err.value.reason == "truncated"


def test_getjpeg_url_forms():
    assert getjpeg_url("https://skyserver.sdss.org/dr14/SkyServerWS") == (
        "https://skyserver.sdss.org/dr14/SkyServerWS/ImgCutout/getjpeg")
    assert getjpeg_url("http://h:1/x/ImgCutout/getjpeg") == "http://h:1/x/ImgCutout/getjpeg"
    assert getjpeg_url("http://h:1/") == "http://h:1/dr14/SkyServerWS/ImgCutout/getjpeg"
    assert getjpeg_url("http://h:1/a/ImgCutout") == "http://h:1/a/ImgCutout/getjpeg"


@pytest.mark.parametrize("faults", [["500"], ["503", "500"], ["html"], ["empty"], ["truncated"],
                                    ["blank"], ["wrong_size"], ["drop"], ["slow"]])
def test_recoverable_faults_give_the_exact_image(sky, sample, faults):
    cat, images = sample
    oid = int(cat.objID[0])
    sky.faults[oid] = list(faults)
    r = fast_client(sky).get_jpeg(cat.ra[0], cat.dec[0], 0.2, 128, 128)
    assert r.content == images[oid]
    assert r.attempts == len(faults) + 1
    assert sky.jpeg_requests[oid] == len(faults) + 1


def test_permanent_fault_gives_up_after_max_attempts(sky, sample):
    cat, _ = sample
    oid = int(cat.objID[1])
    sky.faults[oid] = "500"
    with pytest.raises(CutoutError) as err:
        fast_client(sky, max_attempts=3).get_jpeg(cat.ra[1], cat.dec[1], 0.2, 128, 128)
    assert (err.value.reason, err.value.attempts) == ("http_5xx", 3)
    assert sky.jpeg_requests[oid] == 3


def test_404_is_not_retried(sky, sample):
    cat, _ = sample
    oid = int(cat.objID[2])
    sky.faults[oid] = "404"
    with pytest.raises(CutoutError) as err:
        fast_client(sky).get_jpeg(cat.ra[2], cat.dec[2], 0.2, 128, 128)
    assert (err.value.reason, err.value.attempts) == ("http_404", 1)
    assert sky.jpeg_requests[oid] == 1


def test_timeout_reason(sky, sample):
    cat, _ = sample
    sky.faults[int(cat.objID[3])] = "slow"
    with pytest.raises(CutoutError) as err:
        fast_client(sky, max_attempts=2, timeout_s=0.2).get_jpeg(cat.ra[3], cat.dec[3], 0.2, 128, 128)
    assert err.value.reason == "timeout"


def test_retry_after_is_honoured_and_user_agent_sent(sky, sample):
    cat, images = sample
    oid = int(cat.objID[4])
    sky.faults[oid] = ["429"]
    sky.retry_after = "1"
    t0 = time.monotonic()
    r = fast_client(sky).get_jpeg(cat.ra[4], cat.dec[4], 0.2, 128, 128)
    assert time.monotonic() - t0 >= 0.95  # backoff alone would wait <= 0.05 s
    assert r.content == images[oid]
    assert any(ua.startswith("galmet/") for ua in sky.user_agents)


def test_connection_refused_is_reported():
    client = CutoutClient(SkyServer(base_url="http://127.0.0.1:9"), timeout_s=0.5, max_attempts=2,
                          backoff_s=0.01, max_requests_per_second=None)
    with pytest.raises(CutoutError) as err:
        client.get_jpeg(10.0, 0.0, 0.2, 128, 128)
    assert err.value.reason == "connection"
    assert (client.requests_sent, client.answers) == (2, 0)


def test_rate_limiter_spaces_calls():
    lim = RateLimiter(50.0)
    t0 = time.monotonic()
    for _ in range(11):
        lim.wait()
    assert time.monotonic() - t0 >= 10 / 50 - 0.01


def test_sql_paging_http(sample):
    cat, images = sample
    table = cat.assign(oh_p50=8.9)
    with FakeSky(cat, images, sql_table=table) as s:
        from galmet.catalog import query_skyserver

        df = query_skyserver({"url": s.url, "page_size": 5, "min_interval_s": 0.0})
        assert len(s.sql_queries) == 3  # 5 + 5 + 2 rows
        assert "TOP 5" in s.sql_queries[0] and "galSpecExtra" in s.sql_queries[0]
    assert df["objID"].dtype == "int64"
    assert sorted(df["objID"]) == sorted(cat["objID"])


def test_sql_through_astroquery(sample):
    cat, images = sample
    with FakeSky(cat, images, sql_table=cat) as s:
        df = catalog.sql_query_astroquery("SELECT TOP 100 p.objID, p.ra FROM PhotoObj AS p",
                                            s.url, 14, timeout_s=10)
        assert len(s.sql_queries) == 1
    assert df["objID"].dtype == "int64"
    assert set(df["objID"]) == set(cat["objID"])  # exact 64-bit ids


def test_sql_error_page_is_an_error():
    with pytest.raises(catalog.SkyServerError, match="error"):
        catalog.parse_sql_csv("<html>error_message: syntax</html>")
    assert catalog.parse_sql_csv("#Table1\nobjID,ra\n1237648702973411443,1.5\n")[
        "objID"].tolist() == [1237648702973411443]
    assert isinstance(catalog.parse_sql_csv("#Table1\n"), pd.DataFrame)
