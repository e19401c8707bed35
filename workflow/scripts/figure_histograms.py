"""Adapter: predictions table -> Figure 2 (galmet.figures.fig2_histograms)."""

from galmet.figures import fig2_histograms, save_figure
from galmet.logs import setup_logging
from galmet.tables import read_table

log = setup_logging(snakemake.log[0])
target = snakemake.params.get("target") or snakemake.wildcards.target
df = read_table(snakemake.input.predictions)
title = snakemake.params.get("title") or f"{snakemake.wildcards.get('model', '')} (test split)"
fig = fig2_histograms(df[target], df["prediction"], target=target, title=title)
save_figure(fig, [snakemake.output.png, *snakemake.output.others])
log.info("figure 2 from %d galaxies", len(df))
