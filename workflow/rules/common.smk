# Shared set-up: the config validated, the study it asks for (galmet.plan.Study decides the models,
# stores, figures, image params and job resources) and the paths the rules ask for, from its answers.

import os
import sys
from pathlib import Path


def _galmet_root():
    """This workflow's folder (Snakefile, resources/, src/) from this file's own place, not
    workflow.basedir (the *main* Snakefile's: another workflow's when galmet is its module).
    None for a module read from a remote source (then galmet must be installed)."""
    root = Path(workflow.current_basedir.get_path_or_uri(secret_free=True)).parents[1]
    return root if (root / "src" / "galmet").is_dir() else None


GALMET_ROOT = _galmet_root()
# src/ importable here, before the first `import galmet`; the jobs' environment: galmet.plan
GALMET_SRC = None if GALMET_ROOT is None else str(GALMET_ROOT / "src")
if GALMET_SRC is not None and GALMET_SRC not in sys.path:
    sys.path.insert(0, GALMET_SRC)

from snakemake.exceptions import WorkflowError  # noqa: E402

from galmet.catalog import read_shard_index  # noqa: E402
from galmet.captions import metric_numbers, read_json, resolution_lines, results_table, saliency_numbers  # noqa: E402
from galmet.config import ConfigError, check_inputs, validate_config  # noqa: E402
from galmet.names import (
    ANY_MODEL_PATTERN,
    ENSEMBLE_PATTERN,
    MODEL_PATTERN,
    SURVEY_PATTERN,
    parse_model_name,
)  # noqa: E402
from galmet.plan import Study, bundled, job_environment, resolve_bundled  # noqa: E402
from galmet.targets import MASS, METALLICITY, REFERENCE_TARGET  # noqa: E402

os.environ.update(job_environment(os.environ, GALMET_SRC))

try:
    validate_config(config)
    resolve_bundled(config, GALMET_ROOT)
    check_inputs(config)
except ConfigError as exc:
    # one message naming the config files, without Snakemake's traceback lines
    files = ", ".join(map(str, workflow.overwrite_configfiles)) or os.path.abspath("config.yaml")
    print(f"galmet: {files}: {exc}", file=sys.stderr)
    sys.exit(1)


# What the config asks for, decided once (galmet.plan); the functions below make it paths.
STUDY = Study(config)
CUTOUT_SIZE = STUDY.cutout_size
TARGETS = STUDY.targets
CUTOUT_RESOURCES = STUDY.cutout_resources()
image_params = STUDY.image_params


wildcard_constraints:
    shard=r"\d+",
    res=r"\d+",
    target="|".join(TARGETS),
    model=ANY_MODEL_PATTERN,


# The trained model file: written by train, read by predict, listed in the summary.
MODEL_FILE = "results/models/{target}/{model}/model.pt"


def model_outputs(pattern):
    """Expand a path pattern with {target} and {model} over every model of the study."""
    return [pattern.format(target=t, model=m) for t, m in STUDY.models()]


def ensemble_members(wildcards):
    """Input function: the model files of the {model} ensemble's members."""
    return [MODEL_FILE.format(target=wildcards.target, model=m) for m in STUDY.members(wildcards.model)]


def model_resolution(model):
    """The input resolution (px) of a model, from its name."""
    return parse_model_name(model)["resolution"]


def model_part(key):
    """Params function: one part ("arch", "resolution" or "seed") of the {model} wildcard."""
    return lambda wildcards: parse_model_name(wildcards.model)[key]


# ---- helpers of catalog.smk ----

SHARD_INDEX = "results/catalog/shards/index.json"


def catalog_inputs(wildcards):
    """The files the catalog is built from (so that editing them reruns the cleaning)."""
    files = STUDY.catalog_files()
    return {"table": "results/catalog/skyserver.parquet"} if files is None else files


def shard_ids(wildcards):
    """Input-function helper: the shard ids ("0", "1", ...) once the checkpoint has run."""
    index = checkpoints.catalog_shards.get().output.index
    ids = read_shard_index(index)
    missing = [s for s in ids if not os.path.exists(f"results/catalog/shards/{s}.parquet")]
    if missing:
        raise WorkflowError(
            f"results/catalog/shards/{missing[0]}.parquet is missing ({len(missing)} shard(s)) "
            f"but {index} lists it; delete {index} to rebuild the shards"
        )
    return ids


def cutout_manifests(wildcards):
    """Input function: results/cutouts/{shard}.parquet of every shard."""
    return expand("results/cutouts/{shard}.parquet", shard=shard_ids(wildcards))


def all_stores(wildcards):
    """Input function: every shard's index and its store at every resolution of the study,
    the ensemble's included (STUDY.image_resolutions())."""
    shards = shard_ids(wildcards)
    return expand("results/images/{shard}/index.parquet", shard=shards) + expand(
        "results/images/{shard}/{res}px.npy", shard=shards, res=STUDY.image_resolutions()
    )


