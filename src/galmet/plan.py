"""The study a config asks for: its models, ensembles, stores, figures, the images' params, and
the resources of the CNN and download jobs; and the environment the workflow's jobs run in.

Everything here is decided from the validated config alone, without Snakemake: the workflow's
``common.smk`` builds one :class:`Study` and turns its answers into the files the rules ask for
(the package names figures by their parts under ``results/figures/``, never by a whole path).
A model is ``(target, name)``, its name built by :mod:`galmet.names`.
"""

from __future__ import annotations

import os
from pathlib import Path

from galmet.backbones import saliency_layer
from galmet.config import GPU_DEVICE_FILES, ConfigError, gpu_jobs
from galmet.cutouts.base import PROVIDERS, get_provider
from galmet.names import ensemble_name, model_name, parse_model_name, survey_name
from galmet.targets import METALLICITY, REFERENCE_TARGET, has_mzr

__all__ = ["Study", "EXPLAIN_KEYS", "GPU_TRAIN_THREADS", "MODEL_FIGURES", "ENSEMBLE_FIGURES",
           "REFERENCE_FIGURES", "job_environment", "bundled", "resolve_bundled"]

# The keys of config `saliency` that are galmet.explain.ExplainSettings fields (its `tta` is
# config predict.tta): named here, not read off the dataclass, so that planning the workflow
# does not import torch (tests/test_plan.py checks the two agree).
EXPLAIN_KEYS = ("method", "layer", "ig_steps", "steps", "random_orders", "check_max", "seed", "batch_size")

# Threads of a training job: 8 with a GPU (Snakemake caps them at --cores; set-threads on SLURM),
# one on the CPU, so that as many trainings run side by side as there are cores: there (with
# OMP_WAIT_POLICY=PASSIVE, job_environment) two trainings side by side on one thread each finished
# 1.7x (64 px) to 2.2x (16 px) sooner than one after the other on both cores
# (benchmarks/cpu_training_threads.py, 2 cores).
GPU_TRAIN_THREADS = 8

# The figures of each model of the study, of each ensemble, and of each published file (the
# outputs of figures.smk's and reference.smk's rules; tests/test_plan.py reads them there).
MODEL_FIGURES = ("fig1_examples", "fig2_histograms", "fig3_scatter", "domain")
ENSEMBLE_FIGURES = ("fig3_scatter", "calibration", "risk_coverage", "domain")
REFERENCE_FIGURES = ("fig2_histograms", "fig3_scatter")


