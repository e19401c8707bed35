"""Adapter: a model + the test split's images -> saliency maps and their sanity checks (galmet.explain)."""

import torch

from galmet.captions import check_verdicts
from galmet.dataset import load_split, split_members
from galmet.explain import ExplainSettings, explain, write_maps
from galmet.io import write_json
from galmet.logs import setup_logging
from galmet.modelfile import load
from galmet.reproducible import for_prediction
from galmet.targets import get_target

log = setup_logging(snakemake.log[0])
inp, params, wc = snakemake.input, snakemake.params, snakemake.wildcards
torch.set_num_threads(max(1, snakemake.threads))

model, meta = load(inp.model, device=params.device, reproducible=for_prediction(params.reproducible, evaluation=True))
test = load_split(split_members(inp.catalog, inp.split, inp.index, wc.target), "test", wc.target, inp.index, inp.store)
settings = ExplainSettings(**params.settings)
maps, preds, checks = explain(model, meta, test.x, settings, values=test.y, by="true",
                              labels=get_target(wc.target).words, device=params.device)
write_maps(snakemake.output.maps, test.objid, maps, preds)
write_json({"model": wc.model, "target": wc.target, **checks}, snakemake.output.checks)
log.info("%s maps of %d test galaxies; seconds %s", settings.method, len(test), checks["seconds"])
for name, verdict in check_verdicts(checks).items():  # each check with its own verdict
    log.info("check %s: %s", name, verdict)
