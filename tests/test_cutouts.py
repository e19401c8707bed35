"""Cutout downloads against the fake SkyServer: faults, cache, resume after kill -9, the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from galmet import cli
from galmet.cutouts.base import CutoutClient, get_provider
from galmet.cutouts.download import (
    NoCutoutsError,
    cache_dir,
    collect_local,
    cutouts_for_shard,
    download_cutouts,
    pixel_scales,
)
from galmet.cutouts.manifest import read_manifest
from tests.conftest import DEMO, EXPERIMENT, ROOT, cutouts_config
from tests.fakesky import FakeSky, made_up_catalog

FAST = dict(timeout_s=0.4, max_attempts=4, backoff_s=0.01, backoff_max_s=0.05,
            max_requests_per_second=None)


@pytest.fixture(scope="module")
def sample():
    return made_up_catalog(DEMO / "images", 40)


def good_files(d: Path) -> dict[int, bytes]:
    return {int(p.stem): p.read_bytes() for p in d.glob("*.jpg")}


SOURCES = ["skyserver", "legacysurvey", "panstarrs"]
# What a uniform image means: SkyServer and Pan-STARRS retry it; for the viewer it means "outside
# the footprint": permanent. Outside its sky, the fake viewer draws black, the fake SkyServer too
# (blank, retried), the fake PS1 service lists no file (no_coverage).
UNIFORM = {"skyserver": "blank", "legacysurvey": "no_coverage", "panstarrs": "blank"}
OUTSIDE = {"skyserver": "blank", "legacysurvey": "no_coverage", "panstarrs": "no_coverage"}
PER_ATTEMPT = {"skyserver": 1, "legacysurvey": 1, "panstarrs": 2}  # requests (a file list first)


def fake_url(source: str, sky) -> str:
    return {"skyserver": sky.base_url, "legacysurvey": sky.viewer_url, "panstarrs": sky.ps1_url}[source]


def client_for(source: str, sky, **kw) -> CutoutClient:
    """A fast client of the fake service ``source``."""
    return CutoutClient(get_provider(source, base_url=fake_url(source, sky)), **{**FAST, **kw})


def served(source: str, sky, images: dict, oid: int) -> bytes:
    """The bytes the fake service gives for a galaxy."""
    return {"skyserver": lambda: images[oid], "legacysurvey": lambda: sky.viewer_image(oid),
            "panstarrs": lambda: sky.ps1_image(oid)}[source]()


def image_requests(source: str, sky):
    """The fake service's image requests per objID."""
    return {"skyserver": sky.jpeg_requests, "legacysurvey": sky.viewer_requests,
            "panstarrs": sky.ps1_requests}[source]


@pytest.mark.parametrize("source", SOURCES)
def test_faults_retries_manifest_and_cache(tmp_path, sky, sample, source):
    cat, images = sample
    ids = cat.objID.tolist()
    uniform = UNIFORM[source]
    recoverable = {ids[0]: ["500", "500"], ids[1]: ["429"], ids[2]: ["html"], ids[3]: ["empty"],
                   ids[4]: ["truncated"], ids[6]: ["slow"], ids[7]: ["drop"],
                   ids[8]: ["wrong_size", "503"], **({ids[5]: ["blank"]} if uniform == "blank" else {})}
    permanent = {ids[10]: "404", ids[11]: "500", ids[12]: "html", ids[13]: "blank",
                 ids[14]: "truncated", ids[15]: "empty", ids[16]: "wrong_size", ids[17]: "429"}
    if source == "panstarrs":  # faults of the file list, the first of its two requests
        recoverable[ids[9]] = ["list:html", "list:500", "list:drop"]
        permanent.update({ids[18]: "list:html", ids[19]: "list:503"})
    sky.retry_after = "0"
    for k, v in {**recoverable, **permanent}.items():
        faults = [v] if isinstance(v, str) else v
        if faults[0].startswith("list:"):
            listed = [f.removeprefix("list:") for f in faults]
            sky.list_faults[k] = listed[0] if isinstance(v, str) else listed
        else:
            sky.faults[k] = list(v) if isinstance(v, list) else v
    outside = 1237648702973411999  # a position the fake survey does not cover
    cat = pd.concat([cat, pd.DataFrame({"objID": [outside], "ra": [359.5], "dec": [-89.5],
                                        "petroR90_r": [5.0]})], ignore_index=True)
    out = tmp_path / "cache"
    res = download_cutouts(cat, out, client_for(source, sky), scale=0.117, concurrency=6, progress=False)

    expect = {"404": "http_404", "500": "http_5xx", "html": "not_jpeg", "blank": uniform,
              "truncated": "truncated", "empty": "empty", "wrong_size": "wrong_size",
              "429": "http_429", "list:html": "bad_answer", "list:503": "http_5xx"}
    fails = res.failures.set_index("objID")
    assert fails["reason"].to_dict() == {**{k: expect[v] for k, v in permanent.items()},
                                         outside: OUTSIDE[source]}
    assert fails.loc[ids[10], "attempts"] == 1  # 404: permanent, not retried
    assert fails.loc[ids[11], "attempts"] == 4
    assert fails.loc[outside, "attempts"] == (4 if OUTSIDE[source] == "blank" else 1)
    # every recoverable fault ends as the byte-exact image; nothing bad is cached
    cached = good_files(out)
    assert set(cached) == set(ids) - set(permanent)
    assert all(cached[k] == served(source, sky, images, k) for k in cached)
    assert set(res.manifest.objID) == set(cached)
    assert res.manifest.objID.dtype == "int64"
    assert all(Path(p).is_file() for p in res.manifest.path)
    assert not list(out.glob(".*"))  # no temporary files left
    assert read_manifest(out)["provider"] == source

    # rerun: not one request for a cached galaxy, nor for one known to be outside the survey;
    # only the other failures are tried again
    before = sky.total_requests()
    sky.faults.clear()
    sky.list_faults.clear()
    res2 = download_cutouts(cat, out, client_for(source, sky), scale=0.117, concurrency=4, progress=False)
    no_coverage = {k for k, r in fails["reason"].items() if r == "no_coverage"}
    retried_outside = 4 if OUTSIDE[source] == "blank" else 0  # SkyServer asks 4 times, again
    assert sky.total_requests() - before == PER_ATTEMPT[source] * (
        len(set(permanent) - no_coverage) + retried_outside)
    assert res2.cached == len(ids) - len(permanent)
    assert res2.failures.to_dict("records") == [{"objID": k, "reason": "no_coverage", "attempts": 0}
                                                for k in sorted(no_coverage)] + (
        [] if no_coverage else [{"objID": outside, "reason": "blank", "attempts": 4}])


