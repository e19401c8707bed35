"""Adapter: domain_check JSON + test predictions -> the applicability-domain figure (galmet.figures.fig_domain)."""

import pandas as pd

from galmet.figures import fig_domain, save_figure
from galmet.io import read_json
from galmet.logs import setup_logging

log = setup_logging(snakemake.log[0])
check = read_json(snakemake.input.numbers)
table = pd.read_parquet(snakemake.input.predictions)
model, target = snakemake.wildcards.model, snakemake.wildcards.target
fig = fig_domain(check, table, target=target, title=f"{model}: is the image like the training images?")
save_figure(fig, [snakemake.output.png, *snakemake.output.others])
log.info("domain figure of %s: %d of %d test galaxies flagged", model, int((~table["in_domain"]).sum()), len(table))
