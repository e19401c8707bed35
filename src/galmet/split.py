"""Stable train / validation / test assignment.

A galaxy's split depends only on its objID and the seed (a keyed BLAKE2 hash mapped to
[0, 1)), never on the rest of the catalog: when the catalog grows, existing galaxies keep their
split, and the fractions hold approximately (exactly in expectation). Galaxies listed in
``force_test`` (e.g. the paper's published test set) always go to the test split.
"""

from __future__ import annotations

import hashlib

import numpy as np

SPLITS = ("train", "valid", "test")


def unit_hash(objids, seed: int) -> np.ndarray:
    """Map each int64 id to a number in [0, 1) that depends only on (id, seed)."""
    ids = np.asarray(objids, dtype=np.int64)
    key = int(seed).to_bytes(8, "little", signed=True)
    out = np.empty(len(ids), dtype=np.float64)
    for i, oid in enumerate(ids.tolist()):
        digest = hashlib.blake2b(int(oid).to_bytes(8, "little", signed=True), digest_size=8, key=key).digest()
        out[i] = int.from_bytes(digest, "little") / 2.0**64
    return out


def assign_splits(objids, seed: int, fractions: dict, force_test=None) -> np.ndarray:
    """Return an array of 'train' / 'valid' / 'test', one per objID.

    ``fractions`` maps each split name to its fraction (summing to 1). ``force_test`` is an
    optional iterable of objIDs that are put in the test split whatever their hash.
    """
    missing = [s for s in SPLITS if s not in fractions]
    if missing:
        raise ValueError(f"split fractions lack {missing}; give train, valid and test")
    total = sum(float(fractions[s]) for s in SPLITS)
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"split fractions sum to {total:g}, not 1: {fractions}")
    u = unit_hash(objids, seed)
    edges = np.cumsum([float(fractions["train"]), float(fractions["valid"])])
    labels = np.array(SPLITS, dtype=object)[np.searchsorted(edges, u, side="right")]
    if force_test is not None:
        forced = np.isin(np.asarray(objids, dtype=np.int64), np.asarray(list(force_test), dtype=np.int64))
        labels[forced] = "test"
    return labels.astype(str)


def split_table(catalog_path, out_path, seed: int, fractions: dict, force_test_path=None):
    """Write ``objID, split`` for every galaxy of the clean catalog; returns the counts."""
    import logging

    import pandas as pd

    from galmet.tables import read_table, write_table

    log = logging.getLogger("galmet.split")
    ids = read_table(catalog_path)["objID"].to_numpy(dtype=np.int64)
    forced = None
    if force_test_path:
        forced = read_table(force_test_path)["objID"].to_numpy(dtype=np.int64)
        overlap = int(np.isin(ids, forced).sum())
        log.info("%d of %d forced test ids are in this catalog", overlap, len(forced))
    labels = assign_splits(ids, seed, fractions, force_test=forced)
    write_table(pd.DataFrame({"objID": ids, "split": labels}), out_path)
    counts = {s: int((labels == s).sum()) for s in SPLITS}
    log.info("split of %d galaxies: %s", len(ids), counts)
    return counts
