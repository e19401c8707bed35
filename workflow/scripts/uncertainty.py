"""Adapter: a calibrated ensemble's test predictions -> interval scores (galmet.uncertainty)."""

import pandas as pd

from galmet.io import write_json
from galmet.logs import setup_logging
from galmet.modelfile import read_meta
from galmet.uncertainty import score_intervals

log = setup_logging(snakemake.log[0])
target = snakemake.wildcards.target
df = pd.read_parquet(snakemake.input.predictions)
scores = read_meta(snakemake.input.model)["calibration"]["scores"]
out = score_intervals(df[target], df["prediction"], df["spread"], scores, bin_width=snakemake.params.bin_width)
write_json(out, snakemake.output[0])
log.info("%s %s: n=%d coverage68=%.3f coverage95=%.3f width68=%.3f width95=%.3f", target,
         snakemake.wildcards.model, out["n"], out["coverage68"], out["coverage95"], out["width68"], out["width95"])
