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
    log:
        "results/logs/train/{target}/{model}.log",
    benchmark:
        "results/benchmarks/train/{target}/{model}.tsv"
    wildcard_constraints:
        model=MODEL_PATTERN,
    conda:
        "../../envs/torch.yaml"
    threads: STUDY.train_threads
    resources:
        gpu=STUDY.train_gpu,
        mem_mb=16000,
        runtime=240,
    params:
        res=model_part("resolution"),
        seed=model_part("seed"),
        train=train_params,
        tta=config["predict"]["tta"],
        domain_alpha=config["predict"]["domain_alpha"],
        images=image_params("source", "scale", "width", "height", "base_url"),
    script:
        "../scripts/train.py"


rule ensemble:
    """One model file of the members named by the ensemble's name, calibrated on the valid split
    (split conformal, galmet.ensemble): what `galmet predict --model` takes like a single model."""
    input:
        unpack(model_stores),
        members=ensemble_members,
        catalog="results/catalog/clean.parquet",
        split="results/split.parquet",
    output:
        model=MODEL_FILE,
    log:
        "results/logs/ensemble/{target}/{model}.log",
    benchmark:
        "results/benchmarks/ensemble/{target}/{model}.tsv"
    wildcard_constraints:
        model=ENSEMBLE_PATTERN,
    conda:
        "../../envs/torch.yaml"
    threads: 4
    resources:
        gpu=STUDY.predict_gpu,
        mem_mb=8000,
        runtime=60,
    params:
        names=lambda wildcards: STUDY.members(wildcards.model),
        tta=config["predict"]["tta"],
        batch_size=config["predict"]["batch_size"],
        chunk_size=config["predict"]["chunk_size"],
        device=config["predict"]["device"],
        reproducible=config["predict"]["reproducible"],
        domain_alpha=config["predict"]["domain_alpha"],
    script:
        "../scripts/ensemble.py"


rule survey:
    """The survey model of the {model} name's ensemble (galmet.survey): one network trained on the
    train split (config survey.labels: the measured values or the ensemble's predictions),
    calibrated on the valid split (split conformal, one width); one pass a galaxy, for
    `snakemake infer` on millions. Beside it, the
    galaxies/s of both models' forward passes on this machine, in survey.json with the provenance
    and the validation numbers."""
    input:
        unpack(model_stores),
        teacher=lambda wildcards: MODEL_FILE.format(target=wildcards.target, model=STUDY.teacher(wildcards.model)),
        catalog="results/catalog/clean.parquet",
        split="results/split.parquet",
    output:
        model=MODEL_FILE,
        log="results/models/{target}/{model}/train_log.csv",
        curve="results/models/{target}/{model}/loss_curve.png",
        report="results/models/{target}/{model}/survey.json",
    log:
        "results/logs/survey/{target}/{model}.log",
    benchmark:
        "results/benchmarks/survey/{target}/{model}.tsv"
    wildcard_constraints:
        model=SURVEY_PATTERN,
    conda:
        "../../envs/torch.yaml"
    threads: STUDY.train_threads
    resources:
        gpu=STUDY.train_gpu,
        mem_mb=16000,
        runtime=240,
    params:
        train=lambda wildcards: STUDY.survey_params(wildcards.model),
        teacher=lambda wildcards: STUDY.teacher(wildcards.model),
        labels=STUDY.survey_labels(),
        batch_size=config["predict"]["batch_size"],
        chunk_size=config["predict"]["chunk_size"],
        reproducible=config["predict"]["reproducible"],
        domain_alpha=config["predict"]["domain_alpha"],
        images=image_params("source", "scale", "width", "height", "base_url"),
    script:
        "../scripts/survey.py"
