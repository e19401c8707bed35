# Shared set-up: config validation, the study (galmet.plan.Study: which models, ensembles, stores,
# the models of each figure, the CNN jobs' resources) and the paths the rules ask for.

import os
import sys
from pathlib import Path


def _galmet_root():
    """The folder of this workflow (Snakefile, resources/, src/), found from this file's own
    place while it is parsed: workflow.basedir is the folder of the *main* Snakefile, another
    workflow's when galmet runs as its module (`module galmet: snakefile: ...`). None for a
    module read from a remote source (then the galmet package must be installed)."""
    root = Path(workflow.current_basedir.get_path_or_uri(secret_free=True)).parents[1]
    return root if (root / "src" / "galmet").is_dir() else None


GALMET_ROOT = _galmet_root()

# The package lives in src/; make it importable by this process and by every job's script,
# also when a job runs elsewhere (SLURM re-reads this file on the compute node).
if GALMET_ROOT is not None:
    GALMET_SRC = str(GALMET_ROOT / "src")
    if GALMET_SRC not in sys.path:
        sys.path.insert(0, GALMET_SRC)
    os.environ.update(PYTHONPATH=os.pathsep.join(p for p in [GALMET_SRC, os.environ.get("PYTHONPATH", "")] if p))

# OpenMP threads that spin while waiting steal the cores of the jobs beside them: with torch's
# default, a training step next to another job ran 6x slower on 2 cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from snakemake.exceptions import WorkflowError  # noqa: E402

from galmet.captions import metric_numbers, read_json, resolution_lines, results_table, saliency_numbers  # noqa: E402
from galmet.config import ConfigError, check_inputs, validate_config  # noqa: E402
from galmet.names import (  # noqa: E402
    ANY_MODEL_PATTERN,
    ENSEMBLE_PATTERN,
    MODEL_PATTERN,
    parse_model_name,
)
from galmet.plan import Study  # noqa: E402
from galmet.targets import MASS, METALLICITY, REFERENCE_TARGET  # noqa: E402


def bundled(path):
    """`path`, or this workflow's own file of that name: a relative path that is not in the
    working directory but is in the workflow's folder (resources/demo/..., resources/reference/...)
    is taken from there, so the demo config runs from any --directory and as a module of another
    workflow. Every other path is left as given: relative paths resolve from the working
    directory, where results/ and the cutout cache are written."""
    if not path or os.path.isabs(path) or os.path.exists(path) or GALMET_ROOT is None:
        return path
    own = GALMET_ROOT / path
    return str(own) if own.exists() else path


def resolve_bundled(config):
    """The config's input paths through bundled(), in place (unchanged when they exist in the
    working directory, as in a run in the repository: the rules' params stay the same)."""
    cat, cut, split = config["catalog"], config["cutouts"], config["split"]
    cat["path"] = bundled(cat.get("path"))
    cat["mpajhu"] = {k: bundled(v) for k, v in (cat.get("mpajhu") or {}).items()}
    cut["local_dir"] = bundled(cut.get("local_dir"))
    split["force_test_ids"] = bundled(split.get("force_test_ids"))


try:
    validate_config(config)
    resolve_bundled(config)
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

from galmet.catalog import read_shard_index  # noqa: E402

SHARD_INDEX = "results/catalog/shards/index.json"


def catalog_inputs(wildcards):
    """The files the catalog is built from (so that editing them reruns the cleaning)."""
    c = config["catalog"]
    if c["source"] == "table":
        return {"table": c["path"]}
    if c["source"] == "mpajhu-fits":
        return {k: v for k, v in c["mpajhu"].items() if v}
    return {"table": "results/catalog/skyserver.parquet"}


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


def cutout_failures(wildcards):
    """Input function: results/cutouts/{shard}.failures.csv of every shard."""
    return expand("results/cutouts/{shard}.failures.csv", shard=shard_ids(wildcards))


# ---- helpers of images.smk ----


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
        return {
            "index": expand("results/images/{shard}/index.parquet", shard=shards),
            "store": expand("results/images/{shard}/{res}px.npy", shard=shards, res=res),
        }

    return _stores


def model_stores(wildcards):
    """Input function (to unpack): stores at the resolution of the {model} wildcard."""
    return stores(model_resolution(wildcards.model))(wildcards)


