# Evaluation: predict the test split with TTA (per shard), score it, and gather the summary.


rule predict:
    """Predict the test-split galaxies of one shard with test-time augmentation."""
    input:
        model=MODEL_FILE,
        index="results/images/{shard}/index.parquet",
        store=model_shard_store,
        catalog="results/catalog/clean.parquet",
        split="results/split.parquet",
    output:
        temp("results/predictions/{target}/{model}/shard-{shard}.parquet"),
    params:
        tta=config["predict"]["tta"],
        batch_size=config["predict"]["batch_size"],
        device=config["predict"]["device"],
        which="test",
    log:
        "results/logs/predict/{target}/{model}/shard-{shard}.log",
    benchmark:
        "results/benchmarks/predict/{target}/{model}/shard-{shard}.tsv"
    threads: 4
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=60,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/predict_split.py"


rule gather_predictions:
    """One table of test-split predictions per model: objID, truth, prediction."""
    input:
        lambda wc: expand(
            "results/predictions/{{target}}/{{model}}/shard-{shard}.parquet", shard=shard_ids(wc)
        ),
    output:
        "results/predictions/{target}/{model}.parquet",
    log:
        "results/logs/gather_predictions/{target}/{model}.log",
    benchmark:
        "results/benchmarks/gather_predictions/{target}/{model}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/science.yaml"
    script:
        "../scripts/gather_tables.py"


rule evaluate:
    """RMSE, NMAD, median residual and binned statistics of one model's test predictions."""
    input:
        "results/predictions/{target}/{model}.parquet",
    output:
        "results/metrics/{target}/{model}.json",
    params:
        bin_width=config["evaluate"]["bin_width"],
    log:
        "results/logs/evaluate/{target}/{model}.log",
    benchmark:
        "results/benchmarks/evaluate/{target}/{model}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/science.yaml"
    script:
        "../scripts/evaluate.py"


rule summary:
    """results/summary.json: every model's and baseline's test metrics in one file."""
    input:
        metrics=model_outputs("results/metrics/{target}/{model}.json"),
        baselines=baseline_outputs(),
    output:
        report(
            "results/summary.json",
            caption="../report/summary.rst",
            category="Summary",
            labels={"table": "summary.json"},
        ),
    params:
        models=[
            {"target": t, "name": m, "path": MODEL_FILE.format(target=t, model=m)}
            for t, m in all_models()
        ],
    log:
        "results/logs/summary.log",
    benchmark:
        "results/benchmarks/summary.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../../envs/science.yaml"
    script:
        "../scripts/summary.py"
