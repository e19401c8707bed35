"""Adapter: concatenate per-shard tables into one, sorted by objID."""

import pandas as pd

from galmet.io import write_table
from galmet.logs import setup_logging

log = setup_logging(snakemake.log[0])
df = pd.concat([pd.read_parquet(p) for p in snakemake.input], ignore_index=True).sort_values("objID")
write_table(df, snakemake.output[0])
log.info("gathered %d rows from %d shards", len(df), len(snakemake.input))
