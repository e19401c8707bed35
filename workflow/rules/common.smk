# Shared set-up: config validation, paths, and the lists of models the workflow builds.

import json
import os
import re
import sys
from pathlib import Path

# The package lives in src/; make it importable by this process and by every job's script,
# also when a job runs elsewhere (SLURM re-reads this file on the compute node).
GALMET_SRC = str(Path(workflow.basedir) / "src")
if GALMET_SRC not in sys.path:
    sys.path.insert(0, GALMET_SRC)
os.environ.update(
    PYTHONPATH=os.pathsep.join(p for p in [GALMET_SRC, os.environ.get("PYTHONPATH", "")] if p)
)

# OpenMP threads that spin while waiting steal the cores of the jobs beside them: with torch's
# default, a training step next to another job ran 6x slower on 2 cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from snakemake.exceptions import WorkflowError  # noqa: E402

from galmet.config import ConfigError, validate_config  # noqa: E402

try:
    validate_config(config)
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None


CUTOUT_SIZE = min(config["cutouts"]["width"], config["cutouts"]["height"])
ARCH = config["train"]["arch"]
RESOLUTIONS = [int(r) for r in config["resolutions"]]
TARGETS = list(config["targets"])
SEEDS = [int(s) for s in config["seeds"]]


wildcard_constraints:
    shard=r"\d+",
    res=r"\d+",
    seed=r"\d+",
    target="|".join(TARGETS),
    arch=r"resnet\d+",
    model=r"resnet\d+-\d+px-seed\d+",


def model_name(arch, res, seed):
    return f"{arch}-{res}px-seed{seed}"


def all_models():
    """(target, model name) for every model the config asks for: targets x resolutions x seeds."""
    return [
        (t, model_name(ARCH, r, s)) for t in TARGETS for r in RESOLUTIONS for s in SEEDS
    ]


def model_outputs(pattern):
    """Expand a path pattern with {target} and {model} over every model."""
    return [pattern.format(target=t, model=m) for t, m in all_models()]


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

def store_resolutions():
    """Resolutions made by re-binning: every configured one except the cutout size itself."""
    return [r for r in RESOLUTIONS if r != CUTOUT_SIZE]


def all_stores(wildcards):
    """Input function: every shard's index and store at the cutout size and every resolution."""
    shards = shard_ids(wildcards)
    return expand("results/images/{shard}/index.parquet", shard=shards) + expand(
        "results/images/{shard}/{res}px.npy", shard=shards, res=sorted({CUTOUT_SIZE, *RESOLUTIONS})
    )


def stores(res):
    """Input function: the store at resolution `res` (int or wildcard name) of every shard."""

    def _stores(wildcards):
        r = wildcards.res if res == "wildcard" else res
        shards = shard_ids(wildcards)
        return {
            "index": expand("results/images/{shard}/index.parquet", shard=shards),
            "store": expand("results/images/{shard}/{res}px.npy", shard=shards, res=r),
        }

    return _stores


# ---- helpers of baselines.smk ----

BASELINE_NAMES = list(config["baselines"]["names"])


def baseline_outputs():
    """results/baselines/{target}/{name}.json for every target and configured baseline."""
    return expand(
        "results/baselines/{target}/{name}.json", target=TARGETS, name=BASELINE_NAMES
    )


# ---- helpers of reference.smk ----

REFERENCE_RES = [int(r) for r in config["reference"]["resolutions"]]


def reference_fig_files(stem):
    """The non-PNG files of a figure (as fig_files of figures.smk, which is included later)."""
    return [f"{stem}.{fmt}" for fmt in config["figures"]["formats"] if fmt != "png"]


def reference_metrics():
    """results/reference/metrics/published-{res}px.json for every configured published file."""
    return [f"results/reference/metrics/published-{r}px.json" for r in REFERENCE_RES]


def reference_outputs():
    """Every reference output: metrics, Figures 2 and 3 per resolution, overlap with this run."""
    out = list(reference_metrics())
    for r in REFERENCE_RES:
        for fig in ("fig2_histograms", "fig3_scatter"):
            stem = f"results/reference/figures/published-{r}px/{fig}"
            out += [f"{stem}.png", *reference_fig_files(stem)]
    if REFERENCE_RES and "oh_p50" in TARGETS:
        out += [f"results/reference/overlap/{m}.json" for t, m in all_models() if t == "oh_p50"]
    return out


def reference_path(res):
    """The published file at `res` px; a relative path not found in the working directory is
    taken from the workflow's own resources/ (so runs in another --directory find it)."""
    path = config["reference"]["predictions"].format(res=int(res))
    if not os.path.isabs(path) and not os.path.exists(path):
        bundled = os.path.join(workflow.basedir, path)
        if os.path.exists(bundled):
            return bundled
    return path


