"""Adapter: mass and metallicity predictions + catalog -> Figure 5 (galmet.figures.fig5_mass)."""

from galmet.figures import fig5_mass, save_figure
from galmet.logs import setup_logging
from galmet.mzr import mass_route_rows
from galmet.tables import read_table
from galmet.targets import MASS, METALLICITY

log = setup_logging(snakemake.log[0])
inp = snakemake.input
df = mass_route_rows(read_table(inp.mass), read_table(inp.direct), read_table(inp.catalog))
fig = fig5_mass(df[MASS], df["prediction"], df[METALLICITY], z_pred=df["z_pred"])
save_figure(fig, [snakemake.output.png, *snakemake.output.others])
log.info("figure 5 of %s: %d galaxies", snakemake.wildcards.model, len(df))
