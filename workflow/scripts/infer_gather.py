"""Adapter: per-shard predictions -> results/infer/predictions.<infer.format> (galmet.infer.gather)."""

from galmet import __version__
from galmet.infer import gather, model_label
from galmet.logs import setup_logging
from galmet.modelfile import read_meta

log = setup_logging(snakemake.log[0])
name = model_label(snakemake.input.model, read_meta(snakemake.input.model), snakemake.params.model_name)
n = gather(list(snakemake.input.parts), snakemake.output[0], model=name, version=__version__)
log.info("%d predictions by %s (galmet %s)", n, name, __version__)
