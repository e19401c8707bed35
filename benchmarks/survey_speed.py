"""Survey-scale inference: galaxies/s against accuracy and calibration, one Pareto table.

The demo's calibrated ensemble (3 ResNet-18 members at 64 px, TTA over the 8 D4 views: 24 forward
passes a galaxy) is galmet's best answer and its slowest. This script measures, on this machine,
what each way of spending fewer passes or less data-path time costs in accuracy and calibration,
choosing on the VALIDATION split only (the test split is never read):

* **throughput** (galaxies/s) of the library's one prediction path (``galmet.inputs`` ->
  ``galmet.predict.predict_rows``: JPEG decoding, re-binning, the domain test, the forward
  passes, the interval columns), in this process, on ``--n`` recycled demo JPEGs, each
  configuration timed ``--repeats`` times interleaved with the others (median); beside it the
  configuration's **compute ceiling** (its forward passes alone on decoded, re-binned images)
  and the **data path** alone (decoding, re-binning and the domain test, no network), so that
  ``rate / ceiling`` says how much the data path costs;
* **quality** on the validation galaxies: RMSE against the MPA-JHU value, and the 68%/95%
  coverage and mean width of split-conformal intervals, calibrated on one random half of the
  validation galaxies and scored on the other (``--halves`` random halves, means), as the
  ensemble rule calibrates on the whole split; and the **domain flags**: the fraction of the
  validation galaxies the model file's domain test flags at its own alpha (near alpha: they are
  among its calibration images) and of the same galaxies with their bands reversed (a shift it
  should catch), which tells that a faster model still carries the test;
* configurations: the ensemble at 8, 4, 2 and 1 TTA views; one member at 8 and 1 view; the
  workflow's **survey model** (rule ``survey``, :mod:`galmet.survey`: one network standing in
  for the ensemble, one pass, intervals of one width), through the library's path, which decodes the
  next chunk of JPEGs while the network predicts this one, and, the named baseline of that
  overlap, with the chunks decoded in turn; every model file runs on the CPU through PyTorch's
  graph for CPU inference, as galmet predicts (:func:`galmet.model.inference_graph`), and the
  ensemble and the survey model also in **eager PyTorch**, that graph's named baseline; the survey
  model (a member without one) through
  **ONNX Runtime** in float32 and **int8** quantized after training (static, per channel,
  calibrated on training images; ``pip install onnxruntime onnx``), with how far their
  predictions move from PyTorch's; a member through ``torch.jit`` frozen and optimised for
  inference; a student trained here (``--student``: the demo members' own 30-epoch recipe on the
  ensemble's predictions);
* **JPEG decoding at reduced size** (PIL's draft mode: the decoder's DCT scaling straight to
  64 px) against full decoding plus 2 x 2 block averaging (the training images'): time per image,
  pixel differences and what they do to the single model's predictions;
* **threads against processes**: one process with 2 threads against 2 processes with one thread
  each, for the ceiling of a member and the survey model's whole path (``snakemake infer`` with
  ``--set-threads infer_shard=1``: each shard job decodes its own images).

    .venv/bin/python benchmarks/survey_speed.py [--results results] [--n 2000] [--repeats 3] \\
        [--student] [--json out.json]

``--results`` is a demo run's results folder (``make demo``). Prints the tables and, last, one
JSON line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from galmet import domain  # noqa: E402
from galmet.conformal import interval_columns  # noqa: E402
from galmet.dataset import load_split, split_members  # noqa: E402
from galmet.imaging import block_average, bring_to_resolution, read_image  # noqa: E402
from galmet.inputs import FolderSource, read_ahead  # noqa: E402
from galmet.model import FOR_INFERENCE  # noqa: E402
from galmet.modelfile import load  # noqa: E402
from galmet.predict import mean_and_spread, predict_rows, predict_views, prepare  # noqa: E402
from galmet.shifts import shift  # noqa: E402

DEMO = ROOT / "resources" / "demo" / "images"
TARGET = "oh_p50"
ENSEMBLE = "resnet18-64px-seeds0-1-2"
MEMBER = "resnet18-64px-seed0"
SURVEY = ENSEMBLE + "-survey"  # the workflow's survey model (rule survey, galmet.survey)


# ----------------------------------------------------------------------------- inputs


def recycled_folder(n: int, dest: Path) -> Path:
    """``n`` demo JPEGs (the 400 recycled) under new objIDs in ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    files = sorted(DEMO.glob("*.jpg"))
    for i in range(n):
        shutil.copyfile(files[i % len(files)], dest / f"{900000000000000000 + i}.jpg")
    shutil.copyfile(DEMO / "cutouts.json", dest / "cutouts.json")  # the demo's survey, as its cutouts
    return dest


