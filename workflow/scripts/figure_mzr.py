"""Adapter: metallicity predictions + catalog masses -> Figure 6 (galmet.figures.fig6_mzr)."""

from galmet.figures import fig6_mzr, save_figure
from galmet.logs import setup_logging
from galmet.mzr import mzr_rows
from galmet.tables import read_table
from galmet.targets import MASS, METALLICITY

log = setup_logging(snakemake.log[0])
df = mzr_rows(read_table(snakemake.input.predictions), read_table(snakemake.input.catalog))
intervals = (df["p16"], df["p84"]) if "p16" in df else None  # a calibrated ensemble's
fig = fig6_mzr(df[MASS], df["prediction"], df[METALLICITY], intervals=intervals)
save_figure(fig, [snakemake.output.png, *snakemake.output.others])
log.info("figure 6 of %s: %d galaxies", snakemake.wildcards.model, len(df))
