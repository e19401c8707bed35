"""The reproducible mode (``train.reproducible``): the same weights on every x86-64 CPU.

Why
    PyTorch picks its CPU kernels by the instruction sets of the CPU it runs on, and each sums
    in its own order: ATen's vectorised kernels (batch norm, reductions: ``DEFAULT``, ``AVX2``
    or ``AVX512`` builds), oneDNN's JIT convolutions (blocked by the CPU's vector width, caches
    and threads), NNPACK's convolutions and MKL's GEMM. The same commit, data and seed then give
    other weights on another machine (the demo's 64 px model: test RMSE 0.154 on one, 0.137 on
    an AVX2-only AMD EPYC). ``benchmarks/reproducible_cpu.py`` measured which choices move the
    weights (by emulating other CPUs with ``ATEN_CPU_CAPABILITY``, ``ONEDNN_MAX_CPU_ISA`` and
    ``MKL_ENABLE_INSTRUCTIONS``) and what fixing them costs.

What the mode fixes
    * ATen's kernels: ``ATEN_CPU_CAPABILITY=default`` (the build for any x86-64 CPU);
    * oneDNN and NNPACK: off (``torch.backends.mkldnn.enabled``, ``torch.backends.nnpack``):
      convolutions run as im2col + GEMM;
    * MKL: ``MKL_CBWR=COMPATIBLE`` (MKL's conditional numerical reproducibility, the branch
      every x86-64 CPU, Intel or AMD, runs the same);
    * deterministic algorithms (``torch.use_deterministic_algorithms``): an operation without a
      deterministic kernel raises instead of drifting;
    * the number of threads, which splits reductions: ``train.num_threads``, 1 when 0 (the
      workflow's CPU trainings use one thread each anyway).

    The two environment variables are read once per process, when torch first runs a kernel
    and when MKL first runs: :func:`apply` sets them and then checks that torch and MKL took
    them; when something computed before (a notebook that used torch, a test session), training
    stops with :class:`ReproducibilityError`, saying to set them before starting Python
    (:func:`environment` gives them). Prediction with a model trained in the mode applies it
    too (:func:`galmet.modelfile.load`), with a warning instead of an error when it comes too
    late. The model file records what the training ran with (:func:`state`: ``meta["reproducible"]``).

On a GPU
    Nothing makes two GPU models, or two CUDA/cuDNN versions, agree to the bit. On CUDA the mode
    asks for a run repeatable on the same GPU and software (not checked: the mode was made
    without a GPU): cuDNN's deterministic algorithms without
    autotuning (``cudnn.benchmark`` off), deterministic PyTorch algorithms (cuBLAS with
    ``CUBLAS_WORKSPACE_CONFIG=:4096:8``), TF32 left as the run sets it, bf16 autocast as
    ``train.precision`` says (docs/quickstart.md, "The same numbers on every machine").

This module imports torch only inside its functions: :func:`environment` can run before it.
"""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger("galmet.reproducible")

#: environment variables read once per process, before torch's and MKL's first computation.
ENV = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}
#: what ``torch.backends.cpu.get_cpu_capability()`` says under ``ENV``.
CAPABILITY = "DEFAULT"
#: MKL's branch codes (``mkl_cbwr_get(MKL_CBWR_BRANCH)``, MKL's ``mkl_cbwr.h``).
_MKL_BRANCHES = {1: "OFF", 2: "AUTO", 3: "COMPATIBLE", 4: "SSE2", 6: "SSSE3", 7: "SSE4_1", 8: "SSE4_2", 9: "AVX",
                 10: "AVX2", 12: "AVX512"}
#: cuBLAS's workspace setting for deterministic results (PyTorch's reproducibility notes).
CUBLAS_WORKSPACE = ":4096:8"
#: whether :func:`apply` turned the mode on in this process (and has flags to undo).
_applied = False


class ReproducibilityError(RuntimeError):
    """The reproducible mode cannot be set in this process; the message says what to do."""


def wanted(setting, device_type: str = "cpu") -> bool:
    """Whether ``train.reproducible`` (``auto``, true or false) asks for the mode on ``device_type``:
    ``auto`` is on for the CPU, off on CUDA (where it buys repeatability on one GPU only)."""
    if setting == "auto":
        return device_type != "cuda"
    if isinstance(setting, bool):
        return setting
    raise ValueError(f"train.reproducible is {setting!r}: give auto, true or false")


def for_prediction(setting, evaluation: bool) -> bool | None:
    """What ``predict.reproducible`` (``auto``, true or false) asks of a prediction: True (the
    mode), False (the fast kernels) or None (as the model was trained: the mode when its file says
    so). ``auto`` is None for the workflow's own evaluation (``evaluation``: small labelled splits,
    numbers that must agree everywhere) and False for galmet predict, infer and the API, where the
    mode's ~6.5x cost of inference counts and float32 rounding (a few 1e-6 dex) is the difference."""
    if setting == "auto":
        return None if evaluation else False
    if isinstance(setting, bool):
        return setting
    raise ValueError(f"predict.reproducible is {setting!r}: give auto, true or false")


