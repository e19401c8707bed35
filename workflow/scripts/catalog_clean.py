"""Adapter: catalog source -> clean.parquet + cleaning_report.json (galmet.catalog)."""

from galmet.catalog import build_catalog
from galmet.logs import setup_logging

setup_logging(snakemake.log[0])
cfg = dict(snakemake.params.catalog)
build_catalog(
    cfg,
    snakemake.output.clean,
    snakemake.output.report,
    raw_table=snakemake.input.get("table") if cfg["source"] == "skyserver" else None,
    targets=snakemake.config["targets"],  # each must be a column; checked against its valid range
)
