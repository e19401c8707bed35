# Cutouts: one job per catalog shard. A cutout service (galmet.cutouts.base.PROVIDERS: skyserver,
# legacysurvey, ...) downloads (threads, retries, validation: galmet.cutouts) into the persistent
# cache of that service, layer and geometry (resources/cutouts/<scale>-<W>x<H>/ for SkyServer,
# resources/cutouts/<service>[-<layer>]-<scale>-<W>x<H>/ for the others), which gets a cutouts.json saying
# what its images are, and request only what is not cached; source `local` takes <objID>.jpg
# from cutouts.local_dir. Each job writes the manifest of the shard's good cutouts and the list
# of its failures.
#
# Only the keys that change the images reach the rule through params (a changed timeout or
# concurrency must not redo every shard); the network settings are read from the config by
# the script. Compute nodes usually lack internet: the download rules are local rules. Several
# shards download at once when --cores allows; `--resources cutout_jobs=N` caps how many
# (`<service>_jobs=N`, e.g. `skyserver_jobs=N`, for that service alone: CUTOUT_RESOURCES in
# common.smk; each job runs cutouts.concurrency connections at up
# to cutouts.max_requests_per_second). With config local_download the download rules (this one
# and catalog_skyserver) are local rules: the rule's `localrule:` directive, which Snakemake also
# applies to the renamed rules of a module (a `localrules:` list would name rules that a module
# renames, and be lost).


rule cutouts:
    """Shard -> results/cutouts/{shard}.parquet (objID, path of each good JPEG) and
    results/cutouts/{shard}.failures.csv (objID, reason, attempts)."""
    input:
        shard="results/catalog/shards/{shard}.parquet",
    output:
        manifest="results/cutouts/{shard}.parquet",
        failures="results/cutouts/{shard}.failures.csv",
    log:
        "results/logs/cutouts/{shard}.log",
    benchmark:
        "results/benchmarks/cutouts/{shard}.tsv"
    localrule: config["local_download"]
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        **CUTOUT_RESOURCES,
        mem_mb=1000,
        runtime=240,
    params:
        images=image_params("source", "local_dir", "cache_dir", "scale", "width", "height"),
    script:
        "../scripts/cutouts.py"
