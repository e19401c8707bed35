# The stellar-mass route and the mass-metallicity relation (docs/method.md, section 6, galmet.mzr): the
# numbers behind Figures 5 and 6, for every metallicity model when stellar mass is a target
# too (STUDY.mzr_models()). figures.smk draws the figures and quotes these files in their captions.


rule mass_route:
    """Z_MZR (Tremonti et al. 2004 of the predicted mass) against Z_true, beside the direct
    metallicity CNN and the scatter of the predicted mass."""
    input:
        mass=f"results/predictions/{MASS}/{{model}}.parquet",
        direct=f"results/predictions/{METALLICITY}/{{model}}.parquet",
        catalog="results/catalog/clean.parquet",
    output:
        "results/mzr/{model}/mass_route.json",
    log:
        "results/logs/mzr/{model}/mass_route.log",
    benchmark:
        "results/benchmarks/mzr/{model}/mass_route.tsv"
    conda:
        "../../envs/science.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/mzr_mass_route.py"


rule mzr:
    """The predicted and the measured MZR in 0.2 dex bins of true stellar mass, and their
    scatter about the Tremonti curve."""
    input:
        predictions=f"results/predictions/{METALLICITY}/{{model}}.parquet",
        catalog="results/catalog/clean.parquet",
    output:
        numbers="results/mzr/{model}/mzr.json",
        table=report(
            "results/tables/mzr/{model}.csv",
            caption="../report/mzr_table.rst",
            category="Tables",
            subcategory="mass-metallicity relation",
            labels={"model": "{model}", "table": "binned MZR"},
        ),
    log:
        "results/logs/mzr/{model}/mzr.log",
    benchmark:
        "results/benchmarks/mzr/{model}/mzr.tsv"
    conda:
        "../../envs/science.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/mzr_table.py"
