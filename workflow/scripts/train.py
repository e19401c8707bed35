"""Adapter: stores + split + catalog -> trained model (galmet.train.train_model)."""

from pathlib import Path

from galmet import __version__
from galmet.dataset import TARGET_UNITS, fingerprint, load_split, split_members
from galmet.logs import setup_logging
from galmet.train import train_model

log = setup_logging(snakemake.log[0])
wc, inp, params = snakemake.wildcards, snakemake.input, snakemake.params
target, res = wc.target, int(wc.res)

members = split_members(inp.catalog, inp.split, inp.index, target)
train = load_split(members, "train", target, inp.index, inp.store)
valid = load_split(members, "valid", target, inp.index, inp.store)
log.info("training %s on %d galaxies (valid %d) at %d px", target, len(train), len(valid), res)

meta = {
    "target": target,
    "target_units": TARGET_UNITS.get(target, ""),
    "resolution": res,
    "cutout_scale": params.scale,
    "cutout_size": params.cutout_size,
    "seed": int(wc.seed),
    "tta": params.tta,
    "galmet_version": __version__,
    "config_hash": fingerprint(params.train, params.scale, params.cutout_size),
    "data_hash": fingerprint(train.objid, train.y, valid.objid, valid.y),
    "n_train": len(train),
    "n_valid": len(valid),
}
train_model(
    train.x, train.y, valid.x, valid.y,
    params=params.train,
    out_dir=Path(snakemake.output.model).parent,
    meta=meta,
    device=params.train.get("device", "auto"),
)