def test_adaptive_scale_and_bad_rows(tmp_path, sky, sample):
    cat, _ = sample
    cat = cat.head(6).copy()
    cat.loc[4, "petroR90_r"] = -9999.0
    cat.loc[5, "dec"] = 123.0
    scales = pixel_scales(cat, "adaptive", 128)
    assert scales[0] == pytest.approx(2 * cat.petroR90_r[0] / 0.396 / 128)
    assert np.isnan(scales[4])
    res = download_cutouts(cat, tmp_path, client_for("skyserver", sky), width=128,
                           height=128, scale="adaptive", concurrency=2, progress=False)
    for i in range(4):
        assert sky.scales[int(cat.objID[i])] == pytest.approx(scales[i], rel=1e-5)
    assert res.failures.set_index("objID")["reason"].to_dict() == {
        int(cat.objID[4]): "no_scale", int(cat.objID[5]): "bad_position"}
    assert sky.total_jpeg_requests() == 4


def test_cache_dir_naming():
    assert cache_dir("resources/cutouts", "adaptive", 128, 128, "skyserver") == Path(
        "resources/cutouts/adaptive-128x128")
    assert cache_dir("c", 0.117, 64, 96, "skyserver") == Path("c/0.117-64x96")
    with pytest.raises(ValueError, match="arcsec"):
        cache_dir("c", "auto", 64, 64, "skyserver")


def test_local_source_missing_files(tmp_path):
    cat = pd.read_csv(DEMO / "catalog.csv", dtype={"objID": "int64"}).head(5)
    extra = pd.DataFrame({"objID": [1237648702973411999], "oh_p50": [8.9]})
    res = collect_local(pd.concat([cat, extra]), DEMO / "images")
    assert len(res.manifest) == 5 and res.failures.to_dict("records") == [
        {"objID": 1237648702973411999, "reason": "missing", "attempts": 0}]
    with pytest.raises(FileNotFoundError, match="local_dir"):
        collect_local(cat, tmp_path / "nope")


def test_shard_step_skyserver(tmp_path, sky, sample):
    cat, images = sample
    shard = tmp_path / "0.parquet"
    cat.head(5).to_parquet(shard)
    sky.faults[int(cat.objID[0])] = "404"
    cfg = cutouts_config(source="skyserver", base_url=sky.base_url, cache_dir=str(tmp_path / "c"),
                         scale="adaptive", width=128, height=128, concurrency=2,
                         max_requests_per_second=0, timeout_s=1, max_attempts=2, backoff_s=0.01)
    cutouts_for_shard(shard, tmp_path / "m.parquet", tmp_path / "f.csv", cfg)
    m = pd.read_parquet(tmp_path / "m.parquet")
    assert m.objID.tolist() == cat.objID[1:5].tolist()
    assert all(Path(p).parent == tmp_path / "c" / "adaptive-128x128" for p in m.path)
    f = pd.read_csv(tmp_path / "f.csv", dtype={"objID": "int64"})
    assert f.to_dict("records") == [{"objID": int(cat.objID[0]), "reason": "http_404",
                                     "attempts": 1}]


