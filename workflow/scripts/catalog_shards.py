"""Adapter: clean.parquet -> results/catalog/shards/{shard}.parquet + index (galmet.catalog).

Only the index is a declared output; shard files are rewritten only when their rows change.
"""

from pathlib import Path

from galmet.catalog import write_shards
from galmet.logs import setup_logging

setup_logging(snakemake.log[0])
write_shards(
    snakemake.input.clean,
    Path(snakemake.output.index).parent,
    int(snakemake.params.shards),
    snakemake.output.index,
)
