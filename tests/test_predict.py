"""Prediction: D4 test-time augmentation, resolution handling, and ``galmet predict``."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from galmet.cli import main as galmet_main
from galmet.imaging import block_average, read_image
from galmet.modelfile import ModelFileError
from galmet.modelfile import load as load_model
from galmet.predict import predict_images
from galmet.train import train_model

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "resources" / "demo" / "images"


@pytest.fixture(scope="module")
def demo_ids(demo_catalog):
    return demo_catalog["objID"].to_numpy()[:20]


@pytest.fixture(scope="module")
def trained(demo_catalog, demo_ids, tmp_path_factory):
    """A small model really trained (1 epoch, 16 px) on 16 demo galaxies."""
    x = block_average(np.stack([read_image(IMAGES / f"{i}.jpg") for i in demo_ids]), 16)
    y = demo_catalog["oh_p50"].to_numpy(np.float32)[:20]
    out = tmp_path_factory.mktemp("model")
    params = {"arch": "resnet18", "pretrained": "none", "batch_size": 8, "stage2": {"cycles": [1]},
              "num_threads": 1, "device": "cpu"}
    train_model(x[:16], y[:16], x[16:], y[16:], params, out, {"seed": 0, "target": "oh_p50", "tta": 8})
    return out / "model.pt", x


def test_tta_is_d4_invariant(trained):
    model, meta = load_model(trained[0])
    x = trained[1][:6]
    rotated = np.ascontiguousarray(np.rot90(x, 1, axes=(1, 2)))
    flipped = np.ascontiguousarray(x[:, :, ::-1])
    p = predict_images(model, meta, x, tta=8)
    assert np.allclose(predict_images(model, meta, rotated, tta=8), p, atol=1e-5)
    assert np.allclose(predict_images(model, meta, flipped, tta=8), p, atol=1e-5)
    # without TTA the model itself is not invariant (so the check above means something)
    assert not np.allclose(predict_images(model, meta, rotated, tta=1), predict_images(model, meta, x, tta=1),
                           atol=1e-5)
    # four rotations are invariant to rotations only
    assert np.allclose(predict_images(model, meta, rotated, tta=4), predict_images(model, meta, x, tta=4),
                       atol=1e-5)


def test_batching_does_not_change_predictions(trained):
    model, meta = load_model(trained[0])
    x = trained[1]
    assert np.allclose(predict_images(model, meta, x, batch_size=3), predict_images(model, meta, x, batch_size=64),
                       atol=1e-5)


def test_images_brought_to_model_resolution(trained, demo_ids):
    model, meta = load_model(trained[0])
    full = np.stack([read_image(IMAGES / f"{i}.jpg") for i in demo_ids[:4]])  # 128 px
    assert np.allclose(predict_images(model, meta, full), predict_images(model, meta, block_average(full, 16)),
                       atol=1e-6)


def test_model_file_is_self_contained(trained):
    obj = torch.load(trained[0], weights_only=True)
    assert set(obj) == {"state_dict", "meta", "domain"}  # plain tensors and floats: weights_only loads them
    with pytest.raises(ModelFileError, match="no such model file"):
        load_model(trained[0].parent / "missing.pt")


@pytest.fixture()
def image_dir(tmp_path, demo_ids):
    d = tmp_path / "images"
    d.mkdir()
    for i in demo_ids[:5]:
        shutil.copy(IMAGES / f"{i}.jpg", d / f"{i}.jpg")
    (d / "1237648702973411999.jpg").write_bytes(b"<html>502 Bad Gateway</html>")  # unreadable
    return d


@pytest.mark.parametrize("ext", ["csv", "parquet"])
def test_cli_predict_directory(trained, image_dir, demo_ids, tmp_path, ext):
    out = tmp_path / f"pred.{ext}"
    rc = galmet_main(["predict", "--model", str(trained[0]), "--images", str(image_dir), "--out", str(out)])
    assert rc == 0
    df = pd.read_csv(out, dtype={"objID": str}) if ext == "csv" else pd.read_parquet(out)
    assert list(df.columns) == ["objID", "prediction", "domain_p", "in_domain"]
    got = sorted(int(v) for v in df["objID"])  # exact: from the digits, never through a float
    assert got == sorted(int(i) for i in demo_ids[:5])
    assert df["prediction"].notna().all() and df["prediction"].between(7, 10).all()
    log = (tmp_path / f"pred.{ext}.log").read_text()
    assert "1237648702973411999" in log and "undecodable: not an image file" in log


def test_cli_tta_flags_and_catalog(trained, image_dir, demo_ids, tmp_path):
    model = str(trained[0])
    galmet_main(["predict", "--model", model, "--images", str(image_dir), "--out", str(tmp_path / "tta.csv")])
    galmet_main(["predict", "--model", model, "--images", str(image_dir), "--out", str(tmp_path / "no.csv"),
                 "--no-tta"])
    tta = pd.read_csv(tmp_path / "tta.csv", dtype={"objID": str}).set_index("objID")["prediction"]
    no = pd.read_csv(tmp_path / "no.csv", dtype={"objID": str}).set_index("objID")["prediction"]
    assert not np.allclose(tta.to_numpy(), no.loc[tta.index].to_numpy(), atol=1e-6)
    # a catalog (with a row whose image is missing), read in chunks of 2, images from --images
    ids = [str(i) for i in demo_ids[:5]] + ["1237648702973400000"]
    pd.DataFrame({"objID": ids}).to_csv(tmp_path / "cat.csv", index=False)
    rc = galmet_main(["predict", "--model", model, "--catalog", str(tmp_path / "cat.csv"), "--images",
                      str(image_dir), "--out", str(tmp_path / "cat.parquet"), "--chunk-size", "2"])
    assert rc == 0
    got = pd.read_parquet(tmp_path / "cat.parquet").set_index("objID")["prediction"]
    assert got.index.dtype == np.int64 and list(got.index) == [int(i) for i in ids[:5]]
    assert np.allclose(got.to_numpy(), tta.loc[ids[:5]].to_numpy(), atol=5e-5)  # the CSV carries 4 decimals
    assert "1237648702973400000" in (tmp_path / "cat.parquet.log").read_text()
    # a catalog with a path column and no --images
    pd.DataFrame({"objID": ids[:2], "path": [str(image_dir / f"{i}.jpg") for i in ids[:2]]}).to_parquet(
        tmp_path / "paths.parquet")
    assert galmet_main(["predict", "--model", model, "--catalog", str(tmp_path / "paths.parquet"),
                        "--out", str(tmp_path / "p.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "p.csv")) == 2


def test_cli_predict_errors(trained, image_dir, tmp_path, capsys):
    model = str(trained[0])
    assert galmet_main(["predict", "--model", model, "--images", str(image_dir), "--out",
                        str(tmp_path / "x.txt")]) == 2
    assert ".csv, .parquet, .fits, .ecsv or .vot" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert galmet_main(["predict", "--model", model, "--images", str(empty), "--out", str(tmp_path / "e.csv")]) == 1
    assert not (tmp_path / "e.csv").exists()  # a failed command leaves no (header-only) table
    assert "no <objID>.jpg in" in capsys.readouterr().err
    (empty / "123.jpg").write_bytes(b"")
    assert galmet_main(["predict", "--model", model, "--images", str(empty), "--out", str(tmp_path / "e.csv")]) == 1
    assert not (tmp_path / "e.csv").exists() and "empty: the file has 0 bytes" in (tmp_path / "e.csv.log").read_text()
    pd.DataFrame({"objID": [1]}).to_csv(tmp_path / "nopath.csv", index=False)
    assert galmet_main(["predict", "--model", model, "--catalog", str(tmp_path / "nopath.csv"), "--out",
                        str(tmp_path / "n.csv")]) == 2
    assert "no path column" in capsys.readouterr().err


def test_help_lists_every_column_with_units(capsys):
    with pytest.raises(SystemExit):
        galmet_main(["predict", "--help"])
    text = capsys.readouterr().out
    for col in ("objID", "prediction", "p2p5, p16", "p84, p97p5", "domain_p", "in_domain"):
        assert col in text
    assert "12 + log(O/H) in dex" in text and "4 decimals" in text


def test_csv_carries_four_decimals(trained, image_dir, tmp_path):
    model = str(trained[0])
    galmet_main(["predict", "--model", model, "--images", str(image_dir), "--out", str(tmp_path / "p.csv")])
    galmet_main(["predict", "--model", model, "--images", str(image_dir), "--out", str(tmp_path / "p.parquet")])
    rows = (tmp_path / "p.csv").read_text().splitlines()[1:]
    assert all(len(r.split(",")[1].split(".")[1]) == 4 for r in rows)
    assert {r.split(",")[3] for r in rows} <= {"true", "false"}
    csv = pd.read_csv(tmp_path / "p.csv").set_index("objID")["prediction"]
    full = pd.read_parquet(tmp_path / "p.parquet").set_index("objID")["prediction"]
    np.testing.assert_allclose(csv.loc[full.index], full.round(4), atol=1e-12)


def test_three_prediction_paths_give_the_same_numbers(trained, demo_ids, tmp_path):
    """galmet predict, the infer target's shard step and the workflow's store path agree."""
    from galmet.infer import predict_shard
    from galmet.predict import PredictionWriter

    model, meta = load_model(trained[0])
    ids = [int(i) for i in demo_ids[:8]]
    images = tmp_path / "images"
    images.mkdir()
    for i in ids:
        shutil.copy(IMAGES / f"{i}.jpg", images / f"{i}.jpg")
    assert galmet_main(["predict", "--model", str(trained[0]), "--images", str(images),
                        "--out", str(tmp_path / "cli.parquet")]) == 0
    cli = pd.read_parquet(tmp_path / "cli.parquet").set_index("objID")["prediction"]

    shard = tmp_path / "shard.parquet"
    pd.DataFrame({"objID": ids, "path": [str(images / f"{i}.jpg") for i in ids]}).to_parquet(shard)
    predict_shard(shard, model, meta, tmp_path / "infer.parquet", tta=int(meta["tta"]))
    infer = pd.read_parquet(tmp_path / "infer.parquet").set_index("objID")["prediction"]

    store = block_average(np.stack([read_image(IMAGES / f"{i}.jpg") for i in ids]), int(meta["resolution"]))
    with PredictionWriter(tmp_path / "split.parquet") as writer:  # as workflow/scripts/predict_split.py
        for s in (slice(0, 5), slice(5, None)):
            writer.write(np.asarray(ids)[s], predict_images(model, meta, store[s], tta=int(meta["tta"])),
                         extra={"oh_p50": np.zeros(len(ids), np.float32)[s]})
    split = pd.read_parquet(tmp_path / "split.parquet")
    assert list(split.columns) == ["objID", "oh_p50", "prediction"]
    split = split.set_index("objID")["prediction"]
    for other in (infer, split):
        np.testing.assert_allclose(other.loc[ids].to_numpy(), cli.loc[ids].to_numpy(), atol=1e-6)


def test_read_ahead_keeps_the_order_raises_the_producers_error_and_stops_with_the_consumer():
    """The prediction path decodes the next chunk while this one is predicted: the chunks come in
    their order, a decoding error reaches the caller where it happened, and a caller that stops
    (an error, Ctrl-C) stops the decoding soon after."""
    import threading
    import time

    from galmet.inputs import read_ahead

    assert list(read_ahead(iter(range(50)))) == list(range(50))

    def failing():
        yield 1
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):
        for item in read_ahead(failing()):
            got.append(item)
    assert got == [1]

    made = []

    def endless():
        for i in range(10_000):
            made.append(i)
            yield i

    for item in read_ahead(endless()):
        if item == 3:
            break
    time.sleep(0.5)
    assert len(made) <= 6  # one item ahead, and the one being made when the caller stopped
    assert not any(t.name == "galmet-read-ahead" and t.is_alive() for t in threading.enumerate())


# ----------------------------------------------------------------------------- the CPU inference graph


def _eager(path):
    """The same model file's network, predicted with eager PyTorch (the named baseline)."""
    from galmet.model import FOR_INFERENCE

    model, meta = load_model(path, "cpu", reproducible=False)
    setattr(model, FOR_INFERENCE, False)
    return model, meta


