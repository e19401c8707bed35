"""Adapter: test predictions + image stores -> Figure 1 (galmet.figures.fig1_examples)."""

import pandas as pd

from galmet.figures import fig1_examples, save_figure
from galmet.logs import setup_logging
from galmet.stores import StoreView
from galmet.tables import read_table

log = setup_logging(snakemake.log[0])
target = snakemake.wildcards.target
preds = read_table(snakemake.input.predictions)
view = StoreView(snakemake.input.index, snakemake.input.store)
has_image = view.positions(preds["objID"]) >= 0
if (~has_image).any():
    log.warning("%d predicted galaxies have no image in the stores; left out", int((~has_image).sum()))
preds = preds[has_image].reset_index(drop=True)
images = view.lazy(preds["objID"])
fig = fig1_examples(images, pd.DataFrame({target: preds[target], "prediction": preds["prediction"]}),
                    truth=target, n=snakemake.params.examples, seed=snakemake.params.seed)
save_figure(fig, [snakemake.output.png, *snakemake.output.others])
log.info("figure 1 of %s %s from %d test galaxies", target, snakemake.wildcards.model, len(preds))
