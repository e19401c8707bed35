"""Adapter: SkyServer SQL (paged) -> results/catalog/skyserver.parquet (galmet.catalog)."""

from galmet.catalog import query_skyserver
from galmet.logs import setup_logging
from galmet.tables import write_table

setup_logging(snakemake.log[0])
table = query_skyserver(snakemake.params.skyserver, snakemake.params.cuts)
write_table(table, snakemake.output.table)
