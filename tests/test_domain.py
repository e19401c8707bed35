"""Knowing when not to answer: the image reader's guards and the applicability-domain test."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from galmet import domain
from galmet.cli import main as galmet_main
from galmet.imaging import ImageError, block_average, read_image
from galmet.modelfile import load as load_model
from galmet.predict import predict_columns
from galmet.shifts import SHIFTS, shift
from galmet.train import train_model

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "resources" / "demo" / "images"
GOOD = 6  # real cutouts in the bad-file folder


@pytest.fixture(scope="module")
def real(demo_catalog):
    """The 400 demo cutouts (128 px) and their metallicities, in catalog order."""
    ids = demo_catalog["objID"].to_numpy()
    return ids, np.stack([read_image(IMAGES / f"{i}.jpg") for i in ids]), demo_catalog["oh_p50"].to_numpy(np.float32)


@pytest.fixture(scope="module")
def trained(real, tmp_path_factory):
    """A 16 px model really trained (1 epoch) on 40 galaxies, validated (and its domain test
    calibrated) on 40 others."""
    ids, x, y = real
    x16 = block_average(x[:80], 16)
    out = tmp_path_factory.mktemp("model")
    params = {"arch": "resnet18", "pretrained": "none", "batch_size": 8, "stage2": {"cycles": [1]},
              "num_threads": 1, "device": "cpu"}
    train_model(x16[:40], y[:40], x16[40:80], y[40:80], params, out, {"seed": 0, "target": "oh_p50", "tta": 8})
    return out / "model.pt"


def _jpeg(arr: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", **kw)
    return buf.getvalue()


def _bomb(jpeg: bytes, width: int = 20000, height: int = 20000) -> bytes:
    """A JPEG whose header claims ``width x height`` px (the frame header, SOF0, rewritten)."""
    i = jpeg.index(b"\xff\xc0")
    return jpeg[:i + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + jpeg[i + 9:]


def bad_files(folder: Path, good: np.ndarray) -> dict[str, str]:
    """Every kind of bad file, named ``<objID>.<ext>``: {file name: the reason code expected}."""
    g = good[0]
    png16 = io.BytesIO()
    Image.fromarray(g[..., 0].astype(np.uint16) * 257).save(png16, format="PNG")
    files = {
        "900000000000000001.jpg": (_bomb(_jpeg(g)), "too_large"),
        "900000000000000002.jpg": (_jpeg(g[..., 1]), "not_colour"),  # a grayscale JPEG (mode L)
        "900000000000000003.jpg": (_jpeg(np.repeat(g[..., 1:2], 3, axis=2)), "not_colour"),  # gray saved as RGB
        "900000000000000004.jpg": (png16.getvalue(), "not_colour"),  # 16-bit single channel
        "900000000000000005.jpg": (_jpeg(g[:1, :1]), "too_small"),  # 1 x 1 px
        "900000000000000006.jpg": (_jpeg(g[:4, :4]), "too_small"),
        "900000000000000007.jpg": (b"", "empty"),
        "900000000000000008.jpg": (b"<html>502 Bad Gateway</html>", "undecodable"),
        "900000000000000009.jpg": (_jpeg(g)[:300], "undecodable"),  # truncated
        "0.jpg": (_jpeg(g), "bad_objid"),
        "galaxy.jpg": (_jpeg(g), "bad_objid"),
        "99999999999999999999.jpg": (_jpeg(g), "bad_objid"),  # over 64 bits
        "notes.txt": (b"observing notes", "not_an_image"),
    }
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    return {name: code for name, (_, code) in files.items()}


def test_reader_reasons(tmp_path, real):
    _, x, _ = real
    codes = bad_files(tmp_path, x[:1])
    for name, code in codes.items():
        if code in ("bad_objid", "not_an_image"):
            continue  # the file name, not the image: judged by the callers
        with pytest.raises(ImageError) as err:
            read_image(tmp_path / name, min_size=8)
        assert err.value.code == code and name in str(err.value)
        assert "<_io" not in str(err.value)


def test_converted_modes_are_read_as_colour(tmp_path, real):
    g = real[1][0]
    rgba = np.concatenate([g, np.full(g.shape[:2] + (1,), 255, np.uint8)], axis=2)
    Image.fromarray(rgba).save(tmp_path / "a.png")
    Image.fromarray(g).convert("CMYK").save(tmp_path / "c.jpg")
    Image.fromarray(g).convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), g)
    for name in ("c.jpg", "p.png"):
        img = read_image(tmp_path / name)
        assert img.shape == g.shape and np.abs(img.astype(int) - g).mean() < 12


def test_bad_files_beside_good_ones_cost_nothing(trained, real, tmp_path):
    """galmet predict and galmet explain: exit 0, every bad file in the log with its reason, the
    good galaxies' predictions exactly as without the bad files."""
    ids, x, _ = real
    alone, mixed = tmp_path / "alone", tmp_path / "mixed"
    alone.mkdir()
    mixed.mkdir()
    for i in ids[:GOOD - 2]:
        shutil.copy(IMAGES / f"{i}.jpg", alone / f"{i}.jpg")
    shutil.copy(IMAGES / f"{ids[GOOD - 2]}.jpg", alone / f"{ids[GOOD - 2]}.jpeg")  # suffixes read alike
    shutil.copy(IMAGES / f"{ids[GOOD - 1]}.jpg", alone / f"{ids[GOOD - 1]}.JPG")
    for f in alone.iterdir():
        shutil.copy(f, mixed / f.name)
    codes = bad_files(mixed, x[:1])
    model = str(trained)
    for d in (alone, mixed):
        out = tmp_path / f"{d.name}.csv"
        assert galmet_main(["predict", "--model", model, "--images", str(d), "--out", str(out)]) == 0
    a = pd.read_csv(tmp_path / "alone.csv", dtype={"objID": str})
    m = pd.read_csv(tmp_path / "mixed.csv", dtype={"objID": str})
    assert sorted(a["objID"]) == sorted(str(i) for i in ids[:GOOD]) and len(m) == GOOD
    pd.testing.assert_frame_equal(a.sort_values("objID").reset_index(drop=True),
                                  m.sort_values("objID").reset_index(drop=True))
    log = pd.read_csv(tmp_path / "mixed.csv.log", sep="\t", comment="#", dtype=str)
    got = {Path(p).name: r.split(":")[0] for p, r in zip(log["path"], log["reason"])}
    assert got == codes
    out = tmp_path / "explained"
    assert galmet_main(["explain", "--model", model, "--images", str(mixed), "--out", str(out), "--no-png",
                        "--check-max", "4", "--random-orders", "1", "--steps", "4"]) == 0
    elog = pd.read_csv(out / "skipped.log", sep="\t", comment="#", dtype=str)
    assert {Path(p).name: r.split(":")[0] for p, r in zip(elog["path"], elog["reason"])} == codes
    assert "explained images are out of the model's domain" in (out / "skipped.log").read_text()