# ---- helpers of train.smk ----


def train_params(wildcards):
    """config `train`, with the arch and seed of the model being trained (from its name)."""
    parts = parse_model_name(wildcards.model)
    return {**config["train"], "arch": parts["arch"], "seed": parts["seed"]}


# ---- helpers of cutouts.smk and train.smk: the keys that say what the images are ----

from galmet.cutouts.base import PROVIDERS, get_provider  # noqa: E402

CUTOUTS = config["cutouts"]
# The cutout service (None for local images), with its default base URL and layer filled in.
CUTOUT_PROVIDER = (
    None
    if CUTOUTS["source"] == "local"
    else get_provider(CUTOUTS["source"], layer=CUTOUTS.get("layer"), base_url=CUTOUTS.get("base_url"))
)
# The resources of a download job: cutout_jobs=1 for any service, <name>_jobs=1 for the service
# downloading (skyserver_jobs, legacysurvey_jobs, ...: each registered one declared, 0 for the
# others), so `--resources skyserver_jobs=N` caps the jobs of one service; all 0 for local images.
CUTOUT_RESOURCES = {
    "cutout_jobs": int(CUTOUT_PROVIDER is not None),
    **{get_provider(name).resource: int(name == CUTOUTS["source"]) for name in PROVIDERS},
}


def image_params(*keys):
    """The cutouts keys `keys` that define the images, for a rule's params (a change reruns
    what it affects, nothing else): base_url resolved to the service's default, `layer` added
    for a service with layers, `local_dir` for local images (whose cutouts.json says what they
    are). A SkyServer run's params are what they were before there were several services."""
    out = {k: CUTOUTS.get(k) for k in keys}
    if "base_url" in out:
        out["base_url"] = CUTOUT_PROVIDER.base_url if CUTOUT_PROVIDER else None
    if CUTOUT_PROVIDER is not None and CUTOUT_PROVIDER.layers:
        out["layer"] = CUTOUT_PROVIDER.layer
    if CUTOUT_PROVIDER is None:
        out["local_dir"] = CUTOUTS.get("local_dir")
    return out


# ---- helpers of baselines.smk ----


def baseline_outputs():
    """results/baselines/{target}/{name}.json for every target and configured baseline."""
    return expand("results/baselines/{target}/{name}.json", target=TARGETS, name=STUDY.baseline_names)


# ---- figure files (reference.smk, figures.smk, mzr.smk) ----

# PNG always (the report shows it), then the other configured formats.
FIG_FORMATS = ["png", *(f for f in config["figures"]["formats"] if f != "png")]


def fig_files(stem):
    """The non-PNG files of a figure (PNG is the report's output)."""
    return [f"{stem}.{fmt}" for fmt in FIG_FORMATS[1:]]


def figure_files(stem):
    """Every file of a figure: the PNG, then fig_files(stem)."""
    return [f"{stem}.png", *fig_files(stem)]


# Caption params (Snakemake evaluates them before the inputs exist too: galmet.captions copes).
def caption_numbers(wildcards, input):
    return metric_numbers(input.metrics)


def caption_json(wildcards, input):
    return read_json(input.numbers)


def resolution_caption(wildcards, input):
    return resolution_lines(input.metrics, input.baselines, input.published)


def results_caption(wildcards, input):
    """The report's landing table (summary.rst, shown by workflow.rst)."""
    models = [{"target": t, "name": m} for t, m in STUDY.scored_models() + STUDY.ensembles()]
    metrics = list(input.metrics) + list(input.ensembles)
    return results_table(models, metrics, input.baselines, input.published, input.uncertainty)


# ---- helpers of reference.smk (the published predictions are of REFERENCE_TARGET only) ----


def reference_metrics():
    """results/reference/metrics/published-{res}px.json for every configured published file."""
    return [f"results/reference/metrics/published-{r}px.json" for r in STUDY.reference_resolutions]


def reference_outputs():
    """Every reference output: metrics, Figures 2 and 3 per resolution, overlap with this run."""
    out = list(reference_metrics())
    for r in STUDY.reference_resolutions:
        for fig in ("fig2_histograms", "fig3_scatter"):
            out += figure_files(f"results/reference/figures/published-{r}px/{fig}")
    out += [f"results/reference/overlap/{m}.json" for m in STUDY.overlap_models()]
    return out


