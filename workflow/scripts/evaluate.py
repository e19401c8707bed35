"""Adapter: predictions table -> metrics JSON (galmet.metrics.evaluate_predictions)."""

import pandas as pd

from galmet.domain import flagged_summary
from galmet.io import write_json
from galmet.logs import setup_logging
from galmet.metrics import evaluate_predictions
from galmet.targets import get_target

log = setup_logging(snakemake.log[0])
target = snakemake.wildcards.target
df = pd.read_parquet(snakemake.input[0])
result = evaluate_predictions(df[target].to_numpy(), df["prediction"].to_numpy(), bin_width=snakemake.params.bin_width,
                              threshold=get_target(target).threshold)
if "domain_p" in df.columns:  # the applicability-domain test: how many test galaxies it flags
    result["domain"] = flagged_summary(df["domain_p"].to_numpy(), snakemake.params.domain_alpha)
write_json(result, snakemake.output[0])
log.info(
    "%s %s: n=%d rmse=%.4f nmad=%.4f",
    target, snakemake.wildcards.model, result["n"], result["rmse"], result["nmad"],
)
