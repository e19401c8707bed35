"""The workflow on a real single-node SLURM (Debian's slurm-wlm + munge, one fake GPU).

`pytest -m slurm` (root, `apt-get install slurm-wlm munge`). Skipped on a machine without
them, but failed in CI (CI=true), where these tests must run. The cluster is started once per
session and its daemons are stopped at the end (tests/slurm_cluster.py).

What is proved:
* a toy workflow: every non-local job goes through sbatch (job ids in snakemake's log, in
  squeue, and in the per-job SLURM logs); the `train` rule (gpu=1) is submitted on the `gpu`
  partition with a GPU and its command sees CUDA_VISIBLE_DEVICES; `localrules` chosen by the
  config key `local_download` run on the submit host;
* the real workflow on a tiny config through `snakemake --profile profiles/slurm`: the same,
  for the real rules, and its outputs equal a local run's (same files, predictions within 1e-4).
"""

from __future__ import annotations

import atexit
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import DEMO, ROOT, skip_or_fail
from tests.slurm_cluster import SlurmCluster, SlurmError, missing_requirements

pytestmark = pytest.mark.slurm

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
SLURM_PROFILE = ROOT / "profiles" / "slurm"
LOCAL_PROFILE = ROOT / "profiles" / "local"
# Sandbox-only overrides of the site profile: no slurmdbd here (so squeue, not sacct), a short
# first status check, and the per-job SLURM logs kept so that the test can read them.
SANDBOX_ARGS = [
    "--slurm-status-command", "squeue",
    "--slurm-init-seconds-before-status-checks", "2",
    "--slurm-keep-successful-logs",
]
TOY_TIMEOUT = 300
WORKFLOW_TIMEOUT = 1200

SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (\S+?)\)\.")
SBATCH_CALL = re.compile(r"sbatch call: (sbatch .*)")
RULE_HEADER = re.compile(r"^(local)?(?:rule|checkpoint) (\w+):\n(?:(?:    .*)\n)*?    jobid: (\d+)$", re.M)

# Every Python process of a run appends what it saw to $GALMET_ENV_PROBE: the proof of which
# environment (SLURM job, step, CUDA_VISIBLE_DEVICES) the rule's own code ran in.
SITECUSTOMIZE = '''
import json, os, sys
_probe = os.environ.get("GALMET_ENV_PROBE")
if _probe:
    with open(_probe, "a") as _f:
        _f.write(json.dumps({
            "pid": os.getpid(),
            "argv": sys.argv,
            "SLURM_JOB_ID": os.environ.get("SLURM_JOB_ID"),
            "SLURM_STEP_ID": os.environ.get("SLURM_STEP_ID"),
            "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }) + "\\n")
'''


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def slurm():
    missing = missing_requirements()
    if missing:
        skip_or_fail("no single-node SLURM possible here: " + "; ".join(missing))
    cluster = SlurmCluster()
    atexit.register(cluster.stop)  # also on an interrupted session
    try:
        cluster.start(timeout=90)
    except SlurmError as exc:
        pytest.fail(f"could not start SLURM:\n{exc}")
    yield cluster
    subprocess.run(["scancel", "--full", "-u", "root"], capture_output=True, timeout=30)
    cluster.stop()


@pytest.fixture
def probe(tmp_path):
    """(env for a run, path of the probe file)."""
    site = tmp_path / "probe_site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    out = tmp_path / "env_probe.jsonl"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(site), env.get("PYTHONPATH", "")] if p)
    env["GALMET_ENV_PROBE"] = str(out)
    for var in list(env):
        if var.startswith(("SLURM_", "SBATCH_", "SRUN_")):
            env.pop(var)
    return env, out


# ------------------------------------------------------------------------------ helpers
def run_snakemake(args: list[str], workdir: Path, log: Path, timeout: float, env=None, cluster=None):
    """Run snakemake with a hard time limit; on timeout kill it and cancel its SLURM jobs."""
    cmd = [SNAKEMAKE, *args, "--directory", str(workdir)]
    t0 = time.monotonic()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                cwd=workdir, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            if cluster is not None:
                subprocess.run(["scancel", "--full", "-u", "root"], capture_output=True, timeout=30)
            pytest.fail(f"snakemake ran over {timeout:.0f} s: {' '.join(cmd)}\n{_tail(log)}"
                        + (f"\n{cluster.logs()}" if cluster is not None else ""))
    text = log.read_text(errors="replace")
    if rc != 0:
        extra = "".join(f"\n--- {p}\n{_tail(p)}" for p in _failed_logs(text))
        pytest.fail(f"snakemake failed ({rc}) after {time.monotonic() - t0:.0f} s: "
                    f"{' '.join(cmd)}\n{_tail(log)}{extra}")
    return text


