"""Adapter: saliency maps + test predictions + image stores -> Figure 7 (galmet.figures.fig7_saliency)."""

import numpy as np

from galmet.figures import fig7_saliency, save_figure
from galmet.logs import setup_logging
from galmet.stores import StoreView
from galmet.tables import read_table

log = setup_logging(snakemake.log[0])
target = snakemake.wildcards.target
with np.load(snakemake.input.maps) as z:
    objid, maps = z["objID"], z["maps"]
preds = read_table(snakemake.input.predictions).set_index("objID")
view = StoreView(snakemake.input.index, snakemake.input.store)
keep = np.isin(objid, preds.index.to_numpy()) & (view.positions(objid) >= 0)
if not keep.all():
    log.warning("%d mapped galaxies have no prediction or image; left out", int((~keep).sum()))
table = preds.loc[objid[keep], [target, "prediction"]].reset_index(drop=True)
numbers = snakemake.params.numbers
fig = fig7_saliency(view.lazy(objid[keep]), maps[keep], table, truth=target, n=min(4, snakemake.params.examples),
                    method=f"{numbers.get('method', '')} {numbers.get('layer', '')}".strip(),
                    layer=numbers.get("layer") or None)
save_figure(fig, [snakemake.output.png, *snakemake.output.others])
log.info("figure 7 of %s %s from %d test galaxies", target, snakemake.wildcards.model, len(table))
