"""Adapter: model + one shard of the inference catalog -> its predictions (galmet.infer)."""

import torch

from galmet.domain import DomainAlphaError
from galmet.infer import predict_shard
from galmet.logs import job_errors, setup_logging
from galmet.modelfile import load
from galmet.reproducible import for_prediction

log = setup_logging(snakemake.log[0])
params = snakemake.params
torch.set_num_threads(max(1, snakemake.threads))
model, meta = load(snakemake.input.model, device=params.device,
                   reproducible=for_prediction(params.reproducible, evaluation=False))
device = str(next(model.parameters()).device)
with job_errors(DomainAlphaError, log=log):  # an alpha the model cannot reach: the message names the smallest
    stats = predict_shard(snakemake.input.shard, model, meta, snakemake.output.predictions,
                          skipped_path=snakemake.output.skipped, tta=params.tta, batch_size=params.batch_size,
                          chunk_size=params.chunk_size, device=device,
                          allow_survey_mismatch=params.allow_survey_mismatch, model_path=snakemake.input.model,
                          alpha=params.domain_alpha, max_pixels=params.max_pixels)
threads = torch.get_num_threads()
log.info("shard %s on %s, %d thread%s: %d galaxies, %d predicted, %d skipped, %.1f s (%.0f images/s)",
         snakemake.input.shard, device, threads, "s" * (threads > 1), stats["n_in"], stats["n_predicted"],
         stats["n_skipped"], stats["seconds"], stats["n_in"] / max(stats["seconds"], 1e-9))