def _tail(path: Path, n: int = 60) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError as exc:
        return f"({exc})"


def _failed_logs(text: str) -> list[str]:
    return sorted(set(re.findall(r"(?:log: |Log file: )(\S+\.log)", text)))[-3:]


def parse_run(text: str) -> dict:
    """Jobs of a snakemake log: rule and locality per job id, and the SLURM submissions."""
    jobs = {int(j): (rule, bool(local)) for local, rule, j in RULE_HEADER.findall(text)}
    submitted = {int(j): (sid, logf) for j, sid, logf in SUBMITTED.findall(text)}
    calls = SBATCH_CALL.findall(text)
    return {"jobs": jobs, "submitted": submitted, "calls": calls}


def squeue_states(job_ids) -> dict[str, str]:
    """State of each job id as squeue still lists it (MinJobAge keeps finished jobs)."""
    p = subprocess.run(["squeue", "-h", "-t", "all", "-j", ",".join(job_ids), "-o", "%i %T %P %b"],
                       capture_output=True, text=True, timeout=30)
    out = {}
    for line in p.stdout.splitlines():
        fields = line.split()
        if fields:
            out[fields[0]] = " ".join(fields[1:])
    return out


def scontrol_job(job_id: str) -> str:
    p = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=30)
    return p.stdout


def read_probe(path: Path) -> list[dict]:
    import json

    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def assert_all_through_sbatch(run: dict, local_rules: set[str]) -> dict[str, list[str]]:
    """Every job not in ``local_rules`` was submitted with sbatch, finished COMPLETED in
    SLURM, and left its SLURM log; return SLURM job ids per rule."""
    jobs, submitted = run["jobs"], run["submitted"]
    assert jobs, "no jobs found in the snakemake log"
    remote = {j: rule for j, (rule, local) in jobs.items() if not local}
    local = {rule for rule, is_local in jobs.values() if is_local}
    assert local <= local_rules, f"rules run on the submit host that should not be: {local - local_rules}"
    assert remote, "no job was sent to SLURM"
    missing = sorted(f"{rule} (job {j})" for j, rule in remote.items() if j not in submitted)
    assert not missing, f"jobs not submitted through sbatch: {missing}"
    assert not set(submitted) - set(remote), "a submission for a job the log does not show"
    ids = [sid for sid, _ in submitted.values()]
    assert len(set(ids)) == len(ids), f"SLURM job ids reused: {ids}"
    assert len(run["calls"]) == len(remote), (
        f"{len(run['calls'])} sbatch calls logged for {len(remote)} jobs")
    states = squeue_states(ids)
    not_done = {i: states.get(i, "not listed") for i in ids if not states.get(i, "").startswith("COMPLETED")}
    assert not not_done, f"SLURM jobs not COMPLETED per squeue: {not_done}"
    for sid, logf in submitted.values():
        assert Path(logf).is_file(), f"SLURM log of job {sid} missing: {logf}"
    per_rule: dict[str, list[str]] = {}
    for j, (sid, _) in submitted.items():
        per_rule.setdefault(remote[j], []).append(sid)
    return per_rule


def assert_gpu_job(sid: str, probe_records: list[dict], rule: str, script: str | None = None) -> None:
    """SLURM job ``sid`` was given a GPU on the gpu partition, and the rule's code saw it
    (``script``: the rule's Python script, whose own process must be among them)."""
    info = scontrol_job(sid)
    assert "Partition=gpu" in info, f"{rule} job {sid} not on the gpu partition:\n{info}"
    assert re.search(r"gres[:/]gpu[:=]1", info), f"{rule} job {sid} got no GPU:\n{info}"
    steps = [r for r in probe_records if r["SLURM_JOB_ID"] == sid and r["SLURM_STEP_ID"] not in (None, "batch")]
    assert steps, f"no process of SLURM job {sid} ({rule}) ran in a job step"
    seen = {r["CUDA_VISIBLE_DEVICES"] for r in steps}
    assert seen == {"0"}, f"{rule} job {sid}: CUDA_VISIBLE_DEVICES in its processes were {seen}"
    if script is not None:
        assert any(r["argv"] and r["argv"][0].endswith(script) for r in steps), (
            f"the {script} process of {rule} job {sid} did not run in its job step: {steps}")


