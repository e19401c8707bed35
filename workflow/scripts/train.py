"""Adapter: stores + split + catalog -> trained model (galmet.train.train_model).

Too few training galaxies stop the job before training, with the counts and their cause; Ctrl-C
ends it with one line saying how to resume (galmet.logs.job_errors), no traceback.
"""

import torch

from galmet.dataset import DataError, fingerprint, load_split, require, split_members
from galmet.domain import DomainAlphaError
from galmet.logs import job_errors, setup_logging
from galmet.modelfile import images_block
from galmet.targets import get_target
from galmet.train import MIN_TRAIN, TrainingError, TrainOutputs, train_model

log = setup_logging(snakemake.log[0])
inp, out, params = snakemake.input, snakemake.output, snakemake.params
if not params.train.get("num_threads"):  # 0: the job's threads (the rule's, capped at --cores)
    torch.set_num_threads(max(1, snakemake.threads))
target = snakemake.wildcards.target

with job_errors(DataError, TrainingError, DomainAlphaError, log=log):
    members = split_members(inp.catalog, inp.split, inp.index, target)
    require(members, "train", MIN_TRAIN, "training (batch norm)",
            "results/cutouts/<shard>.failures.csv and results/images/<shard>/rejected.csv list them")
    train = load_split(members, "train", target, inp.index, inp.store)
    valid = load_split(members, "valid", target, inp.index, inp.store)
    log.info("training %s on %d galaxies (valid %d) at %d px", target, len(train), len(valid), params.res)
    train_model(
        train.x, train.y, valid.x, valid.y,
        params=params.train,
        out=TrainOutputs(model=out.model, log=out.log, curve=out.curve),
        meta={
            "target": target,
            "target_units": get_target(target).units_long,
            "seed": params.seed,
            "tta": params.tta,
            "domain_alpha": params.domain_alpha,  # recorded in the model file: its default level
            "images": images_block(**params.images),
            "config_hash": fingerprint(params.train, params.images),
            "data_hash": fingerprint(train.objid, train.y, valid.objid, valid.y),
        },
        device=params.train.get("device", "auto"),
    )