def test_shard_step_fails_without_a_usable_cutout_and_says_why(tmp_path, sky, sample):
    """An offline service, galaxies outside the footprint, files not there: the shard stops with
    the cause and the fix, instead of passing an empty manifest on to training."""
    cat, _ = sample
    shard = tmp_path / "0.parquet"
    cat.head(4).to_parquet(shard)
    outs = (tmp_path / "m.parquet", tmp_path / "f.csv")
    offline = cutouts_config(source="skyserver", base_url="http://127.0.0.1:9", cache_dir=str(tmp_path / "c"),
                             scale="adaptive", width=128, height=128, concurrency=2,
                             max_requests_per_second=0, timeout_s=0.5, max_attempts=1, backoff_s=0.01)
    with pytest.raises(NoCutoutsError, match=r"none of its 4 galaxies .* no request reached the skyserver "
                       r"service \(4 connection\): it is unreachable"):
        cutouts_for_shard(shard, *outs, offline)
    assert not outs[0].exists() and not outs[1].exists()
    for oid in cat.objID.head(4):
        sky.faults[int(oid)] = "blank"  # to the viewer, a uniform image: outside its footprint
    viewer = {**offline, "source": "legacysurvey", "base_url": sky.viewer_url}
    with pytest.raises(NoCutoutsError, match=r"no image at any of their positions \(4 no_coverage\).*"
                       "cutouts.layer"):
        cutouts_for_shard(shard, *outs, viewer)
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoCutoutsError, match=r"no <objID>.jpg of theirs in cutouts.local_dir .*empty \(4 missing\)"):
        cutouts_for_shard(shard, *outs, cutouts_config(source="local", local_dir=str(tmp_path / "empty")))


def _cli(*args):
    return [sys.executable, "-m", "galmet.cli", "download-cutouts", *map(str, args)]


