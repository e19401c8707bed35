"""The notebook API (galmet.load_model, galmet.api.Model): the numbers of `galmet predict`, the
command line's rules for bad images and other surveys, units and provenance, and the runnable
examples of its docstring."""

from __future__ import annotations

import doctest
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import galmet
from galmet import api, domain, modelfile
from galmet.cli import main as galmet_main
from galmet.dataset import LabelledSet
from galmet.ensemble import calibrate, combine
from galmet.imaging import block_average, read_image
from tests.conftest import DEMO
from tests.untrained import write_untrained_model

IMAGES = DEMO / "images"
RES = 16


def tiny_calibrated_ensemble(path, demo_catalog, n: int = 48) -> Path:
    """Two untrained 16 px ResNet-18s as a metallicity ensemble, calibrated (intervals, TTA over 2
    symmetries to keep it quick) and given a domain block on the first ``n`` demo galaxies: every
    column of `galmet predict`, in seconds."""
    path = Path(path)
    ids = demo_catalog["objID"].to_numpy()[:n]
    x = block_average(np.stack([read_image(IMAGES / f"{i}.jpg") for i in ids]), RES)
    y = demo_catalog["oh_p50"].to_numpy(np.float64)[:n]
    paths = [write_untrained_model(path.parent / f"m{s}.pt", res=RES, seed=s) for s in (0, 1)]
    model, meta = combine([modelfile.load(p) for p in paths], ["m0", "m1"])
    meta = calibrate(model, {**meta, "target": "oh_p50", "tta": 2},
                     [LabelledSet(ids[n // 2:], x[n // 2:], y[n // 2:])], tta=2)
    meta["domain"] = domain.fit(x[: n // 2], x[n // 2:], RES)
    meta["images"] = modelfile.images_block("skyserver", "adaptive", 128, 128)
    return modelfile.save(path, model, meta)


@pytest.fixture(scope="module")
def model_path(demo_catalog, tmp_path_factory):
    return tiny_calibrated_ensemble(tmp_path_factory.mktemp("api") / "model.pt", demo_catalog)


def demo_subset(folder, n: int) -> Path:
    """A folder of the first ``n`` demo cutouts (by name) and their cutouts.json."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for p in sorted(IMAGES.glob("*.jpg"))[:n]:
        shutil.copy(p, folder / p.name)
    shutil.copy(IMAGES / "cutouts.json", folder / "cutouts.json")
    return folder


@pytest.fixture(scope="module")
def model(model_path):
    return galmet.load_model(model_path, device="cpu")


def test_the_docstring_examples_run(model_path, tmp_path):
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    folder = demo_subset(tmp_path / "demo", 24)
    tests = [t for t in finder.find(api, globs={"model_path": model_path, "DEMO_IMAGES": folder}) if t.examples]
    assert sum(len(t.examples) for t in tests) >= 15
    for t in tests:
        runner.run(t)
    result = runner.summarize(verbose=False)
    assert result.failed == 0 and result.attempted >= 15


def test_predict_a_folder_gives_the_command_lines_numbers_with_units(model, model_path, tmp_path):
    folder = demo_subset(tmp_path / "images", 12)
    ids = sorted(p.name for p in folder.glob("*.jpg"))
    out = tmp_path / "preds.csv"
    assert galmet_main(["predict", "--model", str(model_path), "--images", str(folder), "--out", str(out),
                        "--levels", "0.9", "--device", "cpu"]) == 0
    cli = pd.read_csv(out)
    table = model.predict(folder, levels=[0.9])
    assert table.colnames == list(cli.columns)
    assert table["prediction"].unit == "dex" and table["p5"].unit == "dex" and table["domain_p"].unit is None
    assert list(table["objID"]) == list(cli["objID"])
    for col in cli.columns[1:]:
        np.testing.assert_allclose(np.asarray(table[col], np.float64), cli[col].to_numpy(np.float64), atol=6e-5)
    frame = model.predict([folder / n for n in ids], levels=[0.9], as_frame=True)  # a list of paths named <objID>.jpg
    assert list(frame.columns) == list(cli.columns) and frame["objID"].dtype == np.int64
    np.testing.assert_allclose(frame["prediction"], np.asarray(table["prediction"]))
    assert frame.attrs["units"]["p97p5"] == "dex" and frame.attrs["skipped"] == []


def test_bad_images_are_skipped_with_the_command_lines_reasons(model, tmp_path):
    good = sorted(IMAGES.glob("*.jpg"))[:3]
    folder = tmp_path / "mixed"
    folder.mkdir()
    for p in good:
        shutil.copy(p, folder / p.name)
    img = read_image(good[0])
    Image.fromarray(img[..., 0]).convert("RGB").save(folder / "11.jpg")  # grayscale saved as colour
    Image.fromarray(img[:5, :5]).save(folder / "12.jpg")  # under half the model's 16 px
    (folder / "13.jpg").write_bytes(b"not a jpeg")
    shutil.copy(good[0], folder / "my_galaxy.jpg")  # not <objID>.jpg
    (folder / "notes.txt").write_text("hello")
    table = model.predict(folder)
    assert sorted(table["objID"]) == sorted(int(p.stem) for p in good)
    reasons = {s["path"].rsplit("/", 1)[-1]: s["reason"].split(":")[0] for s in table.meta["skipped"]}
    assert reasons == {"11.jpg": "not_colour", "12.jpg": "too_small", "13.jpg": "undecodable",
                       "my_galaxy.jpg": "bad_objid", "notes.txt": "not_an_image"}
    # a list of other file names keeps them, named by path; an array names rows by index
    listed = model.predict([folder / "my_galaxy.jpg", folder / "12.jpg"])
    assert listed.colnames[0] == "path" and list(listed["path"]) == [str(folder / "my_galaxy.jpg")]
    assert listed.meta["skipped"][0]["reason"].startswith("too_small")
    with pytest.raises(ValueError, match="expected uint8 N x H x W x 3"):
        model.predict(img.astype(np.float32))
    with pytest.raises(FileNotFoundError, match="nowhere is neither a folder nor an image file"):
        model.predict(tmp_path / "nowhere")


def test_a_folder_of_another_survey_is_refused_unless_allowed(model, tmp_path):
    from galmet.cutouts.manifest import SurveyMismatchError

    folder = tmp_path / "ls"
    folder.mkdir()
    for p in sorted(IMAGES.glob("*.jpg"))[:2]:
        shutil.copy(p, folder / p.name)
    (folder / "cutouts.json").write_text(
        '{"format_version": 1, "provider": "legacysurvey", "survey": "Legacy Surveys", "layer": "ls-dr10-grz", '
        '"bands": "zrg", "scale": 0.262, "size": [128, 128]}')
    with pytest.raises(SurveyMismatchError, match="pass allow_survey_mismatch=True"):
        model.predict(folder)
    table = model.predict(folder, allow_survey_mismatch=True)
    assert len(table) == 2 and any("Legacy" in w or "legacysurvey" in w for w in table.meta["warnings"])


def test_info_says_what_the_model_is(model, model_path):
    info = model.info
    assert info["sha256"] == hashlib.sha256(model_path.read_bytes()).hexdigest()
    assert (info["target"], info["unit"], info["arch"], info["resolution"]) == ("oh_p50", "dex", "resnet18", 16)
    assert info["members"] == ["m0", "m1"] and info["tta"] == 2
    assert info["calibration"]["n"] == 24 and info["calibration"]["max_level"] == 0.96
    assert info["domain"]["n"] == 48 and info["images"]["survey"] == "SDSS"  # train + valid, cross-conformal
    assert info["domain"]["alpha"] == info["domain"]["model_alpha"] == 0.05
    assert info["domain"]["smallest_alpha"] == 0.0205
    assert info["loaded_with"] == galmet.__version__
    assert info["galmet_version"] is None  # an ensemble file does not record it; a single model's does:
    single = galmet.load_model(model_path.parent / "m0.pt", device="cpu").info
    assert single["galmet_version"] == galmet.__version__ and single["calibration"] is None
    assert "ensemble of 2 resnet18" in repr(model)
    with pytest.raises(ValueError, match="calibrated with TTA over 2"):
        model.predict(IMAGES, tta=False)


def test_import_galmet_stays_light():
    code = ("import sys, galmet; light = 'torch' not in sys.modules; galmet.load_model; "
            "print(light, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]
