"""Adapter: clean catalog + split -> one baseline's JSON and test predictions (galmet.baselines)."""

from galmet.baselines import run_baseline
from galmet.io import write_json
from galmet.logs import setup_logging
from galmet.tables import read_table, write_table

log = setup_logging(snakemake.log[0])
target, name = snakemake.wildcards.target, snakemake.wildcards.name
params = {**snakemake.params.baselines, "n_jobs": snakemake.threads}
result, predictions = run_baseline(
    name,
    read_table(snakemake.input.catalog),
    read_table(snakemake.input.split),
    target,
    params=params,
    bin_width=snakemake.params.bin_width,
)
write_table(predictions, snakemake.output.predictions)
write_json(result, snakemake.output.result)
if result["status"] == "ok":
    t = result["test"]
    log.info("%s %s: n=%d rmse=%.4f nmad=%.4f params=%s", name, target, t["n"], t["rmse"],
             t["nmad"], result["params"])
else:
    log.info("%s %s skipped: %s", name, target, result["reason"])
