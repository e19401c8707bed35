"""Adapter: catalog shard -> cutout manifest + failures (galmet.cutouts.download.cutouts_for_shard).

Image-defining keys come through params; network settings (base_url, concurrency, timeouts,
rate cap, retries) straight from the config, so changing them reruns nothing. A shard without a
usable cutout fails with the reason in its log (galmet.cutouts.download.NoCutoutsError).
"""

from galmet.cutouts.download import NoCutoutsError, cutouts_for_shard
from galmet.logs import job_errors, setup_logging

log = setup_logging(snakemake.log[0])
cfg = {**snakemake.config["cutouts"], **snakemake.params.images}
with job_errors(NoCutoutsError, log=log, interrupted="interrupted: the cutouts downloaded so far are kept in the "
                "cache; rerun the same command to fetch the rest"):
    cutouts_for_shard(
        snakemake.input.shard,
        snakemake.output.manifest,
        snakemake.output.failures,
        cfg,
    )
