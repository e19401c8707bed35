"""Adapter: results/cutouts/{shard}.parquet -> uint8 store + index (galmet.stores.pack_shard)."""

from galmet.logs import setup_logging
from galmet.stores import pack_shard

log = setup_logging(snakemake.log[0])
pack_shard(
    snakemake.input.manifest,
    snakemake.output.index,
    snakemake.output.store,
    snakemake.output.rejected,
    size=snakemake.params.size,
    max_pixels=snakemake.params.max_pixels,
)
