"""Adapter: member model files + the valid split -> one calibrated ensemble file (galmet.ensemble)."""

import torch

from galmet.dataset import iter_split, load_split, sample_split, split_members
from galmet.domain import MAX_IMAGES
from galmet.domain import fit as fit_domain
from galmet.ensemble import calibrate, combine
from galmet.logs import setup_logging
from galmet.modelfile import load, save
from galmet.reproducible import for_prediction

log = setup_logging(snakemake.log[0])
inp, params, target = snakemake.input, snakemake.params, snakemake.wildcards.target
torch.set_num_threads(max(1, snakemake.threads))

mode = for_prediction(params.reproducible, evaluation=True)  # calibration: as the members were trained
model, meta = combine([load(p, device=params.device, reproducible=mode) for p in inp.members], params.names)
members = split_members(inp.catalog, inp.split, inp.index, target)
parts = iter_split(members, "valid", target, inp.index, inp.store, params.chunk_size)
meta = calibrate(model, meta, parts, tta=params.tta, batch_size=params.batch_size, device=params.device)
train = sample_split(members, "train", target, inp.index, inp.store, MAX_IMAGES)
valid = load_split(members, "valid", target, inp.index, inp.store)
meta["domain"] = fit_domain(train.x, valid.x, meta["resolution"], alpha=params.domain_alpha)
save(snakemake.output.model, model, meta)
log.info("ensemble of %s calibrated on %d valid galaxies", ", ".join(params.names), meta["calibration"]["n"])
