"""The Legacy Surveys viewer as a cutout provider, beside SkyServer: requests, limits, caches
that never mix, the SkyServer caches of before, config and command-line checks.

Fault recovery, nothing bad cached, zero requests on rerun and resume after kill -9 run for
both providers in tests/test_cutouts.py (parametrised by source)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from galmet import cli
from galmet.config import ConfigError, load_config
from galmet.cutouts.base import CutoutClient, CutoutError, get_provider
from galmet.cutouts.download import cache_dir, cutouts_for_shard, download_cutouts
from galmet.cutouts.legacysurvey import LegacySurvey
from galmet.cutouts.manifest import CutoutDirMismatch, read_manifest
from tests.conftest import DEMO, EXPERIMENT, ROOT, cutouts_config
from tests.fakesky import made_up_catalog

FAST = dict(timeout_s=1.0, max_attempts=3, backoff_s=0.01, backoff_max_s=0.05,
            max_requests_per_second=None)


@pytest.fixture(scope="module")
def sample():
    return made_up_catalog(DEMO / "images", 12)


def test_viewer_requests_sizes_layers_and_cache_names():
    ls = LegacySurvey()
    assert ls.endpoint() == "https://www.legacysurvey.org/viewer/cutout.jpg"
    assert LegacySurvey(base_url="http://h:1/viewer/").endpoint() == "http://h:1/viewer/cutout.jpg"
    assert LegacySurvey(base_url="http://h:1/x/cutout.jpg").endpoint() == "http://h:1/x/cutout.jpg"
    assert ls.query(10.5, -3.25, 0.262, 64, 64) == {
        "ra": "10.50000000", "dec": "-3.25000000", "layer": "ls-dr10-grz", "pixscale": "0.262", "size": 64}
    # the default covers the north (DR9 BASS/MzLS merged in) with one g,r,z colour mapping
    assert (ls.layer, ls.bands, ls.data_release) == ("ls-dr10-grz", "zrg", "DR10")
    assert (LegacySurvey("ls-dr9").bands, LegacySurvey("ls-dr9").data_release) == ("zrg", "DR9")
    assert LegacySurvey("sdss").bands == "irg" and LegacySurvey("sdss").data_release is None
    ls.check_size(512, 512)
    with pytest.raises(ValueError, match="square"):
        ls.check_size(128, 64)
    with pytest.raises(ValueError, match="512"):
        ls.check_size(600, 600)
    with pytest.raises(ValueError, match="no layers"):
        get_provider("skyserver", layer="ls-dr10")
    assert cache_dir("c", "adaptive", 128, 128, "legacysurvey") == Path("c/legacysurvey-ls-dr10-grz-adaptive-128x128")
    assert cache_dir("c", 0.262, 64, 64, "legacysurvey", "ls-dr9") == Path("c/legacysurvey-ls-dr9-0.262-64x64")
    assert cache_dir("c", 0.262, 64, 64, "skyserver") == Path("c/0.262-64x64")  # SkyServer's layout, kept


def test_fake_viewer_gets_the_viewer_query_and_black_means_no_coverage(sky, sample):
    cat, _ = sample
    oid = int(cat.objID[0])
    client = CutoutClient(get_provider("legacysurvey", layer="ls-dr9", base_url=sky.viewer_url), **FAST)
    r = client.get_jpeg(cat.ra[0], cat.dec[0], 0.262, 128, 128)
    assert r.content == sky.viewer_image(oid) and r.attempts == 1
    assert sky.viewer_queries[oid] == {"layer": "ls-dr9", "pixscale": 0.262, "size": 128}
    assert any(ua.startswith("galmet/") for ua in sky.user_agents)
    with pytest.raises(CutoutError) as err:  # outside the footprint: black, permanent, asked once
        client.get_jpeg(1.0, -89.0, 0.262, 128, 128)
    assert (err.value.reason, err.value.attempts) == ("no_coverage", 1)


def _shard_cfg(tmp_path, sky, source):
    return cutouts_config(source=source, base_url=sky.base_url if source == "skyserver" else sky.viewer_url,
                          cache_dir=str(tmp_path / "c"), scale="adaptive", width=128, height=128,
                          concurrency=2, max_requests_per_second=0, timeout_s=1, max_attempts=2,
                          backoff_s=0.01)


def test_one_catalog_from_both_providers_lands_in_two_caches_that_never_mix(tmp_path, sky, sample):
    cat, images = sample
    shard = tmp_path / "0.parquet"
    cat.to_parquet(shard)
    for source in ("skyserver", "legacysurvey", "skyserver", "legacysurvey"):
        cutouts_for_shard(shard, tmp_path / f"{source}.parquet", tmp_path / f"{source}.csv",
                          _shard_cfg(tmp_path, sky, source))
    # each galaxy asked once of each service: the second round came from the caches
    assert sky.total_jpeg_requests() == len(cat) and sky.total_viewer_requests() == len(cat)
    sdss, ls = tmp_path / "c" / "adaptive-128x128", tmp_path / "c" / "legacysurvey-ls-dr10-grz-adaptive-128x128"
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == sorted([sdss.name, ls.name])
    for d, source in ((sdss, "skyserver"), (ls, "legacysurvey")):
        m = pd.read_parquet(tmp_path / f"{source}.parquet")
        assert sorted(m.objID) == sorted(cat.objID) and all(Path(p).parent == d for p in m.path)
        want = images if source == "skyserver" else {k: sky.viewer_image(k) for k in images}
        assert {int(p.stem): p.read_bytes() for p in d.glob("*.jpg")} == {int(k): want[int(k)] for k in cat.objID}
    assert (read_manifest(sdss)["provider"], read_manifest(sdss)["bands"]) == ("skyserver", "irg")
    assert (read_manifest(ls)["layer"], read_manifest(ls)["bands"]) == ("ls-dr10-grz", "zrg")

    # a directory of one kind refuses another: in the package and on the command line
    client = CutoutClient(get_provider("legacysurvey", base_url=sky.viewer_url), **FAST)
    with pytest.raises(CutoutDirMismatch, match="another provider"):
        download_cutouts(cat, sdss, client, progress=False)
    cat.to_csv(tmp_path / "cat.csv", index=False)
    rc = cli.main(["download-cutouts", "--catalog", str(tmp_path / "cat.csv"), "--out", str(sdss),
                   "--source", "legacysurvey", "--base-url", sky.viewer_url, "--no-progress"])
    assert rc == 2 and sky.total_viewer_requests() == len(cat)
    with pytest.raises(CutoutDirMismatch, match="scale"):
        download_cutouts(cat, ls, client, scale=0.262, progress=False)


def test_skyserver_cache_of_before_is_kept_and_never_fetched_again(tmp_path, sky, sample):
    """A cache written before the manifests (no cutouts.json) gets one; nothing is asked again."""
    cat, images = sample
    old = cache_dir(tmp_path / "c", "adaptive", 128, 128, "skyserver")
    old.mkdir(parents=True)
    for oid in cat.objID:
        (old / f"{oid}.jpg").write_bytes(images[int(oid)])
    cat.to_parquet(tmp_path / "0.parquet")
    res = cutouts_for_shard(tmp_path / "0.parquet", tmp_path / "m.parquet", tmp_path / "f.csv",
                            _shard_cfg(tmp_path, sky, "skyserver"))
    assert sky.total_jpeg_requests() == 0 and res.cached == len(cat)
    assert read_manifest(old)["data_release"] == "DR14"


def test_config_checks_the_service_limits():
    base = {**EXPERIMENT, "catalog": {"source": "table", "path": "x.csv"}}
    cfg = load_config({**base, "cutouts": {"source": "legacysurvey", "scale": 0.262, "width": 64, "height": 64}})
    assert cfg["cutouts"]["layer"] is None and cfg["cutouts"]["base_url"] is None  # the service's own
    with pytest.raises(ConfigError, match="square"):
        load_config({**base, "cutouts": {"source": "legacysurvey", "width": 128, "height": 64}})
    with pytest.raises(ConfigError, match="512"):
        load_config({**base, "cutouts": {"source": "legacysurvey", "width": 1024, "height": 1024}})
    with pytest.raises(ConfigError, match="cutouts.layer"):
        load_config({**base, "cutouts": {"source": "skyserver", "layer": "ls-dr10"}})
    paper = yaml.safe_load((ROOT / "configs" / "paper.yaml").read_text())
    ls = load_config(ROOT / "configs" / "legacysurvey.yaml")
    for key in ("catalog", "train", "baselines", "shards"):
        assert ls[key] == load_config(paper)[key], key  # the paper's selection and recipe
    assert (ls["cutouts"]["source"], ls["cutouts"]["layer"]) == ("legacysurvey", "ls-dr10-grz")
    assert ls["cutouts"]["scale"] == paper["cutouts"]["scale"]  # the paper's angular field


def test_cli_refuses_what_the_service_cannot_do(tmp_path, sky, sample):
    cat, _ = sample
    cat.to_csv(tmp_path / "cat.csv", index=False)
    base = ["download-cutouts", "--catalog", str(tmp_path / "cat.csv"), "--out", str(tmp_path / "o"),
            "--base-url", sky.viewer_url, "--no-progress"]
    for bad in (["--source", "legacysurvey", "--width", "128", "--height", "64"],
                ["--source", "legacysurvey", "--width", "600", "--height", "600"],
                ["--source", "skyserver", "--layer", "ls-dr10"]):
        with pytest.raises(SystemExit) as err:
            cli.main([*base, *bad])
        assert err.value.code == 2
    assert sky.total_viewer_requests() == 0
    assert cli.main([*base, "--source", "legacysurvey", "--layer", "ls-dr10", "--width", "128",
                     "--height", "128", "--scale", "0.262", "--concurrency", "8"]) == 0
    m = read_manifest(tmp_path / "o")
    assert (m["provider"], m["layer"], m["bands"], m["scale"], m["size"]) == (
        "legacysurvey", "ls-dr10", "(iz)rg", 0.262, [128, 128])