def validation(results: Path):
    """The validation galaxies' 128 px cutouts and truth, as the workflow's stores hold them."""
    index = sorted(results.glob("images/*/index.parquet"))
    full = [p.parent / "128px.npy" for p in index]
    members = split_members(results / "catalog" / "clean.parquet", results / "split.parquet", index, TARGET)
    train = load_split(members, "train", TARGET, index, full)
    valid = load_split(members, "valid", TARGET, index, full)
    return train, valid


# ----------------------------------------------------------------------------- throughput


def path_rate_counted(model, meta, folder: Path, tta: int, chunk: int = 512) -> tuple[int, float]:
    """Galaxies and seconds of the library's prediction path on every JPEG of ``folder``."""
    source = FolderSource(folder, chunk)
    run = prepare(meta, source, None, tta, (), None)
    t0 = time.perf_counter()
    n = sum(len(k) for k, _, _ in predict_rows(source, model, meta, run))
    return n, time.perf_counter() - t0


def path_rate(model, meta, folder: Path, tta: int, chunk: int = 512) -> float:
    """Galaxies/s of the library's prediction path on every JPEG of ``folder``."""
    n, seconds = path_rate_counted(model, meta, folder, tta, chunk)
    return n / seconds


def sequential_rate(model, meta, folder: Path, tta: int) -> float:
    """:func:`path_rate` with the chunks decoded in turn, not read ahead (the path before
    :func:`galmet.inputs.read_ahead`): the named baseline of the overlap."""
    import galmet.predict

    galmet.predict.read_ahead = iter
    try:
        return path_rate(model, meta, folder, tta)
    finally:
        galmet.predict.read_ahead = read_ahead


def ceiling_rate(model, meta, x_res: np.ndarray, tta: int) -> float:
    """Galaxies/s of the forward passes alone on decoded, re-binned uint8 images."""
    t0 = time.perf_counter()
    predict_views(model, meta, x_res, tta=tta, batch_size=256)
    return len(x_res) / (time.perf_counter() - t0)


def data_rate(meta, source) -> float:
    """Galaxies/s of decoding, re-binning and the domain test alone, on a fresh image ``source``
    (:mod:`galmet.inputs`)."""
    t0 = time.perf_counter()
    n = 0
    for keys, x, _ in source.chunks(int(meta["resolution"]), None):
        domain.domain_p(meta["domain"], x)
        n += len(keys)
    return n / (time.perf_counter() - t0)


def domain_flags(meta: dict, x_uint8_nhwc: np.ndarray) -> dict:
    """The fraction of the images, and of the same images with their bands reversed
    (:mod:`galmet.shifts`), that the model file's domain test flags at its own alpha."""
    block = meta.get("domain")
    if block is None:
        return {"flagged": float("nan"), "flagged_bgr": float("nan")}
    alpha = domain.default_alpha(block)
    return {key: domain.flagged_summary(domain.domain_p(block, x), alpha)["fraction"]
            for key, x in (("flagged", x_uint8_nhwc), ("flagged_bgr", shift("band_reversed", x_uint8_nhwc)))}


def interleaved(measures: dict, repeats: int) -> dict:
    """Median of ``repeats`` runs of each measure, the runs interleaved."""
    got = {k: [] for k in measures}
    for _ in range(repeats):
        for k, f in measures.items():
            got[k].append(f())
    return {k: float(np.median(v)) for k, v in got.items()}


