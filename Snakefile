# galmet: gas-phase metallicity of galaxies from SDSS images (Wu & Boada 2019, MNRAS 484, 4683).
#   snakemake --cores 2 --resources gpu=1                 the demo (config.yaml)
#   snakemake --configfile configs/paper.yaml --cores 16 --resources gpu=1
# The stages live in workflow/rules/, the science in src/galmet/ (see DEVELOPING.md).

import os
import sys

from snakemake.utils import min_version

min_version("9.0")


# A config file is a whole run: with `--configfile X` the run is X (the schema's defaults fill
# what X leaves out, and X must name its experiments), never X merged over the demo's
# config.yaml; several files after one --configfile are merged in order (`--configfile config.yaml
# my.yaml` overrides the demo key by key; a second --configfile flag replaces the first). Without
# --configfile: config.yaml of the working directory, the demo.
if not workflow.overwrite_configfiles and not workflow.modifier.skip_configfile:
    if not os.path.exists("config.yaml"):
        sys.exit(
            f"galmet: no config.yaml in the working directory {os.getcwd()} and no --configfile given; "
            f"give one, e.g. --configfile {workflow.basedir}/config.yaml for the demo, "
            f"--configfile {workflow.basedir}/configs/paper.yaml for the paper's run"
        )

    configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/catalog.smk"
include: "workflow/rules/cutouts.smk"
include: "workflow/rules/images.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/baselines.smk"
include: "workflow/rules/reference.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/mzr.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/infer.smk"
include: "workflow/rules/saliency.smk"


rule all:
    input:
        "results/summary.json",
        # the model files the README tells users to predict with: rebuilt by a plain rerun
        model_outputs(MODEL_FILE),
        figure_outputs(),
        saliency_outputs(),
