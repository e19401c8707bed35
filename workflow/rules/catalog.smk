# Catalog: read the configured source, clean it (the paper's cuts, always re-applied locally),
# cut it into shards, and assign every clean galaxy to train / valid / test (rule split, from
# the catalog alone). The shards come out of a checkpoint whose declared output is only an
# index: Snakemake deletes a job's declared outputs before running it, so the shard files
# themselves are written by the checkpoint but not declared, and galmet.catalog.write_shards
# rewrites a shard file only when its rows change. An unchanged shard keeps its mtime, and
# nothing downstream of it reruns when the catalog grows elsewhere.


rule catalog_skyserver:
    """SQL against SDSS CAS (SpecObj x PhotoObj x galSpecInfo x galSpecExtra), paged and
    rate-capped. Needs the network: a local rule."""
    output:
        table="results/catalog/skyserver.parquet",
    log:
        "results/logs/catalog/skyserver.log",
    benchmark:
        "results/benchmarks/catalog/skyserver.tsv"
    localrule: config["local_download"]  # needs the network (see cutouts.smk)
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=240,
    params:
        skyserver=config["catalog"]["skyserver"],
        cuts=config["catalog"]["cuts"],
    script:
        "../scripts/catalog_skyserver.py"


rule catalog_clean:
    """Source -> results/catalog/clean.parquet (int64 ids) + cleaning_report.json."""
    input:
        unpack(catalog_inputs),
    output:
        clean="results/catalog/clean.parquet",
        report="results/catalog/cleaning_report.json",
    log:
        "results/logs/catalog/clean.log",
    benchmark:
        "results/benchmarks/catalog/clean.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        catalog={k: v for k, v in config["catalog"].items() if k != "skyserver"},
    script:
        "../scripts/catalog_clean.py"


checkpoint catalog_shards:
    """clean.parquet -> results/catalog/shards/{shard}.parquet (stable hash of objID mod
    `shards`), rewritten only when their rows change; the index lists the shard ids."""
    input:
        clean="results/catalog/clean.parquet",
    output:
        index=SHARD_INDEX,
    log:
        "results/logs/catalog/shards.log",
    benchmark:
        "results/benchmarks/catalog/shards.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        shards=config["shards"],
    script:
        "../scripts/catalog_shards.py"


rule split:
    """Stable seeded train / valid / test assignment of every clean galaxy."""
    input:
        catalog="results/catalog/clean.parquet",
        force_test=config["split"]["force_test_ids"] or [],
    output:
        split="results/split.parquet",
    log:
        "results/logs/split.log",
    benchmark:
        "results/benchmarks/split.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        seed=config["split"]["seed"],
        fractions=config["split"]["fractions"],
    script:
        "../scripts/split.py"