def reference_path(res):
    """The published file at `res` px; a relative path not found in the working directory is
    taken from the workflow's own resources/ (so runs in another --directory find it)."""
    return bundled(config["reference"]["predictions"].format(res=int(res)))


def reference_csv(wildcards):
    return reference_path(wildcards.res)


def overlap_reference(wildcards):
    """The published file at the model's resolution, else the highest published one."""
    res = model_resolution(wildcards.model)
    return reference_path(res if res in STUDY.reference_resolutions else max(STUDY.reference_resolutions))


def published_beside(wildcards):
    """Input function of Figure 3: the published predictions at the model's resolution, for
    REFERENCE_TARGET at a resolution the reference has ([] otherwise)."""
    res = model_resolution(wildcards.model)
    if wildcards.target != REFERENCE_TARGET or res not in STUDY.reference_resolutions:
        return []
    return reference_path(res)


def published_metrics(wildcards):
    """Input function of Figure 4: the published metrics, for REFERENCE_TARGET only."""
    return reference_metrics() if wildcards.target == REFERENCE_TARGET else []


# ---- helpers of mzr.smk: the mass route and the MZR need both targets (galmet.targets) ----


def mzr_outputs():
    """Figures 5 and 6 and the binned MZR table of every model of STUDY.mzr_models()."""
    out = []
    for model in STUDY.mzr_models():
        out += figure_files(f"results/figures/mass/{model}/fig5_mass")
        out += figure_files(f"results/figures/mzr/{model}/fig6_mzr")
        out.append(f"results/tables/mzr/{model}.csv")
    return out


# ---- helpers of figures.smk ----


def figure_outputs():
    """Every figure the config asks for, plus the published reference's (reference_outputs())."""
    out = []
    for target, model in STUDY.models():
        for fig in ("fig1_examples", "fig2_histograms", "fig3_scatter", "domain"):
            out += figure_files(f"results/figures/{target}/{model}/{fig}")
    for target, ensemble in STUDY.ensembles():
        for fig in ("fig3_scatter", "calibration", "risk_coverage", "domain"):
            out += figure_files(f"results/figures/{target}/{ensemble}/{fig}")
    for target in TARGETS:
        out += figure_files(f"results/figures/{target}/fig4_resolution")
        out.append(f"results/tables/{target}/scatter_vs_resolution.csv")
    out += mzr_outputs()
    out += reference_outputs()
    return out


# ---- helpers of infer.smk ----

INFER = config["infer"]


def infer_required(key):
    """Input function: a path from config `infer`, with an error naming the key when unset."""

    def _get(wildcards):
        value = INFER.get(key)
        if not value:
            raise WorkflowError(
                f"config key infer.{key} is not set: `snakemake infer` needs infer.model (a model.pt) "
                "and infer.catalog (CSV/Parquet with objID [, path])"
            )
        return value

    return _get


def infer_cache_dir():
    """Where <objID>.jpg are looked for when neither the catalog nor infer.images_dir says."""
    from galmet.cutouts.download import config_cache_dir

    if CUTOUT_PROVIDER is None:
        return CUTOUTS.get("local_dir")
    return str(config_cache_dir(CUTOUTS))


# ---- helpers of saliency.smk ----


def saliency_outputs():
    """The maps, the checks and Figure 7 of every model of STUDY.saliency_models(); a model
    named by config saliency.models that this config does not train is skipped, with a
    warning."""
    unknown = STUDY.saliency_unknown()
    if unknown:
        print(
            f"saliency.models: {', '.join(unknown)} not among the models this config trains "
            "(targets x resolutions x seeds, and the ensemble): no saliency maps for them",
            file=sys.stderr,
        )
    out = []
    for target, model in STUDY.saliency_models():
        out += [
            f"results/saliency/{target}/{model}/saliency.npz",
            f"results/saliency/{target}/{model}/saliency_checks.json",
        ]
        out += figure_files(f"results/figures/{target}/{model}/fig7_saliency")
    return out


def saliency_caption(wildcards, input):
    return saliency_numbers(input.numbers)
