"""Adapter: a model's domain block + the test split's full-size cutouts -> domain_p of the test
galaxies as observed and shifted (galmet.domain.shift_check)."""

from galmet.dataset import load_split, split_members
from galmet.domain import shift_check
from galmet.io import write_json
from galmet.logs import setup_logging
from galmet.modelfile import read_meta

log = setup_logging(snakemake.log[0])
inp, params, target = snakemake.input, snakemake.params, snakemake.wildcards.target
block = read_meta(inp.model).get("domain")
if block is None:
    raise SystemExit(f"{inp.model} has no applicability-domain block: retrain it with this galmet")
members = split_members(inp.catalog, inp.split, inp.index, target)
test = load_split(members, "test", target, inp.index, inp.store)
check = shift_check(block, test.x, params.alpha, seed=params.seed)
write_json({"model": snakemake.wildcards.model, "objID": [int(i) for i in test.objid], **check}, snakemake.output[0])
for name, s in check["sets"].items():
    log.info("%s: %d of %d flagged (domain_p < %g)", name, s["flagged"], s["n"], params.alpha)
