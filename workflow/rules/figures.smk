# Figures 1-6 of docs/method.md, section 7 (galmet.figures), each marked for the report with a caption
# that quotes its numbers (read from the metrics and mzr.smk's JSON by galmet.captions).
# Called by rule all:  figure_outputs() -> every figure file (this run's and the published
# reference's).


rule figure_examples:
    """Figure 1: real test cutouts (highest-resolution store) with Z_pred and Z_true."""
    input:
        unpack(stores(CUTOUT_SIZE)),
        predictions="results/predictions/{target}/{model}.parquet",
    output:
        png=report(
            "results/figures/{target}/{model}/fig1_examples.png",
            caption="../report/fig1_examples.rst",
            category="Figures",
            subcategory="{target}",
            labels={"model": "{model}", "figure": "1 example cutouts"},
        ),
        others=fig_files("results/figures/{target}/{model}/fig1_examples"),
    log:
        "results/logs/figures/{target}/{model}/fig1_examples.log",
    benchmark:
        "results/benchmarks/figures/{target}/{model}/fig1_examples.tsv"
    conda:
        "../../envs/science.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
    params:
        examples=config["figures"]["examples"],
        seed=config["figures"]["seed"],
    script:
        "../scripts/figure_examples.py"


rule figure_histograms:
    """Figure 2: histograms of the true and predicted values (Freedman-Diaconis bins)."""
    input:
        predictions="results/predictions/{target}/{model}.parquet",
        metrics="results/metrics/{target}/{model}.json",
    output:
        png=report(
            "results/figures/{target}/{model}/fig2_histograms.png",
            caption="../report/fig2_histograms.rst",
            category="Figures",
            subcategory="{target}",
            labels={"model": "{model}", "figure": "2 histograms"},
        ),
        others=fig_files("results/figures/{target}/{model}/fig2_histograms"),
    log:
        "results/logs/figures/{target}/{model}/fig2_histograms.log",
    benchmark:
        "results/benchmarks/figures/{target}/{model}/fig2_histograms.tsv"
    conda:
        "../../envs/science.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        numbers=caption_numbers,
    script:
        "../scripts/figure_histograms.py"


rule figure_scatter:
    """Figure 3: predicted against true, binned RMSE/NMAD, residual inset (published beside)."""
    input:
        predictions="results/predictions/{target}/{model}.parquet",
        metrics="results/metrics/{target}/{model}.json",
        published=published_beside,
    output:
        png=report(
            "results/figures/{target}/{model}/fig3_scatter.png",
            caption="../report/fig3_scatter.rst",
            category="Figures",
            subcategory="{target}",
            labels={"model": "{model}", "figure": "3 predicted vs true"},
        ),
        others=fig_files("results/figures/{target}/{model}/fig3_scatter"),
    log:
        "results/logs/figures/{target}/{model}/fig3_scatter.log",
    benchmark:
        "results/benchmarks/figures/{target}/{model}/fig3_scatter.tsv"
    conda:
        "../../envs/science.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        bin_width=config["evaluate"]["bin_width"],
        numbers=caption_numbers,
        intervals=lambda wildcards: "seeds" in parse_model_name(wildcards.model),  # read by the caption
    script:
        "../scripts/figure_scatter.py"


rule figure_resolution:
    """Figure 4 and its table: test RMSE and NMAD against resolution, beside the baselines."""
    input:
        metrics=lambda wc: [f"results/metrics/{t}/{m}.json" for t, m in STUDY.models() if t == wc.target],
        baselines=lambda wc: expand(
            "results/baselines/{target}/{name}.json", target=wc.target, name=STUDY.baseline_names
        ),
        published=published_metrics,
    output:
        png=report(
            "results/figures/{target}/fig4_resolution.png",
            caption="../report/fig4_resolution.rst",
            category="Figures",
            subcategory="{target}",
            labels={"model": "all", "figure": "4 scatter vs resolution"},
        ),
        others=fig_files("results/figures/{target}/fig4_resolution"),
        table=report(
            "results/tables/{target}/scatter_vs_resolution.csv",
            caption="../report/scatter_table.rst",
            category="Tables",
            subcategory="{target}",
            labels={"model": "all", "table": "scatter vs resolution"},
        ),
    log:
        "results/logs/figures/{target}/fig4_resolution.log",
    benchmark:
        "results/benchmarks/figures/{target}/fig4_resolution.tsv"
    conda:
        "../../envs/science.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        lines=resolution_caption,
    script:
        "../scripts/figure_resolution.py"


