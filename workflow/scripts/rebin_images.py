"""Adapter: full-resolution store -> block-averaged store (galmet.imaging.rebin_store)."""

from galmet.imaging import rebin_store
from galmet.logs import setup_logging

setup_logging(snakemake.log[0])
rebin_store(snakemake.input.store, snakemake.output.store, snakemake.params.res)
