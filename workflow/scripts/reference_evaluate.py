"""Adapter: a published predictions CSV -> metrics JSON (galmet.metrics.evaluate_table)."""

from galmet.io import write_json
from galmet.logs import setup_logging
from galmet.metrics import evaluate_table
from galmet.tables import read_table

log = setup_logging(snakemake.log[0])
res = int(snakemake.wildcards.res)
result = evaluate_table(read_table(snakemake.input[0]), bin_width=snakemake.params.bin_width,
                        source=str(snakemake.input[0]))
result = {"resolution": res, "reference": "Wu & Boada (2019, MNRAS 484, 4683)", **result}
write_json(result, snakemake.output[0])
log.info("published %d px: n=%d rmse=%.4f nmad=%.4f nmad_about_zero=%.4f", res, result["n"],
         result["rmse"], result["nmad"], result["nmad_about_zero"])
