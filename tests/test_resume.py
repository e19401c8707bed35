"""A real `snakemake` run interrupted mid-training resumes with the README's unchanged command.

The README promises: interrupt a run at any time, and the same command resumes where it stopped.
Here the run is interrupted three times, as a user's would be: Ctrl-C in the terminal (SIGINT to
the whole process group), then, during the rerun, SIGTERM to the group (`kill`, a batch
system), then `kill -9` of the training job alone. The fourth command completes, training
resumes after its last finished epoch, and the weights, the predictions and summary.json's
metrics equal those of a run that was never interrupted. Nothing but the README's command is
typed: `rerun-incomplete` comes from profiles/default.
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
EPOCHS = 9


def _config(workdir: Path) -> Path:
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["catalog"]["path"] = str(DEMO / "catalog.csv")
    cfg["cutouts"]["local_dir"] = str(DEMO / "images")
    cfg["resolutions"] = [64]
    cfg["ensemble"] = None  # the interrupts are of the training job; one model is enough
    cfg["train"]["stage2"] = {"cycles": [EPOCHS], "lrs": [0.001, 0.001, 0.001]}
    cfg["figures"] = {"formats": ["png"]}
    cfg["reference"] = {"resolutions": []}
    cfg["saliency"] = {"models": []}  # not what this test is about: a minute less
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


def _as_in_a_terminal():
    """Ctrl-C's signal at its default, as a terminal gives it: a test run started in the
    background of a non-interactive shell (`cmd &`, nohup) inherits SIGINT ignored, and so
    would Snakemake and its jobs."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(workdir: Path, name: str) -> subprocess.Popen:
    # a session of its own, as a terminal gives a command its own process group; output to a
    # file (a pipe nobody reads would block Snakemake once full)
    out = open(workdir / f"{name}.out", "w")
    proc = subprocess.Popen(_command(workdir), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=_as_in_a_terminal)
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


def _interrupt(workdir: Path, name: str, how, rerun: bool) -> int:
    """Start the README command, wait for training to (re)start and finish an epoch (two on the
    first run), stop it with ``how(run)``; the last epoch logged when it stopped."""
    log = _train_log(workdir)
    checkpoint = workdir / "results" / "models" / "oh_p50" / MODEL / "checkpoint.pt"
    log.unlink(missing_ok=True)  # the job rewrites it when it starts: wait for the new one
    run = _start(workdir, name)
    if rerun:  # training must resume from the checkpoint
        _wait(lambda: "resuming" in (log.read_text() if log.exists() else ""), run, f"{name}: training to resume")
    _wait(lambda: len(_epochs_logged(workdir)) >= (1 if rerun else 2), run, f"{name}: an epoch")
    seen = time.time()  # then its checkpoint, written (atomically) right after the log line
    _wait(lambda: checkpoint.exists() and checkpoint.stat().st_mtime >= seen - 0.05, run, f"{name}: a checkpoint")
    how(run)
    assert run.wait(timeout=120) != 0, f"{name}: snakemake was not stopped"
    done = max(_epochs_logged(workdir))
    assert done < EPOCHS, f"{name}: training had finished before the interrupt"
    return done


def _resumed_after(workdir: Path) -> int:
    return int(re.findall(r"resuming .* after epoch (\d+) of", _train_log(workdir).read_text())[-1])


def test_interrupted_three_ways_the_same_command_completes_as_if_never_stopped(uninterrupted, tmp_path):
    if not Path("/proc/self/cmdline").exists():
        pytest.skip("needs Linux /proc to find the training job")
    _config(tmp_path)
    checkpoint = tmp_path / "results" / "models" / "oh_p50" / MODEL / "checkpoint.pt"

    def kill_training_job(run):
        pid = _training_job_pid(tmp_path)
        assert pid is not None, "no training job process found"
        os.kill(pid, signal.SIGKILL)

    ways = [("ctrl-c", lambda run: os.killpg(run.pid, signal.SIGINT)),  # Ctrl-C in a terminal
            ("sigterm", lambda run: os.killpg(run.pid, signal.SIGTERM)),  # kill, a batch system
            ("kill-9-of-the-job", kill_training_job)]
    done = 0
    for k, (name, how) in enumerate(ways):
        stopped_at = _interrupt(tmp_path, name, how, rerun=k > 0)
        assert checkpoint.exists(), f"{name}: the checkpoint is gone"
        if k:  # each rerun resumed after the last finished epoch of the run before it
            assert _resumed_after(tmp_path) == done, name
        done = stopped_at

    # the same command once more: it completes, resuming after the last finished epoch
    _train_log(tmp_path).unlink()
    proc = subprocess.run(_command(tmp_path), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert _resumed_after(tmp_path) == done >= 4  # three interrupts, each after one more epoch
    log = pd.read_csv(tmp_path / "results" / "models" / "oh_p50" / MODEL / "train_log.csv")
    assert log["epoch"].tolist() == list(range(1, EPOCHS + 1))
    assert not checkpoint.exists()

    got = _results(tmp_path)
    want = uninterrupted
    assert all(torch.equal(got["weights"][k], want["weights"][k]) for k in want["weights"])
    pd.testing.assert_frame_equal(got["predictions"], want["predictions"])
    assert got["metrics"] == want["metrics"] and got["baselines"] == want["baselines"]