def job_environment(environ, src: str | None) -> dict:
    """The variables to set in the workflow's process, inherited by every job's script (also on a
    SLURM node, which re-reads common.smk): ``src`` (galmet's source folder, None for an installed
    package) first on PYTHONPATH, and OMP_WAIT_POLICY=PASSIVE unless set. OpenMP threads that spin
    while waiting steal the cores of the jobs beside them: with torch's default, a training step
    next to another job ran 6x slower on 2 cores."""
    out = {} if "OMP_WAIT_POLICY" in environ else {"OMP_WAIT_POLICY": "PASSIVE"}
    path = [p for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if src is not None and src not in path:
        out["PYTHONPATH"] = os.pathsep.join([src, *path])
    return out


def bundled(path, root: Path | None):
    """``path``, or the workflow's own file of that name: a relative path that is not in the
    working directory but is in the workflow's folder ``root`` (resources/demo/...,
    resources/reference/...) is taken from there, so the demo config runs from any --directory
    and as a module of another workflow. Every other path is left as given: relative paths
    resolve from the working directory, where results/ and the cutout cache are written."""
    if not path or os.path.isabs(path) or os.path.exists(path) or root is None:
        return path
    own = Path(root) / path
    return str(own) if own.exists() else path


def resolve_bundled(config: dict, root: Path | None) -> None:
    """The config's input paths through :func:`bundled`, in place (unchanged when they exist in
    the working directory, as in a run in the repository: the rules' params stay the same)."""
    cat, cut, split = config["catalog"], config["cutouts"], config["split"]
    cat["path"] = bundled(cat.get("path"), root)
    cat["mpajhu"] = {k: bundled(v, root) for k, v in (cat.get("mpajhu") or {}).items()}
    cut["local_dir"] = bundled(cut.get("local_dir"), root)
    split["force_test_ids"] = bundled(split.get("force_test_ids"), root)


class Study:
    """What the validated ``config`` asks the workflow to build.

    ``device_files``: the files whose presence says this machine has a GPU
    (:func:`galmet.config.gpu_visible`); the CNN jobs' ``gpu`` resource and training threads
    follow from them and config ``train.device`` / ``predict.device``.
    """

    def __init__(self, config: dict, device_files=GPU_DEVICE_FILES):
        self.config = config
        self.arch = config["train"]["arch"]
        self.cutout_size = min(config["cutouts"]["width"], config["cutouts"]["height"])
        self.targets = list(config["targets"])
        self.resolutions = [int(r) for r in config["resolutions"]]
        self.seeds = [int(s) for s in config["seeds"]]
        self.ensemble = config.get("ensemble") or None
        self.baseline_names = list(config["baselines"]["names"])
        self.reference_resolutions = [int(r) for r in config["reference"]["resolutions"]]
        # gpu=1 where the job will use a GPU (--resources gpu=N: N CNN jobs at a time), else 0
        self.train_gpu = gpu_jobs(config["train"]["device"], device_files)
        self.predict_gpu = gpu_jobs(config["predict"]["device"], device_files)
        self.train_threads = GPU_TRAIN_THREADS if self.train_gpu else 1
        # PNG first (the report shows it), then the other configured formats
        self.figure_formats = ["png", *(f for f in config["figures"]["formats"] if f != "png")]
        cut = config["cutouts"]
        # the cutout service (None for local images), its default base URL and layer filled in
        self.cutout_provider = (None if cut["source"] == "local"
                                else get_provider(cut["source"], layer=cut.get("layer"), base_url=cut.get("base_url")))

    # ---- models ----

    def models(self) -> list[tuple[str, str]]:
        """The study's models, targets x resolutions x seeds (each with its own figures)."""
        return [(t, model_name(self.arch, r, s))
                for t in self.targets for r in self.resolutions for s in self.seeds]

    def ensembles(self) -> list[tuple[str, str]]:
        """The configured ensemble, one per target; [] without one."""
        if not self.ensemble:
            return []
        name = ensemble_name(self.arch, self.ensemble["resolution"], self.ensemble["seeds"])
        return [(t, name) for t in self.targets]

    def survey_models(self) -> list[tuple[str, str]]:
        """The survey model of each configured ensemble (config ``survey``); [] without one."""
        if self.config.get("survey") is None:
            return []
        return [(t, survey_name(e)) for t, e in self.ensembles()]

    def survey_params(self, model: str) -> dict:
        """Config ``train`` for the survey model ``model``: the members' recipe, seeded by the
        ensemble's first seed, with ``survey.cycles`` (when set) as its stage-2 cycles."""
        parts = parse_model_name(model)
        train = {**self.config["train"], "arch": parts["arch"], "seed": parts["seeds"][0]}
        cycles = (self.config.get("survey") or {}).get("cycles")
        if cycles:
            train["stage2"] = {**train.get("stage2", {}), "cycles": list(cycles)}
        return train

    def survey_labels(self) -> str:
        """What the survey models learn (config ``survey.labels``): ``measured`` or ``teacher``."""
        return (self.config.get("survey") or {}).get("labels") or "measured"

    @staticmethod
    def teacher(survey: str) -> str:
        """The ensemble a survey model stands in for (its teacher), from its name."""
        parts = parse_model_name(survey)
        return ensemble_name(parts["arch"], parts["resolution"], parts["seeds"])

    @staticmethod
    def members(ensemble: str) -> list[str]:
        """The model names of an ensemble's members, from its name."""
        parts = parse_model_name(ensemble)
        return [model_name(parts["arch"], parts["resolution"], s) for s in parts["seeds"]]

    def scored_models(self) -> list[tuple[str, str]]:
        """Every single model the summary scores: the study's models, then the ensemble members
        they lack (trained and scored, no figures of their own)."""
        models = self.models()
        members = [(t, m) for t, e in self.ensembles() for m in self.members(e)]
        return models + [tm for tm in dict.fromkeys(members) if tm not in models]

    def summary_models(self) -> list[dict]:
        """The models of the report's table, as summary.json lists them: :meth:`scored_models`,
        the ensembles, then the survey models, each ``{"target", "name"}``."""
        return [{"target": t, "name": m} for t, m in self.scored_models() + self.ensembles() + self.survey_models()]

    # ---- image stores ----

    def store_resolutions(self) -> list[int]:
        """The resolutions made by re-binning the cutouts: every configured one (the
        ensemble's too) except the cutout size itself."""
        ens = [int(self.ensemble["resolution"])] if self.ensemble else []
        return [r for r in dict.fromkeys(self.resolutions + ens) if r != self.cutout_size]

    def image_resolutions(self) -> list[int]:
        """Every resolution a store is kept at, ascending: the cutout size and
        store_resolutions(); what `snakemake images` builds."""
        return sorted({self.cutout_size, *self.store_resolutions()})

    # ---- the models of each kind of output ----

    def overlap_models(self) -> list[str]:
        """The models compared with the published predictions on the galaxies both scored:
        the study's REFERENCE_TARGET models, when there is a published file to compare with."""
        if not self.reference_resolutions or REFERENCE_TARGET not in self.targets:
            return []
        return [m for t, m in self.models() if t == REFERENCE_TARGET]

    def mzr_models(self) -> list[str]:
        """The metallicity models of Figures 5 and 6, the study's then the ensemble's (with its
        intervals); none unless stellar mass is a target too."""
        if not has_mzr(self.targets):
            return []
        return [m for t, m in self.models() + self.ensembles() if t == METALLICITY]

    def saliency_models(self) -> list[tuple[str, str]]:
        """The models named by config saliency.models that this config trains (the study's and
        the ensemble), in the study's order."""
        named = self.config["saliency"]["models"]
        return [(t, m) for t, m in self.models() + self.ensembles() if m in named]

    def saliency_unknown(self) -> list[str]:
        """The names in config saliency.models that this config does not train (no maps)."""
        built = {m for _, m in self.models() + self.ensembles()}
        return [m for m in self.config["saliency"]["models"] if m not in built]

    def explain_settings(self) -> dict:
        """The keyword arguments of galmet.explain.ExplainSettings for the saliency rule:
        config saliency, with the TTA of config predict (maps of what predict averages) and the
        layer ``auto`` resolved to the backbone's own (a rule's params name the layer used)."""
        saliency = self.config["saliency"]
        out = {**{k: saliency[k] for k in EXPLAIN_KEYS}, "tta": self.config["predict"]["tta"]}
        out["layer"] = saliency_layer(self.arch, out["layer"])
        return out

    def saliency_warning(self) -> str | None:
        """What the workflow says of saliency.models it does not train (None when all are)."""
        unknown = self.saliency_unknown()
        if not unknown:
            return None
        return (f"saliency.models: {', '.join(unknown)} not among the models this config trains "
                "(targets x resolutions x seeds, and the ensemble): no saliency maps for them")

    def train_params(self, model: str) -> dict:
        """Config ``train`` with the arch and seed of the single model ``model`` (from its name)."""
        parts = parse_model_name(model)
        return {**self.config["train"], "arch": parts["arch"], "seed": parts["seed"]}

    # ---- figures: each a tuple of its path's parts under results/figures/, without the format ----

    def figures(self) -> list[tuple[str, ...]]:
        """Every figure of this run (Figures 1-6, calibration, risk-coverage, domain); the
        published files' are :meth:`reference_figures`, Figure 7 :meth:`saliency_models`'."""
        out = [(t, m, fig) for t, m in self.models() for fig in MODEL_FIGURES]
        out += [(t, e, fig) for t, e in self.ensembles() for fig in ENSEMBLE_FIGURES]
        out += [(t, "fig4_resolution") for t in self.targets]
        return out + self.mzr_figures()

    def mzr_figures(self) -> list[tuple[str, ...]]:
        """Figures 5 (mass route) and 6 (MZR) of every model of :meth:`mzr_models`."""
        return [fig for m in self.mzr_models() for fig in (("mass", m, "fig5_mass"), ("mzr", m, "fig6_mzr"))]

    def reference_figures(self) -> list[tuple[str, str]]:
        """``(published-<res>px, figure)`` of every configured published file."""
        return [(f"published-{r}px", fig) for r in self.reference_resolutions for fig in REFERENCE_FIGURES]

    def figure_files(self, stem: str) -> list[str]:
        """Every file of the figure ``stem``: the PNG, then the other configured formats."""
        return [f"{stem}.{fmt}" for fmt in self.figure_formats]

    # ---- the published predictions (of REFERENCE_TARGET only) ----

    def overlap_resolution(self, res: int) -> int:
        """The published file a model at ``res`` px is compared with: the one at its resolution,
        else the highest published one."""
        return res if res in self.reference_resolutions else max(self.reference_resolutions)

    def published_beside(self, target: str, res: int) -> bool:
        """Whether Figure 3 of a model shows the published predictions beside its own: a
        REFERENCE_TARGET model at a resolution the reference has."""
        return target == REFERENCE_TARGET and res in self.reference_resolutions

    # ---- the images: their service, the download jobs' resources, the keys that define them ----

    def cutout_resources(self) -> dict[str, int]:
        """The resources of a download job: cutout_jobs=1 for any service, <name>_jobs=1 for the
        service downloading (each registered one declared, 0 for the others), so that
        ``--resources skyserver_jobs=N`` caps the jobs of one service; all 0 for local images."""
        source = self.config["cutouts"]["source"]
        return {"cutout_jobs": int(self.cutout_provider is not None),
                **{get_provider(name).resource: int(name == source) for name in PROVIDERS}}

    def image_params(self, *keys: str) -> dict:
        """The cutouts keys ``keys`` that define the images, for a rule's params (a change reruns
        what it affects, nothing else): base_url resolved to the service's default, ``layer``
        added for a service with layers, ``local_dir`` for local images (whose cutouts.json says
        what they are). A SkyServer run's params hold no layer (SkyServer has none)."""
        cut, provider = self.config["cutouts"], self.cutout_provider
        out = {k: cut.get(k) for k in keys}
        if "base_url" in out:
            out["base_url"] = provider.base_url if provider else None
        if provider is not None and provider.layers:
            out["layer"] = provider.layer
        if provider is None:
            out["local_dir"] = cut.get("local_dir")
        return out

    def cutout_cache_dir(self) -> str | None:
        """Where ``<objID>.jpg`` are looked for when neither an inference catalog nor
        infer.images_dir says: the local folder, or the download service's cache."""
        from galmet.cutouts.download import config_cache_dir

        cut = self.config["cutouts"]
        return cut.get("local_dir") if self.cutout_provider is None else str(config_cache_dir(cut))

    def infer_input(self, key: str) -> str:
        """The path config ``infer.<key>`` names; ConfigError naming the key when it is unset."""
        value = self.config["infer"].get(key)
        if not value:
            raise ConfigError(f"config key infer.{key} is not set: `snakemake infer` needs infer.model "
                              "(a model.pt) and infer.catalog (CSV/Parquet with objID [, path])")
        return value

    def catalog_files(self) -> dict | None:
        """The files the catalog is built from (editing one reruns the cleaning); None for the
        SkyServer search, whose table the workflow writes itself."""
        cat = self.config["catalog"]
        if cat["source"] == "table":
            return {"table": cat["path"]}
        if cat["source"] == "mpajhu-fits":
            return {k: v for k, v in cat["mpajhu"].items() if v}
        return None