def environment() -> dict[str, str]:
    """The environment variables of the mode, to set before Python starts (or before torch runs)."""
    return dict(ENV)


def set_environment() -> None:
    """Put :data:`ENV` into ``os.environ`` (overriding): effective when torch and MKL have not
    computed anything yet in this process."""
    os.environ.update(ENV)


def apply(enabled: bool, device: str = "cpu", threads: int | None = 0, strict: bool = True) -> dict:
    """Set the mode (``enabled``) or the fast kernels (not ``enabled``) for this process; returns
    :func:`state`.

    ``threads``: the training's ``num_threads`` (0: 1 thread in the mode, else left as it is;
    None: left as the caller set it, as prediction does).
    Turning the mode off restores oneDNN, NNPACK and non-deterministic algorithms only where the
    mode had turned them off in this process; the kernel builds chosen by the environment stay.
    ``strict``: a mode that could not be set (torch or MKL ran before :func:`set_environment`)
    raises :class:`ReproducibilityError`; else it is logged as a warning.
    """
    import torch

    global _applied
    if not enabled:
        if _applied:  # undo what the mode set earlier in this process (a user's own flags are left alone)
            torch.backends.mkldnn.enabled = True
            torch.backends.nnpack.set_flags(True)
            torch.use_deterministic_algorithms(False)
            torch.backends.cudnn.deterministic = False
            _applied = False
        if threads:
            torch.set_num_threads(int(threads))
        return state(False)
    _applied = True
    set_environment()
    if device == "cuda" or str(device).startswith("cuda"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    torch.backends.mkldnn.enabled = False
    torch.backends.nnpack.set_flags(False)
    torch.use_deterministic_algorithms(True)
    if threads is not None:
        torch.set_num_threads(int(threads) if int(threads) > 0 else 1)
    current = state(True)
    problems = _problems(current)
    if problems:
        message = (f"the reproducible mode could not be set: {'; '.join(problems)}. Torch or MKL computed "
                   "something in this process before galmet could choose their kernels: start Python with "
                   f"{' '.join(f'{k}={v}' for k, v in ENV.items())} in the environment (or call "
                   "galmet.reproducible.set_environment() before anything uses torch)")
        if strict:
            raise ReproducibilityError(f"{message}, or set train.reproducible: false")
        log.warning("%s; predictions may differ in their last digits from another machine's", message)
    return current


def state(enabled: bool) -> dict:
    """What this process computes with: the model file's ``reproducible`` block."""
    import torch

    return {
        "enabled": bool(enabled),
        "cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
        "mkldnn": bool(torch.backends.mkldnn.enabled),
        "nnpack": bool(torch._C._get_nnpack_enabled()),  # torch.backends.nnpack has a setter only
        "mkl_cbwr": mkl_branch(),
        "deterministic": bool(torch.are_deterministic_algorithms_enabled()),
        "threads": int(torch.get_num_threads()),
    }


def mkl_branch() -> str | None:
    """MKL's numerical-reproducibility branch in this process (``OFF``, ``AUTO``, ``COMPATIBLE``,
    ...), read from MKL itself; None where torch was built without MKL (then its BLAS decides)."""
    import torch

    if not torch.backends.mkl.is_available():
        return None
    try:
        lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
        get = lib.mkl_serv_cbwr_get
    except (OSError, AttributeError):  # another platform's build, MKL linked elsewhere
        return os.environ.get("MKL_CBWR")
    get.restype, get.argtypes = ctypes.c_int, [ctypes.c_int]
    code = int(get(1))  # MKL_CBWR_BRANCH
    return _MKL_BRANCHES.get(code, f"code {code}")


def weights_sha256(state_dict: dict) -> str:
    """SHA-256 of a state dict's names, dtypes, shapes and bytes (in name order): equal hashes,
    bit-identical weights."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name} {t.dtype} {tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _problems(current: dict) -> list[str]:
    out = []
    if current["cpu_capability"] != CAPABILITY:
        out.append(f"torch runs its {current['cpu_capability']} kernels, not {CAPABILITY}")
    if current["mkl_cbwr"] not in (None, ENV["MKL_CBWR"]):
        out.append(f"MKL runs its {current['mkl_cbwr']} branch, not {ENV['MKL_CBWR']}")
    return out


__all__ = ["ENV", "CAPABILITY", "ReproducibilityError", "wanted", "for_prediction", "environment", "set_environment",
           "apply", "state", "mkl_branch", "weights_sha256"]
