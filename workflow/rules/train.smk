# Training: one CNN per target x resolution x seed, each an independent GPU job. The {model}
# wildcard is the model's name (galmet.names); its arch, resolution and seed reach the script
# as params parsed from it.


rule train:
    """Train the CNN on the train split, choosing by the valid split (never the test split)."""
    input:
        unpack(model_stores),
        catalog="results/catalog/clean.parquet",
        split="results/split.parquet",
    output:
        model=MODEL_FILE,
        log="results/models/{target}/{model}/train_log.csv",
        curve=report(
            "results/models/{target}/{model}/loss_curve.png",
            caption="../report/loss_curve.rst",
            category="Training",
            subcategory="{target}",
            labels={"model": "{model}", "figure": "loss curve"},
        ),
    params:
        res=model_part("resolution"),
        seed=model_part("seed"),
        train=train_params,
        tta=config["predict"]["tta"],
        images={
            k: config["cutouts"].get(k) for k in ("source", "scale", "width", "height", "base_url")
        },
    log:
        "results/logs/train/{target}/{model}.log",
    benchmark:
        "results/benchmarks/train/{target}/{model}.tsv"
    threads: 8  # capped at --cores on one machine
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=240,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/train.py"
