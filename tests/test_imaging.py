import numpy as np
import pytest
import torch

from galmet.imaging import (
    ImageError,
    block_average,
    d4,
    d4_inverse,
    d4_per_sample,
    load_store,
    pack_images,
    read_jpeg,
    to_resolution,
)


def test_read_real_cutout(demo_images):
    img = read_jpeg(demo_images[0])
    assert img.shape == (128, 128, 3) and img.dtype == np.uint8
    assert img.std() > 1  # a real galaxy, not a blank frame


@pytest.mark.parametrize("content", [b"", b"<html>error</html>"])
def test_read_bad_file_names_file(tmp_path, content):
    p = tmp_path / "123.jpg"
    p.write_bytes(content)
    with pytest.raises(ImageError, match="123.jpg"):
        read_jpeg(p)


def test_truncated_jpeg_is_refused(tmp_path, demo_images):
    data = demo_images[0].read_bytes()
    p = tmp_path / "trunc.jpg"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="trunc.jpg"):
        read_jpeg(p)


def test_block_average_is_exact_block_mean():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(3, 8, 8, 3), dtype=np.uint8)
    out = block_average(x, 2)
    assert out.shape == (3, 2, 2, 3)
    by_hand = x[:, 4:8, 0:4, 1].astype(float).mean(axis=(1, 2))
    np.testing.assert_array_equal(out[:, 1, 0, 1], np.rint(by_hand).astype(np.uint8))
    # 1 px is the mean colour of the whole image
    np.testing.assert_array_equal(block_average(x, 1)[:, 0, 0], np.rint(x.mean(axis=(1, 2))).astype(np.uint8))
    np.testing.assert_array_equal(block_average(x, 8), x)


def test_block_average_refuses_non_divisor():
    with pytest.raises(ValueError, match="does not divide"):
        block_average(np.zeros((1, 10, 10, 3), np.uint8), 4)


def test_to_resolution_any_size():
    x = np.full((100, 100, 3), 77, np.uint8)
    assert to_resolution(x, 64).shape == (64, 64, 3)
    assert (to_resolution(x, 64) == 77).all()
    y = np.random.default_rng(1).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    np.testing.assert_array_equal(to_resolution(y, 32), block_average(y, 32))


def test_store_round_trip(tmp_path, demo_images):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    paths = [demo_images[0], bad, demo_images[1]]
    arr, kept, rejected = pack_images(paths, 128)
    assert kept == [0, 2] and rejected[0][0] == 1 and "bad.jpg" in rejected[0][1]
    np.save(tmp_path / "s.npy", arr)
    back = load_store(tmp_path / "s.npy")
    np.testing.assert_array_equal(back[1], read_jpeg(demo_images[1]))


def test_d4_has_eight_distinct_invertible_elements():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    images = [d4(x, k) for k in range(8)]
    flat = {tuple(im.flatten().tolist()) for im in images}
    assert len(flat) == 8
    for k in range(8):
        torch.testing.assert_close(d4(d4(x, k), d4_inverse(k)), x)


def test_d4_per_sample_matches_single_elements():
    x = torch.randn(16, 3, 5, 5)
    ks = torch.arange(16) % 8
    out = d4_per_sample(x, ks)
    for i in range(16):
        torch.testing.assert_close(out[i], d4(x[i], int(ks[i])))


def test_gather_and_lazy_view_across_shards(tmp_path):
    import pandas as pd

    from galmet.imaging import StoreView, gather

    rng = np.random.default_rng(2)
    paths = []
    for k, ids in enumerate(([10, 11, 12], [20, 21])):
        np.save(tmp_path / f"{k}.npy", rng.integers(0, 256, (len(ids), 4, 4, 3), dtype=np.uint8))
        pd.DataFrame({"objID": np.array(ids, dtype=np.int64)}).to_parquet(tmp_path / f"{k}.parquet")
        paths.append((tmp_path / f"{k}.parquet", tmp_path / f"{k}.npy"))
    index, store = zip(*paths)
    want = [21, 10, 12]
    got = gather(index, store, want)
    expect = [np.load(store[1])[1], np.load(store[0])[0], np.load(store[0])[2]]
    np.testing.assert_array_equal(got, np.stack(expect))
    view = StoreView(index, store)
    lazy = view.lazy(want)
    assert len(lazy) == 3
    np.testing.assert_array_equal(lazy[0], expect[0])
    assert list(view.positions([99, 20]) >= 0) == [False, True]
    with pytest.raises(KeyError, match="99"):
        gather(index, store, [10, 99])
