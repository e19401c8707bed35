"""galmet.metrics: hand-computed values, binned statistics, bad rows, and `galmet evaluate`."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from galmet import metrics
from galmet.cli import main as galmet_main

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT / "resources" / "reference"


def test_scalar_statistics_by_hand():
    d = np.array([-0.2, 0.0, 0.1, 0.1, 0.5])
    # mean of squares = (0.04 + 0 + 0.01 + 0.01 + 0.25) / 5 = 0.062
    assert metrics.rmse(d) == pytest.approx(math.sqrt(0.062))
    # median 0.1; |d - 0.1| = 0.3, 0.1, 0, 0, 0.4 -> median 0.1
    assert metrics.nmad(d) == pytest.approx(0.14826)
    # |d| = 0.2, 0, 0.1, 0.1, 0.5 -> median 0.1
    assert metrics.nmad_about_zero(d) == pytest.approx(0.14826)
    assert metrics.median_residual(d) == pytest.approx(0.1)
    # the centred NMAD ignores a constant offset; the one about zero does not
    assert metrics.nmad(d + 1.0) == pytest.approx(0.14826)
    assert metrics.nmad_about_zero(d + 1.0) == pytest.approx(1.4826 * 1.1)


def test_summarize_uses_pred_minus_true_and_skips_nan():
    t = np.array([8.0, 8.5, 9.0, np.nan])
    p = np.array([8.1, 8.5, 8.8, 9.0])
    s = metrics.summarize(t, p)
    assert s["n"] == 3
    assert s["median_residual"] == pytest.approx(0.0)
    assert s["rmse"] == pytest.approx(math.sqrt((0.01 + 0.0 + 0.04) / 3))
    assert set(s) == {"n", "rmse", "nmad", "nmad_about_zero", "median_residual"}


def test_binned_statistics_by_hand():
    t = np.array([8.02, 8.05, 8.08, 8.15, 8.31, 8.399])
    p = np.array([8.12, 8.00, 8.08, 8.35, 8.31, 8.30])
    b = metrics.binned_statistics(t, p, bin_width=0.1)
    # bins [8.0, 8.1): 3 galaxies; [8.1, 8.2): 1; [8.3, 8.4): 2; the empty [8.2, 8.3) is left out
    assert b["lo"].tolist() == pytest.approx([8.0, 8.1, 8.3])
    assert b["hi"].tolist() == pytest.approx([8.1, 8.2, 8.4])
    assert b["n"].tolist() == [3, 1, 2]
    first = b.iloc[0]
    # residuals 0.10, -0.05, 0.00
    assert first["median_pred"] == pytest.approx(8.08)
    assert first["rmse"] == pytest.approx(math.sqrt((0.01 + 0.0025 + 0.0) / 3))
    assert first["median_residual"] == pytest.approx(0.0)
    # |r - 0| = 0.10, 0.05, 0.00 -> median 0.05
    assert first["nmad"] == pytest.approx(1.4826 * 0.05)
    assert b.iloc[1]["rmse"] == pytest.approx(0.2)
    assert b.iloc[1]["nmad"] == pytest.approx(0.0)
    # residuals 0 and -0.099: median pred is the mean of the two, rmse sqrt(0.099^2 / 2)
    assert b.iloc[2]["median_pred"] == pytest.approx(8.305)
    assert b.iloc[2]["rmse"] == pytest.approx(0.099 / math.sqrt(2))


def test_binned_statistics_explicit_edges_last_bin_closed():
    t = np.array([0.0, 0.5, 1.0, 2.0, 5.0])
    b = metrics.binned_statistics(t, t, edges=[0.0, 1.0, 2.0])
    assert b["n"].tolist() == [2, 2]  # 1.0 goes to the second bin, 2.0 too (closed), 5.0 to none
    assert b["rmse"].tolist() == [0.0, 0.0]
    with pytest.raises(ValueError):
        metrics.binned_statistics(t, t, edges=[1.0, 0.0])


def test_evaluate_predictions_is_strict_json_and_counts_invalid():
    t = np.array([8.0, 9.2, 9.3, np.nan, 8.5])
    p = np.array([8.1, 9.0, np.inf, 8.0, 8.5])
    out = metrics.evaluate_predictions(t, p, bin_width=0.5, threshold=9.1)
    json.dumps(out, allow_nan=False)  # no NaN anywhere
    assert out["n"] == 3 and out["n_invalid"] == 2
    assert out["frac_true_above_9p1"] == pytest.approx(1 / 3)
    assert out["frac_pred_above_9p1"] == pytest.approx(0.0)
    assert sum(r["n"] for r in out["binned"]) == 3
    for key in ("rmse", "nmad", "nmad_about_zero", "median_residual", "binned"):
        assert key in out


def test_only_a_target_with_a_threshold_gets_the_fraction_above_it(monkeypatch):
    """oh_p50's 9.1 dex statistic is its own: a target registered without a threshold gets no
    frac_ key, one with its own threshold gets that one."""
    from galmet.targets import TARGETS, Target

    df = pd.DataFrame({"oh_p50": [8.0, 9.2, 9.3], "lgm_tot_p50": [9.0, 9.2, 9.3],
                       "x": [1.0, 2.0, 3.0], "prediction": [8.1, 9.0, 9.4]})
    assert [k for k in metrics.evaluate_table(df, truth="lgm_tot_p50") if k.startswith("frac_")] == []
    oh = metrics.evaluate_table(df, truth="oh_p50")
    assert (oh["frac_true_above_9p1"], oh["frac_pred_above_9p1"]) == (pytest.approx(2 / 3), pytest.approx(1 / 3))
    monkeypatch.setitem(TARGETS, "x", Target("x", "x", threshold=-1.5))
    out = metrics.evaluate_table(df, truth="x")
    assert out["frac_true_above_m1p5"] == 1.0 and out["frac_pred_above_m1p5"] == 1.0
    assert list(out)[list(out).index("median_residual") + 1:][:3] == [
        "frac_pred_above_m1p5", "frac_true_above_m1p5", "bin_width"]


def test_evaluate_predictions_empty_input_does_not_crash():
    out = metrics.evaluate_predictions([np.nan], [8.0])
    assert out["n"] == 0 and out["n_invalid"] == 1
    assert out["rmse"] is None and out["binned"] == []


def test_cli_on_published_128px(tmp_path):
    """The paper: RMSE 0.085 dex, NMAD 0.067 dex on 20,466 test galaxies."""
    out = tmp_path / "m.json"
    csv = PUBLISHED / "predictions_128px.csv"
    assert galmet_main(["evaluate", str(csv), "--json", str(out)]) == 0
    m = json.loads(out.read_text())
    assert m["n"] == 20466 and m["n_invalid"] == 0
    assert m["rmse"] == pytest.approx(0.0849, abs=5e-4)
    assert m["nmad"] == pytest.approx(0.0651, abs=5e-4)
    # the paper's 0.067 matches the NMAD about zero
    assert m["nmad_about_zero"] == pytest.approx(0.0672, abs=5e-4)
    assert m["median_residual"] == pytest.approx(-0.0104, abs=5e-4)
    assert sum(r["n"] for r in m["binned"]) == 20466


def test_published_scatter_grows_as_resolution_drops(tmp_path):
    rmses = []
    for res in (128, 64, 32, 16):
        df = pd.read_csv(PUBLISHED / f"predictions_{res}px.csv", dtype={"objID": str})
        rmses.append(metrics.evaluate_table(df)["rmse"])
    assert rmses == sorted(rmses)
    assert rmses[-1] == pytest.approx(0.1043, abs=5e-4)


def test_cli_reports_bad_rows_and_missing_columns(tmp_path, capsys):
    csv = tmp_path / "p.csv"
    csv.write_text(
        "objID,oh_p50,prediction\n"
        "1237648702973411443,8.5,8.6\n"
        "1237648702994383943,,8.7\n"
        "1237648704043942146,8.9,oops\n"
        "1237648720689102920,9.0,9.0\n"
    )
    out = tmp_path / "m.json"
    assert galmet_main(["evaluate", str(csv), "--json", str(out), "--bin-width", "0.2"]) == 0
    m = json.loads(out.read_text())
    assert m["n"] == 2 and m["n_invalid"] == 2 and m["bin_width"] == 0.2
    assert "2 row(s)" in capsys.readouterr().err
    assert galmet_main(["evaluate", str(csv), "--pred", "nope", "--json", str(out)]) == 2
    assert "'nope'" in capsys.readouterr().err


def test_cli_refuses_float_damaged_ids(tmp_path, capsys):
    csv = tmp_path / "p.csv"
    csv.write_text("objID,oh_p50,prediction\n1.237648702973411e+18,8.5,8.6\n")
    assert galmet_main(["evaluate", str(csv), "--json", str(tmp_path / "m.json")]) == 2
    assert "objID" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()


def test_cli_evaluate_without_json_prints_the_numbers(tmp_path, capsys):
    csv = tmp_path / "p.csv"
    pd.DataFrame({"objID": [1, 2, 3, 4], "oh_p50": [8.5, 8.7, 8.9, 9.1],
                  "prediction": [8.6, 8.7, 8.8, 9.1]}).to_csv(csv, index=False)
    assert galmet_main(["evaluate", str(csv)]) == 0
    out = capsys.readouterr().out
    rmse = np.sqrt(np.mean(np.square([0.1, 0.0, -0.1, 0.0])))
    assert f"rmse             {rmse:.4f}" in out and "n                4" in out
    assert "binned in the true value" in out and not list(tmp_path.glob("*.json"))


def test_cli_evaluate_reports_coverage_and_width_of_interval_columns(tmp_path, capsys):
    """A calibrated ensemble's predictions (galmet predict's columns): each interval scored."""
    csv = tmp_path / "p.csv"
    pd.DataFrame({"objID": [1, 2, 3, 4], "oh_p50": [8.5, 8.7, 8.9, 9.1], "prediction": [8.6, 8.7, 8.8, 9.3],
                  "p2p5": [8.3, 8.5, 8.6, 9.0], "p16": [8.55, 8.6, 8.7, 9.2], "p84": [8.65, 8.8, 8.9, 9.4],
                  "p97p5": [8.9, 8.9, 9.0, 9.6]}).to_csv(csv, index=False)
    out = tmp_path / "m.json"
    assert galmet_main(["evaluate", str(csv), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "68% interval (p16-p84): coverage 0.5000 of 4 (nominal 0.68), mean width 0.1750" in text
    assert "95% interval (p2p5-p97p5): coverage 1.0000 of 4 (nominal 0.95), mean width 0.5000" in text
    m = json.loads(out.read_text())
    assert [(r["level"], r["lower"], r["upper"], r["n"]) for r in m["intervals"]] == [
        (0.68, "p16", "p84", 4), (0.95, "p2p5", "p97p5", 4)]
    # a table without interval columns has no such lines
    pd.read_csv(csv)[["objID", "oh_p50", "prediction"]].to_csv(csv, index=False)
    assert galmet_main(["evaluate", str(csv), "--json", str(out)]) == 0
    assert "interval" not in capsys.readouterr().out and "intervals" not in json.loads(out.read_text())


def test_cli_evaluate_does_not_import_torch(tmp_path):
    """``galmet evaluate`` loads only what it needs: no torch (seconds saved on every call)."""
    csv = tmp_path / "p.csv"
    pd.DataFrame({"objID": [1, 2], "oh_p50": [8.5, 8.7], "prediction": [8.6, 8.7]}).to_csv(csv, index=False)
    code = ("import sys; from galmet.cli import main; rc = main(['evaluate', sys.argv[1]]); "
            "print('torch' in sys.modules, rc)")
    run = subprocess.run([sys.executable, "-c", code, str(csv)], capture_output=True, text=True, check=True)
    assert run.stdout.strip().splitlines()[-1] == "False 0", run.stdout + run.stderr



def test_mean_verdict_decides_by_two_standard_errors():
    assert metrics.mean_verdict([0.1, 0.12, 0.11, 0.09], 0.3)["verdict"] == "passes"
    assert metrics.mean_verdict([0.5, 0.52, 0.51, 0.49], 0.3)["verdict"] == "fails"
    assert metrics.mean_verdict([0.5, 0.52, 0.51, 0.49], 0.3, passes_if="above")["verdict"] == "passes"
    r = metrics.mean_verdict([0.0, 0.6, 0.2, float("nan")], 0.3)  # mean 0.267, std 0.306, sem 0.176
    assert r["verdict"] == "inconclusive" and r["n"] == 3
    assert r["n_needed"] == math.ceil((2 * r["std"] / (0.3 - r["mean"])) ** 2)
    two = metrics.mean_verdict([0.0, 0.01], 0.3)  # no spread to go by: never decided
    assert two["verdict"] == "inconclusive" and two["n_needed"] is None
    assert metrics.mean_verdict([], 0.3)["verdict"] == "inconclusive"
    with pytest.raises(ValueError, match="'below' or 'above'"):
        metrics.mean_verdict([1.0, 2.0, 3.0], 0.0, passes_if="under")


def test_difference_verdict_needs_the_difference_beyond_two_standard_errors():
    rng = np.random.default_rng(0)
    low, high = rng.normal(0.0, 1.0, 400), rng.normal(0.5, 1.0, 400)
    assert metrics.difference_verdict(low, high)["verdict"] == "passes"
    assert metrics.difference_verdict(high, low)["verdict"] == "fails"
    r = metrics.difference_verdict(low[:20], high[:20])
    if r["verdict"] == "inconclusive":  # 20 each rarely decide half a sigma: then the number that would
        assert r["n_needed"] > 40
    assert metrics.difference_verdict([1.0, 2.0], [3.0, 4.0, 5.0])["verdict"] == "inconclusive"
