import numpy as np

from galmet.split import assign_splits

FR = {"train": 0.6, "valid": 0.2, "test": 0.2}


def test_split_deterministic_and_fractions():
    ids = np.arange(1237648702973411443, 1237648702973411443 + 20000, dtype=np.int64)
    a = assign_splits(ids, 42, FR)
    b = assign_splits(ids, 42, FR)
    np.testing.assert_array_equal(a, b)
    frac = {s: (a == s).mean() for s in ("train", "valid", "test")}
    assert abs(frac["train"] - 0.6) < 0.02 and abs(frac["valid"] - 0.2) < 0.02
    assert (assign_splits(ids, 7, FR) != a).mean() > 0.3  # another seed, another split


def test_split_stable_when_catalog_grows():
    ids = np.arange(1000, dtype=np.int64) * 7919 + 1237648702973411443
    before = assign_splits(ids, 1, FR)
    grown = np.concatenate([ids, np.arange(50, dtype=np.int64) + 1237650000000000000])
    rng = np.random.default_rng(0)
    order = rng.permutation(len(grown))
    after = assign_splits(grown[order], 1, FR)
    lookup = dict(zip(grown[order].tolist(), after))
    assert all(lookup[i] == s for i, s in zip(ids.tolist(), before))


def test_forced_test_ids():
    ids = np.arange(100, dtype=np.int64)
    forced = ids[:30]
    out = assign_splits(ids, 0, FR, force_test=forced)
    assert (out[:30] == "test").all()
    np.testing.assert_array_equal(out[30:], assign_splits(ids, 0, FR)[30:])
