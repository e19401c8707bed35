"""Adapter: metallicity predictions + catalog masses -> binned MZR table and numbers (galmet.mzr)."""

from galmet.io import write_json
from galmet.logs import setup_logging
from galmet.mzr import mzr_rows, mzr_summary
from galmet.tables import read_table, write_table
from galmet.targets import MASS, METALLICITY

log = setup_logging(snakemake.log[0])
df = mzr_rows(read_table(snakemake.input.predictions), read_table(snakemake.input.catalog))
table, numbers = mzr_summary(df[MASS], df["prediction"], df[METALLICITY])
write_table(table, snakemake.output.table)
write_json(numbers, snakemake.output.numbers)
log.info("MZR of %s: %s", snakemake.wildcards.model, numbers)
