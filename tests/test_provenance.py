"""Images know where they came from (cutouts.json), and a model is not applied to images of
another survey, band order or pixel scale by mistake: galmet predict and the infer step."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from galmet import cli
from galmet.cutouts.legacysurvey import LegacySurvey
from galmet.cutouts.manifest import (
    CLI_FIX,
    SurveyMismatchError,
    check_survey,
    describe,
    read_manifest,
    write_manifest,
)
from galmet.cutouts.panstarrs import PanSTARRS
from galmet.cutouts.skyserver import SkyServer
from galmet.infer import predict_shard
from galmet.modelfile import images_block
from galmet.modelfile import load as load_model
from tests.conftest import DEMO
from tests.fakesky import made_up_catalog
from tests.untrained import write_untrained_model

SDSS = SkyServer().info("adaptive", 128, 128)
LS = LegacySurvey().info(0.262, 64, 64)
PS = PanSTARRS().info("adaptive", 128, 128)


@pytest.fixture(scope="module")
def sample():
    return made_up_catalog(DEMO / "images", 6)


@pytest.fixture(scope="module")
def sdss_model(tmp_path_factory):
    """A model that says what the demo model says: trained on the bundled SDSS images."""
    block = images_block("local", "adaptive", 128, 128, local_dir=str(DEMO / "images"))
    return write_untrained_model(tmp_path_factory.mktemp("m") / "model.pt", res=16, images=block)


def test_bundled_demo_images_say_what_they_are():
    m = read_manifest(DEMO / "images")
    assert {k: m[k] for k in ("provider", "data_release", "bands", "scale", "size")} == {
        "provider": "skyserver", "data_release": "DR14", "bands": "irg", "scale": "adaptive", "size": [128, 128]}


def test_check_survey_rules():
    assert check_survey(SDSS, SDSS) is None
    assert check_survey({**SDSS, "size": [64, 64], "data_release": "DR16"}, SDSS) is None  # re-binned; same imaging
    with pytest.raises(SurveyMismatchError) as err:
        check_survey(LS, SDSS, where="the images in X", model="the model M")
    text = str(err.value)
    assert "differ in survey, band order and pixel scale" in text and "--allow-survey-mismatch" in text
    assert describe(LS) in text and describe(SDSS) in text
    fixed = SkyServer().info(0.2, 128, 128)
    assert check_survey(SkyServer().info(0.2019, 128, 128), fixed) is None  # within 1%
    for other in (SkyServer().info(0.205, 128, 128), SDSS):  # 2.5% off; adaptive vs fixed
        with pytest.raises(SurveyMismatchError, match="differ in pixel scale"):
            check_survey(other, fixed)
    with pytest.raises(SurveyMismatchError, match="differ in band order"):
        check_survey(LegacySurvey("ls-dr10").info(0.262, 64, 64), LS)
    allowed = check_survey(LS, SDSS, allow=True, fix="infer.allow_survey_mismatch: true")
    assert allowed.startswith("survey mismatch allowed (infer.allow_survey_mismatch: true)")
    # no manifest: a warning that says what the model expects, never an error
    assert "SDSS DR14 (skyserver; bands irg" in check_survey(None, SDSS)
    # model files written before the providers (``service``), or with nothing recorded
    old = {"source": "skyserver", "service": "skyserver", "data_release": "DR14", "bands": "irg",
           "scale": "adaptive", "size": [128, 128]}
    assert check_survey(SDSS, old) is None
    with pytest.raises(SurveyMismatchError, match="trained on SDSS DR14"):
        check_survey(LS, old)
    assert "does not record" in check_survey(LS, None)
    assert check_survey(None, None) is None
    assert check_survey(None, {"source": "local", "service": None, "bands": None, "scale": 0.1, "size": [64, 64]}) \
        is None


def test_predict_refuses_legacy_survey_images_for_an_sdss_model(tmp_path, sky, sample, sdss_model, capsys):
    """Legacy Surveys cutouts downloaded for real (fake viewer), the SDSS model applied to them."""
    cat, _ = sample
    cat.to_csv(tmp_path / "cat.csv", index=False)
    images = tmp_path / "ls"
    assert cli.main(["download-cutouts", "--catalog", str(tmp_path / "cat.csv"), "--out", str(images),
                     "--source", "legacysurvey", "--base-url", sky.viewer_url, "--width", "128",
                     "--height", "128", "--scale", "0.262", "--no-progress"]) == 0
    capsys.readouterr()
    predict = ["predict", "--model", str(sdss_model), "--images", str(images)]
    assert cli.main([*predict, "--out", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"galmet predict: the images in {images} are Legacy Surveys ls-dr10-grz")
    assert f"the model {sdss_model} was trained on SDSS DR14" in err and "--allow-survey-mismatch" in err
    assert not (tmp_path / "p.csv").exists()

    # galmet explain checks the same way
    explain = ["explain", "--model", str(sdss_model), "--images", str(images), "--out", str(tmp_path / "x"),
               "--no-png", "--random-orders", "1", "--steps", "2"]
    assert cli.main(explain) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"galmet explain: the images in {images} are Legacy Surveys ls-dr10-grz")
    assert not (tmp_path / "x" / "saliency.npz").exists()
    assert cli.main([*explain, "--allow-survey-mismatch"]) == 0
    assert "# warning: survey mismatch allowed" in (tmp_path / "x" / "skipped.log").read_text()

    assert cli.main([*predict, "--out", str(tmp_path / "p.csv"), "--allow-survey-mismatch"]) == 0
    assert len(pd.read_csv(tmp_path / "p.csv")) == len(cat)
    assert "# warning: survey mismatch allowed (--allow-survey-mismatch)" in (tmp_path / "p.csv.log").read_text()

    # a catalog whose paths point into that folder is checked the same way
    pd.DataFrame({"objID": cat.objID, "path": [str(images / f"{i}.jpg") for i in cat.objID]}).to_csv(
        tmp_path / "paths.csv", index=False)
    assert cli.main(["predict", "--model", str(sdss_model), "--catalog", str(tmp_path / "paths.csv"),
                     "--out", str(tmp_path / "c.csv")]) == 2


def test_own_jpegs_without_manifest_get_a_warning_not_an_error(tmp_path, sdss_model, demo_catalog):
    mine = tmp_path / "mine"
    mine.mkdir()
    for oid in demo_catalog.objID[:3]:
        shutil.copy(DEMO / "images" / f"{oid}.jpg", mine / f"{oid}.jpg")
    assert cli.main(["predict", "--model", str(sdss_model), "--images", str(mine), "--out",
                     str(tmp_path / "p.csv")]) == 0
    log = (tmp_path / "p.csv.log").read_text()
    assert f"# warning: the images in {mine} have no cutouts.json" in log and "SDSS DR14" in log
    # and the bundled demo images match the demo model: nothing to say
    assert cli.main(["predict", "--model", str(sdss_model), "--images", str(DEMO / "images"), "--out",
                     str(tmp_path / "demo.parquet"), "--batch-size", "400"]) == 0
    assert "survey" not in (tmp_path / "demo.parquet.log").read_text()
    assert "cutouts.json" not in (tmp_path / "demo.parquet.log").read_text()


def test_infer_shard_checks_each_image_folder(tmp_path, sdss_model, demo_catalog):
    model, meta = load_model(sdss_model)
    ls = tmp_path / "ls"
    ls.mkdir()
    write_manifest(ls, LS)
    ids = demo_catalog.objID[:4].tolist()
    for oid in ids[2:]:
        shutil.copy(DEMO / "images" / f"{oid}.jpg", ls / f"{oid}.jpg")
    shard = tmp_path / "shard.parquet"
    paths = [str(DEMO / "images" / f"{i}.jpg") for i in ids[:2]] + [str(ls / f"{i}.jpg") for i in ids[2:]]
    pd.DataFrame({"objID": ids, "path": paths}).to_parquet(shard)
    with pytest.raises(SurveyMismatchError, match="infer.allow_survey_mismatch: true"):
        predict_shard(shard, model, meta, tmp_path / "out.parquet", model_path=sdss_model)
    assert not (tmp_path / "out.parquet").exists()
    stats = predict_shard(shard, model, meta, tmp_path / "out.parquet", allow_survey_mismatch=True)
    assert stats["n_predicted"] == 4 and len(stats["survey_notes"]) == 1
    assert str(ls) in stats["survey_notes"][0]


def test_pan_starrs_images_are_told_apart_from_sdss_and_legacy_surveys_ones():
    """Same bands (irg) and field as SDSS's, but another survey; Legacy Surveys' differ in all."""
    assert check_survey(PS, PS) is None
    with pytest.raises(SurveyMismatchError) as err:
        check_survey(PS, SDSS)
    assert "differ in survey, so" in str(err.value) and describe(PS) in str(err.value)
    assert describe(PS).startswith("Pan-STARRS1 DR2 (panstarrs; bands irg in RGB order; adaptive scale")
    with pytest.raises(SurveyMismatchError, match="differ in survey, band order and pixel scale"):
        check_survey(PS, LS)
    with pytest.raises(SurveyMismatchError, match="trained on Pan-STARRS1 DR2"):
        check_survey(SDSS, images_block("panstarrs", "adaptive", 128, 128))
    assert check_survey(PS, SDSS, allow=True).startswith(f"survey mismatch allowed ({CLI_FIX})")


def test_predict_refuses_pan_starrs_images_for_an_sdss_model(tmp_path, sky, sample, sdss_model, capsys):
    """Pan-STARRS cutouts downloaded for real (fake PS1 service), the SDSS model applied to them."""
    cat, _ = sample
    cat.to_csv(tmp_path / "cat.csv", index=False)
    images = tmp_path / "ps"
    assert cli.main(["download-cutouts", "--catalog", str(tmp_path / "cat.csv"), "--out", str(images),
                     "--source", "panstarrs", "--base-url", sky.ps1_url, "--no-progress"]) == 0
    capsys.readouterr()
    predict = ["predict", "--model", str(sdss_model), "--images", str(images)]
    assert cli.main([*predict, "--out", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"galmet predict: the images in {images} are Pan-STARRS1 DR2 (panstarrs; bands irg")
    assert f"the model {sdss_model} was trained on SDSS DR14" in err and "differ in survey" in err
    assert not (tmp_path / "p.csv").exists()
    assert cli.main([*predict, "--out", str(tmp_path / "p.csv"), "--allow-survey-mismatch"]) == 0
    assert len(pd.read_csv(tmp_path / "p.csv")) == len(cat)
