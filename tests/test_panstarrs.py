"""Pan-STARRS1 DR2 through the PS1 image cutout service: two requests a cutout (the stack files,
then fitscut), the files' table read as the service writes it, no coverage, config and CLI.

Fault recovery, nothing bad cached, zero requests on rerun and resume after kill -9 run for
every provider in tests/test_cutouts.py (parametrised by source); the survey check of
Pan-STARRS images against SDSS and Legacy Surveys models in tests/test_provenance.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from galmet import cli
from galmet.config import ConfigError, load_config
from galmet.cutouts.base import CutoutClient, CutoutError, get_provider
from galmet.cutouts.download import cache_dir
from galmet.cutouts.manifest import read_manifest
from galmet.cutouts.panstarrs import PanSTARRS, stack_files
from tests.conftest import DEMO, EXPERIMENT, ROOT
from tests.fakesky import made_up_catalog

FAST = dict(timeout_s=1.0, max_attempts=3, backoff_s=0.01, backoff_max_s=0.05,
            max_requests_per_second=None)

# ps1filenames.py's answer at (10.5, -3.25) with filters=gri&type=stack, in the service's layout
LISTING = """projcell subcell ra dec filter mjd type filename shortname badflag
1206 033 10.500000 -3.250000 g 0 stack /rings.v3.skycell/1206/033/rings.v3.skycell.1206.033.stk.g.unconv.fits rings.v3.skycell.1206.033.stk.g.unconv.fits 0
1206 033 10.500000 -3.250000 i 0 stack /rings.v3.skycell/1206/033/rings.v3.skycell.1206.033.stk.i.unconv.fits rings.v3.skycell.1206.033.stk.i.unconv.fits 0
1206 033 10.500000 -3.250000 r 0 stack /rings.v3.skycell/1206/033/rings.v3.skycell.1206.033.stk.r.unconv.fits rings.v3.skycell.1206.033.stk.r.unconv.fits 0
"""  # noqa: E501


@pytest.fixture(scope="module")
def sample():
    return made_up_catalog(DEMO / "images", 8)


def test_requests_bands_sizes_and_cache_name():
    ps = get_provider("panstarrs")
    assert isinstance(ps, PanSTARRS)
    assert ps.endpoint() == "https://ps1images.stsci.edu/cgi-bin/ps1filenames.py"
    assert ps.cutout_url() == "https://ps1images.stsci.edu/cgi-bin/fitscut.cgi"
    # 0.25"/px stacks: 128 px at 0.5"/px is cut from 256 stack pixels and resampled to 128
    assert ps.query(10.5, -3.25, 0.5, 128, 128) == {
        "ra": "10.50000000", "dec": "-3.25000000", "size": 256, "output_size": 128, "format": "jpg"}
    assert ps.query(10.5, -3.25, 0.117, 128, 128)["size"] == 60
    assert (ps.survey, ps.data_release, ps.bands, ps.layer) == ("Pan-STARRS1", "DR2", "irg", None)
    with pytest.raises(ValueError, match="square"):
        ps.check_size(128, 64)
    assert cache_dir("c", "adaptive", 128, 128, "panstarrs") == Path("c/panstarrs-adaptive-128x128")
    assert ps.resource == "panstarrs_jobs"


def test_the_files_table_as_the_service_writes_it():
    files = stack_files(LISTING)
    assert files["i"].endswith("1206.033.stk.i.unconv.fits") and set(files) == {"g", "r", "i"}
    with pytest.raises(CutoutError) as err:  # no stack there: outside the survey
        stack_files(LISTING.splitlines()[0] + "\n")
    assert err.value.reason == "no_coverage"
    with pytest.raises(CutoutError, match="no Pan-STARRS i stack") as err:
        stack_files("\n".join(ln for ln in LISTING.splitlines() if " i 0 stack" not in ln))
    assert err.value.reason == "no_coverage"
    for bad in ("<!DOCTYPE html><html>Service unavailable</html>", "", "ra dec\n1 2\n"):
        with pytest.raises(CutoutError) as err:
            stack_files(bad)
        assert err.value.reason == "bad_answer"


def test_two_requests_a_cutout_the_bands_as_rgb_and_no_coverage(sky, sample):
    cat, images = sample
    oid = int(cat.objID[0])
    client = CutoutClient(get_provider("panstarrs", base_url=sky.ps1_url), **FAST)
    r = client.get_jpeg(cat.ra[0], cat.dec[0], 0.117, 128, 128)
    # the fake refuses (400) any red, green, blue but the galaxy's i, r, g stacks
    assert r.content == sky.ps1_image(oid) and r.attempts == 1
    assert (sky.ps1_list_requests[oid], sky.ps1_requests[oid], client.requests_sent) == (1, 1, 2)
    assert sky.ps1_queries[oid] == {"size": 60, "output_size": 128, "format": "jpg"}
    r = client.get_jpeg(cat.ra[1], cat.dec[1], 0.5, 64, 64)  # resampled to what was asked
    assert r.content == sky.ps1_image(int(cat.objID[1]), 64)
    assert sky.ps1_queries[int(cat.objID[1])] == {"size": 128, "output_size": 64, "format": "jpg"}
    with pytest.raises(CutoutError) as err:  # no files listed: permanent, one request, no fitscut
        client.get_jpeg(1.0, -89.0, 0.25, 128, 128)
    assert (err.value.reason, err.value.attempts, client.requests_sent) == ("no_coverage", 1, 5)
    assert sky.total_requests() == 5


def test_config_and_its_example(tmp_path):
    base = {**EXPERIMENT, "catalog": {"source": "table", "path": "x.csv"}}
    cfg = load_config({**base, "cutouts": {"source": "panstarrs"}})
    assert cfg["cutouts"]["base_url"] is None  # the service's own
    with pytest.raises(ConfigError, match="square"):
        load_config({**base, "cutouts": {"source": "panstarrs", "width": 128, "height": 96}})
    with pytest.raises(ConfigError, match="cutouts.layer"):
        load_config({**base, "cutouts": {"source": "panstarrs", "layer": "ls-dr10"}})
    paper = load_config(yaml.safe_load((ROOT / "configs" / "paper.yaml").read_text()))
    ps = load_config(ROOT / "configs" / "panstarrs.yaml")
    for key in ("catalog", "train", "baselines", "shards"):
        assert ps[key] == paper[key], key  # the paper's selection and recipe
    assert (ps["cutouts"]["source"], ps["cutouts"]["scale"]) == ("panstarrs", paper["cutouts"]["scale"])


def test_cli_downloads_and_the_manifest_says_what_they_are(tmp_path, sky, sample):
    cat, _ = sample
    cat.to_csv(tmp_path / "cat.csv", index=False)
    out = tmp_path / "ps"
    base = ["download-cutouts", "--catalog", str(tmp_path / "cat.csv"), "--out", str(out),
            "--source", "panstarrs", "--base-url", sky.ps1_url, "--no-progress"]
    with pytest.raises(SystemExit) as err:
        cli.main([*base, "--width", "128", "--height", "64"])
    assert err.value.code == 2 and sky.total_requests() == 0
    assert cli.main(base) == 0
    assert sorted(int(p.stem) for p in out.glob("*.jpg")) == sorted(cat.objID)
    m = read_manifest(out)
    assert {k: m[k] for k in ("provider", "survey", "layer", "data_release", "bands", "scale", "size")} == {
        "provider": "panstarrs", "survey": "Pan-STARRS1", "layer": None, "data_release": "DR2",
        "bands": "irg", "scale": "adaptive", "size": [128, 128]}
    # the adaptive field: 2 * petroR90_r / 0.396 arcsec, in 0.25" stack pixels
    for row in cat.itertuples():
        assert sky.ps1_queries[int(row.objID)]["size"] == round(2 * row.petroR90_r / 0.396 / 0.25)
