"""Adapter: mass and metallicity predictions + catalog -> Figure 5 and the mass-route numbers."""

from galmet.figures import fig5_mass, save_figure
from galmet.io import read_table, write_json
from galmet.logs import setup_logging
from galmet.mzr import mass_route_comparison

log = setup_logging(snakemake.log[0])
mass = read_table(snakemake.input.mass)[["objID", "lgm_tot_p50", "prediction"]]
direct = read_table(snakemake.input.direct)[["objID", "prediction"]]
catalog = read_table(snakemake.input.catalog)[["objID", "oh_p50"]]
df = mass.merge(catalog, on="objID", how="inner").merge(
    direct.rename(columns={"prediction": "z_pred"}), on="objID", how="left"
)
fig = fig5_mass(df["lgm_tot_p50"], df["prediction"], df["oh_p50"], z_pred=df["z_pred"])
save_figure(fig, [snakemake.output.png, *snakemake.output.others])
numbers = mass_route_comparison(df["oh_p50"], df["z_pred"], df["prediction"],
                                mass_true=df["lgm_tot_p50"])
write_json(numbers, snakemake.output.numbers)
log.info("figure 5 of %s: %d galaxies; %s", snakemake.wildcards.model, len(df), numbers)
