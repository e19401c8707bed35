"""Adapter: full-resolution store -> block-averaged store (galmet.stores.rebin_store)."""

from galmet.logs import setup_logging
from galmet.stores import rebin_store

setup_logging(snakemake.log[0])
rebin_store(snakemake.input.store, snakemake.output.store, snakemake.params.res)
