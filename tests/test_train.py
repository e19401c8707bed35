"""Training: schedule, freezing, learning rates, reproducibility, resume after kill -9, outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision

import galmet.train as gt
from galmet.config import ConfigError, section
from galmet.train import TrainingError, cosine_factors, plan, train_model

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "arch": "resnet18", "pretrained": "none", "batch_size": 8,
    "stage2": {"cycles": [1, 2], "lrs": [0.01, 0.02, 0.05]},
    "normalisation": "dataset", "num_threads": 1, "device": "cpu",
}


def _state(path) -> dict:
    return torch.load(path, weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def reference_run(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    result = train_model(*tiny_data, TINY, out, {"seed": 0, "target": "oh_p50"})
    return out, result


def test_sgdr_factors_restart_at_cycle_starts():
    f = cosine_factors([1, 2, 4], steps_per_epoch=5)
    assert len(f) == 7 * 5
    starts = [0, 5, 15]
    assert all(f[s] == 1.0 for s in starts)
    for s, e in zip(starts, [5, 15, 35]):
        assert np.all(np.diff(f[s:e]) < 0)  # annealed within a cycle
        n = e - s
        assert f[e - 1] == pytest.approx(0.5 * (1 + np.cos(np.pi * (n - 1) / n)))  # ~0 at its end
    assert np.count_nonzero(f == 1.0) == 3


def test_plan_skips_stage1_without_pretrained_body():
    p = section("train", {"pretrained": "none"})
    assert [e["stage"] for e in plan(p, 3)] == [2] * 7
    p = section("train", {"pretrained": "/some/file.pth"})
    ep = plan(p, 3)
    assert [e["stage"] for e in ep] == [1, 1] + [2] * 7
    assert ep[0]["base_lrs"] == [0.0, 0.0, 0.1] and ep[2]["base_lrs"] == [0.001, 0.01, 0.1]
    # one cosine over stage 1, then restarts after 1 and 3 stage-2 epochs
    assert ep[0]["factors"][0] == 1 and ep[1]["factors"][0] < 1
    c = np.cos(np.pi / 4)
    expected = [1, 1, 0.5, 1, 0.5 * (1 + c), 0.5, 0.5 * (1 - c)]
    assert [e["factors"][0] for e in ep[2:]] == pytest.approx(expected)


def test_per_group_learning_rates_reach_the_optimizer(tiny_data, tmp_path, monkeypatch):
    seen = []
    original = gt._set_lrs

    def record(opt, base_lrs, factor):
        original(opt, base_lrs, factor)
        seen.append({g["name"]: g["lr"] for g in opt.param_groups})

    monkeypatch.setattr(gt, "_set_lrs", record)
    params = {**TINY, "stage2": {"cycles": [1], "lrs": [0.001, 0.01, 0.1]}}
    train_model(*tiny_data, params, tmp_path, {"seed": 0})
    assert seen[0] == {"early": 0.001, "middle": 0.01, "head": 0.1}
    assert len(seen) == 3  # 24 images in batches of 8
    assert seen[1]["head"] < 0.1 and seen[1]["early"] == pytest.approx(seen[1]["head"] / 100)


def test_stage1_really_freezes_the_body(tiny_data, tmp_path, monkeypatch):
    torch.manual_seed(3)
    pre = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path / "pre.pth"
    torch.save(pre, path)
    snapshots = {}

    def after(epoch):
        snapshots[epoch] = torch.load(tmp_path / "out" / "checkpoint.pt", weights_only=True)["model"]

    monkeypatch.setattr(gt, "_after_checkpoint", after)
    params = {**TINY, "pretrained": str(path), "stage1": {"epochs": 1, "lr": 0.1}, "stage2": {"cycles": [1]}}
    result = train_model(*tiny_data, params, tmp_path / "out", {"seed": 0})
    frozen, final = snapshots[0], snapshots[1]
    body = [k for k in frozen if k.startswith("body.")]
    for k in body:  # weights and BN statistics exactly the pretrained ones after stage 1
        assert torch.equal(frozen[k], pre[k[len("body."):]]), k
    assert not torch.equal(frozen["head.fc1.weight"], final["head.fc1.weight"])
    assert not torch.equal(final["body.conv1.weight"], pre["conv1.weight"])  # stage 2 trains it
    log = pd.read_csv(result["log"])
    assert log["stage"].tolist() == [1, 2] and log.loc[0, "lr_early"] == 0


def test_outputs_and_model_file(reference_run):
    out, result = reference_run
    obj = torch.load(out / "model.pt", weights_only=True)
    meta = obj["meta"]
    json.dumps(meta)
    for key in ("arch", "head", "resolution", "normalisation", "tta", "galmet_version", "target", "seed"):
        assert key in meta, key
    assert meta["resolution"] == 16 and meta["arch"] == "resnet18"
    log = pd.read_csv(out / "train_log.csv")
    assert list(log.columns) == ["epoch", "stage", "lr_early", "lr_middle", "lr_head",
                                 "train_rmse", "valid_rmse", "seconds"]
    assert log["epoch"].tolist() == [1, 2, 3]
    assert (out / "loss_curve.png").stat().st_size > 1000
    assert not (out / "checkpoint.pt").exists()
    assert np.isfinite(result["valid_rmse"]) and np.isfinite(result["valid_rmse_tta"])


def test_same_seed_same_weights_other_seed_differs(tiny_data, reference_run, tmp_path):
    ref, _ = reference_run
    train_model(*tiny_data, TINY, tmp_path / "a", {"seed": 0, "target": "oh_p50"})
    train_model(*tiny_data, TINY, tmp_path / "b", {"seed": 1, "target": "oh_p50"})
    a, b, r = _state(tmp_path / "a" / "model.pt"), _state(tmp_path / "b" / "model.pt"), _state(ref / "model.pt")
    assert all(torch.equal(a[k], r[k]) for k in r)
    assert not all(torch.equal(b[k], r[k]) for k in r)


def test_resume_after_kill_gives_same_weights(tiny_data, reference_run, tmp_path):
    ref, _ = reference_run
    np.savez(tmp_path / "data.npz", *tiny_data)
    out = tmp_path / "run"
    script = textwrap.dedent(f"""
        import os, signal, numpy as np
        import galmet.train as gt
        d = np.load({str(tmp_path / "data.npz")!r})
        def die(epoch):
            if epoch == 1:
                os.kill(os.getpid(), signal.SIGKILL)  # kill -9 right after epoch 2's checkpoint
        gt._after_checkpoint = die
        gt.train_model(d["arr_0"], d["arr_1"], d["arr_2"], d["arr_3"], {TINY!r}, {str(out)!r},
                       {{"seed": 0, "target": "oh_p50"}})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert (out / "checkpoint.pt").exists() and not (out / "model.pt").exists()
    result = train_model(*tiny_data, TINY, out, {"seed": 0, "target": "oh_p50"})
    assert result["resumed_from"] == 2
    a, r = _state(out / "model.pt"), _state(ref / "model.pt")
    assert all(torch.equal(a[k], r[k]) for k in r)
    assert pd.read_csv(out / "train_log.csv")["epoch"].tolist() == [1, 2, 3]


