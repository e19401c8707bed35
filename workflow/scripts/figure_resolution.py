"""Adapter: metrics of every model + baselines + published -> Figure 4 and its table."""

from galmet.captions import resolution_results
from galmet.figures import fig4_resolution, save_figure
from galmet.logs import setup_logging
from galmet.tables import write_table

log = setup_logging(snakemake.log[0])
target = snakemake.wildcards.target
cnn, baselines, published, table = resolution_results(
    snakemake.input.metrics, snakemake.input.baselines, snakemake.input.published
)
fig = fig4_resolution(cnn, baselines, published=published if len(published) else None,
                      target=target)
save_figure(fig, [snakemake.output.png, *snakemake.output.others])
write_table(table, snakemake.output.table)
log.info("figure 4 of %s: %d models, %d baselines drawn, %d published", target, len(cnn),
         len(baselines), len(published))