rule figure_mass:
    """Figure 5: predicted against true stellar mass; Z_MZR (Tremonti) against Z_true. The
    caption quotes the numbers of rule mass_route."""
    input:
        mass=f"results/predictions/{MASS}/{{model}}.parquet",
        direct=f"results/predictions/{METALLICITY}/{{model}}.parquet",
        catalog="results/catalog/clean.parquet",
        numbers="results/mzr/{model}/mass_route.json",
    output:
        png=report(
            "results/figures/mass/{model}/fig5_mass.png",
            caption="../report/fig5_mass.rst",
            category="Figures",
            subcategory="stellar mass",
            labels={"model": "{model}", "figure": "5 mass route"},
        ),
        others=fig_files("results/figures/mass/{model}/fig5_mass"),
    log:
        "results/logs/figures/mass/{model}/fig5_mass.log",
    benchmark:
        "results/benchmarks/figures/mass/{model}/fig5_mass.tsv"
    conda:
        "../../envs/science.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        numbers=caption_json,
    script:
        "../scripts/figure_mass.py"


rule figure_mzr:
    """Figure 6: Z_pred (and Z_true) against true stellar mass, 0.2 dex bins. The caption
    quotes the numbers of rule mzr."""
    input:
        predictions=f"results/predictions/{METALLICITY}/{{model}}.parquet",
        catalog="results/catalog/clean.parquet",
        numbers="results/mzr/{model}/mzr.json",
    output:
        png=report(
            "results/figures/mzr/{model}/fig6_mzr.png",
            caption="../report/fig6_mzr.rst",
            category="Figures",
            subcategory="mass-metallicity relation",
            labels={"model": "{model}", "figure": "6 MZR"},
        ),
        others=fig_files("results/figures/mzr/{model}/fig6_mzr"),
    log:
        "results/logs/figures/mzr/{model}/fig6_mzr.log",
    benchmark:
        "results/benchmarks/figures/mzr/{model}/fig6_mzr.tsv"
    conda:
        "../../envs/science.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        numbers=caption_json,
    script:
        "../scripts/figure_mzr.py"


rule figure_calibration:
    """A calibrated ensemble's intervals on the test split: observed against nominal coverage
    with the binomial band, and the PIT histogram (galmet.uncertainty numbers)."""
    input:
        numbers="results/uncertainty/{target}/{model}.json",
    output:
        png=report(
            "results/figures/{target}/{model}/calibration.png",
            caption="../report/calibration.rst",
            category="Uncertainty",
            subcategory="{target}",
            labels={"model": "{model}", "figure": "calibration and PIT"},
        ),
        others=fig_files("results/figures/{target}/{model}/calibration"),
    log:
        "results/logs/figures/{target}/{model}/calibration.log",
    benchmark:
        "results/benchmarks/figures/{target}/{model}/calibration.tsv"
    conda:
        "../../envs/science.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        numbers=caption_json,
    script:
        "../scripts/figure_uncertainty.py"


rule figure_risk_coverage:
    """RMSE of the most confident fraction of the test galaxies against that fraction."""
    input:
        numbers="results/uncertainty/{target}/{model}.json",
    output:
        png=report(
            "results/figures/{target}/{model}/risk_coverage.png",
            caption="../report/risk_coverage.rst",
            category="Uncertainty",
            subcategory="{target}",
            labels={"model": "{model}", "figure": "risk-coverage"},
        ),
        others=fig_files("results/figures/{target}/{model}/risk_coverage"),
    log:
        "results/logs/figures/{target}/{model}/risk_coverage.log",
    benchmark:
        "results/benchmarks/figures/{target}/{model}/risk_coverage.tsv"
    conda:
        "../../envs/science.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        numbers=caption_json,
    script:
        "../scripts/figure_uncertainty.py"


rule figure_domain:
    """domain_p of the test galaxies beside their shifted copies, and the prediction against it."""
    input:
        numbers="results/domain/{target}/{model}.json",
        predictions="results/predictions/{target}/{model}.parquet",
    output:
        png=report(
            "results/figures/{target}/{model}/domain.png",
            caption="../report/domain.rst",
            category="Applicability domain",
            subcategory="{target}",
            labels={"model": "{model}", "figure": "domain_p"},
        ),
        others=fig_files("results/figures/{target}/{model}/domain"),
    log:
        "results/logs/figures/{target}/{model}/domain.log",
    benchmark:
        "results/benchmarks/figures/{target}/{model}/domain.tsv"
    conda:
        "../../envs/science.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        numbers=caption_json,
    script:
        "../scripts/figure_domain.py"
