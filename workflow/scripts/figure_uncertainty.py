"""Adapter: an ensemble's interval scores -> the calibration or the risk-coverage figure
(galmet.figures.fig_calibration / fig_risk_coverage, by the rule that calls it)."""

from galmet.figures import fig_calibration, fig_risk_coverage, save_figure
from galmet.io import read_json
from galmet.logs import setup_logging

log = setup_logging(snakemake.log[0])
u = read_json(snakemake.input.numbers)
title = f"{snakemake.wildcards.model} (test split, n = {u['n']})"
if snakemake.rule == "figure_calibration":
    fig = fig_calibration(u["calibration"], u["pit"], u["n"], title=title)
else:
    fig = fig_risk_coverage(u["risk_coverage"], title=title, target=snakemake.wildcards.target)
save_figure(fig, [snakemake.output.png, *snakemake.output.others])
log.info("%s of %s: coverage68 %.3f, coverage95 %.3f", snakemake.rule, snakemake.wildcards.model,
         u["coverage68"], u["coverage95"])
