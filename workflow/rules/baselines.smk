# Baselines on the CNN's own split (docs/method.md, section 6): constant, random forests on gri / ugriz.
# Called by rule all / rule summary:  baseline_outputs() -> every baseline JSON.


rule baseline:
    """One baseline for one target: fit on train (hyperparameters chosen on valid), score on test.
    Skipped with the reason in the JSON when the catalog lacks the columns."""
    input:
        catalog="results/catalog/clean.parquet",
        split="results/split.parquet",
    output:
        result="results/baselines/{target}/{name}.json",
        predictions="results/baselines/{target}/{name}.parquet",
    log:
        "results/logs/baseline/{target}/{name}.log",
    benchmark:
        "results/benchmarks/baseline/{target}/{name}.tsv"
    wildcard_constraints:
        name="|".join(STUDY.baseline_names) or "NONE",
    conda:
        "../../envs/science.yaml"
    threads: lambda wc: 1 if wc.name == "constant" else 4
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        baselines=config["baselines"],
        bin_width=config["evaluate"]["bin_width"],
    script:
        "../scripts/baselines.py"
