# Survey-scale inference: a trained model applied to a catalog of any size (config `infer:`).
#   snakemake infer --configfile my_infer.yaml [--profile profiles/slurm]
# catalog -> shards of contiguous rows -> one prediction job per shard (gpu=1 when
# infer.gpu) -> results/infer/predictions.<infer.format> (objID, prediction, model, galmet_version;
# parquet by default, or csv, fits, ecsv, vot: units and provenance through galmet.tables).
# Per-shard outputs make a run resumable; each job streams in chunks (galmet.infer).
# The shards are Snakemake's scatter "infer": items 1-of-N ... N-of-N, N = infer.shards (or
# --set-scatter infer=N); scatter/gather list them in that order, which is the catalog's.


scattergather:
    infer=int(INFER["shards"]),


rule infer_split:
    """Cut the inference catalog into infer.shards shards of contiguous rows (objID, path)."""
    input:
        catalog=infer_required("catalog"),
    output:
        scatter.infer("results/infer/shards/{scatteritem}.parquet"),
    log:
        "results/logs/infer/split.log",
    benchmark:
        "results/benchmarks/infer/split.tsv"
    conda:
        "../../envs/science.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        images_dir=INFER["images_dir"],
        cache_dir=infer_cache_dir(),
    script:
        "../scripts/infer_split.py"


rule infer_shard:
    """Predict one shard, streaming its images in chunks of infer.chunk_size; first the
    cutouts.json of each image folder is checked against the model's training images."""
    input:
        model=infer_required("model"),
        shard="results/infer/shards/{scatteritem}.parquet",
    output:
        predictions="results/infer/parts/{scatteritem}.parquet",
        skipped="results/infer/parts/{scatteritem}.skipped.csv",
    log:
        "results/logs/infer/shard-{scatteritem}.log",
    benchmark:
        "results/benchmarks/infer/shard-{scatteritem}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 4
    resources:
        gpu=1 if INFER["gpu"] else 0,
        mem_mb=4000,
        runtime=120,
    params:
        tta=INFER["tta"],
        batch_size=INFER["batch_size"],
        chunk_size=INFER["chunk_size"],
        device=INFER["device"],
        reproducible=config["predict"]["reproducible"],
        allow_survey_mismatch=INFER["allow_survey_mismatch"],
        domain_alpha=INFER["domain_alpha"],  # null: the model file's
        max_pixels=config["cutouts"]["max_pixels"],
    script:
        "../scripts/infer_predict.py"


rule infer:
    """One table (infer.format) of every shard's predictions: objID, prediction, model, galmet_version."""
    input:
        model=infer_required("model"),
        parts=gather.infer("results/infer/parts/{scatteritem}.parquet"),
    output:
        f"results/infer/predictions.{INFER['format']}",
    log:
        "results/logs/infer/gather.log",
    benchmark:
        "results/benchmarks/infer/gather.tsv"
    conda:
        "../../envs/science.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        model_name=INFER["model_name"],
    script:
        "../scripts/infer_gather.py"
