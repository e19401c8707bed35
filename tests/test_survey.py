"""The survey model: one network standing in for the ensemble (trained on the measured labels or
the ensemble's predictions), calibrated with intervals of one width, and taken by `galmet predict`,
the API and the infer step like any model file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import galmet
import galmet.train
from galmet import modelfile
from galmet.cli import main as galmet_main
from galmet.conformal import score_quantile
from galmet.predict import CONSTANT_SPREAD, predict_images
from galmet.survey import teacher_labels, throughput, train_survey
from galmet.tables import file_sha256
from tests.test_ensemble import RES, _image_dir, demo, ensemble, members  # noqa: F401 (fixtures)

PARAMS = {"arch": "resnet18", "pretrained": "none", "batch_size": 8, "stage2": {"cycles": [2]}, "num_threads": 1,
          "device": "cpu"}


def _train(demo, ensemble, out, **kwargs):  # noqa: F811
    """The two-member ensemble's survey model (2 epochs) on the 24 training galaxies, calibrated on
    the 24 others; the labels train_model received."""
    _, x, y = demo
    teacher, tmeta = modelfile.load(ensemble)
    seen = {}
    real = galmet.train.train_model

    def spy(x_train, y_train, *args, **kw):
        seen["labels"] = np.array(y_train)
        return real(x_train, y_train, *args, **kw)

    galmet.train.train_model = spy
    try:
        made = train_survey(teacher, tmeta, x[:24], y[:24], x[24:], y[24:].astype(np.float32), PARAMS, out,
                            {"seed": 0, "target": "oh_p50"},
                            teacher_file={"name": "ens", "path": str(ensemble), "sha256": file_sha256(ensemble)},
                            **kwargs)
    finally:
        galmet.train.train_model = real
    return {"path": out / "model.pt", "made": made, "labels": seen["labels"]}


@pytest.fixture(scope="module")
def survey(demo, ensemble, tmp_path_factory):  # noqa: F811
    """The survey model as the workflow makes it by default: on the measured labels."""
    return _train(demo, ensemble, tmp_path_factory.mktemp("survey"))


def test_by_default_it_learns_the_measured_values(demo, survey):  # noqa: F811
    _, _, y = demo
    np.testing.assert_allclose(survey["labels"], y[:24].astype(np.float32))
    assert survey["made"]["survey"]["labels"] == "measured"
    assert modelfile.read_meta(survey["path"])["survey"]["labels"] == "measured"


def test_with_teacher_labels_it_learns_the_ensembles_predictions(demo, ensemble, tmp_path):  # noqa: F811
    _, x, y = demo
    made = _train(demo, ensemble, tmp_path, labels="teacher")
    teacher, tmeta = modelfile.load(ensemble)
    expected = predict_images(teacher, tmeta, x[:24], tta=8)  # members x the 8 views it was calibrated with
    np.testing.assert_allclose(made["labels"], expected, atol=1e-5)
    np.testing.assert_allclose(teacher_labels(teacher, tmeta, x[:24]), expected, atol=1e-5)
    assert not np.allclose(made["labels"], y[:24], atol=1e-3)
    meta = modelfile.read_meta(made["path"])
    assert meta["survey"]["labels"] == "teacher" and "distilled" in meta["survey"]["method"]


def test_unknown_labels_are_refused_naming_the_choices(demo, ensemble, tmp_path):  # noqa: F811
    with pytest.raises(ValueError, match="'ensemble'.*measured, teacher.*survey.labels"):
        _train(demo, ensemble, tmp_path, labels="ensemble")
    assert not (tmp_path / "model.pt").exists()


def test_the_survey_file_is_one_network_with_one_width_intervals_and_its_provenance(demo, ensemble, survey):  # noqa: F811
    obj = torch.load(survey["path"], weights_only=True)
    meta = obj["meta"]
    assert meta["kind"] == "single" and meta["tta"] == 1 and meta["resolution"] == RES
    cal = meta["calibration"]
    assert cal["split"] == "valid" and cal["n"] == 24 and cal["tta"] == 1 and cal["spread"] == CONSTANT_SPREAD
    teacher = meta["survey"]["teacher"]
    assert teacher["sha256"] == file_sha256(ensemble) and teacher["members"] == ["m0", "m1"] and teacher["tta"] == 8
    valid = meta["survey"]["valid"]
    assert valid["teacher_rmse"] == modelfile.read_meta(ensemble)["calibration"]["valid_rmse"]
    # its validation RMSE is the one-pass RMSE against the measured values of the validation galaxies
    _, x, y = demo
    model, _ = modelfile.load(survey["path"])
    rmse = float(np.sqrt(np.mean((predict_images(model, meta, x[24:], tta=1) - y[24:]) ** 2)))
    assert valid["rmse"] == pytest.approx(rmse, abs=1e-6)
    assert valid["width68"] == pytest.approx(2 * score_quantile(cal["scores"], 0.68))
    assert "domain" in obj  # the applicability-domain test travels with it


def test_galmet_predict_the_api_and_infer_take_it_like_any_model(demo, survey, tmp_path, capsys):  # noqa: F811
    ids, _, _ = demo
    ids = [int(i) for i in ids[:10]]
    images = _image_dir(ids, tmp_path)
    out = tmp_path / "p.parquet"
    assert galmet_main(["predict", "--model", str(survey["path"]), "--images", str(images), "--out", str(out)]) == 0
    cli = pd.read_parquet(out)
    assert list(cli.columns) == ["objID", "prediction", "p2p5", "p16", "p84", "p97p5", "domain_p", "in_domain"]
    meta = modelfile.read_meta(survey["path"])
    q68, q95 = (score_quantile(meta["calibration"]["scores"], lv) for lv in (0.68, 0.95))
    inside = cli[cli["in_domain"]]
    np.testing.assert_allclose(inside["p84"] - inside["p16"], 2 * q68, atol=1e-9)  # one width for every galaxy
    np.testing.assert_allclose(inside["p97p5"] - inside["prediction"], q95, atol=1e-9)
    # one pass a galaxy: --tta would break the calibration and is refused, naming the fix
    assert galmet_main(["predict", "--model", str(survey["path"]), "--images", str(images), "--tta",
                        "--out", str(tmp_path / "t.parquet")]) == 2
    assert "calibrated with TTA over 1 symmetries" in capsys.readouterr().err
    api = galmet.load_model(survey["path"]).predict(images, as_frame=True)
    both = api.merge(cli, on="objID", suffixes=("", "_cli"))
    assert len(both) == len(ids)
    np.testing.assert_allclose(both["prediction"], both["prediction_cli"], rtol=1e-6)  # batches: float32 rounding
    from galmet.infer import predict_shard

    shard = tmp_path / "shard.parquet"
    pd.DataFrame({"objID": ids, "path": [str(images / f"{i}.jpg") for i in ids]}).to_parquet(shard)
    model, meta = modelfile.load(survey["path"], reproducible=False)
    predict_shard(shard, model, meta, tmp_path / "infer.parquet", tta=1)
    both = pd.read_parquet(tmp_path / "infer.parquet").merge(cli, on="objID", suffixes=("", "_cli"))
    assert len(both) == len(ids)
    np.testing.assert_allclose(both["p16"], both["p16_cli"], rtol=1e-6, equal_nan=True)


def test_throughput_times_each_model(demo, ensemble, survey):  # noqa: F811
    _, x, _ = demo
    rates = throughput({"survey": (*modelfile.load(survey["path"]), 1), "ensemble": (*modelfile.load(ensemble), 8)},
                       x, repeats=1, seconds=0.2)
    assert set(rates) == {"survey", "ensemble"} and all(np.isfinite(r) and r > 0 for r in rates.values())
