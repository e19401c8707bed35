"""Adapter: per-shard predictions -> results/infer/predictions.parquet (galmet.infer.gather)."""

import torch

from galmet import __version__
from galmet.infer import gather, model_label
from galmet.logs import setup_logging

log = setup_logging(snakemake.log[0])
meta = torch.load(snakemake.input.model, map_location="cpu", weights_only=True)["meta"]
name = model_label(snakemake.input.model, meta, snakemake.params.model_name)
n = gather(list(snakemake.input.parts), snakemake.output[0], model=name, version=__version__)
log.info("%d predictions by %s (galmet %s)", n, name, __version__)