# ------------------------------------------------------------------------------ (a) toy
TOY_SNAKEFILE = r'''
config.setdefault("local_download", True)

rule all:
    input: "out/train.txt", expand("out/cpu_{i}.txt", i=range(2))

if config["local_download"]:
    localrules: download

rule download:
    output: "out/download.txt"
    shell: "echo job=${{SLURM_JOB_ID:-none}} > {output}"

rule cpu:
    input: "out/download.txt"
    output: "out/cpu_{i}.txt"
    shell: "echo job=$SLURM_JOB_ID > {output}"

rule train:
    input: "out/download.txt"
    output: "out/train.txt"
    resources: gpu=1
    shell:
        "python -c 'import os; e = os.environ; "
        "print(e[\"SLURM_JOB_ID\"], e.get(\"CUDA_VISIBLE_DEVICES\"))' > {output}"
'''


@pytest.mark.parametrize("local_download", [True, False])
def test_toy_jobs_go_through_sbatch(slurm, probe, tmp_path, local_download):
    env, probe_file = probe
    wd = tmp_path / "toy"
    wd.mkdir()
    (wd / "Snakefile").write_text(TOY_SNAKEFILE)
    text = run_snakemake(
        ["--profile", str(SLURM_PROFILE), *SANDBOX_ARGS, "--verbose",
         "--config", f"local_download={local_download}"],
        wd, tmp_path / "toy.log", TOY_TIMEOUT, env=env, cluster=slurm,
    )
    run = parse_run(text)
    local_rules = {"all"} | ({"download"} if local_download else set())
    per_rule = assert_all_through_sbatch(run, local_rules)
    assert set(per_rule) == {"cpu", "train"} | (set() if local_download else {"download"})
    assert len(per_rule["cpu"]) == 2

    download = (wd / "out" / "download.txt").read_text().strip()
    if local_download:
        assert download == "job=none", "download ran inside SLURM although it is a localrule"
    else:
        assert download == f"job={per_rule['download'][0]}"
    for i, sid in enumerate(sorted(per_rule["cpu"], key=int)):
        assert (wd / "out" / f"cpu_{i}.txt").read_text().strip() in {f"job={s}" for s in per_rule["cpu"]}, sid
    (train_id,) = per_rule["train"]
    assert (wd / "out" / "train.txt").read_text().split() == [train_id, "0"]
    gpu_calls = [c for c in run["calls"] if "--gpus=1" in c]
    assert len(gpu_calls) == 1 and "-p gpu" in gpu_calls[0].replace("'", ""), run["calls"]
    assert all("--gpus" not in c for c in run["calls"] if c not in gpu_calls)
    assert_gpu_job(train_id, read_probe(probe_file), "train")


# ------------------------------------------------------------------------------ (b) workflow
PATH_KEYS = (("catalog", "path"), ("cutouts", "local_dir"), ("cutouts", "cache_dir"), ("split", "force_test_ids"))
N_TINY = 40


def tiny_config(tmp_path: Path) -> Path:
    """tests/data/tiny_config.yaml when the repository has one; else the demo config.yaml cut
    down: the first 40 demo galaxies, 2 shards, 16 px, one epoch, TTA x2, PNG figures.
    Relative paths are made absolute: the two runs have their own work directories."""
    src = ROOT / "tests" / "data" / "tiny_config.yaml"
    if src.exists():
        cfg = yaml.safe_load(src.read_text())
    else:
        cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
        cat = pd.read_csv(DEMO / "catalog.csv", dtype={"objID": "string"}).head(N_TINY)
        cat.to_csv(tmp_path / "catalog40.csv", index=False)
        cfg["catalog"]["path"] = str(tmp_path / "catalog40.csv")
        cfg["cutouts"]["local_dir"] = str(DEMO / "images")
        cfg["shards"] = 2
        cfg["resolutions"] = [16]
        cfg["seeds"] = [0]
        # an ensemble whose second member is its own GPU job; >= 19 valid galaxies to calibrate 95%
        cfg["ensemble"] = {"resolution": 16, "seeds": [0, 1]}
        cfg["survey"] = None  # tests/test_workflow.py builds one
        cfg["split"]["fractions"] = {"train": 0.3, "valid": 0.5, "test": 0.2}
        train = cfg.setdefault("train", {})
        train["batch_size"] = 16
        train.setdefault("stage2", {})["cycles"] = [1]
        cfg.setdefault("predict", {})["tta"] = 2
        cfg.setdefault("figures", {})["formats"] = ["png"]
    for section, key in PATH_KEYS:
        value = (cfg.get(section) or {}).get(key)
        if isinstance(value, str) and not os.path.isabs(value) and (ROOT / value).exists():
            cfg[section][key] = str(ROOT / value)
    path = tmp_path / "tiny_config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in (root / "results").rglob("*")
            if p.is_file() and not p.name.startswith(".")}