def reference_csv(wildcards):
    return reference_path(wildcards.res)


def overlap_reference(wildcards):
    """The published file at the model's resolution, else the highest published one."""
    res = model_resolution(wildcards.model)
    return reference_path(res if res in REFERENCE_RES else max(REFERENCE_RES))


# ---- helpers of figures.smk ----

MASS_TARGET, Z_TARGET = "lgm_tot_p50", "oh_p50"
# PNG always (the report shows it), then the other configured formats.
FIG_FORMATS = ["png", *(f for f in config["figures"]["formats"] if f != "png")]


def fig_files(stem):
    """The non-PNG files of a figure (PNG is the report's output)."""
    return [f"{stem}.{fmt}" for fmt in FIG_FORMATS[1:]]


def _read_json(path):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


def _fmt(x, digits=3):
    return "n/a" if x is None else f"{x:.{digits}f}"


def caption_numbers(path):
    """Numbers of a metrics JSON, formatted for a report caption ({} before it exists)."""
    m = _read_json(path)
    if not m:
        return {}
    out = {k: _fmt(m.get(k)) for k in ("rmse", "nmad", "nmad_about_zero", "median_residual")}
    out["n"] = m.get("n", "n/a")
    out["n_invalid"] = m.get("n_invalid", 0)
    for k in ("frac_pred_above_9p1", "frac_true_above_9p1"):
        v = m.get(k)
        out[k] = "n/a" if v is None else f"{100 * v:.1f}%"
    return out


def model_resolution(model):
    return int(re.fullmatch(r".+-(\d+)px-seed\d+", model).group(1))


def published_csv(res):
    """The published predictions at `res` px, or [] when the reference has none at it."""
    if int(res) in REFERENCE_RES:
        return reference_path(res)
    return []


def figure_outputs():
    """Every figure the config asks for, plus the published reference's (reference_outputs())."""
    out = []
    for target, model in all_models():
        for fig in ("fig1_examples", "fig2_histograms", "fig3_scatter"):
            out.append(f"results/figures/{target}/{model}/{fig}.png")
            out += fig_files(f"results/figures/{target}/{model}/{fig}")
    for target in TARGETS:
        out.append(f"results/figures/{target}/fig4_resolution.png")
        out += fig_files(f"results/figures/{target}/fig4_resolution")
        out.append(f"results/tables/{target}/scatter_vs_resolution.csv")
    if MASS_TARGET in TARGETS and Z_TARGET in TARGETS:
        # the catalog has stellar mass: the mass route (Fig. 5) and the predicted MZR (Fig. 6)
        for target, model in all_models():
            if target != Z_TARGET:
                continue
            for stem in (
                f"results/figures/mass/{model}/fig5_mass",
                f"results/figures/mzr/{model}/fig6_mzr",
            ):
                out += [f"{stem}.png", *fig_files(stem)]
            out.append(f"results/tables/mzr/{model}.csv")
    out.extend(reference_outputs())
    return out


def resolution_caption(wildcards, input):
    """One line per model, baseline and published file, for the Figure 4 caption."""
    lines = []
    for path in input.metrics:
        m = _read_json(path)
        name = Path(path).stem
        lines.append(f"{name}: RMSE {_fmt(m.get('rmse'))}, NMAD {_fmt(m.get('nmad'))} dex")
    for path in input.baselines:
        b = _read_json(path)
        if b.get("status") == "ok":
            t = b["test"]
            lines.append(
                f"baseline {b['name']}: RMSE {_fmt(t.get('rmse'))}, NMAD {_fmt(t.get('nmad'))} dex"
            )
        elif b:
            lines.append(f"baseline {b.get('name')}: skipped ({b.get('reason')})")
    for path in input.published:
        m = _read_json(path)
        lines.append(
            f"published {m.get('resolution', '?')} px: RMSE {_fmt(m.get('rmse'))}, "
            f"NMAD {_fmt(m.get('nmad'))} dex"
        )
    return lines


# ---- helpers of infer.smk ----

INFER = config["infer"]


INFER_PARTS = [f"{i:05d}" for i in range(int(INFER["shards"]))]


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
    from galmet.cutouts import cache_dir

    c = config["cutouts"]
    if c.get("source") == "local" and c.get("local_dir"):
        return c["local_dir"]
    return str(cache_dir(c.get("cache_dir", "resources/cutouts"), c["scale"], c["width"], c["height"]))