def test_a_model_file_predicts_on_the_cpu_through_pytorchs_inference_graph(trained):
    from torch.fx import GraphModule

    from galmet.model import inference_graph
    from galmet.modelfile import save
    from galmet.predict import predict_views

    path, x = trained
    model, meta = load_model(path, "cpu", reproducible=False)  # the fast kernels: galmet predict, infer, the API
    views = predict_views(model, meta, x, tta=8, batch_size=7)  # batches of 7, 7 and 6: any batch size
    assert "_galmet_graph" in model.__dict__  # prediction built it
    graph = inference_graph(model)
    assert isinstance(graph, GraphModule) and graph is not model
    assert inference_graph(model) is graph  # built once
    eager, _ = _eager(path)
    assert inference_graph(eager) is eager
    np.testing.assert_allclose(views, predict_views(eager, meta, x, tta=8, batch_size=7), rtol=0, atol=1e-5)
    # the graph stays beside the network: the model's weights and its file are what they were
    assert list(model.state_dict()) == list(eager.state_dict())
    again, _ = load_model(save(path.with_name("again.pt"), model, meta), "cpu", reproducible=False)
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), eager.state_dict().values()))


def test_the_reproducible_mode_predicts_with_the_network_itself(trained):
    from galmet.model import inference_graph
    from galmet.predict import predict_views

    path, x = trained
    model, meta = load_model(path, "cpu", reproducible=False)
    eager, _ = _eager(path)
    was = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False  # what the mode turns off (galmet.reproducible.apply)
    try:
        assert inference_graph(model) is model
        np.testing.assert_array_equal(predict_views(model, meta, x, tta=2), predict_views(eager, meta, x, tta=2))
    finally:
        torch.backends.mkldnn.enabled = was


