"""Adapter: mass and metallicity predictions + catalog -> the mass-route numbers (galmet.mzr)."""

from galmet.io import write_json
from galmet.logs import setup_logging
from galmet.mzr import mass_route_comparison, mass_route_rows
from galmet.tables import read_table
from galmet.targets import MASS, METALLICITY

log = setup_logging(snakemake.log[0])
inp = snakemake.input
df = mass_route_rows(read_table(inp.mass), read_table(inp.direct), read_table(inp.catalog))
numbers = mass_route_comparison(df[METALLICITY], df["z_pred"], df["prediction"], mass_true=df[MASS])
write_json(numbers, snakemake.output[0])
log.info("mass route of %s: %d galaxies; %s", snakemake.wildcards.model, len(df), numbers)
