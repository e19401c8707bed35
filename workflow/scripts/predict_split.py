"""Adapter: a model + one shard's store -> predictions for one split (galmet.predict)."""

from galmet.dataset import load_split, split_members
from galmet.logs import setup_logging
from galmet.modelfile import load
from galmet.predict import predict_images, write_predictions

log = setup_logging(snakemake.log[0])
inp, params, target = snakemake.input, snakemake.params, snakemake.wildcards.target

model, meta = load(inp.model, device=params.device)
members = split_members(inp.catalog, inp.split, [inp.index], target)
data = load_split(members, params.which, target, [inp.index], [inp.store])
pred = predict_images(model, meta, data.x, tta=params.tta, batch_size=params.batch_size, device=params.device)
write_predictions(snakemake.output[0], data.objid, pred, extra={target: data.y})
log.info("predicted %d %s galaxies with TTA over %d symmetries", len(data), params.which, params.tta)