def stores(res):
    """Input function (to unpack): the index and the store at `res` px of every shard."""

    def _stores(wildcards):
        shards = shard_ids(wildcards)
        index = expand("results/images/{shard}/index.parquet", shard=shards)
        return {"index": index, "store": expand("results/images/{shard}/{res}px.npy", shard=shards, res=res)}

    return _stores


def model_stores(wildcards):
    """Input function (to unpack): stores at the resolution of the {model} wildcard."""
    return stores(model_resolution(wildcards.model))(wildcards)


# ---- helpers of train.smk and baselines.smk ----

train_params = lambda wildcards: STUDY.train_params(wildcards.model)


def baseline_outputs():
    """results/baselines/{target}/{name}.json for every target and configured baseline."""
    return expand("results/baselines/{target}/{name}.json", target=TARGETS, name=STUDY.baseline_names)


# ---- figure files (reference.smk, figures.smk, mzr.smk, saliency.smk) ----

# every file of a figure: the PNG (the report's output), then the other configured formats
figure_files = STUDY.figure_files
fig_files = lambda stem: figure_files(stem)[1:]


def figures_of(parts):
    """Every file of the figures with these parts under results/figures/ (STUDY.figures())."""
    return [f for p in parts for f in figure_files("results/figures/" + "/".join(p))]


def figure_outputs():
    """Every figure the config asks for (STUDY.figures()), the tables of Figures 4 and 6, and
    the published reference's outputs (reference_outputs())."""
    tables = [f"results/tables/{t}/scatter_vs_resolution.csv" for t in TARGETS]
    tables += [f"results/tables/mzr/{m}.csv" for m in STUDY.mzr_models()]
    return figures_of(STUDY.figures()) + tables + reference_outputs()


# Caption params (Snakemake evaluates them before the inputs exist too: galmet.captions copes).
caption_numbers = lambda wildcards, input: metric_numbers(input.metrics)
caption_json = lambda wildcards, input: read_json(input.numbers)
resolution_caption = lambda wildcards, input: resolution_lines(input.metrics, input.baselines, input.published)
saliency_caption = lambda wildcards, input: saliency_numbers(input.numbers)


def results_caption(wildcards, input):
    """The report's landing table (summary.rst, shown by workflow.rst)."""
    metrics = list(input.metrics) + list(input.ensembles) + list(input.surveys)
    uncertainty = list(input.uncertainty) + list(input.survey_uncertainty)
    return results_table(STUDY.summary_models(), metrics, input.baselines, input.published, uncertainty)


# ---- helpers of reference.smk (the published predictions are of REFERENCE_TARGET only) ----


def reference_metrics():
    """results/reference/metrics/published-{res}px.json for every configured published file."""
    return [f"results/reference/metrics/published-{r}px.json" for r in STUDY.reference_resolutions]


def reference_outputs():
    """Every reference output: metrics, Figures 2 and 3 per resolution, overlap with this run."""
    out = list(reference_metrics())
    for folder, fig in STUDY.reference_figures():
        out += figure_files(f"results/reference/figures/{folder}/{fig}")
    return out + [f"results/reference/overlap/{m}.json" for m in STUDY.overlap_models()]


def reference_path(res):
    """The published file at `res` px (a relative path not in the working directory is the
    workflow's own, galmet.plan.bundled)."""
    return bundled(config["reference"]["predictions"].format(res=int(res)), GALMET_ROOT)


reference_csv = lambda wildcards: reference_path(wildcards.res)


def overlap_reference(wildcards):
    """The published file the {model} is compared with (STUDY.overlap_resolution)."""
    return reference_path(STUDY.overlap_resolution(model_resolution(wildcards.model)))


def published_beside(wildcards):
    """Input function of Figure 3: the published predictions beside the model's, [] without."""
    res = model_resolution(wildcards.model)
    return reference_path(res) if STUDY.published_beside(wildcards.target, res) else []


def published_metrics(wildcards):
    """Input function of Figure 4: the published metrics, for REFERENCE_TARGET only."""
    return reference_metrics() if wildcards.target == REFERENCE_TARGET else []


# ---- helpers of infer.smk ----

INFER = config["infer"]


# input function: a path from config `infer` (an error naming the key when it is unset)
infer_required = lambda key: lambda wildcards: STUDY.infer_input(key)
infer_cache_dir = STUDY.cutout_cache_dir


# ---- helpers of saliency.smk ----


def saliency_outputs():
    """The maps, the checks and Figure 7 of every model of STUDY.saliency_models(); a model
    named by config saliency.models that this config does not train is skipped, with a
    warning."""
    if STUDY.saliency_warning():
        print(STUDY.saliency_warning(), file=sys.stderr)
    out = []
    for target, model in STUDY.saliency_models():
        folder = f"results/saliency/{target}/{model}"
        out += [f"{folder}/saliency.npz", f"{folder}/saliency_checks.json"]
        out += figure_files(f"results/figures/{target}/{model}/fig7_saliency")
    return out
