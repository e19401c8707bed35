"""Labelled image sets: the images, ids and targets of one split, gathered from the shard stores.

The bridge between the workflow's files (clean catalog, split, per-shard stores) and the
arrays that training and prediction take. Galaxies without a valid target value are left out
and counted, never passed on as NaN.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from galmet.stores import StoreView, gather
from galmet.tables import read_table

log = logging.getLogger("galmet.dataset")


@dataclass
class LabelledSet:
    objid: np.ndarray  # int64
    x: np.ndarray  # uint8 N x H x W x 3
    y: np.ndarray  # float32, the target

    def __len__(self) -> int:
        return len(self.objid)


def split_members(catalog_path, split_path, index_paths, target: str) -> pd.DataFrame:
    """``objID, split, <target>`` for every galaxy that has an image and a valid target value."""
    catalog = read_table(catalog_path)
    if target not in catalog.columns:
        raise KeyError(
            f"{catalog_path}: the catalog has no column {target!r} (columns: {', '.join(catalog.columns)}); "
            "remove it from `targets` in the config or use a catalog that has it"
        )
    split = read_table(split_path)
    imaged = pd.concat([pd.read_parquet(p, columns=["objID"]) for p in index_paths], ignore_index=True)
    df = catalog[["objID", target]].merge(split, on="objID", how="inner")
    n_all = len(df)
    in_split = df["split"].value_counts()
    df = df[df["objID"].isin(imaged["objID"])]
    n_img = len(df)
    with_image = df["split"].value_counts()
    y = pd.to_numeric(df[target], errors="coerce")
    ok = np.isfinite(y) & (y > -999)
    df = df[ok.to_numpy()].copy()
    df[target] = y[ok].astype("float32")
    log.info(
        "%s: %d galaxies in catalog and split, %d with an image, %d with a valid %s",
        target, n_all, n_img, len(df), target,
    )
    out = df.reset_index(drop=True)
    labelled = out["split"].value_counts()
    out.attrs["counts"] = {s: {"in_split": int(in_split.get(s, 0)), "with_image": int(with_image.get(s, 0)),
                               "labelled": int(labelled.get(s, 0))} for s in SPLITS}
    out.attrs["target"] = target
    return out


SPLITS = ("train", "valid", "test")


class DataError(ValueError):
    """Too few galaxies reach a step; the message gives the counts, the cause and the fix."""


def require(members: pd.DataFrame, which: str, minimum: int, why: str, where: str = "") -> int:
    """The number of galaxies of split ``which`` in ``members`` (:func:`split_members`); fewer than
    ``minimum`` raise :class:`DataError` with the count at each step (in the split, with an image,
    with a valid target), so that the message names what lost them. ``why`` says what needs the
    minimum, ``where`` where the lost galaxies are listed (the workflow's failure files)."""
    counts = members.attrs.get("counts", {}).get(which)
    n = int((members["split"] == which).sum())
    if n >= minimum:
        return n
    target = members.attrs.get("target", "the target")
    if counts is None:
        raise DataError(f"only {n} {which} galaxies: {why} needs at least {minimum}")
    lost = []
    if counts["in_split"] > counts["with_image"]:
        lost.append(f"{counts['in_split'] - counts['with_image']} without an image (no usable cutout, or a "
                    f"cutout that did not decode{'; ' + where if where else ''})")
    if counts["with_image"] > counts["labelled"]:
        lost.append(f"{counts['with_image'] - counts['labelled']} without a valid {target}")
    cause = ("; ".join(lost) if lost else
             "the catalog is too small for the split (more galaxies, or other split.fractions)")
    raise DataError(f"only {n} {which} galaxies with an image and a valid {target}, of "
                    f"{counts['in_split']} in the {which} split: {cause}. {why.capitalize()} needs at least "
                    f"{minimum}: fix the cause and rerun")


def _split_ids(members: pd.DataFrame, which: str, target: str) -> tuple[np.ndarray, np.ndarray]:
    """objIDs (int64, sorted) and target values (float32) of one split."""
    rows = members[members["split"] == which].sort_values("objID")
    return rows["objID"].to_numpy(dtype=np.int64), rows[target].to_numpy(dtype=np.float32)


def load_split(members: pd.DataFrame, which: str, target: str, index_paths, store_paths) -> LabelledSet:
    """Gather the images of one split (``train``, ``valid`` or ``test``)."""
    ids, y = _split_ids(members, which, target)
    x = gather(index_paths, store_paths, ids) if len(ids) else np.empty((0, 1, 1, 3), np.uint8)
    return LabelledSet(objid=ids, x=x, y=y)


def sample_split(members: pd.DataFrame, which: str, target: str, index_paths, store_paths, n: int,
                 seed: int = 0) -> LabelledSet:
    """At most ``n`` galaxies of one split, drawn at random with ``seed`` (sorted by objID):
    what the applicability-domain test keeps of the training images."""
    ids, y = _split_ids(members, which, target)
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(ids), size=min(len(ids), int(n)), replace=False))
    x = StoreView(index_paths, store_paths).take(ids[keep]) if len(keep) else np.empty((0, 1, 1, 3), np.uint8)
    return LabelledSet(objid=ids[keep], x=x, y=y[keep])


def iter_split(members: pd.DataFrame, which: str, target: str, index_paths, store_paths, chunk_size: int):
    """The galaxies of one split in chunks of ``chunk_size`` (by objID), gathered from every
    shard's store as :func:`load_split` does: memory bounded by the chunk, not the split. An
    empty split gives one empty chunk (so that a writer still learns the columns)."""
    ids, y = _split_ids(members, which, target)
    view = StoreView(index_paths, store_paths)
    for s in range(0, max(len(ids), 1), int(chunk_size)):
        yield LabelledSet(objid=ids[s:s + chunk_size], x=view.take(ids[s:s + chunk_size]), y=y[s:s + chunk_size])


def fingerprint(*parts) -> str:
    """A short stable hash of JSON-able values and arrays (config, ids, labels)."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]
