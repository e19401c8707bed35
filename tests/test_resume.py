"""A real `snakemake` run interrupted mid-training resumes with the README's unchanged command.

The README promises: interrupt a run at any time, and the same command resumes where it stopped.
Here the run is interrupted twice, as a user's would be: Ctrl-C in the terminal (SIGINT to the
whole process group), then, during the rerun, `kill -9` of the training job alone. The third
command completes, training resumes after its last finished epoch, and the weights, the
predictions and summary.json's metrics equal those of a run that was never interrupted.
Nothing but the README's command is typed: `rerun-incomplete` comes from profiles/default.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from .conftest import DEMO, ROOT

pytestmark = pytest.mark.slow

MODEL = "resnet18-64px-seed0"
EPOCHS = 6


def _config(workdir: Path) -> Path:
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["catalog"]["path"] = str(DEMO / "catalog.csv")
    cfg["cutouts"]["local_dir"] = str(DEMO / "images")
    cfg["resolutions"] = [64]
    cfg["train"]["stage2"] = {"cycles": [EPOCHS], "lrs": [0.001, 0.001, 0.001]}
    cfg["figures"] = {"formats": ["png"]}
    cfg["reference"] = {"resolutions": []}
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _command(workdir: Path) -> list[str]:
    """The README's command (`snakemake --cores N --resources gpu=1`), for this directory."""
    return [str(Path(sys.executable).with_name("snakemake")), "-s", str(ROOT / "Snakefile"),
            "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"),
            "--cores", "2", "--resources", "gpu=1"]


def _train_log(workdir: Path) -> Path:
    return workdir / "results" / "logs" / "train" / "oh_p50" / f"{MODEL}.log"


def _epochs_logged(workdir: Path) -> list[int]:
    log = _train_log(workdir)
    text = log.read_text() if log.exists() else ""
    return [int(m) for m in re.findall(rf"epoch (\d+)/{EPOCHS} stage", text)]


def _wait(predicate, proc, what: str, timeout: float = 600):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"snakemake ended (rc {proc.returncode}) before {what}:\n"
                                 f"{proc.output_path.read_text()[-4000:]}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _training_job_pid(workdir: Path) -> int | None:
    """The training job: Snakemake runs it as python <workdir>/.snakemake/scripts/tmp*.train.py."""
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(".snakemake/scripts/" in a and a.endswith("train.py") for a in argv) and \
                any(str(workdir) in a for a in argv):
            return int(entry.name)
    return None


def _start(workdir: Path, name: str) -> subprocess.Popen:
    # a session of its own, as a terminal gives a command its own process group; output to a
    # file (a pipe nobody reads would block Snakemake once full)
    out = open(workdir / f"{name}.out", "w")
    proc = subprocess.Popen(_command(workdir), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    proc.output_path = workdir / f"{name}.out"
    return proc


def _results(workdir: Path) -> dict:
    res = workdir / "results"
    summary = json.loads((res / "summary.json").read_text())
    return {
        "weights": torch.load(res / "models" / "oh_p50" / MODEL / "model.pt", weights_only=True)["state_dict"],
        "predictions": pd.read_parquet(res / "predictions" / "oh_p50" / f"{MODEL}.parquet"),
        "metrics": [m["test"] for m in summary["models"]],
        "baselines": [b["test"] for b in summary["baselines"]],
    }


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("whole")
    _config(workdir)
    proc = subprocess.run(_command(workdir), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return _results(workdir)


def test_ctrl_c_then_kill_9_of_the_job_then_the_same_command_completes(uninterrupted, tmp_path):
    if not Path("/proc/self/cmdline").exists():
        pytest.skip("needs Linux /proc to find the training job")
    _config(tmp_path)
    checkpoint = tmp_path / "results" / "models" / "oh_p50" / MODEL / "checkpoint.pt"

    # 1. Ctrl-C (SIGINT to the process group) after epoch 2
    run = _start(tmp_path, "ctrl-c")
    _wait(lambda: len(_epochs_logged(tmp_path)) >= 2 and checkpoint.exists(), run, "epoch 2")
    os.killpg(run.pid, signal.SIGINT)
    assert run.wait(timeout=120) != 0
    done_at_ctrl_c = max(_epochs_logged(tmp_path))
    assert done_at_ctrl_c < EPOCHS, "training had finished before the interrupt"
    assert checkpoint.exists()

    # 2. the same command: training resumes; kill -9 of the training job one epoch later
    run = _start(tmp_path, "kill-9")
    _wait(lambda: "resuming" in _train_log(tmp_path).read_text() if _train_log(tmp_path).exists() else False,
          run, "training to resume")
    resumed = re.search(r"resuming .* after epoch (\d+) of", _train_log(tmp_path).read_text())
    assert resumed and int(resumed.group(1)) >= done_at_ctrl_c - 1  # the last checkpointed epoch
    before_kill = len(_epochs_logged(tmp_path))
    _wait(lambda: len(_epochs_logged(tmp_path)) > before_kill, run, "one more epoch")
    pid = _training_job_pid(tmp_path)
    assert pid is not None, "no training job process found"
    os.kill(pid, signal.SIGKILL)
    assert run.wait(timeout=120) != 0
    assert not (tmp_path / "results" / "models" / "oh_p50" / MODEL / "model.pt").exists()
    done_at_kill = max(_epochs_logged(tmp_path))

    # 3. the same command again: it completes, resuming after the last finished epoch
    proc = subprocess.run(_command(tmp_path), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    last = re.findall(r"resuming .* after epoch (\d+) of", _train_log(tmp_path).read_text())[-1]
    assert done_at_kill - 1 <= int(last) <= done_at_kill
    log = pd.read_csv(tmp_path / "results" / "models" / "oh_p50" / MODEL / "train_log.csv")
    assert log["epoch"].tolist() == list(range(1, EPOCHS + 1))
    assert not checkpoint.exists()

    got = _results(tmp_path)
    want = uninterrupted
    assert all(torch.equal(got["weights"][k], want["weights"][k]) for k in want["weights"])
    pd.testing.assert_frame_equal(got["predictions"], want["predictions"])
    assert got["metrics"] == want["metrics"] and got["baselines"] == want["baselines"]
