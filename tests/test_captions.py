"""galmet.captions: the numbers the report's captions quote, and the Figure 4 table."""

from __future__ import annotations

import json

import pytest

from galmet import captions


@pytest.fixture
def results(tmp_path):
    """Result files as the workflow writes them: one model, two baselines, one published file."""
    files = {
        "metrics/oh_p50/resnet18-32px-seed0.json": {
            "n": 80, "n_invalid": 2, "rmse": 0.1234, "nmad": 0.0876, "nmad_about_zero": 0.09,
            "median_residual": -0.0123, "frac_pred_above_9p1": 0.05, "frac_true_above_9p1": 0.125},
        "baselines/constant.json": {"name": "constant", "status": "ok", "reason": None,
                                    "test": {"n": 80, "rmse": 0.2, "nmad": 0.15}},
        "baselines/rf_gri.json": {"name": "rf_gri", "status": "skipped",
                                  "reason": "no magnitudes", "test": {"n": 0}},
        "reference/published-16px.json": {"resolution": 16, "n": 20466, "rmse": 0.1041,
                                          "nmad": 0.0803},
    }
    paths = {}
    for rel, content in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content))
        paths[rel.split("/")[0]] = [*paths.get(rel.split("/")[0], []), path]
    return paths


def test_read_json_is_empty_before_the_file_exists(tmp_path):
    assert captions.read_json(tmp_path / "missing.json") == {}
    (tmp_path / "partial.json").write_text('{"n": ')
    assert captions.read_json(tmp_path / "partial.json") == {}
    assert captions.fmt(None) == "n/a" and captions.fmt(0.12345) == "0.123"


def test_the_json_reader_names_a_bad_file(tmp_path):
    """galmet.io.read_json, the one JSON reader: a damaged file is named, with the fix."""
    from galmet.io import read_json

    (tmp_path / "partial.json").write_text('{"n": ')
    with pytest.raises(ValueError, match=r"partial\.json: not valid JSON .*rerun the step that writes it"):
        read_json(tmp_path / "partial.json")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read_json(tmp_path / "missing.json")
    (tmp_path / "ok.json").write_text('{"n": 3}')
    assert read_json(tmp_path / "ok.json") == {"n": 3} == read_json(tmp_path / "ok.json", missing_ok=True)


def test_metric_numbers_formats_for_the_caption(results, tmp_path):
    numbers = captions.metric_numbers(results["metrics"][0])
    assert numbers == {"rmse": "0.123", "nmad": "0.088", "nmad_about_zero": "0.090",
                       "median_residual": "-0.012", "n": 80, "n_invalid": 2, "unit": "dex",
                       "frac_pred_above_9p1": "5.0%", "frac_true_above_9p1": "12.5%", "threshold": "9.1",
                       "frac_pred_above": "5.0%", "frac_true_above": "12.5%"}
    assert captions.metric_numbers(tmp_path / "missing.json") == {}


def test_metric_numbers_of_a_target_without_threshold(tmp_path, monkeypatch):
    """A target's caption quotes its own unit and no 9.1 dex fraction."""
    from galmet.targets import TARGETS, Target

    monkeypatch.setitem(TARGETS, "flux_x", Target("flux_x", "flux", unit="Jy"))
    path = tmp_path / "flux_x" / "resnet18-16px-seed0.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"n": 10, "rmse": 0.5, "nmad": 0.25}))
    numbers = captions.metric_numbers(path)
    assert numbers["unit"] == "Jy" and "threshold" not in numbers
    assert not [k for k in numbers if k.startswith("frac_")]
    assert captions.resolution_lines([path]) == ["resnet18-16px-seed0: RMSE 0.500, NMAD 0.250 Jy"]
    checks = {"target": "flux_x", "deletion": {"area_between_mean": 0.5, "area_between_sem": 0.1}}
    assert "0.5000 ± 0.1000 Jy" in captions.check_verdicts(checks)["deletion"]


def test_resolution_lines(results):
    lines = captions.resolution_lines(results["metrics"], results["baselines"], results["reference"])
    assert lines == [
        "resnet18-32px-seed0: RMSE 0.123, NMAD 0.088 dex",
        "baseline constant: RMSE 0.200, NMAD 0.150 dex",
        "baseline rf_gri: skipped (no magnitudes)",
        "published 16 px: RMSE 0.104, NMAD 0.080 dex",
    ]


def test_resolution_lines_before_the_files_exist(tmp_path):
    lines = captions.resolution_lines([tmp_path / "oh_p50" / "resnet18-16px-seed0.json"],
                                      [tmp_path / "constant.json"], [tmp_path / "published-16px.json"])
    assert lines == ["resnet18-16px-seed0: RMSE n/a, NMAD n/a dex",
                     "published ? px: RMSE n/a, NMAD n/a dex"]


def test_resolution_results_table_and_series(results):
    cnn, base, published, table = captions.resolution_results(
        results["metrics"], results["baselines"], results["reference"])
    # with the test size, for Figure 4's sampling errors
    assert cnn.to_dict("records") == [{"resolution": 32.0, "rmse": 0.1234, "nmad": 0.0876, "n": 80.0}]
    assert published.to_dict("records") == [{"resolution": 16.0, "rmse": 0.1041, "nmad": 0.0803, "n": 20466.0}]
    assert base == [{"name": "constant", "rmse": 0.2, "nmad": 0.15, "n": 80}]
    assert list(table.columns) == ["source", "model", "resolution", "rmse", "nmad",
                                   "nmad_about_zero", "median_residual", "n", "status", "note"]
    assert table["source"].tolist() == ["CNN (this run)", "CNN (published)", "baseline", "baseline"]
    assert table["note"].tolist() == ["", "Wu & Boada (2019) test set", "", "no magnitudes"]


def test_resolution_results_needs_the_files_and_model_names(results, tmp_path):
    with pytest.raises(FileNotFoundError):
        captions.resolution_results([tmp_path / "resnet18-16px-seed0.json"])
    odd = tmp_path / "my-model.json"
    odd.write_text("{}")
    with pytest.raises(ValueError, match="my-model"):
        captions.resolution_results([odd])


def test_results_table_of_the_report_landing_page(results, tmp_path):
    for path in results["baselines"]:  # baselines carry their target, as the workflow writes them
        b = json.loads(path.read_text())
        path.write_text(json.dumps({**b, "target": "oh_p50"}))
    models = [{"target": "oh_p50", "name": "resnet18-32px-seed0"}]
    rows = captions.results_table(models, results["metrics"], results["baselines"], results["reference"])
    assert [(r["model"], r["rmse"]) for r in rows] == [
        ("resnet18-32px-seed0", "0.123\u00a0±\u00a00.010"),  # 0.1234 / sqrt(2 * 80)
        ("published 16 px", "0.104\u00a0±\u00a00.001"),
        ("constant (baseline)", "0.200\u00a0±\u00a00.016"),
        ("rf_gri (baseline)", "skipped"),
    ]
    assert {r["target"] for r in rows} == {"oh_p50"} and rows[0]["n"] == "80" and rows[3]["nmad"] == ""
    assert captions.rmse_error(0.1, 50) == pytest.approx(0.01) and captions.rmse_error(None, 5) is None
    # before any file exists (Snakemake evaluates caption params early too): no error
    missing = [tmp_path / "resnet18-32px-seed0.json"]
    assert captions.results_table(models, missing)[0]["rmse"] == "skipped"