def test_max_pixels_option(trained, real, tmp_path):
    ids, _, _ = real
    (tmp_path / "images").mkdir()
    shutil.copy(IMAGES / f"{ids[0]}.jpg", tmp_path / "images" / f"{ids[0]}.jpg")
    out = tmp_path / "p.csv"
    assert galmet_main(["predict", "--model", str(trained), "--images", str(tmp_path / "images"), "--out", str(out),
                        "--max-pixels", "10000"]) == 1  # 128 x 128 > 10,000: nothing left to predict
    assert "too_large: 128 x 128 px = 16,384 pixels" in (tmp_path / "p.csv.log").read_text()


def test_shifted_images_are_flagged_and_real_ones_are_not(real):
    """The domain test fitted on 300 real galaxies (cross-conformal) against 100 held-out real
    galaxies and their shifted copies, at the default alpha: band-reversed composites are flagged
    at least 90% of the time, the other shifts mostly, real galaxies about alpha of the time."""
    _, x, _ = real
    block = domain.fit(x[:200], x[200:300], res=32)
    assert block["n"] == 300 and block["alpha"] == domain.DEFAULT_ALPHA == 0.05
    held = x[300:]
    alpha = domain.default_alpha(block)
    p_real = domain.domain_p(block, held)
    hi = int(np.ceil(alpha * len(held) + 3 * np.sqrt(len(held) * alpha * (1 - alpha))))
    assert int(np.sum(p_real < alpha)) <= hi  # exchangeable: about alpha of them, never many more
    rates = {name: float(np.mean(domain.domain_p(block, shift(name, held, seed=3)) < alpha)) for name in
             ("band_reversed", "blank_sky", "noise", "grayscale", "jpeg_q10", "smaller_2x", "larger_2x")}
    assert rates["band_reversed"] >= 0.9, rates
    assert all(rates[k] >= 0.95 for k in ("blank_sky", "noise", "grayscale", "jpeg_q10")), rates
    assert rates["smaller_2x"] >= 0.7 and rates["larger_2x"] >= 0.5, rates


