"""Adapter: metallicity predictions + catalog masses -> Figure 6, binned MZR table and numbers."""

from galmet.figures import fig6_mzr, save_figure
from galmet.io import read_table, write_json, write_table
from galmet.logs import setup_logging
from galmet.mzr import mzr_summary

log = setup_logging(snakemake.log[0])
preds = read_table(snakemake.input.predictions)[["objID", "oh_p50", "prediction"]]
catalog = read_table(snakemake.input.catalog)
if "lgm_tot_p50" not in catalog.columns:
    raise SystemExit(f"{snakemake.input.catalog} has no lgm_tot_p50 column: no mass for Figure 6")
df = preds.merge(catalog[["objID", "lgm_tot_p50"]], on="objID", how="inner")
fig = fig6_mzr(df["lgm_tot_p50"], df["prediction"], df["oh_p50"])
save_figure(fig, [snakemake.output.png, *snakemake.output.others])
table, numbers = mzr_summary(df["lgm_tot_p50"], df["prediction"], df["oh_p50"])
write_table(table, snakemake.output.table)
write_json(numbers, snakemake.output.numbers)
log.info("figure 6 of %s: %s", snakemake.wildcards.model, numbers)
