"""Adapter: inference catalog -> shards of contiguous rows (galmet.infer.split_catalog)."""

from galmet.infer import split_catalog
from galmet.logs import setup_logging

log = setup_logging(snakemake.log[0])
counts = split_catalog(snakemake.input.catalog, list(snakemake.output),
                       images_dir=snakemake.params.images_dir, cache_dir=snakemake.params.cache_dir)
log.info("rows per shard: %s", counts)