def test_workflow_on_slurm_matches_local(slurm, probe, tmp_path):
    if not (ROOT / "Snakefile").exists():
        pytest.fail("no Snakefile in the repository")
    env, probe_file = probe
    cfg = tiny_config(tmp_path)
    common = ["--snakefile", str(ROOT / "Snakefile"), "--configfile", str(cfg)]

    local_wd, slurm_wd = tmp_path / "local", tmp_path / "slurm"
    local_wd.mkdir()
    slurm_wd.mkdir()
    run_snakemake([*common, "--profile", str(LOCAL_PROFILE), "--cores", "2"],
                  local_wd, tmp_path / "local.log", WORKFLOW_TIMEOUT)
    text = run_snakemake([*common, "--profile", str(SLURM_PROFILE), *SANDBOX_ARGS, "--verbose"],
                         slurm_wd, tmp_path / "slurm.log", WORKFLOW_TIMEOUT, env=env, cluster=slurm)

    run = parse_run(text)
    # rules without an action (all) run on the submit host; so do the downloads
    # (local_download: true, the default) when the workflow declares them localrules
    local_rules = {r for r, is_local in run["jobs"].values() if is_local}
    assert local_rules <= {"all"} | _declared_localrules(), local_rules
    per_rule = assert_all_through_sbatch(run, local_rules)
    assert "train" in per_rule, f"no train job was submitted: {sorted(per_rule)}"
    assert len(per_rule["train"]) == 2 and "ensemble" in per_rule, per_rule  # members: independent jobs
    records = read_probe(probe_file)
    for sid in per_rule["train"]:
        assert_gpu_job(sid, records, "train", script=".train.py")
    for call in run["calls"]:
        if "--gpus=1" in call:
            assert "-p gpu" in call.replace("'", ""), call

    # same outputs as the local run
    local_files, slurm_files = _files(local_wd), _files(slurm_wd)
    assert local_files == slurm_files, (
        f"only local: {sorted(local_files - slurm_files)}; only SLURM: {sorted(slurm_files - local_files)}")
    preds = sorted(f for f in local_files if f.startswith("results/predictions/") and f.endswith(".parquet"))
    assert preds, "the local run wrote no predictions"
    for rel in preds:
        a, b = pd.read_parquet(local_wd / rel), pd.read_parquet(slurm_wd / rel)
        assert list(a["objID"]) == list(b["objID"]), rel
        np.testing.assert_allclose(b["prediction"].to_numpy(), a["prediction"].to_numpy(),
                                   atol=1e-4, rtol=0, err_msg=rel)


def _declared_localrules() -> set[str]:
    """Rule names the workflow's source declares local: `localrules:` lists (one or more lines)
    and rules with their own `localrule:` directive (`True`, or `config["local_download"]`, true
    by default)."""
    names = set()
    for smk in [ROOT / "Snakefile", *(ROOT / "workflow" / "rules").glob("*.smk")]:
        text = smk.read_text()
        for block in re.findall(r"localrules:((?:\s*\w+\s*,)*\s*\w+)", text):
            names |= {n for n in re.split(r"[\s,]+", block) if n and n != "rule"}
        for rule, body in re.findall(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)*)", text, flags=re.M):
            if re.search(r"^\s+localrule:\s*(True|config\[\"local_download\"\])", body, flags=re.M):
                names.add(rule)
    return names