def test_checkpoint_of_other_params_is_not_resumed(tiny_data, tmp_path, monkeypatch):
    def stop(epoch):
        raise KeyboardInterrupt

    monkeypatch.setattr(gt, "_after_checkpoint", stop)
    with pytest.raises(KeyboardInterrupt):
        train_model(*tiny_data, TINY, tmp_path, {"seed": 0})
    monkeypatch.setattr(gt, "_after_checkpoint", lambda epoch: None)
    params = {**TINY, "stage2": {"cycles": [1], "lrs": [0.01, 0.01, 0.01]}}
    assert train_model(*tiny_data, params, tmp_path, {"seed": 0})["resumed_from"] is None


def test_training_starts_from_given_weights_and_resumes_only_from_them(tiny_data, reference_run, tmp_path,
                                                                       monkeypatch):
    init = _state(reference_run[0] / "model.pt")
    frozen = {**TINY, "stage2": {"cycles": [1], "lrs": [1e-12] * 3}}  # no step moves a weight visibly
    train_model(*tiny_data, frozen, tmp_path / "a", {"seed": 0}, init=init)
    got = _state(tmp_path / "a" / "model.pt")
    for name in ("body.conv1.weight", "head.fc1.weight", "head.fc2.weight", "head.fc2.bias"):
        torch.testing.assert_close(got[name], init[name], atol=1e-6, rtol=0, msg=name)  # the head's bias too:
        # it is not reset to the mean label
    scratch = _state(train_model(*tiny_data, frozen, tmp_path / "b", {"seed": 0})["model"])
    assert not torch.allclose(scratch["body.conv1.weight"], init["body.conv1.weight"], atol=1e-3)

    def stop(epoch):
        raise KeyboardInterrupt

    monkeypatch.setattr(gt, "_after_checkpoint", stop)
    with pytest.raises(KeyboardInterrupt):
        train_model(*tiny_data, TINY, tmp_path / "c", {"seed": 0})  # a checkpoint of the random start
    monkeypatch.setattr(gt, "_after_checkpoint", lambda epoch: None)
    assert train_model(*tiny_data, TINY, tmp_path / "c", {"seed": 0}, init=init)["resumed_from"] is None


