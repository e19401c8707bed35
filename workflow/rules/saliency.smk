# Saliency maps (galmet.explain, captum) of the test split for the models named by config
# `saliency.models`, with their sanity checks (randomisation, deletion), the central-share
# statement, and Figure 7. Called by rule all: saliency_outputs().


rule saliency:
    """Signed saliency maps of one model's test galaxies (TTA as rule predict), with the checks
    that make them evidence: model randomisation, deletion against random orders, and the
    central share of the metal-poor and metal-rich thirds (timed, in the checks JSON)."""
    input:
        unpack(model_stores),
        model=MODEL_FILE,
        catalog="results/catalog/clean.parquet",
        split="results/split.parquet",
    output:
        maps="results/saliency/{target}/{model}/saliency.npz",
        checks=report(
            "results/saliency/{target}/{model}/saliency_checks.json",
            caption="../report/saliency_checks.rst",
            category="Saliency",
            subcategory="{target}",
            labels={"model": "{model}", "file": "sanity checks"},
        ),
    log:
        "results/logs/saliency/{target}/{model}.log",
    benchmark:
        "results/benchmarks/saliency/{target}/{model}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 4
    resources:
        gpu=STUDY.predict_gpu,
        mem_mb=4000,
        runtime=120,
    params:
        settings=STUDY.explain_settings(),
        device=config["predict"]["device"],
        reproducible=config["predict"]["reproducible"],
    script:
        "../scripts/saliency.py"


rule figure_saliency:
    """Figure 7: the categories of Figure 1 with the saliency magnitude beside each cutout; the
    caption quotes the sanity checks."""
    input:
        unpack(stores(CUTOUT_SIZE)),
        maps="results/saliency/{target}/{model}/saliency.npz",
        numbers="results/saliency/{target}/{model}/saliency_checks.json",
        predictions="results/predictions/{target}/{model}.parquet",
    output:
        png=report(
            "results/figures/{target}/{model}/fig7_saliency.png",
            caption="../report/fig7_saliency.rst",
            category="Figures",
            subcategory="{target}",
            labels={"model": "{model}", "figure": "7 saliency"},
        ),
        others=fig_files("results/figures/{target}/{model}/fig7_saliency"),
    log:
        "results/logs/figures/{target}/{model}/fig7_saliency.log",
    benchmark:
        "results/benchmarks/figures/{target}/{model}/fig7_saliency.tsv"
    conda:
        "../../envs/science.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        numbers=saliency_caption,
        examples=config["figures"]["examples"],
    script:
        "../scripts/figure_saliency.py"
