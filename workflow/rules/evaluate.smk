# Evaluation: predict the test split with TTA (one job per model), score it, and gather the summary.


rule predict:
    """Predict the test split of one model with test-time augmentation, reading every shard's
    store in chunks: one job per model (a job per shard paid the start-up many times over)."""
    input:
        unpack(model_stores),
        model=MODEL_FILE,
        catalog="results/catalog/clean.parquet",
        split="results/split.parquet",
    output:
        "results/predictions/{target}/{model}.parquet",
    log:
        "results/logs/predict/{target}/{model}.log",
    benchmark:
        "results/benchmarks/predict/{target}/{model}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 4
    resources:
        gpu=STUDY.predict_gpu,
        mem_mb=4000,
        runtime=120,
    params:
        # the TTA is the model file's (predict.tta when it was trained: changing it retrains)
        batch_size=config["predict"]["batch_size"],
        chunk_size=config["predict"]["chunk_size"],
        device=config["predict"]["device"],
        reproducible=config["predict"]["reproducible"],
        domain_alpha=config["predict"]["domain_alpha"],
        which="test",
    script:
        "../scripts/predict_split.py"


rule evaluate:
    """RMSE, NMAD, median residual and binned statistics of one model's test predictions."""
    input:
        "results/predictions/{target}/{model}.parquet",
    output:
        "results/metrics/{target}/{model}.json",
    log:
        "results/logs/evaluate/{target}/{model}.log",
    benchmark:
        "results/benchmarks/evaluate/{target}/{model}.tsv"
    conda:
        "../../envs/science.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        bin_width=config["evaluate"]["bin_width"],
        domain_alpha=config["predict"]["domain_alpha"],
    script:
        "../scripts/evaluate.py"


rule uncertainty:
    """Coverage and width of a calibrated model's intervals on the test split, the PIT,
    coverage in bins of the truth and the risk-coverage curve (galmet.uncertainty)."""
    input:
        predictions="results/predictions/{target}/{model}.parquet",
        model=MODEL_FILE,
    output:
        "results/uncertainty/{target}/{model}.json",
    log:
        "results/logs/uncertainty/{target}/{model}.log",
    benchmark:
        "results/benchmarks/uncertainty/{target}/{model}.tsv"
    conda:
        "../../envs/science.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        bin_width=config["evaluate"]["bin_width"],
    script:
        "../scripts/uncertainty.py"


rule summary:
    """results/summary.json: every model's, ensemble's, survey model's and baseline's test metrics in one file."""
    input:
        metrics=[f"results/metrics/{t}/{m}.json" for t, m in STUDY.scored_models()],
        ensembles=[f"results/metrics/{t}/{m}.json" for t, m in STUDY.ensembles()],
        uncertainty=[f"results/uncertainty/{t}/{m}.json" for t, m in STUDY.ensembles()],
        surveys=[f"results/metrics/{t}/{m}.json" for t, m in STUDY.survey_models()],
        survey_uncertainty=[f"results/uncertainty/{t}/{m}.json" for t, m in STUDY.survey_models()],
        survey_reports=[f"results/models/{t}/{m}/survey.json" for t, m in STUDY.survey_models()],
        baselines=baseline_outputs(),
        # for the report's results table only: the published scores beside this run's
        published=reference_metrics() if REFERENCE_TARGET in TARGETS else [],
    output:
        report(
            "results/summary.json",
            caption="../report/summary.rst",
            category="Summary",
            labels={"table": "summary.json"},
        ),
    log:
        "results/logs/summary.log",
    benchmark:
        "results/benchmarks/summary.tsv"
    conda:
        "../../envs/science.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        models=[
            {"target": t, "name": m, "path": MODEL_FILE.format(target=t, model=m)} for t, m in STUDY.scored_models()
        ],
        ensembles=[
            {
                "target": t,
                "name": m,
                "resolution": model_resolution(m),
                "members": STUDY.members(m),
                "path": MODEL_FILE.format(target=t, model=m),
            }
            for t, m in STUDY.ensembles()
        ],
        surveys=[
            {
                "target": t,
                "name": m,
                "resolution": model_resolution(m),
                "teacher": STUDY.teacher(m),
                "path": MODEL_FILE.format(target=t, model=m),
            }
            for t, m in STUDY.survey_models()
        ],
        table=results_caption,
    script:
        "../scripts/summary.py"


rule domain_check:
    """The applicability-domain test on the test split: domain_p of the test galaxies as observed
    and of the same cutouts shifted (band order reversed, 2x larger or smaller, blank sky, noise,
    grayscale, JPEG quality 10, a pasted neighbour), with the fraction flagged (galmet.domain)."""
    input:
        unpack(stores(CUTOUT_SIZE)),
        model=MODEL_FILE,
        catalog="results/catalog/clean.parquet",
        split="results/split.parquet",
    output:
        "results/domain/{target}/{model}.json",
    log:
        "results/logs/domain_check/{target}/{model}.log",
    benchmark:
        "results/benchmarks/domain_check/{target}/{model}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        alpha=config["predict"]["domain_alpha"],
        seed=config["split"]["seed"],
    script:
        "../scripts/domain_check.py"
