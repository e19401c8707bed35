"""Adapter: this run's test predictions + published ones -> overlap JSON (compare_on_overlap)."""

from galmet.io import write_json
from galmet.logs import setup_logging
from galmet.metrics import compare_on_overlap
from galmet.tables import read_table

log = setup_logging(snakemake.log[0])
result = compare_on_overlap(read_table(snakemake.input.predictions),
                            read_table(snakemake.input.published))
result = {"model": snakemake.wildcards.model, "published_file": str(snakemake.input.published),
          **result}
write_json(result, snakemake.output[0])
log.info("%s", result["note"])
