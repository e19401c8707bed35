"""The study a config asks for: its models, ensembles, stores, the models of each figure, and
the resources of the CNN jobs.

Everything here is decided from the validated config alone, without paths or Snakemake: the
workflow's ``common.smk`` builds one :class:`Study` and turns its answers into the files the
rules ask for. A model is ``(target, name)``, its name built by :mod:`galmet.names`.
"""

from __future__ import annotations

from galmet.backbones import saliency_layer
from galmet.config import GPU_DEVICE_FILES, gpu_jobs
from galmet.names import ensemble_name, model_name, parse_model_name
from galmet.targets import METALLICITY, REFERENCE_TARGET, has_mzr

__all__ = ["Study", "EXPLAIN_KEYS", "GPU_TRAIN_THREADS"]

# The keys of config `saliency` that are galmet.explain.ExplainSettings fields (its `tta` is
# config predict.tta): named here, not read off the dataclass, so that planning the workflow
# does not import torch (tests/test_plan.py checks the two agree).
EXPLAIN_KEYS = ("method", "layer", "ig_steps", "steps", "random_orders", "check_max", "seed", "batch_size")

# Threads of a training job: 8 with a GPU (Snakemake caps them at --cores; set-threads on SLURM),
# one on the CPU, so that as many trainings run side by side as there are cores: there (with
# OMP_WAIT_POLICY=PASSIVE, common.smk) two trainings side by side on one thread each finished
# 1.7x (64 px) to 2.2x (16 px) sooner than one after the other on both cores
# (benchmarks/cpu_training_threads.py, 2 cores).
GPU_TRAIN_THREADS = 8


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