def test_weights_changed_after_a_prediction_are_the_ones_predicted_with(trained):
    from galmet.predict import predict_views

    path, x = trained
    model, meta = load_model(path, "cpu", reproducible=False)
    eager, _ = _eager(path)
    before = predict_views(model, meta, x, tta=1)
    with torch.no_grad():
        for net in (model, eager):  # a notebook's in-place edit, as fine-tuning would make
            net.head.fc2.bias.add_(0.5)
            net.body[1].running_mean.mul_(0.5)  # a buffer: the batch norm folded into the first convolution
    after = predict_views(model, meta, x, tta=1)
    assert np.abs(after - before).min() > 0.1
    np.testing.assert_allclose(after, predict_views(eager, meta, x, tta=1), rtol=0, atol=1e-5)


def test_a_network_the_graph_cannot_be_built_for_is_predicted_eagerly(trained, monkeypatch, caplog):
    import torch.fx.experimental.optimization as fx_optimization

    from galmet.model import inference_graph
    from galmet.predict import predict_views

    def refuse(model):
        raise RuntimeError("symbolically traced variables cannot be used as inputs to control flow")

    monkeypatch.setattr(fx_optimization, "optimize_for_inference", refuse)
    path, x = trained
    model, meta = load_model(path, "cpu", reproducible=False)
    eager, _ = _eager(path)
    with caplog.at_level("INFO", logger="galmet.model"):
        views = predict_views(model, meta, x, tta=2)
    assert inference_graph(model) is model
    assert "no CPU inference graph" in caplog.text and "control flow" in caplog.text
    np.testing.assert_array_equal(views, predict_views(eager, meta, x, tta=2))


