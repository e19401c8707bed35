"""Adapter: test predictions + image stores -> Figure 1 (galmet.figures.fig1_examples)."""

import numpy as np
import pandas as pd

from galmet.figures import fig1_examples, save_figure
from galmet.io import read_table
from galmet.logs import setup_logging


class StackedStores:
    """Rows of several memory-mapped N x H x W x 3 stores as one lazy sequence."""

    def __init__(self, stores, rows):
        self.stores, self.rows = stores, rows  # rows: (store number, row) per item

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        s, r = self.rows[i]
        return np.asarray(self.stores[s][r])


log = setup_logging(snakemake.log[0])
target = snakemake.wildcards.target
preds = read_table(snakemake.input.predictions)
stores, where = [], {}
for k, (index, store) in enumerate(zip(snakemake.input.index, snakemake.input.store, strict=True)):
    ids = read_table(index)["objID"].to_numpy()
    stores.append(np.load(store, mmap_mode="r"))
    where.update({int(o): (k, r) for r, o in enumerate(ids)})
has_image = preds["objID"].map(lambda o: int(o) in where)
if (~has_image).any():
    log.warning("%d predicted galaxies have no image in the stores; left out", int((~has_image).sum()))
preds = preds[has_image].reset_index(drop=True)
images = StackedStores(stores, [where[int(o)] for o in preds["objID"]])
fig = fig1_examples(images, pd.DataFrame({target: preds[target], "prediction": preds["prediction"]}),
                    truth=target, n=snakemake.params.examples, seed=snakemake.params.seed)
save_figure(fig, [snakemake.output.png, *snakemake.output.others])
log.info("figure 1 of %s %s from %d test galaxies", target, snakemake.wildcards.model, len(preds))
