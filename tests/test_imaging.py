import numpy as np
import pytest

from galmet.imaging import ImageError, block_average, read_image, to_resolution


def test_read_real_cutout(demo_images):
    img = read_image(demo_images[0])
    assert img.shape == (128, 128, 3) and img.dtype == np.uint8
    assert img.std() > 1  # a real galaxy, not a blank frame


@pytest.mark.parametrize("content", [b"", b"<html>error</html>"])
def test_read_bad_file_names_file(tmp_path, content):
    p = tmp_path / "123.jpg"
    p.write_bytes(content)
    with pytest.raises(ImageError, match="123.jpg"):
        read_image(p)


def test_truncated_jpeg_is_refused(tmp_path, demo_images):
    data = demo_images[0].read_bytes()
    p = tmp_path / "trunc.jpg"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="trunc.jpg"):
        read_image(p)


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


@pytest.mark.parametrize("res", [64, 32, 16, 8, 1])
def test_block_average_rounds_as_the_float_mean_did(demo_images, res):
    # the stores were written by numpy's rint of the float64 block mean (halves to even): the
    # integer re-binning must give the same bytes, ties included, on real cutouts and on blocks
    # made of exact halves
    x = np.stack([read_image(p) for p in demo_images[:20]])
    ref = np.rint(x.reshape(20, res, 128 // res, res, 128 // res, 3).mean(axis=(2, 4), dtype=np.float64))
    np.testing.assert_array_equal(block_average(x, res), ref.astype(np.uint8))
    ties = np.zeros((4, 2, 2, 3), np.uint8)
    ties[:, 0, 0] = np.array([2, 6, 10, 14])[:, None]  # 2 x 2 means 0.5, 1.5, 2.5, 3.5
    assert block_average(ties, 1)[:, 0, 0, 0].tolist() == [0, 2, 2, 4]  # halves to even, not up


def test_block_average_refuses_non_divisor():
    with pytest.raises(ValueError, match="does not divide"):
        block_average(np.zeros((1, 10, 10, 3), np.uint8), 4)


def test_to_resolution_any_size():
    x = np.full((100, 100, 3), 77, np.uint8)
    assert to_resolution(x, 64).shape == (64, 64, 3)
    assert (to_resolution(x, 64) == 77).all()
    y = np.random.default_rng(1).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    np.testing.assert_array_equal(to_resolution(y, 32), block_average(y, 32))
