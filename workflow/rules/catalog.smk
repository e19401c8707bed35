# Catalog: read the configured source, clean it (the paper's cuts, always re-applied locally),
# and cut it into shards. The shards come out of a checkpoint whose declared output is only an
# index: Snakemake deletes a job's declared outputs before running it, so the shard files
# themselves are written by the checkpoint but not declared, and galmet.catalog.write_shards
# rewrites a shard file only when its rows change. An unchanged shard keeps its mtime, and
# nothing downstream of it reruns when the catalog grows elsewhere.

from galmet.catalog import read_shard_index  # noqa: E402

SHARD_INDEX = "results/catalog/shards/index.json"


def catalog_inputs(wildcards):
    """The files the catalog is built from (so that editing them reruns the cleaning)."""
    c = config["catalog"]
    if c["source"] == "table":
        return {"table": c["path"]}
    if c["source"] == "mpajhu-fits":
        return {k: v for k, v in c["mpajhu"].items() if v}
    return {"table": "results/catalog/skyserver.parquet"}


rule catalog_skyserver:
    """SQL against SDSS CAS (SpecObj x PhotoObj x galSpecInfo x galSpecExtra), paged and
    rate-capped. Needs the network: a local rule."""
    output:
        table="results/catalog/skyserver.parquet",
    params:
        skyserver=config["catalog"]["skyserver"],
        cuts=config["catalog"]["cuts"],
    log:
        "results/logs/catalog/skyserver.log",
    benchmark:
        "results/benchmarks/catalog/skyserver.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=240,
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/catalog_skyserver.py"


rule catalog_clean:
    """Source -> results/catalog/clean.parquet (int64 ids) + cleaning_report.json."""
    input:
        unpack(catalog_inputs),
    output:
        clean="results/catalog/clean.parquet",
        report="results/catalog/cleaning_report.json",
    params:
        catalog={k: v for k, v in config["catalog"].items() if k != "skyserver"},
    log:
        "results/logs/catalog/clean.log",
    benchmark:
        "results/benchmarks/catalog/clean.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/catalog_clean.py"


checkpoint catalog_shards:
    """clean.parquet -> results/catalog/shards/{shard}.parquet (stable hash of objID mod
    `shards`), rewritten only when their rows change; the index lists the shard ids."""
    input:
        clean="results/catalog/clean.parquet",
    output:
        index=SHARD_INDEX,
    params:
        shards=config["shards"],
    log:
        "results/logs/catalog/shards.log",
    benchmark:
        "results/benchmarks/catalog/shards.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/catalog_shards.py"


def shard_ids(wildcards):
    """Input-function helper: the shard ids ("0", "1", ...) once the checkpoint has run."""
    index = checkpoints.catalog_shards.get().output.index
    ids = read_shard_index(index)
    missing = [s for s in ids if not os.path.exists(f"results/catalog/shards/{s}.parquet")]
    if missing:
        raise WorkflowError(
            f"results/catalog/shards/{missing[0]}.parquet is missing ({len(missing)} shard(s)) "
            f"but {index} lists it; delete {index} to rebuild the shards"
        )
    return ids


def cutout_manifests(wildcards):
    """Input function: results/cutouts/{shard}.parquet of every shard."""
    return expand("results/cutouts/{shard}.parquet", shard=shard_ids(wildcards))


def cutout_failures(wildcards):
    """Input function: results/cutouts/{shard}.failures.csv of every shard."""
    return expand("results/cutouts/{shard}.failures.csv", shard=shard_ids(wildcards))
