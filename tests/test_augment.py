import torch

from galmet.augment import d4, d4_inverse, d4_per_sample


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