# ----------------------------------------------------------------------------- quality


def quality(y, mean, spread, halves: int = 200, seed: int = 0) -> dict:
    """RMSE, and the coverage and width of split-conformal intervals calibrated on random halves."""
    rng = np.random.default_rng(seed)
    cov = {0.68: [], 0.95: []}
    wid = {0.68: [], 0.95: []}
    for _ in range(halves):
        perm = rng.permutation(len(y))
        cal, held = perm[: len(y) // 2], perm[len(y) // 2:]
        scores = np.abs(y[cal] - mean[cal]) / spread[cal]
        cols = interval_columns(mean[held], spread[held], np.sort(scores), [0.68, 0.95])
        for level, (lo, hi) in ((0.68, ("p16", "p84")), (0.95, ("p2p5", "p97p5"))):
            cov[level].append(np.mean((cols[lo] <= y[held]) & (y[held] <= cols[hi])))
            wid[level].append(np.mean(cols[hi] - cols[lo]))
    return {"rmse": float(np.sqrt(np.mean((mean - y) ** 2))),
            **{f"coverage{int(lv * 100)}": float(np.mean(c)) for lv, c in cov.items()},
            **{f"width{int(lv * 100)}": float(np.mean(w)) for lv, w in wid.items()}}


def views_quality(views: np.ndarray, y: np.ndarray, tta: int) -> dict:
    mean, sd = mean_and_spread(views[:, :, :tta])
    return quality(y, mean, np.maximum(sd, 1e-3))


# ----------------------------------------------------------------------------- the student


def train_student(train, teacher_mean: np.ndarray, valid, out: Path) -> Path:
    """A ResNet-18 at 64 px trained by the demo's recipe (config.yaml's ``train``) with the
    ensemble's TTA means as labels."""
    from galmet.train import train_model

    x_tr = block_average(np.asarray(train.x), 64)
    x_va = block_average(np.asarray(valid.x), 64)
    import yaml

    recipe = yaml.safe_load((ROOT / "config.yaml").read_text())["train"]  # the demo members' recipe
    train_model(x_tr, teacher_mean.astype(np.float32), x_va, valid.y.astype(np.float32),
                {**recipe, "device": "cpu", "reproducible": False}, out, {"seed": 0, "target": TARGET, "tta": 1})
    return out / "model.pt"


# ----------------------------------------------------------------------------- ONNX Runtime


class OrtNetwork(torch.nn.Module):
    """An ONNX Runtime session in the place of the network: galmet's prediction path unchanged."""

    def __init__(self, path: Path, threads: int = 2):
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def forward(self, x):
        return torch.from_numpy(self.session.run(None, {"x": x.contiguous().numpy()})[0])


def onnx_networks(model, meta, calib_x: np.ndarray, work: Path) -> dict:
    """``{"float32": OrtNetwork, "int8": OrtNetwork}`` of ``model``: exported to ONNX, and quantized
    after training (static, QDQ, int8 weights per channel, uint8 activations calibrated on
    ``calib_x``, training images); {} without onnxruntime (``pip install onnxruntime onnx``)."""
    try:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        print("onnxruntime or onnx missing: no ONNX Runtime rows (pip install onnxruntime onnx)")
        return {}
    from galmet.model import normalisation_constants, to_input

    res = int(meta["resolution"])
    f32, pre, int8 = work / "net.onnx", work / "net-pre.onnx", work / "net-int8.onnx"
    torch.onnx.export(model.eval(), (torch.zeros(8, 3, res, res),), str(f32), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, dynamo=False)
    quant_pre_process(str(f32), str(pre), skip_symbolic_shape=True)
    norm = meta["normalisation"]
    scale, shift = normalisation_constants(norm["mean"], norm["std"], torch.device("cpu"))
    calib = to_input(torch.from_numpy(np.ascontiguousarray(calib_x)).permute(0, 3, 1, 2), scale, shift).numpy()

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"x": np.ascontiguousarray(calib[i:i + 16])} for i in range(0, len(calib), 16)])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(str(pre), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
    return {"float32": OrtNetwork(f32), "int8": OrtNetwork(int8)}


# ----------------------------------------------------------------------------- JPEG and workers


def draft_decode(path: Path, res: int) -> np.ndarray:
    """Decode a JPEG straight to ``res`` px with the decoder's DCT scaling (PIL draft mode)."""
    from PIL import Image

    with Image.open(path) as im:
        im.draft("RGB", (res, res))
        arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return arr if arr.shape[:2] == (res, res) else bring_to_resolution(arr[None], res)[0]


def jpeg_study(files: list[Path], model, meta) -> dict:
    res = int(meta["resolution"])
    t0 = time.perf_counter()
    full = np.stack([block_average(read_image(p), res) for p in files])
    t_full = (time.perf_counter() - t0) / len(files)
    t0 = time.perf_counter()
    draft = np.stack([draft_decode(p, res) for p in files])
    t_draft = (time.perf_counter() - t0) / len(files)
    diff = np.abs(full.astype(int) - draft.astype(int))
    pf = predict_views(model, meta, full, tta=1).mean(axis=(1, 2))
    pd_ = predict_views(model, meta, draft, tta=1).mean(axis=(1, 2))
    return {"ms_full": 1e3 * t_full, "ms_draft": 1e3 * t_draft, "pixel_mean_abs": float(diff.mean()),
            "pixel_max_abs": int(diff.max()), "prediction_rms_diff": float(np.sqrt(np.mean((pf - pd_) ** 2)))}


def _worker(args):
    path, x, tta = args
    torch.set_num_threads(1)
    model, meta = load(path, "cpu", reproducible=False)
    predict_views(model, meta, x[:64], tta=tta)  # warm-up
    t0 = time.perf_counter()
    predict_views(model, meta, x, tta=tta, batch_size=256)
    return time.perf_counter() - t0


def dealt(folder: Path, parts: int) -> list[Path]:
    """The JPEGs of ``folder`` dealt into ``parts`` sibling folders (one a process, as the shards of
    ``snakemake infer``), each with the folder's cutouts.json."""
    out = []
    for i in range(parts):
        part = folder.with_name(f"{folder.name}-{i}-of-{parts}")
        part.mkdir(exist_ok=True)
        for f in sorted(folder.glob("*.jpg"))[i::parts]:
            shutil.copyfile(f, part / f.name)
        shutil.copyfile(folder / "cutouts.json", part / "cutouts.json")
        out.append(part)
    return out


def _path_worker(args):
    path, folder, tta = args
    torch.set_num_threads(1)
    model, meta = load(path, "cpu", reproducible=False)
    res = int(meta["resolution"])
    warm = np.stack([block_average(read_image(p), res) for p in sorted(Path(folder).glob("*.jpg"))[:32]])
    predict_views(model, meta, warm, tta=tta)  # builds the inference graph, as a shard job's first chunk
    return path_rate_counted(model, meta, Path(folder), tta)


def processes_path_rate(path, folders: list[Path], tta: int) -> float:
    """Galaxies/s of the library's prediction path in one 1-thread process per folder, side by side
    (``snakemake infer`` with ``--set-threads infer_shard=1``), timed inside the workers: start-up excluded."""
    with mp.get_context("spawn").Pool(len(folders)) as pool:
        done = pool.map(_path_worker, [(str(path), str(f), tta) for f in folders])
    return sum(n for n, _ in done) / max(s for _, s in done)


def processes_rate(path, x_res: np.ndarray, tta: int, procs: int = 2) -> float:
    parts = np.array_split(x_res, procs)
    with mp.get_context("spawn").Pool(procs) as pool:  # timed inside the workers: start-up excluded
        wall = max(pool.map(_worker, [(str(path), p, tta) for p in parts]))
    return len(x_res) / wall


# ----------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default="results")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--student", action="store_true", help="train and measure the distilled student (minutes)")
    ap.add_argument("--quality-only", action="store_true", help="the validation numbers only, no timing")
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(2)
    results = Path(args.results)
    ens_path = results / "models" / TARGET / ENSEMBLE / "model.pt"
    mem_path = results / "models" / TARGET / MEMBER / "model.pt"
    # the fast kernels, as galmet predict and snakemake infer use for a CPU-trained model
    ens, ens_meta = load(ens_path, "cpu", reproducible=False)
    mem, mem_meta = load(mem_path, "cpu", reproducible=False)
    work = Path(tempfile.mkdtemp(prefix="galmet-survey-"))
    try:
        folder = recycled_folder(args.n, work / "images")
        files = sorted(folder.glob("*.jpg"))
        x64 = np.stack([block_average(read_image(p), 64) for p in files])
        train, valid = validation(results)
        xv = block_average(np.asarray(valid.x), 64)
        y = valid.y.astype(np.float64)

        # quality on the validation split
        ens_views = predict_views(ens, ens_meta, xv, tta=8)
        mem_views = predict_views(mem, mem_meta, xv, tta=8)
        rows = {}
        for t in (8, 4, 2, 1):
            rows[f"ensemble, {t} views"] = views_quality(ens_views, y, t)
        for t in (8, 1):
            mean = mem_views[:, :, :t].mean(axis=(1, 2))
            rows[f"one member, {t} view{'s' * (t > 1)}"] = quality(y, mean, np.ones_like(mean))
        uncal = {k: dict(ens_meta) for k in (8, 4, 2, 1)}
        for t, m in uncal.items():
            m["calibration"] = {**ens_meta["calibration"], "tta": t}
        mem_plain = {**mem_meta}

        measures = {f"ensemble, {t} views": (lambda t=t: path_rate(ens, uncal[t], folder, t)) for t in (8, 4, 2, 1)}
        measures |= {f"one member, {t} view{'s' * (t > 1)}": (lambda t=t: path_rate(mem, mem_plain, folder, t))
                     for t in (8, 1)}
        ceilings = {f"ensemble, {t} views": (lambda t=t: ceiling_rate(ens, ens_meta, x64, t)) for t in (8, 4, 2, 1)}
        ceilings |= {f"one member, {t} view{'s' * (t > 1)}": (lambda t=t: ceiling_rate(mem, mem_meta, x64, t))
                     for t in (8, 1)}

        # PyTorch's own CPU inference runtime: the member traced, frozen, optimised (conv + batch norm folded)
        with torch.no_grad():
            example = torch.zeros(8, 3, 64, 64)
            jit = torch.jit.optimize_for_inference(torch.jit.trace(mem.eval(), example))
        jit_views = predict_views(jit, mem_meta, xv, tta=1)
        rows["one member, 1 view, torch.jit"] = quality(y, jit_views.mean(axis=(1, 2)), np.ones(len(y)))
        rows["one member, 1 view, torch.jit"]["max_abs_diff"] = float(
            np.abs(jit_views - mem_views[:, :, :1]).max())
        measures["one member, 1 view, torch.jit"] = lambda: path_rate(jit, mem_plain, folder, 1)
        ceilings["one member, 1 view, torch.jit"] = lambda: ceiling_rate(jit, mem_meta, x64, 1)

        survey_path = results / "models" / TARGET / SURVEY / "model.pt"
        survey = v_meta = None
        if survey_path.is_file():  # the workflow's survey model: one pass, intervals of one width
            survey, v_meta = load(survey_path, "cpu", reproducible=False)
            v_mean = predict_views(survey, v_meta, xv, tta=1).mean(axis=(1, 2))
            rows["survey model, 1 pass"] = rows["survey model, 1 pass, sequential decoding"] = quality(
                y, v_mean, np.ones_like(v_mean))
            measures["survey model, 1 pass"] = lambda: path_rate(survey, v_meta, folder, 1)
            measures["survey model, 1 pass, sequential decoding"] = lambda: sequential_rate(survey, v_meta, folder, 1)
            ceilings["survey model, 1 pass"] = ceilings["survey model, 1 pass, sequential decoding"] = (
                lambda: ceiling_rate(survey, v_meta, x64, 1))
            # one 1-thread process a core, each decoding its own images (--set-threads infer_shard=1)
            halves = dealt(folder, 2)
            rows["survey model, 1 pass, 2 processes x 1 thread"] = rows["survey model, 1 pass"]
            measures["survey model, 1 pass, 2 processes x 1 thread"] = (
                lambda: processes_path_rate(survey_path, halves, 1))
            ceilings["survey model, 1 pass, 2 processes x 1 thread"] = lambda: processes_rate(survey_path, x64, 1)

        # the named baseline of PyTorch's CPU inference graph, which galmet predicts through
        # (galmet.model.inference_graph): the same model files in eager PyTorch
        for name, path, t in (("ensemble, 8 views", ens_path, 8), ("survey model, 1 pass", survey_path, 1)):
            if not path.is_file():
                continue
            net, net_meta = load(path, "cpu", reproducible=False)
            setattr(net, FOR_INFERENCE, False)
            e_views = predict_views(net, net_meta, xv, tta=t)
            rows[f"{name}, eager PyTorch"] = (views_quality(e_views, y, t) if t > 1 else
                                             quality(y, e_views.mean(axis=(1, 2)), np.ones(len(y))))
            measures[f"{name}, eager PyTorch"] = lambda net=net, m=net_meta, t=t: path_rate(net, m, folder, t)
            ceilings[f"{name}, eager PyTorch"] = lambda net=net, m=net_meta, t=t: ceiling_rate(net, m, x64, t)

        # a runtime made for CPU inference, and int8 after training, on the survey model (else a member)
        base_net, base_meta, base_name = (survey, v_meta, "survey model") if survey_path.is_file() else \
            (mem, mem_meta, "one member")
        x_train64 = block_average(np.asarray(train.x[:256]), 64)
        base_views = predict_views(base_net, base_meta, xv, tta=1)
        for kind, net in onnx_networks(base_net, base_meta, x_train64, work).items():
            name = f"{base_name}, 1 pass, ONNX Runtime {kind}"
            views = predict_views(net, base_meta, xv, tta=1)
            rows[name] = quality(y, views.mean(axis=(1, 2)), np.ones(len(y)))
            rows[name]["rms_diff_from_torch"] = float(np.sqrt(np.mean((views - base_views) ** 2)))
            measures[name] = lambda net=net: path_rate(net, base_meta, folder, 1)
            ceilings[name] = lambda net=net: ceiling_rate(net, base_meta, x64, 1)

        student = None
        if args.student:
            teacher = predict_views(ens, ens_meta, block_average(np.asarray(train.x), 64), tta=8).mean(axis=(1, 2))
            student_path = train_student(train, teacher, valid, work / "student")
            student, s_meta = load(student_path, "cpu", reproducible=False)
            s_mean = predict_views(student, s_meta, xv, tta=1).mean(axis=(1, 2))
            rows["distilled student, 1 pass"] = quality(y, s_mean, np.ones_like(s_mean))
            measures["distilled student, 1 pass"] = lambda: path_rate(student, s_meta, folder, 1)
            ceilings["distilled student, 1 pass"] = lambda: ceiling_rate(student, s_meta, x64, 1)

        # the domain test depends on the images and the model file's domain block, not on views or
        # runtime: once per model file
        model_files = {"ensemble": ens_meta, "one member": mem_meta, "survey model": v_meta}
        if student is not None:
            model_files["distilled student"] = s_meta
        flags = {name: domain_flags(m, xv) for name, m in model_files.items() if m is not None}
        for k, q in rows.items():
            q.update(flags[k.split(",")[0]])
        if args.quality_only:
            for k, q in rows.items():
                print(f"| {k} | RMSE {q['rmse']:.4f} | cov68 {q['coverage68']:.2f} | cov95 {q['coverage95']:.2f} | "
                      f"width68 {q['width68']:.3f} | width95 {q['width95']:.3f} | flagged {q['flagged']:.3f} | "
                      f"BGR flagged {q['flagged_bgr']:.3f} |")
            print(json.dumps({"quality": rows}))
            return 0
        for f in list(measures.values())[:1]:
            f()  # warm-up
        rate = interleaved(measures, args.repeats)
        ceiling = interleaved(ceilings, args.repeats)
        data = interleaved({"data path": lambda: data_rate(ens_meta, FolderSource(folder, 512))},
                           args.repeats)["data path"]
        jpeg = jpeg_study(files[:400], mem, mem_meta)
        procs = interleaved({"1 process x 2 threads": lambda: ceiling_rate(mem, mem_meta, x64, 1),
                             "2 processes x 1 thread": lambda: processes_rate(mem_path, x64, 1)}, args.repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    base = rate["ensemble, 8 views"]
    print(f"{args.n} recycled demo JPEGs, {args.repeats} interleaved repeats (medians), torch threads 2; quality on "
          f"the {len(y)} validation galaxies (intervals: split conformal, {len(y) // 2} calibrate, "
          f"{len(y) - len(y) // 2} scored, 200 random halves)\n")
    print("| configuration | galaxies/s | speed-up | ceiling (passes alone) | rate / ceiling | RMSE | "
          "cov68 | cov95 | width68 | width95 | flagged | flagged, bands reversed |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for k in rate:
        q = rows[k]
        print(f"| {k} | {rate[k]:.1f} | {rate[k] / base:.1f}x | {ceiling[k]:.1f} | {rate[k] / ceiling[k]:.2f} | "
              f"{q['rmse']:.4f} | {q['coverage68']:.2f} | {q['coverage95']:.2f} | {q['width68']:.3f} | "
              f"{q['width95']:.3f} | {q['flagged']:.2f} | {q['flagged_bgr']:.2f} |")
    for k, q in rows.items():
        if "rms_diff_from_torch" in q:
            print(f"{k}: predictions differ from PyTorch float32 by {q['rms_diff_from_torch']:.4f} dex rms")
    if "survey model, 1 pass" in rate:
        v = "survey model, 1 pass"
        print(f"\nsurvey model against the ensemble, same {args.n} JPEGs: {rate[v]:.1f} against {base:.1f} galaxies/s, "
              f"{rate[v] / base:.1f}x; ceilings {ceiling[v]:.1f} and {ceiling['ensemble, 8 views']:.1f}; the survey "
              f"path at {rate[v] / ceiling[v]:.2f} of its ceiling (decoding read ahead) against "
              f"{rate[v + ', sequential decoding'] / ceiling[v]:.2f} decoding in turn")
        p = v + ", 2 processes x 1 thread"
        print(f"in 2 processes x 1 thread (--set-threads infer_shard=1): {rate[p]:.1f} galaxies/s, "
              f"{rate[p] / rate[v]:.2f}x the one 2-thread process, {rate[p] / base:.1f}x the ensemble; at "
              f"{rate[p] / ceiling[p]:.2f} of its ceiling ({ceiling[p]:.1f}), {rate[p] / ceiling[v]:.2f} of the "
              "2-thread one")
    graph = [(k, f"{k}, eager PyTorch") for k in ("survey model, 1 pass", "ensemble, 8 views")
             if f"{k}, eager PyTorch" in rate]
    if graph:
        print("PyTorch's CPU inference graph against eager PyTorch: " + "; ".join(
            f"{k} {rate[k] / rate[e]:.2f}x (ceiling {ceiling[k] / ceiling[e]:.2f}x)" for k, e in graph))
    print(f"\ndata path alone (decode, re-bin, domain test): {data:.1f} galaxies/s")
    print(f"JPEG at 64 px: full decode + 2x2 block mean {jpeg['ms_full']:.2f} ms, draft (DCT-scaled) decode "
          f"{jpeg['ms_draft']:.2f} ms; pixels differ by {jpeg['pixel_mean_abs']:.2f} on average (max "
          f"{jpeg['pixel_max_abs']}), the member's 1-view predictions by {jpeg['prediction_rms_diff']:.4f} dex rms")
    print("ceiling of one member, 1 view: " + ", ".join(f"{k} {v:.1f}/s" for k, v in procs.items()))
    out = {"n": args.n, "rate": rate, "ceiling": ceiling, "quality": rows, "data_path": data, "jpeg": jpeg,
           "processes": procs}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