def test_cross_conformal_false_flags_within_the_binomial_band(real):
    """Validity of the cross-conformal p-values on exchangeable data: 200 random partitions of the
    400 real galaxies into 350 labelled (fitted and calibrated in 10 folds) and 50 held out; the
    held-out flag rate at 0.01, 0.05 and 0.1, over all partitions, lies within three standard
    errors (of the partition means) of alpha."""
    _, x, _ = real
    xs = block_average(x, 16)
    stats, band = domain.image_statistics(xs), domain.band_statistics(xs)
    rng = np.random.default_rng(0)
    rates = {a: [] for a in (0.01, 0.05, 0.1)}
    for _ in range(200):
        perm = rng.permutation(len(xs))
        lab, held = perm[:350], perm[350:]
        block = domain.fit_features(stats[lab], band[lab], 16, alpha=0.05, seed=rng)
        p = domain.p_values(block, domain.feature_scores(block, stats[held], band[held]))
        for a in rates:
            rates[a].append(float(np.mean(p < a)))
    for a, r in rates.items():
        mean, se = np.mean(r), np.std(r, ddof=1) / np.sqrt(len(r))
        assert abs(mean - a) <= 3 * se + 0.002, (a, mean, se)


def test_smallest_alpha_is_strictly_above_the_smallest_p():
    for n in (9, 74, 80, 99, 322, 20000):
        a = domain.smallest_alpha(n)
        assert a > 1 / (n + 1) and a - 1 / (n + 1) < 0.011 / (n + 1) * 100, (n, a)
        domain.check_alpha({"n": n}, a)  # usable
        with pytest.raises(domain.DomainAlphaError, match=f"use --domain-alpha {a:g} or more"):
            domain.check_alpha({"n": n}, 1 / (n + 1))  # a p-value can equal it, never be below it
    assert domain.smallest_alpha(74) == 0.0134 and domain.smallest_alpha(322) == 0.0031


def test_conformal_p_values_are_valid_on_exchangeable_data():
    """P(p <= alpha) = floor(alpha (n + 1)) / (n + 1) for a score exchangeable with n calibration
    scores: checked over 40,000 independent draws, within 4 sigma of the binomial."""
    rng = np.random.default_rng(0)
    n, trials = 99, 40000
    draws = rng.standard_normal((trials, n + 1))
    flagged = {0.01: 0, 0.05: 0, 0.2: 0}
    for t in range(trials):
        p = domain.p_values({"scores": np.sort(draws[t, :n])}, draws[t, n:])[0]
        for a in flagged:
            flagged[a] += p <= a
    for a, k in flagged.items():
        expect = np.floor(a * (n + 1)) / (n + 1)
        assert abs(k / trials - expect) <= 4 * np.sqrt(expect * (1 - expect) / trials), (a, k / trials)


