import numpy as np
import pandas as pd
import pytest

from galmet.imaging import pack_images, read_image
from galmet.stores import StoreView, gather, load_store


def test_store_round_trip(tmp_path, demo_images):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    paths = [demo_images[0], bad, demo_images[1]]
    arr, kept, rejected = pack_images(paths, 128)
    assert kept == [0, 2] and rejected[0][0] == 1 and rejected[0][1].startswith("undecodable: ")
    np.save(tmp_path / "s.npy", arr)
    back = load_store(tmp_path / "s.npy")
    np.testing.assert_array_equal(back[1], read_image(demo_images[1]))


def test_gather_and_lazy_view_across_shards(tmp_path):
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
