"""Adapter: a model + one shard's store -> predictions for one split (galmet.predict)."""

import pandas as pd

from galmet.dataset import load_split, split_members
from galmet.io import write_table
from galmet.logs import setup_logging
from galmet.predict import load_model, predict_images

log = setup_logging(snakemake.log[0])
inp, params, target = snakemake.input, snakemake.params, snakemake.wildcards.target

model, meta = load_model(inp.model, device=params.device)
members = split_members(inp.catalog, inp.split, [inp.index], target)
data = load_split(members, params.which, target, [inp.index], [inp.store])
pred = predict_images(model, meta, data.x, tta=params.tta, batch_size=params.batch_size, device=params.device)
write_table(pd.DataFrame({"objID": data.objid, target: data.y, "prediction": pred}), snakemake.output[0])
log.info("predicted %d %s galaxies with TTA over %d symmetries", len(data), params.which, params.tta)
