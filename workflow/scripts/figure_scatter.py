"""Adapter: predictions table (+ published ones) -> Figure 3 (galmet.figures.fig3_scatter)."""

from galmet.figures import fig3_scatter, save_figure
from galmet.logs import setup_logging
from galmet.tables import read_table
from galmet.targets import REFERENCE_TARGET

log = setup_logging(snakemake.log[0])
target = snakemake.params.get("target") or snakemake.wildcards.target
df = read_table(snakemake.input.predictions)
reference = None
published = snakemake.input.get("published")
if published:
    pub = read_table(published)
    reference = (pub[REFERENCE_TARGET], pub["prediction"])
title = snakemake.params.get("title") or f"{snakemake.wildcards.get('model', '')} (test split)"
fig = fig3_scatter(df[target], df["prediction"], target=target,
                   bin_width=snakemake.params.bin_width, reference=reference,
                   reference_label="published, same px", title=title,
                   intervals=(df["p16"], df["p84"]) if "p16" in df else None)  # a calibrated ensemble's
save_figure(fig, [snakemake.output.png, *snakemake.output.others])
log.info("figure 3 from %d galaxies%s", len(df), " with the published overlay" if published else "")
