"""Adapter: clean catalog -> results/split.parquet (galmet.split.split_table)."""

from galmet.logs import setup_logging
from galmet.split import split_table

setup_logging(snakemake.log[0])
split_table(
    snakemake.input.catalog,
    snakemake.output.split,
    seed=snakemake.params.seed,
    fractions=snakemake.params.fractions,
    force_test_path=snakemake.input.force_test or None,
)