def test_nan_loss_stops_with_clear_error(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(gt, "to_input", lambda x, scale, shift: torch.full(x.shape, float("nan")))
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 1, batch 1.*lower train"):
        train_model(*tiny_data, TINY, tmp_path, {"seed": 0})
    assert not (tmp_path / "checkpoint.pt").exists()


def test_nan_label_is_refused(tiny_data, tmp_path):
    xt, yt, xv, yv = tiny_data
    yt = yt.copy()
    yt[5] = np.nan
    with pytest.raises(TrainingError, match="y_train: 1 labels are NaN.*row 5"):
        train_model(xt, yt, xv, yv, TINY, tmp_path, {"seed": 0})


def test_bad_train_settings_are_named_by_the_schema(tiny_data, tmp_path):
    """train_model validates its settings against the config schema (no second list of rules)."""
    with pytest.raises(ConfigError, match=r"train\.keep: 'worst' is not one of \['last', 'best'\]"):
        train_model(*tiny_data, {**TINY, "keep": "worst"}, tmp_path, {"seed": 0})
    with pytest.raises(ConfigError, match=r"train\.stage2\.lrs: \[0\.1\] is too short"):
        train_model(*tiny_data, {**TINY, "stage2": {"lrs": [0.1]}}, tmp_path, {"seed": 0})
    assert not list(tmp_path.iterdir())  # refused before anything is written


def test_keep_best_keeps_lowest_validation_epoch(tiny_data, tmp_path):
    result = train_model(*tiny_data, {**TINY, "keep": "best"}, tmp_path, {"seed": 0})
    log = pd.read_csv(result["log"])
    assert result["kept_epoch"] == int(log.loc[log["valid_rmse"].idxmin(), "epoch"])
    assert result["valid_rmse"] == pytest.approx(log["valid_rmse"].min())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_and_prediction(tiny_data, tmp_path):
    from galmet.modelfile import load as load_model
    from galmet.predict import predict_images

    params = {**TINY, "device": "cuda", "batch_size": 12}
    result = train_model(*tiny_data, params, tmp_path, {"seed": 0})
    assert result["device"].startswith("cuda") and np.isfinite(result["valid_rmse"])
    gpu_model, meta = load_model(tmp_path / "model.pt", "cuda")
    p_gpu = predict_images(gpu_model, meta, tiny_data[2], tta=8, device="cuda")
    model, meta = load_model(tmp_path / "model.pt", "cpu")
    p_cpu = predict_images(model, meta, tiny_data[2], tta=8, device="cpu")
    # bf16 autocast in the body on the GPU, the head in float32 (galmet.model.MetallicityNet): the
    # body's relative error of a few 1e-3 (this 1-epoch model's outputs are far from 9 dex)
    assert np.allclose(p_gpu, p_cpu, rtol=0.01, atol=0.01)
    x = torch.from_numpy(tiny_data[2][:8]).cuda().permute(0, 3, 1, 2).float() / 255
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        out = gpu_model(x)
    assert out.dtype == torch.float32 and not torch.equal(out, out.bfloat16().float())  # not rounded to bf16
    # streamed (not resident) batches give a model too
    params = {**params, "data_on_device": "never"}
    assert np.isfinite(train_model(*tiny_data, params, tmp_path / "s", {"seed": 0})["valid_rmse"])


def test_read_only_inputs_train_without_a_numpy_warning(tiny_data, tmp_path):
    """Labels from pandas (copy-on-write) and images from a memory-mapped store are read-only;
    torch warns once per process about such arrays, so this runs in a fresh process."""
    np.savez(tmp_path / "data.npz", *tiny_data)
    np.save(tmp_path / "store.npy", tiny_data[0])
    script = textwrap.dedent(f"""
        import numpy as np
        import galmet.train as gt
        d = np.load({str(tmp_path / "data.npz")!r})
        x = np.load({str(tmp_path / "store.npy")!r}, mmap_mode="r")
        y = d["arr_1"].copy(); y.setflags(write=False)
        gt.train_model(x, y, d["arr_2"], d["arr_3"], {{**{TINY!r}, "stage2": {{"cycles": [1]}}}},
                       {str(tmp_path / "out")!r}, {{"seed": 0}})
    """)
    proc = subprocess.run([sys.executable, "-W", "always", "-c", script], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "not writable" not in proc.stderr


def test_ctrl_c_ends_the_job_with_one_line_saying_how_to_resume(tiny_data, tmp_path):
    """Ctrl-C in a training job (as the workflow runs it, inside galmet.logs.job_errors): exit code
    130, one line naming the epoch and the kept checkpoint, no traceback; the rerun resumes."""
    np.savez(tmp_path / "data.npz", *tiny_data)
    out = tmp_path / "run"
    script = textwrap.dedent(f"""
        import numpy as np
        import galmet.train as gt
        from galmet.logs import job_errors, setup_logging
        setup_logging()
        d = np.load({str(tmp_path / "data.npz")!r})
        def ctrl_c(epoch):
            if epoch == 1:
                raise KeyboardInterrupt  # as SIGINT would, right after epoch 2's checkpoint
        gt._after_checkpoint = ctrl_c
        with job_errors(gt.TrainingError):
            gt.train_model(d["arr_0"], d["arr_1"], d["arr_2"], d["arr_3"], {TINY!r}, {str(out)!r},
                           {{"seed": 0, "target": "oh_p50"}})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1
    assert errors[0].endswith(f"interrupted at epoch 3 of 3; the checkpoint {out / 'checkpoint.pt'} (after epoch 2) "
                              "is kept: rerun the same command to resume from there")
    assert train_model(*tiny_data, TINY, out, {"seed": 0, "target": "oh_p50"})["resumed_from"] == 2


def test_too_few_training_images_stop_before_training_naming_the_cause(tmp_path):
    """Four galaxies in the train split, none with a cutout: the count and the cause, not a
    batch-norm error from inside training."""
    from galmet.dataset import DataError, require, split_members

    ids = np.arange(1, 7, dtype=np.int64)
    pd.DataFrame({"objID": ids, "oh_p50": [8.9, 8.8, 8.7, 8.6, 9.0, np.nan]}).to_parquet(tmp_path / "c.parquet")
    pd.DataFrame({"objID": ids, "split": ["train"] * 4 + ["valid", "train"]}).to_parquet(tmp_path / "s.parquet")
    pd.DataFrame({"objID": np.array([5, 6], dtype=np.int64)}).to_parquet(tmp_path / "index.parquet")
    members = split_members(tmp_path / "c.parquet", tmp_path / "s.parquet", [tmp_path / "index.parquet"], "oh_p50")
    with pytest.raises(DataError) as err:
        require(members, "train", gt.MIN_TRAIN, "training (batch norm)", "the failures files list them")
    assert str(err.value) == (
        "only 0 train galaxies with an image and a valid oh_p50, of 5 in the train split: 4 without an image "
        "(no usable cutout, or a cutout that did not decode; the failures files list them); 1 without a valid "
        "oh_p50. Training (batch norm) needs at least 2: fix the cause and rerun")
    assert require(members, "valid", 1, "scoring") == 1


def test_job_errors_ends_a_job_with_its_message_and_no_traceback(tmp_path):
    """An expected error: one ERROR line, exit 1; Ctrl-C: the job's resume line, exit 130."""
    script = textwrap.dedent("""
        import sys
        from galmet.logs import job_errors, setup_logging
        setup_logging()
        with job_errors(ValueError, interrupted="interrupted: rerun the same command to resume"):
            raise (KeyboardInterrupt if sys.argv[1] == "ctrl-c" else ValueError)("no cutout: the service is down")
    """)
    for how, rc, line in (("error", 1, "ERROR galmet: no cutout: the service is down"),
                          ("ctrl-c", 130, "ERROR galmet: interrupted: rerun the same command to resume")):
        proc = subprocess.run([sys.executable, "-c", script, how], capture_output=True, text=True)
        assert proc.returncode == rc and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.strip().endswith(line)


def test_learning_rate_check_names_the_backbones_groups(tiny_data, tmp_path):
    from galmet.config import ConfigError

    params = {**TINY, "stage2": {"cycles": [1], "lrs": [0.01, 0.1]}}
    with pytest.raises(ConfigError, match=r"train.stage2.lrs: \[0.01, 0.1\] is too short \(Peak learning rates of "
                                          r"the layer groups early, middle, head \(as galmet.backbones splits"):
        train_model(*tiny_data, params, tmp_path, {"seed": 0})
