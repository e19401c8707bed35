"""Adapter: catalog shard -> cutout manifest + failures (galmet.cutouts.cutouts_for_shard).

Image-defining keys come through params; network settings (base_url, concurrency, timeouts,
rate cap, retries) straight from the config, so changing them reruns nothing.
"""

from galmet.cutouts import cutouts_for_shard
from galmet.logs import setup_logging

setup_logging(snakemake.log[0])
cfg = {**snakemake.config["cutouts"], **snakemake.params.images}
cutouts_for_shard(
    snakemake.input.shard,
    snakemake.output.manifest,
    snakemake.output.failures,
    cfg,
)
