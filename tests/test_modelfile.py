"""The model file (galmet.modelfile): one writer, one reader, a documented, versioned format."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from galmet import modelfile
from galmet.predict import predict_images
from tests.conftest import DEMO
from tests.untrained import write_untrained_model


@pytest.fixture()
def model_path(tmp_path):
    return write_untrained_model(tmp_path / "model.pt", res=16)


def test_round_trip_keeps_weights_and_fills_format_keys(model_path):
    model, meta = modelfile.load(model_path)
    assert meta["format_version"] == modelfile.FORMAT_VERSION and meta["kind"] == "single"
    assert "images" in meta and meta["resolution"] == 16
    again = modelfile.save(model_path.with_name("again.pt"), model, meta)
    model2, meta2 = modelfile.load(again)
    assert meta2 == meta
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), model2.state_dict().values()))
    # plain torch can read it without unpickling code
    assert set(torch.load(again, weights_only=True)) == {"state_dict", "meta"}


def test_files_written_before_the_format_version_still_load(model_path, tmp_path):
    obj = torch.load(model_path, weights_only=True)
    old_meta = {k: v for k, v in obj["meta"].items() if k not in ("format_version", "kind", "images")}
    old = tmp_path / "old.pt"
    torch.save({"state_dict": obj["state_dict"], "meta": old_meta}, old)
    model, meta = modelfile.load(old)
    assert meta["format_version"] == 0 and meta["kind"] == "single" and meta["images"] is None
    x = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    new_model, new_meta = modelfile.load(model_path)
    np.testing.assert_array_equal(predict_images(model, meta, x, tta=1), predict_images(new_model, new_meta, x, tta=1))


@pytest.mark.parametrize("change, message", [
    ({"format_version": 99}, "newer than this galmet reads"),
    ({"kind": "forest"}, "model kind 'forest'"),
])
def test_unreadable_meta_is_refused_with_the_file_named(model_path, tmp_path, change, message):
    obj = torch.load(model_path, weights_only=True)
    bad = tmp_path / "bad.pt"
    torch.save({"state_dict": obj["state_dict"], "meta": {**obj["meta"], **change}}, bad)
    with pytest.raises(modelfile.ModelFileError, match=message) as err:
        modelfile.read_meta(bad)
    assert "bad.pt" in str(err.value)


def test_missing_key_and_not_a_model(tmp_path, model_path):
    obj = torch.load(model_path, weights_only=True)
    meta = {k: v for k, v in obj["meta"].items() if k != "normalisation"}
    torch.save({"state_dict": obj["state_dict"], "meta": meta}, tmp_path / "m.pt")
    with pytest.raises(modelfile.ModelFileError, match="lacks 'normalisation'"):
        modelfile.load(tmp_path / "m.pt")
    (tmp_path / "junk.pt").write_bytes(b"not torch")
    with pytest.raises(modelfile.ModelFileError) as err:
        modelfile.read_meta(tmp_path / "junk.pt")
    assert str(err.value) == (f"{tmp_path / 'junk.pt'}: not a torch file (9 bytes), not a galmet model that can be "
                              "read: copy it again, or give the model.pt that the workflow's training wrote")
    (tmp_path / "cut.pt").write_bytes(model_path.read_bytes()[:5000])  # a copy cut short
    with pytest.raises(modelfile.ModelFileError) as err:
        modelfile.load(tmp_path / "cut.pt")
    assert "a torch file cut short or damaged (5,000 bytes)" in str(err.value)
    assert not re.search(r"\(\d+\)|0x[0-9a-f]+|object at", str(err.value))  # no error numbers, no reprs


@pytest.fixture()
def tiny_checkpoint(tmp_path, monkeypatch):
    """The checkpoint.pt of a real training stopped after its first epoch (no model.pt yet)."""
    import galmet.train as gt
    from galmet.imaging import block_average, read_image

    ids = sorted(p.stem for p in DEMO.joinpath("images").glob("*.jpg"))[:10]
    x = block_average(np.stack([read_image(DEMO / "images" / f"{i}.jpg") for i in ids]), 16)
    y = np.linspace(8.5, 9.0, len(ids), dtype=np.float32)

    def stop(epoch):
        raise KeyboardInterrupt

    monkeypatch.setattr(gt, "_after_checkpoint", stop)
    params = {"arch": "resnet18", "pretrained": "none", "batch_size": 4, "stage2": {"cycles": [1, 1]},
              "num_threads": 1, "device": "cpu"}
    with pytest.raises(KeyboardInterrupt):
        gt.train_model(x[:8], y[:8], x[8:], y[8:], params, tmp_path / "run", {"seed": 0})
    return tmp_path / "run" / "checkpoint.pt"


def test_a_training_checkpoint_given_as_a_model_says_to_use_model_pt(tiny_checkpoint):
    with pytest.raises(modelfile.ModelFileError) as err:
        modelfile.load(tiny_checkpoint)
    beside = tiny_checkpoint.with_name("model.pt")
    assert str(err.value) == (f"{tiny_checkpoint}: a training checkpoint (saved after epoch 1), not a model: use the "
                              f"model.pt beside it, {beside}; it is written when the training finishes: rerun the "
                              "workflow to finish it")


def test_images_block_says_where_images_came_from():
    sky = modelfile.images_block("skyserver", "adaptive", 128, 128,
                                 base_url="https://skyserver.sdss.org/dr14/SkyServerWS")
    assert sky == {"source": "skyserver", "provider": "skyserver", "survey": "SDSS", "layer": None,
                   "data_release": "DR14", "bands": "irg", "scale": "adaptive",
                   "scale_rule": "2 * petroR90_r / 0.396 arcsec across the width", "size": [128, 128]}
    ls = modelfile.images_block("legacysurvey", 0.262, 64, 64)
    assert (ls["provider"], ls["layer"], ls["data_release"], ls["bands"], ls["scale"]) == (
        "legacysurvey", "ls-dr10-grz", "DR10", "zrg", 0.262)
    local = modelfile.images_block("local", 0.117, 64, 64)
    assert local["provider"] is None and local["bands"] is None and local["scale"] == pytest.approx(0.117)
    # local images with a cutouts.json (the bundled demo) are what it says
    demo = modelfile.images_block("local", "adaptive", 128, 128, local_dir=str(DEMO / "images"))
    assert {k: demo[k] for k in ("source", "provider", "data_release", "bands", "scale", "size")} == {
        "source": "local", "provider": "skyserver", "data_release": "DR14", "bands": "irg",
        "scale": "adaptive", "size": [128, 128]}
