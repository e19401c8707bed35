"""Adapter: every model's metrics and every baseline -> results/summary.json (galmet.summary)."""

from galmet.io import write_json
from galmet.logs import setup_logging
from galmet.summary import build_summary

setup_logging(snakemake.log[0])
write_json(
    build_summary(snakemake.params.models, snakemake.input.metrics, snakemake.input.baselines,
                  snakemake.params.ensembles, snakemake.input.ensembles, snakemake.input.uncertainty,
                  snakemake.params.surveys, snakemake.input.surveys, snakemake.input.survey_uncertainty,
                  snakemake.input.survey_reports),
    snakemake.output[0],
)
