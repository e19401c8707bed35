"""Adapter: a model + every shard's store -> predictions for one split (galmet.predict)."""

import torch

from galmet.dataset import iter_split, split_members
from galmet.logs import setup_logging
from galmet.modelfile import load
from galmet.predict import PredictionWriter, choose_tta, predict_columns
from galmet.reproducible import for_prediction

log = setup_logging(snakemake.log[0])
inp, params, target = snakemake.input, snakemake.params, snakemake.wildcards.target
torch.set_num_threads(max(1, snakemake.threads))

model, meta = load(inp.model, device=params.device, reproducible=for_prediction(params.reproducible, evaluation=True))
tta = choose_tta(None, meta)  # the model's own: the config's predict.tta when it was trained, 1 for a survey model
members = split_members(inp.catalog, inp.split, inp.index, target)
with PredictionWriter(snakemake.output[0]) as writer:
    for part in iter_split(members, params.which, target, inp.index, inp.store, params.chunk_size):
        cols = predict_columns(model, meta, part.x, tta=tta, batch_size=params.batch_size,
                               device=params.device, spread=True,  # intervals too, for a calibrated ensemble
                               alpha=params.domain_alpha)  # and domain_p, in_domain
        writer.write(part.objid, cols.pop("prediction"), extra={target: part.y}, after=cols)
        log.info("predicted %d %s galaxies so far (TTA over %d symmetries)", writer.n, params.which, tta)
log.info("predicted %d %s galaxies with TTA over %d symmetries", writer.n, params.which, tta)
