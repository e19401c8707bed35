# Images: decode each shard's cutouts once into a uint8 store and re-bin it to every resolution.


rule pack_images:
    """Decode the shard's JPEGs once into an N x W x W x 3 uint8 store."""
    input:
        manifest="results/cutouts/{shard}.parquet",
    output:
        index="results/images/{shard}/index.parquet",
        store=f"results/images/{{shard}}/{CUTOUT_SIZE}px.npy",
        rejected="results/images/{shard}/rejected.csv",
    log:
        "results/logs/pack_images/{shard}.log",
    benchmark:
        "results/benchmarks/pack_images/{shard}.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        size=CUTOUT_SIZE,
        max_pixels=config["cutouts"]["max_pixels"],
    script:
        "../scripts/pack_images.py"


rule rebin_images:
    """Block-average the full-resolution store down to `res` pixels."""
    input:
        store=f"results/images/{{shard}}/{CUTOUT_SIZE}px.npy",
    output:
        store="results/images/{shard}/{res}px.npy",
    log:
        "results/logs/rebin_images/{shard}-{res}px.log",
    benchmark:
        "results/benchmarks/rebin_images/{shard}-{res}px.tsv"
    wildcard_constraints:
        res="|".join(str(r) for r in STUDY.store_resolutions()) or "NONE",
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        res=lambda wc: int(wc.res),
    script:
        "../scripts/rebin_images.py"


rule images:
    """Target for the data stage alone (catalog, cutouts, stores, split): `snakemake images`."""
    input:
        all_stores,
        "results/split.parquet",
    localrule: True