def test_model_file_block_and_old_files(trained, real, tmp_path, capsys):
    obj = torch.load(trained, weights_only=True)
    block = obj["domain"]
    k, s = domain.FOLDS, len(domain.STAT_NAMES)
    assert block["version"] == 2 and block["n"] == 80 and block["stats_precision"].shape == (k, s, s)
    assert block["alpha"] == 0.05 and block["smallest_alpha"] == domain.smallest_alpha(80)
    assert block["scores"].shape == (80,) and int(block["fold_sizes"].sum()) == 80
    model, meta = load_model(trained)
    x = real[1][:3]
    cols = predict_columns(model, meta, x, tta=1, alpha=0.05)
    assert set(cols) == {"prediction", "domain_p", "in_domain"} and cols["in_domain"].dtype == bool
    # an old file: no domain block -> loads, predicts the same, no domain columns, a warning in the log
    old = tmp_path / "old.pt"
    torch.save({"state_dict": obj["state_dict"], "meta": obj["meta"]}, old)
    model_old, meta_old = load_model(old)
    old_cols = predict_columns(model_old, meta_old, x, tta=1)
    assert set(old_cols) == {"prediction"}
    np.testing.assert_array_equal(old_cols["prediction"], cols["prediction"])
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(IMAGES / f"{real[0][0]}.jpg", images / f"{real[0][0]}.jpg")
    assert galmet_main(["predict", "--model", str(old), "--images", str(images), "--out", str(tmp_path / "o.csv")]) == 0
    assert list(pd.read_csv(tmp_path / "o.csv").columns) == ["objID", "prediction"]
    assert "no applicability-domain block" in (tmp_path / "o.csv.log").read_text()


def test_an_alpha_the_calibration_cannot_reach_is_refused_everywhere(trained, real, tmp_path, capsys):
    """80 labelled galaxies give domain_p no smaller than 1/81 = 0.0123: --domain-alpha 0.01 (and
    1/81 itself) is refused with exit 2 and the smallest usable value, 0.0124, which flags a
    blank-sky image; the notebook API refuses the same way."""
    from galmet import load_model as api_load

    images = tmp_path / "images"
    images.mkdir()
    sky = shift("noise", real[1][:1], seed=0)[0]
    Image.fromarray(sky).save(images / "1237648704043942146.jpg", quality=95)
    out = tmp_path / "p.csv"
    for bad in ("0.01", str(1 / 81)):
        assert galmet_main(["predict", "--model", str(trained), "--images", str(images), "--out", str(out),
                            "--domain-alpha", bad]) == 2
        err = capsys.readouterr().err
        assert "flags nothing" in err and "1/81 = 0.01235" in err and "use --domain-alpha 0.0124 or more" in err
        assert not out.exists()
    assert galmet_main(["predict", "--model", str(trained), "--images", str(images), "--out", str(out),
                        "--domain-alpha", "0.0124"]) == 0
    row = pd.read_csv(out).iloc[0]
    assert row["domain_p"] == pytest.approx(1 / 81, abs=1e-4) and not row["in_domain"]
    with pytest.raises(domain.DomainAlphaError, match="use domain_alpha= 0.0124 or more"):
        api_load(trained, domain_alpha=0.01)


def test_every_shift_keeps_shape_and_changes_the_image(real):
    x = real[1][:4]
    for name in SHIFTS:
        y = shift(name, x, seed=0)
        assert y.shape == x.shape and y.dtype == np.uint8 and not np.array_equal(x, y), name
    with pytest.raises(ValueError, match="choose one of"):
        shift("upside_down", x)


@pytest.mark.parametrize("res", [1, 2])
def test_the_domain_test_is_fitted_at_the_papers_smallest_resolutions(res):
    """At 1 and 2 px (the paper's resolution study goes down to 1 px) the statistics are finite
    and every validation image is scored: at 1 px the frame used to be empty (a crash when the
    model was saved), at 2 px the fine structure NaN (no calibration score left)."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (60, 16, 16, 3), dtype=np.uint8)
    block = domain.fit(x[:40], x[40:], res)
    assert block["n"] == 60 and np.isfinite(block["scores"].numpy()).all()


def test_an_images_statistics_do_not_depend_on_the_images_beside_it(real):
    # the statistics are computed a cache-sized chunk at a time: the same numbers, to the bit,
    # whether an image comes in a small chunk or among many (149 = 2 x 74 + 1: the odd image out
    # joins the last chunk rather than being summed alone, in numpy's other order)
    from galmet.domain import _features

    x = block_average(real[1][:149], 16)
    stats, band = _features(x, 16, chunk=len(x))
    for chunk in (2, 7, 64, 74):
        s, b = _features(x, 16, chunk=chunk)
        np.testing.assert_array_equal(s, stats)
        np.testing.assert_array_equal(b, band)
