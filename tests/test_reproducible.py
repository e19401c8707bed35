"""The reproducible mode (galmet.reproducible, train.reproducible): the same weights on every CPU.

The SHA-256 of a tiny training's weights is pinned: a kernel that depends on the CPU (a library
update, a flag the mode misses) changes it, and CI on another CPU fails instead of drifting.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from galmet import reproducible
from galmet.modelfile import load, read_meta
from galmet.train import train_model

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "arch": "resnet18", "pretrained": "none", "batch_size": 8,
    "stage2": {"cycles": [1], "lrs": [0.01, 0.02, 0.05]},
    "normalisation": "dataset", "num_threads": 1, "device": "cpu", "reproducible": True,
}
#: SHA-256 (galmet.reproducible.weights_sha256) of TINY's weights after one epoch on the first 24
#: demo galaxies at 16 px (8 for validation), per torch version. Computed on an Intel Xeon with
#: AVX-512 and AMX, and the same with that CPU's choices capped to AVX2 and to SSE4
#: (test_same_weights_on_emulated_older_cpus; benchmarks/reproducible_cpu.py for the demo's training).
PINNED = {
    "2.14.1": "e7cf86ed74ac6b30a39b1c398a29f3aed4b1b4d99870e3859605ce0153bf887b",
}
#: other CPUs, emulated by capping what torch, oneDNN and MKL may use (the mode sets its own ATen choice).
EMULATED = {
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "sse": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
}

TRAIN_AND_HASH = """
import json, sys, numpy as np, torch
sys.path.insert(0, {src!r})
from galmet import reproducible
from galmet.train import train_model
d = np.load({data!r})
train_model(d["xt"], d["yt"], d["xv"], d["yv"], {params!r}, {out!r}, {{"seed": 0, "target": "oh_p50"}})
state = torch.load({out!r} + "/model.pt", weights_only=True)
print(json.dumps({{"sha256": reproducible.weights_sha256(state["state_dict"]),
                  "kernels": state["meta"]["reproducible"]}}))