@pytest.mark.parametrize("source", SOURCES)
def test_cli_resume_after_kill(tmp_path, sample, source):
    """kill -9 mid-download, rerun: only the missing cutouts are requested, none is corrupt."""
    cat, images = sample
    cat.to_csv(tmp_path / "cat.csv", index=False)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with FakeSky(cat, images, latency_s=0.08) as sky:
        service = ["--source", source, "--base-url", fake_url(source, sky)]
        requests = image_requests(source, sky)
        proc = subprocess.Popen(
            _cli("--catalog", tmp_path / "cat.csv", "--out", out, *service,
                 "--concurrency", 2, "--no-progress", "--max-rate", 0),
            env=env, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(list(out.glob("*.jpg"))) < 8:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        time.sleep(0.3)  # let the server finish counting the dead process's last requests
        have = good_files(out)
        assert 8 <= len(have) < len(cat), "the kill must land mid-download"
        assert all(have[k] == served(source, sky, images, k) for k in have)  # nothing corrupt
        sent = dict(requests)

        rc = cli.main(["download-cutouts", "--catalog", str(tmp_path / "cat.csv"), "--out",
                       str(out), *service, "--concurrency", "4", "--no-progress", "--max-rate", "0"])
        assert rc == 0
        new = {k: requests[k] - sent.get(k, 0) for k in requests}
        assert all(new.get(k, 0) == 0 for k in have)  # cached ones: zero requests
        assert sum(new.values()) == len(cat) - len(have)
        final = good_files(out)
        assert final == {int(k): served(source, sky, images, int(k)) for k in cat.objID}
    assert pd.read_csv(out / "failures.csv").empty
    assert read_manifest(out)["provider"] == source


def test_cli_exit_codes_and_failures_csv(tmp_path, sky, sample, capsys):
    cat, _ = sample
    cat.head(4).to_csv(tmp_path / "cat.csv", index=False)
    base = ["download-cutouts", "--catalog", str(tmp_path / "cat.csv"), "--base-url",
            sky.base_url, "--no-progress", "--timeout", "1", "--backoff", "0.01"]
    sky.faults[int(cat.objID[0])] = "404"
    assert cli.main([*base, "--out", str(tmp_path / "o")]) == 0  # finished, one failure
    f = pd.read_csv(tmp_path / "o" / "failures.csv", dtype={"objID": "int64"})
    assert f.objID.tolist() == [int(cat.objID[0])] and f.reason.tolist() == ["http_404"]
    sky.faults.clear()
    assert cli.main([*base, "--out", str(tmp_path / "o")]) == 0
    assert pd.read_csv(tmp_path / "o" / "failures.csv").empty  # rewritten: current failures

    (tmp_path / "file").write_text("x")
    assert cli.main([*base, "--out", str(tmp_path / "file" / "sub")]) == 1  # unwritable DIR
    bad = base.copy()
    bad[2] = str(tmp_path / "missing.csv")
    assert cli.main([*bad, "--out", str(tmp_path / "o2")]) == 1  # unreadable catalog
    cat[["objID", "ra"]].to_csv(tmp_path / "nodec.csv", index=False)
    bad[2] = str(tmp_path / "nodec.csv")
    assert cli.main([*bad, "--out", str(tmp_path / "o2")]) == 1
    assert "dec" in capsys.readouterr().err
    refused = [*base[:4], "http://127.0.0.1:9", "--no-progress", "--max-attempts", "1"]
    assert cli.main([*refused, "--out", str(tmp_path / "o3")]) == 1  # no request got through
    with pytest.raises(SystemExit) as err:
        cli.main([*base, "--out", str(tmp_path / "o4"), "--width", "32"])
    assert err.value.code == 2
    with pytest.raises(SystemExit):
        cli.main([*base, "--out", str(tmp_path / "o4"), "--scale", "big"])


SNAKEFILE = f"""
configfile: "config.yaml"
include: "{ROOT}/workflow/rules/common.smk"
include: "{ROOT}/workflow/rules/catalog.smk"
include: "{ROOT}/workflow/rules/cutouts.smk"

rule all_cutouts:
    input: cutout_manifests
    output: "all.txt"
    shell: "echo {{input}} > {{output}}"
"""


def _snakemake(work: Path, *extra) -> str:
    cmd = [str(Path(sys.executable).parent / "snakemake"), "--cores", "2", "all_cutouts",
           "--directory", str(work), "-s", str(work / "Snakefile"), *extra]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout + p.stderr


def test_workflow_incremental_rerun(tmp_path):
    """Catalog from the fake SQL service, cutouts from the fake getjpeg, through the real rules:
    1% more galaxies -> only the new cutouts are requested and only their shards rerun."""
    import yaml

    from galmet.catalog import shard_of

    cat, images = made_up_catalog(DEMO / "images", 100)
    table = cat.assign(oh_p50=8.9, reliable=1)
    with FakeSky(cat, images, sql_table=table.head(99)) as sky:
        (tmp_path / "Snakefile").write_text(SNAKEFILE)
        (tmp_path / "config.yaml").write_text(yaml.safe_dump({
            **EXPERIMENT,
            "catalog": {"source": "skyserver", "skyserver": {
                "url": sky.url, "page_size": 40, "min_interval_s": 0, "timeout_s": 10}},
            "cutouts": {"source": "skyserver", "base_url": sky.base_url,
                        "cache_dir": str(tmp_path / "cache"), "concurrency": 4,
                        "max_requests_per_second": 0, "timeout_s": 5, "backoff_s": 0.01},
            "shards": 4}))
        _snakemake(tmp_path)
        assert sky.total_jpeg_requests() == 99 and len(sky.sql_queries) == 3
        manifests = {s: tmp_path / f"results/cutouts/{s}.parquet" for s in "0123"}
        before = {s: p.stat().st_mtime_ns for s, p in manifests.items()}

        sky.sql_table = table  # the catalog grows by one galaxy (1%)
        log = _snakemake(tmp_path, "--forcerun", "catalog_skyserver")
        assert sky.total_jpeg_requests() == 100  # only the new galaxy was requested
        new_shard = str(shard_of([cat.objID.iloc[99]], 4)[0])
        changed = {s for s, p in manifests.items() if p.stat().st_mtime_ns != before[s]}
        assert changed == {new_shard}, log
        assert log.count("rule cutouts:") == 1
        m = pd.concat(pd.read_parquet(p) for p in manifests.values())
        assert sorted(m.objID) == sorted(cat.objID)


def test_every_registered_service_is_offered_by_the_schema_the_cli_and_the_workflow():
    """One line in PROVIDERS: the config accepts it, --source offers it, its help and its
    workflow resource name it; nothing else lists the services."""
    from galmet.cli.download_cutouts import cli_parser
    from galmet.config import load_schema
    from galmet.cutouts.base import PROVIDERS

    source = load_schema()["properties"]["cutouts"]["properties"]["source"]
    assert source["enum"] == ["local", *PROVIDERS]
    action = next(a for a in cli_parser()._actions if a.dest == "source")
    assert action.choices == list(PROVIDERS)
    for name in PROVIDERS:
        provider = get_provider(name)
        assert f"{name}: {provider.summary}" in source["description"]
        assert f"{name}: {provider.summary}" in action.help
        assert provider.resource == f"{name}_jobs"
    smk = (ROOT / "workflow" / "rules" / "cutouts.smk").read_text()
    assert "**CUTOUT_RESOURCES" in smk and "skyserver" not in smk.split("resources:")[1]
