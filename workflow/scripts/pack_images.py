"""Adapter: results/cutouts/{shard}.parquet -> uint8 store + index (galmet.imaging.pack_shard)."""

from galmet.imaging import pack_shard
from galmet.logs import setup_logging

log = setup_logging(snakemake.log[0])
pack_shard(
    snakemake.input.manifest,
    snakemake.output.index,
    snakemake.output.store,
    snakemake.output.rejected,
    size=snakemake.params.size,
)