"""


@pytest.fixture(scope="module")
def mode_run(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("mode")
    train_model(*tiny_data, TINY, out, {"seed": 0, "target": "oh_p50"})
    return out


def _pinned() -> str:
    version = torch.__version__.split("+")[0]
    if version not in PINNED:
        pytest.fail(f"no pinned weights for torch {version} (pyproject.toml pins the version CI runs): compute the "
                    "hash with this test's TINY training and add it to PINNED")
    return PINNED[version]


def _sha(model_dir: Path) -> str:
    return reproducible.weights_sha256(torch.load(model_dir / "model.pt", weights_only=True)["state_dict"])


@pytest.mark.reproducible
def test_weights_are_pinned(mode_run):
    sha = _sha(mode_run)
    assert sha == _pinned(), (
        f"the reproducible mode's weights changed on this CPU ({os.uname().machine}, torch "
        f"{torch.__version__}, {reproducible.state(True)}): got {sha}. A kernel that depends on the CPU "
        "or on a library version slipped in: find it with benchmarks/reproducible_cpu.py")


@pytest.mark.reproducible
@pytest.mark.parametrize("cpu", sorted(EMULATED))
def test_same_weights_on_emulated_older_cpus(cpu, tiny_data, tmp_path):
    """In a fresh process with torch, oneDNN and MKL capped as on an older CPU (and ATEN_CPU_CAPABILITY
    preset, which the mode overrides), the mode trains the pinned weights."""
    data = tmp_path / "data.npz"
    np.savez(data, xt=tiny_data[0], yt=tiny_data[1], xv=tiny_data[2], yv=tiny_data[3])
    code = TRAIN_AND_HASH.format(src=str(ROOT / "src"), data=str(data), params=TINY, out=str(tmp_path / "m"))
    env = {k: v for k, v in os.environ.items() if k not in reproducible.ENV}
    p = subprocess.run([sys.executable, "-c", code], env={**env, **EMULATED[cpu]}, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    result = json.loads(p.stdout.strip().splitlines()[-1])
    assert result["kernels"]["cpu_capability"] == reproducible.CAPABILITY
    assert result["sha256"] == _pinned(), f"on an emulated {cpu} CPU the mode's weights differ: {result}"


def test_model_file_records_the_mode(mode_run, tiny_data, tmp_path):
    meta = read_meta(mode_run / "model.pt")
    assert meta["reproducible"] == {
        "enabled": True, "cpu_capability": "DEFAULT", "mkldnn": False, "nnpack": False,
        "mkl_cbwr": "COMPATIBLE" if torch.backends.mkl.is_available() else None, "deterministic": True,
        "threads": 1,
    }
    assert meta["train_params"]["reproducible"] is True
    # off: oneDNN and NNPACK back (the kernel builds chosen at the process's start stay)
    train_model(*tiny_data, {**TINY, "reproducible": False}, tmp_path, {"seed": 0, "target": "oh_p50"})
    off = read_meta(tmp_path / "model.pt")["reproducible"]
    assert off["enabled"] is False and off["mkldnn"] is True and off["nnpack"] is True and not off["deterministic"]
    assert not torch.are_deterministic_algorithms_enabled()
    # loading a model trained in the mode applies it again, for its predictions (the workflow's evaluation)
    load(mode_run / "model.pt")
    assert not torch.backends.mkldnn.enabled and torch.are_deterministic_algorithms_enabled()
    reproducible.apply(False)
    assert torch.backends.mkldnn.enabled
    # galmet predict, infer and the API: the fast kernels unless asked (predict.reproducible: auto)
    import galmet

    load(mode_run / "model.pt", reproducible=True)
    galmet.load_model(mode_run / "model.pt")
    assert torch.backends.mkldnn.enabled and not torch.are_deterministic_algorithms_enabled()
    galmet.load_model(mode_run / "model.pt", reproducible=True)
    assert not torch.backends.mkldnn.enabled
    load(mode_run / "model.pt", reproducible=False)
    assert torch.backends.mkldnn.enabled


def test_prediction_follows_the_model_in_the_workflow_only():
    """predict.reproducible: auto follows the model for the workflow's evaluation (None), and is the
    fast kernels for galmet predict, infer and the API (False); true and false are what they say."""
    assert reproducible.for_prediction("auto", evaluation=True) is None
    assert reproducible.for_prediction("auto", evaluation=False) is False
    assert reproducible.for_prediction(True, evaluation=False) is True
    assert reproducible.for_prediction(False, evaluation=True) is False
    with pytest.raises(ValueError, match="predict.reproducible is 'yes'"):
        reproducible.for_prediction("yes", evaluation=True)


def test_galmet_predict_takes_the_mode_when_asked(mode_run, tmp_path):
    """`galmet predict --reproducible true` predicts in the mode, and its numbers are those of the
    fast kernels to float32 rounding."""
    from galmet.cli import main as galmet_main
    from galmet.tables import read_table

    images = ROOT / "resources" / "demo" / "images"
    folder = tmp_path / "images"
    folder.mkdir()
    for path in sorted(images.glob("*.jpg"))[:6]:
        (folder / path.name).write_bytes(path.read_bytes())
    out = {}
    for setting in ("true", "auto"):
        dest = tmp_path / f"{setting}.csv"
        assert galmet_main(["predict", "--model", str(mode_run / "model.pt"), "--images", str(folder),
                            "--out", str(dest), "--reproducible", setting]) == 0
        out[setting] = read_table(dest)["prediction"].to_numpy()
        assert torch.backends.mkldnn.enabled == (setting == "auto")
    np.testing.assert_allclose(out["true"], out["auto"], atol=1e-5)
    reproducible.apply(False)


def test_auto_is_on_for_the_cpu_only():
    assert reproducible.wanted("auto", "cpu") and not reproducible.wanted("auto", "cuda")
    assert reproducible.wanted(True, "cuda") and not reproducible.wanted(False, "cpu")
    with pytest.raises(ValueError, match="auto, true or false"):
        reproducible.wanted("yes", "cpu")


def test_mode_refuses_once_torch_chose_other_kernels(tmp_path):
    """A process whose torch already computed with its own kernels cannot take the mode: training says
    what to set instead of training weights that differ from another machine's."""
    code = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(ROOT / "src")!r})
        torch.ones(8).sum()  # torch picks its kernels here
        if torch.backends.cpu.get_cpu_capability() == "DEFAULT":
            print("SKIP this CPU has no AVX2"); sys.exit(0)
        from galmet.reproducible import ReproducibilityError, apply
        try:
            apply(True)
        except ReproducibilityError as exc:
            print(exc); sys.exit(3)
    """)
    env = {k: v for k, v in os.environ.items() if k not in reproducible.ENV}
    p = subprocess.run([sys.executable, "-c", code], env={**env, "ATEN_CPU_CAPABILITY": "avx2"},
                       capture_output=True, text=True, timeout=120)
    if p.stdout.startswith("SKIP"):
        pytest.skip(p.stdout.strip())
    assert p.returncode == 3, p.stderr[-2000:]
    assert "torch runs its AVX2 kernels, not DEFAULT" in p.stdout
    assert "ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE" in p.stdout and "train.reproducible: false" in p.stdout


def test_ensemble_predicts_in_the_mode_only_when_every_member_was_trained_in_it():
    """Members trained on two machines with the mode off ran different kernels: they still join,
    and the ensemble does not claim the mode; members all trained in it keep it."""
    from galmet.ensemble import combine

    on = {"enabled": True, "cpu_capability": "DEFAULT", "mkldnn": False, "nnpack": False, "mkl_cbwr": "COMPATIBLE",
          "deterministic": True, "threads": 1}
    shared = {"arch": "resnet18", "head": {"hidden": 0, "dropout": [0, 0]}, "resolution": 16, "target": "oh_p50"}

    def member(seed, mode):
        return torch.nn.Linear(1, 1), {**shared, "seed": seed, "reproducible": mode}

    _, meta = combine([member(0, on), member(1, on)], ["a", "b"])
    assert meta["reproducible"] == on and [m["reproducible"] for m in meta["members"]] == [on, on]
    avx2 = {"enabled": False, "cpu_capability": "AVX2", "mkldnn": True}
    avx512 = {"enabled": False, "cpu_capability": "AVX512", "mkldnn": True}
    _, meta = combine([member(0, avx2), member(1, avx512)], ["a", "b"])
    assert meta["reproducible"] == {"enabled": False}
    assert [m["reproducible"]["cpu_capability"] for m in meta["members"]] == ["AVX2", "AVX512"]
    _, meta = combine([member(0, on), member(1, avx2)], ["a", "b"])
    assert meta["reproducible"] == {"enabled": False}


def test_loading_a_model_file_computes_nothing_before_the_mode_is_set(mode_run):
    """A fresh process that loads a model trained in the mode (its domain block checked on the way)
    predicts in the mode: nothing in the loading ran a torch kernel before the mode chose them (a
    sum over the domain block's fold sizes once did, and every workflow prediction then ran
    torch's own kernels with a warning)."""
    code = textwrap.dedent(f"""
        import logging, sys
        sys.path.insert(0, {str(ROOT / "src")!r})
        logging.basicConfig(level=logging.WARNING)
        from galmet.modelfile import load
        import torch
        model, meta = load({str(mode_run / "model.pt")!r}, "cpu")
        assert meta["domain"]["version"] == 2
        print(torch.backends.cpu.get_cpu_capability())
    """)
    env = {k: v for k, v in os.environ.items() if k not in reproducible.ENV}
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "DEFAULT" and "could not be set" not in p.stderr, p.stderr[-2000:]
