"""Adapter: the ensemble's model file + stores + split -> the survey model (galmet.survey.train_survey)
and the galaxies/s of both on this machine (galmet.survey.throughput), in survey.json."""

import platform

import torch

from galmet.dataset import DataError, fingerprint, iter_split, load_split, require, split_members
from galmet.domain import DomainAlphaError
from galmet.io import write_json
from galmet.logs import job_errors, setup_logging
from galmet.model import resolve_device
from galmet.modelfile import images_block, load
from galmet.reproducible import for_prediction
from galmet.survey import throughput, train_survey
from galmet.tables import file_sha256
from galmet.targets import get_target
from galmet.train import MIN_TRAIN, TrainingError, TrainOutputs

log = setup_logging(snakemake.log[0])
inp, out, params = snakemake.input, snakemake.output, snakemake.params
if not params.train.get("num_threads"):  # 0: the job's threads (the rule's, capped at --cores)
    torch.set_num_threads(max(1, snakemake.threads))
target, device = snakemake.wildcards.target, params.train.get("device", "auto")

with job_errors(DataError, TrainingError, DomainAlphaError, log=log):
    mode = for_prediction(params.reproducible, evaluation=True)  # the teacher's labels: as it was calibrated
    dev = str(resolve_device(device))
    teacher, teacher_meta = load(inp.teacher, device=dev, reproducible=mode)
    members = split_members(inp.catalog, inp.split, inp.index, target)
    require(members, "train", MIN_TRAIN, "training (batch norm)",
            "results/cutouts/<shard>.failures.csv and results/images/<shard>/rejected.csv list them")
    train = load_split(members, "train", target, inp.index, inp.store)
    valid = load_split(members, "valid", target, inp.index, inp.store)
    log.info("the survey model of %s: one network, %d train galaxies (labels: %s), %d valid",
             params.teacher, len(train), params.labels, len(valid))
    made = train_survey(
        teacher, teacher_meta, train.x, train.y, valid.x, valid.y, params.train,
        TrainOutputs(model=out.model, log=out.log, curve=out.curve),
        meta={
            "target": target,
            "target_units": get_target(target).units_long,
            "seed": params.train["seed"],
            "domain_alpha": params.domain_alpha,
            "images": images_block(**params.images),
            "config_hash": fingerprint(params.train, params.images, params.labels),
            "data_hash": fingerprint(train.objid, train.y, valid.objid, valid.y),
        },
        labels=params.labels, valid_parts=iter_split(members, "valid", target, inp.index, inp.store, params.chunk_size),
        device=device, batch_size=params.batch_size, reproducible=mode,
        teacher_file={"name": params.teacher, "path": str(inp.teacher), "sha256": file_sha256(inp.teacher)},
    )
    survey, survey_meta = load(out.model, device=dev, reproducible=False)  # as galmet predict and infer run it
    teacher, teacher_meta = load(inp.teacher, device=dev, reproducible=False)
    rates = throughput({"survey": (survey, survey_meta, 1),
                        "ensemble": (teacher, teacher_meta, int(teacher_meta["calibration"]["tta"]))},
                       valid.x, batch_size=params.batch_size, device=dev)
    write_json({**made["survey"], "path": str(out.model), "throughput": {
        "galaxies_per_s": rates["survey"], "ensemble_galaxies_per_s": rates["ensemble"],
        "speedup": rates["survey"] / rates["ensemble"],
        "what": "forward passes on the validation galaxies' stored images (the compute ceiling of each "
                "prediction path; decoding JPEGs costs more: benchmarks/survey_speed.py), interleaved "
                "runs, median of 3",
        "device": str(dev), "threads": torch.get_num_threads(), "machine": platform.machine(),
        "processor": platform.processor() or None}}, out.report)
    log.info("survey model: %.1f galaxies/s against the ensemble's %.1f (%.1fx) on %s, %d threads",
             rates["survey"], rates["ensemble"], rates["survey"] / rates["ensemble"], dev, torch.get_num_threads())