def test_ctrl_c_stops_galmet_predict_with_a_sentence_and_no_half_written_table(tmp_path):
    """Ctrl-C in the middle of a prediction, as a user's terminal sends it: exit 130, a sentence
    that says to run it again (no traceback), no table and no temporary file left; the same
    command then writes the whole table."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.untrained import write_untrained_model

    model = write_untrained_model(tmp_path / "model.pt", res=64)
    images = tmp_path / "images"
    images.mkdir()
    demo = sorted(IMAGES.glob("*.jpg"))
    for k in range(30):  # enough galaxies to be interrupted mid-way
        for n, f in enumerate(demo):
            (images / f"{1237650000000000000 + 1000 * k + n}.jpg").symlink_to(f)
    out = tmp_path / "preds.csv"
    command = [sys.executable, "-c", "import sys; from galmet.cli import main; sys.exit(main())", "predict",
               "--model", str(model), "--images", str(images), "--out", str(out)]
    log = tmp_path / "run.out"
    with open(log, "w") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.time() + 300
        while "predicting" not in log.read_text() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
        assert proc.poll() is None, log.read_text()[-2000:]
        os.killpg(proc.pid, signal.SIGINT)
        rc = proc.wait(timeout=120)
    text = log.read_text()
    assert rc == 130, text[-2000:]
    assert "galmet predict: interrupted (Ctrl-C)" in text and "run the same command again" in text
    assert "Traceback" not in text
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("preds")) in ([], ["preds.csv.log"])
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert len(pd.read_csv(out, comment="#")) == 30 * len(demo)
