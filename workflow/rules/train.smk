# Training: one CNN per target x resolution x seed, each an independent GPU job.


rule train:
    """Train the CNN on the train split, choosing by the valid split (never the test split)."""
    input:
        unpack(stores("wildcard")),
        catalog="results/catalog/clean.parquet",
        split="results/split.parquet",
    output:
        model="results/models/{target}/{arch}-{res}px-seed{seed}/model.pt",
        log="results/models/{target}/{arch}-{res}px-seed{seed}/train_log.csv",
        curve=report(
            "results/models/{target}/{arch}-{res}px-seed{seed}/loss_curve.png",
            caption="../report/loss_curve.rst",
            category="Training",
            subcategory="{target}",
            labels={"model": "{arch}-{res}px-seed{seed}", "figure": "loss curve"},
        ),
    params:
        train=lambda wc: {**config["train"], "arch": wc.arch, "seed": int(wc.seed)},
        scale=config["cutouts"]["scale"],
        cutout_size=CUTOUT_SIZE,
        tta=config["predict"]["tta"],
    log:
        "results/logs/train/{target}/{arch}-{res}px-seed{seed}.log",
    benchmark:
        "results/benchmarks/train/{target}/{arch}-{res}px-seed{seed}.tsv"
    threads: 8  # capped at --cores on one machine
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=240,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/train.py"
