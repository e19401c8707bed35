# The published predictions of Wu & Boada (2019) through the same evaluation and figures as this
# run (docs/method.md, section 6), so the report shows "published" beside "this run".
# Called by figure_outputs():  reference_outputs(), reference_metrics().


rule reference_evaluate:
    """galmet.metrics on a published predictions file (the paper: RMSE 0.085, NMAD 0.067 dex at 128 px)."""
    input:
        reference_csv,
    output:
        "results/reference/metrics/published-{res}px.json",
    log:
        "results/logs/reference/evaluate-{res}px.log",
    benchmark:
        "results/benchmarks/reference/evaluate-{res}px.tsv"
    conda:
        "../../envs/science.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        bin_width=config["evaluate"]["bin_width"],
    script:
        "../scripts/reference_evaluate.py"


rule reference_histograms:
    """Figure 2 of the published predictions."""
    input:
        predictions=reference_csv,
        metrics="results/reference/metrics/published-{res}px.json",
    output:
        png=report(
            "results/reference/figures/published-{res}px/fig2_histograms.png",
            caption="../report/fig2_histograms.rst",
            category="Published (Wu & Boada 2019)",
            labels={"model": "published {res} px", "figure": "2 histograms"},
        ),
        others=fig_files("results/reference/figures/published-{res}px/fig2_histograms"),
    log:
        "results/logs/reference/fig2-{res}px.log",
    benchmark:
        "results/benchmarks/reference/fig2-{res}px.tsv"
    conda:
        "../../envs/science.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        target=REFERENCE_TARGET,
        title=lambda wc: f"Published predictions, {wc.res} px (Wu & Boada 2019)",
        numbers=caption_numbers,
    script:
        "../scripts/figure_histograms.py"


rule reference_scatter:
    """Figure 3 of the published predictions."""
    input:
        predictions=reference_csv,
        metrics="results/reference/metrics/published-{res}px.json",
    output:
        png=report(
            "results/reference/figures/published-{res}px/fig3_scatter.png",
            caption="../report/fig3_scatter.rst",
            category="Published (Wu & Boada 2019)",
            labels={"model": "published {res} px", "figure": "3 predicted vs true"},
        ),
        others=fig_files("results/reference/figures/published-{res}px/fig3_scatter"),
    log:
        "results/logs/reference/fig3-{res}px.log",
    benchmark:
        "results/benchmarks/reference/fig3-{res}px.tsv"
    conda:
        "../../envs/science.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        target=REFERENCE_TARGET,
        bin_width=config["evaluate"]["bin_width"],
        title=lambda wc: f"Published predictions, {wc.res} px (Wu & Boada 2019)",
        numbers=caption_numbers,
    script:
        "../scripts/figure_scatter.py"


rule reference_overlap:
    """This run's test predictions against the published ones on the galaxies both scored."""
    input:
        predictions=f"results/predictions/{REFERENCE_TARGET}/{{model}}.parquet",
        published=overlap_reference,
    output:
        report(
            "results/reference/overlap/{model}.json",
            caption="../report/reference_overlap.rst",
            category="Published (Wu & Boada 2019)",
            labels={"model": "{model}", "figure": "overlap with the published test set"},
        ),
    log:
        "results/logs/reference/overlap-{model}.log",
    benchmark:
        "results/benchmarks/reference/overlap-{model}.tsv"
    conda:
        "../../envs/science.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        numbers=lambda wildcards, output: read_json(output[0]),  # the caption of this JSON itself
    script:
        "../scripts/reference_overlap.py"
