"""The paper's plan at full size, rehearsed on one machine (issues 10 and 24). Run by hand, never in CI.

Runs the real Snakefile with the paper's config itself (``--configfile configs/paper.yaml``) and a
small layer of SIZE overrides (``--configfile sizes.yaml``, written by this script and printed):

- the catalog is a synthetic table (``catalog.source: table``) and the cutouts a local folder
  (``cutouts.source: local``), because the benchmark has no network: N galaxies under new objIDs,
  image i a hard link to bundled real cutout i mod 400 (``resources/demo/images``), its ``oh_p50``
  that galaxy's; the columns are made up as :func:`make_catalog` says, so that the paper's cuts
  keep the rows and both targets (``oh_p50``, ``lgm_tot_p50``) have something to learn;
- the paper's 64 shards (``--shards``);
- ResNet-18 without pretrained weights (no stage 1) and one epoch (``stage2.cycles: [1]``): the
  rehearsal's reduced epochs; the saliency model renamed to that backbone's; Figures as PNG;
- everything else is configs/paper.yaml's: both targets, the eight resolutions 128 ... 1 px, the
  128 px ensemble of seeds 0-4 per target (24 trainings), the random forests, the mass route and
  MZR, the saliency maps, the published 16-128 px predictions (reference).

Training 24 CNNs on ~85,000 galaxies does not fit a small CPU machine (part (b) prints how long
it would take here, from its own measured training rate), so the plan runs in TWO measured parts:

(a) at the full N (default 142,000), the whole DAG except the CNN trainings and everything that
    depends on them (``snakemake --omit-from train ensemble``): catalog cleaning, shards, split,
    cutout manifests, packing and re-binning at all eight resolutions, the baselines of both
    targets, the reference. Real job times and peak memory. Then, as a check of the CNN jobs'
    memory at the full N, one training at ``--check-res`` px (default 8; 0 = none) with the same
    one epoch.
(b) at a small N (default 3,000), the complete paper DAG: every rule, trainings, ensembles,
    predictions, domain checks, mass route, MZR, Figures 1-7, summary. Real job times and memory.

The estimate at the full N takes part (a)'s rules as measured and scales part (b)'s image jobs
(train, ensemble, predict, saliency, domain_check) linearly in the galaxies they process: ``train``
by the training split (n_train x epochs), ``ensemble`` by the validation split (its calibration:
n_valid x members x TTA views), the others by the test split (n_test x members x TTA views; the
same views at both sizes). A job's fixed cost (start-up, model, writing) is not scaled: it is the
fastest job of its rule when the rule runs at several resolutions (down to 1 px, where the images
cost next to nothing); a rule at one resolution (ensemble, saliency) is scaled whole, which leans
high. Part (b)'s table and figure jobs (evaluate, uncertainty, Figures, mass route, MZR, summary)
are taken as measured: part (a) runs the same code on the 20,466 published predictions in seconds.
It prints:

- the total job time on this machine at the rehearsal's epochs and at the paper's recipe
  (stage 1 + stage 2 epochs of configs/paper.yaml; stage 1 trains the head only, so that leans high);
- one GPU box: NOT MEASURED HERE (no GPU in the session). The basis is the paper's ResNet-34 at
  128 px, ~60 s an epoch for ~85,000 training images on one P100, ~1,400 img/s: a training takes
  its fixed cost + n_train x the paper's epochs / 1,400 s; the other GPU jobs' scaled CPU time is
  divided by (1,400 / this CPU's measured training rate at the job's resolution), never below 1
  (the GPU taken as no faster on small images than at 128 px, which leans high). The GPU jobs run
  one after another after part (a)'s wall time here; the CPU jobs ``--box-cores`` at a time;
- a SLURM cluster: every job in parallel, so the critical path: the longest chain of the rule
  graph (``snakemake --rulegraph`` of part (b)) with each rule's longest job (at the full N, GPU
  jobs on the basis above); queue waits not counted.

The machine this runs on may be shared: each part prints its load average, and the job times are
wall times under that load.

Peak memory (max_rss) per job is measured: part (a) at the full N, the CNN jobs at the small N
and, for one training, at the full N; the CNN jobs' full-N memory is also projected as the small-N
peak plus the growth of the memory-mapped image stores of their resolution (and, for a training,
of its gathered copy of the train and valid galaxies), an upper bound.

    .venv/bin/python benchmarks/full_scale.py [--n 142000] [--small 3000] [--parts ab]
        [--shards 64] [--small-shards 4] [--cores 2] [--check-res 8] [--keep DIR]

``--parts a`` or ``b`` runs one part; with ``--keep DIR`` a part already run there (``DIR/a``,
``DIR/b``, each with its ``part.json``) is read back, so the parts can run at different times and
the estimate still joins them. ``--stopped`` reads a part stopped before its end as it stands (its
finished jobs, from its Snakemake logs): a planned job it did not run takes the numbers of its
rule's measured jobs at the nearest resolution at or above its own, and the rules it never
reached are printed and left out of every total (then lower bounds). The last line printed is
one JSON object with every number.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "resources" / "demo"
PAPER = ROOT / "configs" / "paper.yaml"
FIRST_ID = 1_237_600_000_000_000_000  # made-up ids, clear of the real DR14 objIDs of the sample
GPU_IMG_S = 1400.0  # the paper: ResNet-34, 128 px, ~60 s an epoch for ~85,000 images on one P100
GPU_RULES = ("train", "ensemble", "predict", "saliency")  # the profile's GPU rules (docs/cluster.md)
IMAGE_RULES = (*GPU_RULES, "domain_check")  # jobs that read the image stores and run the CNN
SIZE_ARCH = "resnet18"


def mass_from_metallicity(z: np.ndarray, rng: np.random.Generator, scatter: float = 0.15) -> np.ndarray:
    """log M* of each galaxy: the Tremonti MZR inverted on its low-mass branch, clipped, scattered."""
    from galmet.mzr import TREMONTI_COEFFS, TREMONTI_VALID_RANGE  # Z = t0 + t1 x + t2 x^2

    t0, t1, t2 = TREMONTI_COEFFS
    x_peak = -t1 / (2 * t2)  # ~11.51, where the curve peaks at Z ~ 9.13
    disc = t1**2 - 4 * t2 * (t0 - z)
    x = np.where(disc > 0, (-t1 + np.sqrt(np.clip(disc, 0, None))) / (2 * t2), x_peak)
    return np.clip(x, *TREMONTI_VALID_RANGE) + rng.normal(0.0, scatter, len(z))


def make_catalog(n: int, workdir: Path, seed: int = 0) -> Path:
    """``workdir/catalog.csv`` and ``workdir/images/<objID>.jpg`` (hard links) for n galaxies.

    Galaxy i is bundled demo galaxy i mod 400: its image (a hard link) and its real ``oh_p50``.
    The rest is made up, in the ranges the paper's cuts keep (galmet.catalog):

    - ``lgm_tot_p50``: the Tremonti et al. (2004) MZR (``galmet.mzr.TREMONTI_COEFFS``),
      Z = -1.492 + 1.847 x - 0.08026 x^2,
      inverted for the galaxy's oh_p50 on the branch below the curve's maximum (Z ~ 9.13 at
      x ~ 11.5; a Z at or above it takes x at the maximum), x clipped to 8.5 .. 11.5, plus
      N(0, 0.15) dex of scatter;
    - ``modelMag_{u,g,r,i,z}``: r uniform in 14 .. 17.7, colours redder with metallicity
      (u-g = 1.4 + 1.2 dZ, g-r = 0.6 + 0.6 dZ, r-i = 0.35 + 0.2 dZ, i-z = 0.25 + 0.1 dZ with
      dZ = oh_p50 - 8.9, plus 0.25/0.1/0.06/0.06 mag of scatter), so the forests have signal;
    - ``petroMag_r`` = modelMag_r + N(0.05, 0.05), kept below 17.95 (cut: < 18);
    - ``z`` uniform in 0.025 .. 0.25 (cut: > 0.02); ``zErr`` log-uniform in 5e-6 .. 5e-4
      (cut: 0 < zErr < 0.01); ``petroR90_r`` log-normal about 7 arcsec, clipped to 2 .. 40.
    """
    demo = pd.read_csv(DEMO / "catalog.csv", dtype={"objID": "int64"})
    rng = np.random.default_rng(seed)
    src = np.arange(n) % len(demo)
    z = demo["oh_p50"].to_numpy()[src]
    ids = FIRST_ID + np.arange(n, dtype=np.int64)
    images = workdir / "images"
    images.mkdir(parents=True, exist_ok=True)
    for oid, k in zip(ids, src):
        target = images / f"{oid}.jpg"
        if not target.exists():
            os.link(DEMO / "images" / f"{demo['objID'].iat[k]}.jpg", target)
    manifest = images / "cutouts.json"  # what the images are: the bundled folder's description
    if not manifest.exists():
        manifest.write_bytes((DEMO / "images" / "cutouts.json").read_bytes())
    r = rng.uniform(14.0, 17.7, n)
    dz = z - 8.9
    colours = {  # u-g, g-r, r-i, i-z: redder with metallicity, as galaxies are, plus scatter
        "ug": 1.4 + 1.2 * dz + rng.normal(0, 0.25, n), "gr": 0.6 + 0.6 * dz + rng.normal(0, 0.1, n),
        "ri": 0.35 + 0.2 * dz + rng.normal(0, 0.06, n), "iz": 0.25 + 0.1 * dz + rng.normal(0, 0.06, n),
    }
    g = r + colours["gr"]
    i = r - colours["ri"]
    mags = {"u": g + colours["ug"], "g": g, "r": r, "i": i, "z": i - colours["iz"]}
    table = pd.DataFrame({
        "objID": ids.astype(str), "oh_p50": z,
        "lgm_tot_p50": np.round(mass_from_metallicity(z, rng), 4),
        **{f"modelMag_{b}": np.round(m, 4) for b, m in mags.items()},
        "petroMag_r": np.round(np.minimum(r + rng.normal(0.05, 0.05, n), 17.95), 4),
        "petroR90_r": np.round(np.clip(rng.lognormal(np.log(7.0), 0.4, n), 2.0, 40.0), 3),
        "z": np.round(rng.uniform(0.025, 0.25, n), 5),
        "zErr": 10 ** rng.uniform(np.log10(5e-6), np.log10(5e-4), n),
    })
    path = workdir / "catalog.csv"
    if not path.exists():  # a resumed part keeps its catalog (a new file would rerun every job)
        table.to_csv(path, index=False)
    return path


def size_layer(workdir: Path, shards: int) -> dict:
    """The size overrides layered on configs/paper.yaml: data source, shards, backbone, epochs."""
    from galmet.names import model_name, parse_model_name

    paper = yaml.safe_load(PAPER.read_text())
    saliency = []
    for name in (paper.get("saliency") or {}).get("models", []):
        p = parse_model_name(name)
        saliency.append(model_name(SIZE_ARCH, p["resolution"], p["seed"]))
    return {
        # no network here: the synthetic table and the local hard links stand for SkyServer
        "catalog": {"source": "table", "path": str(workdir / "catalog.csv")},
        "cutouts": {"source": "local", "local_dir": str(workdir / "images")},
        "shards": shards,
        "train": {"arch": SIZE_ARCH, "pretrained": "none", "stage2": {"cycles": [1]}},
        "saliency": {"models": saliency},  # the paper's saliency model, under this backbone's name
        "figures": {"formats": ["png"]},
    }


def epochs(train: dict) -> int:
    """Epochs of a training: stage 1 (only with pretrained weights) + the SGDR cycles of stage 2."""
    stage1 = (train.get("stage1") or {}).get("epochs", 0) if train.get("pretrained", "none") != "none" else 0
    return int(stage1) + int(sum((train.get("stage2") or {}).get("cycles", [])))


def job_blocks(lines) -> list[dict]:
    """Jobs of Snakemake's output (a run's log or a dry run): rule, benchmark, resolution (wildcards)."""
    from galmet.names import parse_model_name

    rows, job = [], None  # a job's block: "rule X:", ..., "benchmark: ...", ..., "wildcards: ..."
    for line in lines:
        m = re.match(r"^(?:local)?(?:rule|checkpoint) (\w+):$", line)
        if m:
            job = {"rule": m[1], "benchmark": None, "res": None}
            rows.append(job)
            continue
        m = re.match(r"^\s+benchmark: (.*)$", line)
        if m and job:
            job["benchmark"] = m[1].strip()
            continue
        m = re.match(r"^\s+wildcards: (.*)$", line)
        if m and job:
            wc = dict(kv.split("=", 1) for kv in m[1].split(", ") if "=" in kv)
            if "res" in wc:
                job["res"] = int(wc["res"])
            elif "model" in wc:
                try:
                    job["res"] = parse_model_name(wc["model"])["resolution"]
                except ValueError:
                    pass
    return [r for r in rows if r["benchmark"]]


def job_rows(workdir: Path, logs: list[Path]) -> pd.DataFrame:
    """One row per job run: rule, resolution (from its wildcards), seconds, max_rss (MB).

    The rule of each benchmark file is read from Snakemake's own log (``rule X:`` ... ``benchmark:``).
    """
    rows = job_blocks(ln for log in logs for ln in log.read_text().splitlines())
    jobs = pd.DataFrame(rows).drop_duplicates("benchmark", keep="last")
    out = []
    for row in jobs.itertuples():
        tsv = workdir / row.benchmark
        if not tsv.exists():
            continue
        b = pd.read_csv(tsv, sep="\t")
        name = row.rule
        if name == "baseline":
            name = f"baseline {Path(row.benchmark).stem}"  # constant / rf_gri / rf_ugriz apart
        out.append({"rule": name, "base_rule": row.rule, "benchmark": row.benchmark, "res": row.res,
                    "s": float(b["s"].iloc[-1]),
                    "max_rss_mb": float(pd.to_numeric(b["max_rss"], errors="coerce").max())})
    return pd.DataFrame(out)


def per_rule(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per rule: jobs, summed and longest job seconds, peak max_rss (MB)."""
    return (jobs.groupby("rule").agg(jobs=("s", "size"), seconds=("s", "sum"), longest=("s", "max"),
                                     peak_mb=("max_rss_mb", "max"))
            .sort_values("seconds", ascending=False))


def split_counts(workdir: Path) -> dict:
    s = pd.read_parquet(workdir / "results" / "split.parquet")
    return {k: int(v) for k, v in s["split"].value_counts().items()}


def store_bytes(workdir: Path) -> dict:
    """Bytes of the packed image stores per resolution (all shards)."""
    out: dict[int, int] = {}
    for npy in (workdir / "results" / "images").glob("*/*px.npy"):
        res = int(npy.stem.removesuffix("px"))
        out[res] = out.get(res, 0) + npy.stat().st_size
    return out


def snakemake(workdir: Path, cores: int, targets: list[str], options: list[str], log_name: str) -> int:
    """Run the Snakefile in workdir; an earlier log of the same name is kept as <name>.<k>.log."""
    log_path = workdir / f"{log_name}.log"
    if log_path.exists():  # a resumed part: the jobs of the earlier run stay countable
        k = 1 + len(list(workdir.glob(f"{log_name}.*.log")))
        log_path.rename(workdir / f"{log_name}.{k}.log")
    cmd = [str(Path(sys.executable).with_name("snakemake")), *targets, "-s", str(ROOT / "Snakefile"),
           "--directory", str(workdir), "--configfile", str(PAPER), str(workdir / "sizes.yaml"),
           "--cores", str(cores), "--resources", "gpu=1", "--rerun-incomplete", *options]
    with open(log_path, "w") as log:
        return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode


def log_wall(logs: list[Path]) -> float:
    """Seconds from the first to the last timestamp of each Snakemake log, summed over the logs."""
    total = 0.0
    for log in logs:
        stamps = [time.mktime(time.strptime(" ".join(m.split()), "%a %b %d %H:%M:%S %Y"))
                  for m in re.findall(r"^\[(\w{3} \w{3} +\d+ [\d:]{8} \d{4})\]$", log.read_text(), flags=re.M)]
        if stamps:
            total += max(stamps) - min(stamps)
    return total


def run_part(part: str, n: int, workdir: Path, args) -> dict:
    """Build the catalog, run the part's DAG, return its measurements (also written to part.json)."""
    done = workdir / "part.json"
    if done.exists():  # its jobs are read again from the Snakemake logs kept beside it
        print(f"part ({part}): read back from {done}")
        result = json.loads(done.read_text())
        result["jobs"] = job_rows(workdir, sorted(workdir.glob("snakemake.*log"))).to_dict(orient="records")
        if part == "b":
            result["rulegraph"] = rule_needs(workdir)
        if result.get("check"):
            check = job_rows(workdir, sorted(workdir.glob("snakemake-check*.log")))
            result["check"] = check[check["base_rule"] == "train"].to_dict(orient="records")
        return result
    if args.stopped and (workdir / "snakemake.log").exists():  # stopped before its end: what it finished
        print(f"part ({part}): STOPPED before its end; its finished jobs are read from {workdir}")
        logs = sorted(workdir.glob("snakemake.*log"))
        return {"part": part, "n": n, "cores": args.cores, "stopped": True, "wall_s": round(log_wall(logs), 1),
                "shards": yaml.safe_load((workdir / "sizes.yaml").read_text())["shards"], "load": ["?", "?"],
                "setup_s": 0.0, "split": split_counts(workdir), "stores": store_bytes(workdir),
                "jobs": job_rows(workdir, logs).to_dict(orient="records"), "planned": planned_jobs(workdir),
                "rulegraph": rule_needs(workdir) if part == "b" else {}}
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    make_catalog(n, workdir)
    shards = args.shards if part == "a" else args.small_shards
    (workdir / "sizes.yaml").write_text(yaml.safe_dump(size_layer(workdir, shards), sort_keys=False))
    setup_s = time.perf_counter() - t0
    # part (a): the default target and every image store (nothing left needs them), without the CNNs
    targets, options = (["all", "images"], ["--omit-from", "train", "ensemble"]) if part == "a" else ([], [])
    load0 = os.getloadavg()[0]
    rc = snakemake(workdir, args.cores, targets, options, "snakemake")
    load = [round(load0, 1), round(os.getloadavg()[0], 1)]  # the machine is shared: its load before and after
    if rc != 0:
        raise SystemExit(f"part ({part}): snakemake failed (rc {rc}); see {workdir / 'snakemake.log'}")
    logs = sorted(workdir.glob("snakemake.*log"))
    wall = log_wall(logs)
    jobs = job_rows(workdir, logs)
    result = {"part": part, "n": n, "cores": args.cores, "shards": shards, "load": load, "wall_s": round(wall, 1),
              "setup_s": round(setup_s, 1), "split": split_counts(workdir), "stores": store_bytes(workdir),
              "jobs": jobs.to_dict(orient="records")}
    if part == "a" and args.check_res:
        paper = yaml.safe_load(PAPER.read_text())
        from galmet.names import model_name

        model = model_name(SIZE_ARCH, args.check_res, paper["seeds"][0])
        target = f"results/models/{paper['targets'][0]}/{model}/model.pt"
        rc = snakemake(workdir, args.cores, [target], [], "snakemake-check")
        if rc != 0:
            raise SystemExit(f"part (a) check: training {target} failed; see {workdir / 'snakemake-check.log'}")
        check = job_rows(workdir, sorted(workdir.glob("snakemake-check*.log")))
        result["check"] = check[check["base_rule"] == "train"].to_dict(orient="records")
    if part == "b":
        result["rulegraph"] = rule_needs(workdir)
    done.write_text(json.dumps(result))
    return result


def planned_jobs(workdir: Path) -> list[dict]:
    """Every job of the whole paper DAG in workdir (rule, benchmark, resolution): ``-n --forceall``."""
    out = subprocess.run(
        [str(Path(sys.executable).with_name("snakemake")), "-s", str(ROOT / "Snakefile"), "--directory",
         str(workdir), "--configfile", str(PAPER), str(workdir / "sizes.yaml"), "--nolock", "-n", "--forceall"],
        capture_output=True, text=True, check=True).stdout
    return job_blocks(out.splitlines())


def rule_needs(workdir: Path) -> dict:
    """{rule: [rules it needs]} of the whole paper DAG: Snakemake's rule graph of the finished run
    (after the shards checkpoint: cutouts, packing, re-binning) joined with that of a fresh one
    (``--forceall``: the catalog rules before the checkpoint)."""
    needs: dict[str, set] = {}
    for extra in ([], ["--forceall"]):
        dot = subprocess.run(
            [str(Path(sys.executable).with_name("snakemake")), "-s", str(ROOT / "Snakefile"), "--directory",
             str(workdir), "--configfile", str(PAPER), str(workdir / "sizes.yaml"), "--nolock", "--rulegraph",
             *extra], capture_output=True, text=True, check=True).stdout
        for rule, before in rulegraph(dot).items():
            needs.setdefault(rule, set()).update(before)
    return {rule: sorted(before) for rule, before in needs.items()}


def rulegraph(dot: str) -> dict:
    """{rule: [rules it needs]} from ``snakemake --rulegraph``'s dot text."""
    names = dict(re.findall(r'^\s*(\d+)\[label = "([^"]+)"', dot, flags=re.M))
    needs: dict[str, list[str]] = {name: [] for name in names.values()}
    for a, b in re.findall(r"^\s*(\d+) -> (\d+)", dot, flags=re.M):
        needs[names[b]].append(names[a])
    return needs


def critical_path(needs: dict, longest: dict) -> tuple[float, list[str]]:
    """Longest chain of the rule graph, each rule weighted by its longest job."""
    memo: dict[str, tuple[float, list[str]]] = {}

    def walk(rule):
        if rule not in memo:
            before = max((walk(r) for r in needs.get(rule, [])), default=(0.0, []), key=lambda t: t[0])
            memo[rule] = (before[0] + longest.get(rule, 0.0), before[1] + [rule])
        return memo[rule]

    return max((walk(r) for r in needs), key=lambda t: t[0])


def fill_planned(cnn: pd.DataFrame, planned, measured_a) -> tuple[pd.DataFrame, list[str], int]:
    """A part (b) stopped before its end: each planned job it did not run takes the numbers of the
    rule's measured jobs at the nearest resolution at or above its own (leans high), else at the
    rule's highest measured one (leans low). Returns the table with them (``filled`` 1), the rules
    never reached, their count."""
    cnn = cnn.assign(filled=0)
    if not planned:
        return cnn, [], 0
    todo = [j for j in planned if j["rule"] not in measured_a and j["rule"] != "all"
            and j["benchmark"] not in set(cnn["benchmark"])]
    rows, missing = [], set()
    for job in todo:
        same = cnn[(cnn["base_rule"] == job["rule"]) & (cnn["filled"] == 0)]
        if same.empty:
            missing.add(job["rule"])
            continue
        res = same["res"].dropna()
        if job["res"] is not None and len(res):
            above = res[res >= job["res"]]
            pick = above.min() if len(above) else res.max()
            same = same[same["res"] == pick]
        row = same.mean(numeric_only=True).to_dict()
        rows.append({**row, "rule": same["rule"].iloc[0], "base_rule": job["rule"], "benchmark": job["benchmark"],
                     "res": job["res"], "gpu": job["rule"] in GPU_RULES, "filled": 1})
    return pd.concat([cnn, pd.DataFrame(rows)], ignore_index=True), sorted(missing), len(rows) + len(missing)


def estimate(a: dict, b: dict, box_cores: int = 16) -> dict:
    """Part (a) as measured + part (b)'s other rules scaled to the full N (see the docstring)."""
    paper = yaml.safe_load(PAPER.read_text())
    rehearsal, full_epochs = epochs({**paper["train"], "pretrained": "none", "stage2": {"cycles": [1]}}), \
        epochs(paper["train"])
    ja, jb = pd.DataFrame(a["jobs"]), pd.DataFrame(b["jobs"])
    measured_a = set(ja["base_rule"])
    scale = {k: a["split"][k] / b["split"][k] for k in ("train", "valid", "test")}
    cnn = jb[~jb["base_rule"].isin(measured_a)].copy()
    cnn["basis"] = cnn["base_rule"].map({"train": "train", "ensemble": "valid"}).fillna("test")
    # image jobs grow with the galaxies, less a fixed cost (start-up, model, writing): the fastest job
    # of the rule when it runs at several resolutions (down to 1 px, where the images cost next to
    # nothing), else none (scaled whole); the table and figure jobs are taken as measured
    images = cnn["base_rule"].isin(IMAGE_RULES)
    by_rule = cnn.groupby("base_rule")
    low = by_rule["s"].min().where(by_rule["res"].nunique() >= 3)
    cnn["fixed"] = np.where(images, np.minimum(cnn["base_rule"].map(low).fillna(0.0), cnn["s"]), cnn["s"])
    cnn["var_full"] = (cnn["s"] - cnn["fixed"]) * cnn["basis"].map(scale)
    cnn["s_full"] = cnn["fixed"] + cnn["var_full"]
    # this CPU's training rate per resolution (galaxies x epochs / s), from part (b)'s train jobs
    tr = cnn[cnn["base_rule"] == "train"]
    per_res = (tr["s"] - tr["fixed"]).groupby(tr["res"]).mean()
    cpu_rate = {r: (b["split"]["train"] * rehearsal / v if v > 0 else float("inf")) for r, v in per_res.items()}
    gpu_factor = {r: min(1.0, v / GPU_IMG_S) for r, v in cpu_rate.items()}  # GPU s per CPU s
    cnn["gpu"] = cnn["base_rule"].isin(GPU_RULES)
    paper_x = cnn["base_rule"].eq("train") * (full_epochs / rehearsal - 1) + 1  # train jobs x paper's epochs
    factor = np.where(cnn["gpu"], cnn["res"].map(gpu_factor).fillna(1.0), 1.0)
    cnn["s_paper"] = cnn["fixed"] + cnn["var_full"] * paper_x
    cnn["s_cluster"] = cnn["fixed"] + cnn["var_full"] * paper_x * factor  # at the paper's epochs, on a GPU
    # a training on the GPU is the basis itself: its training galaxies x the paper's epochs at GPU_IMG_S
    on_basis = cnn["base_rule"].eq("train")
    cnn.loc[on_basis, "s_cluster"] = cnn.loc[on_basis, "fixed"] + a["split"]["train"] * full_epochs / GPU_IMG_S
    cnn, not_reached, filled = fill_planned(cnn, b.get("planned"), measured_a)
    cnn["s_measured"] = cnn["s"].where(cnn["filled"] == 0, 0.0)
    est = {
        "stopped": bool(filled),
        "jobs_measured_of_planned": {r: [int((g["filled"] == 0).sum()), len(g)] for r, g in cnn.groupby("base_rule")},
        "rules_not_reached": not_reached,
        "scale": scale, "epochs": {"rehearsal": rehearsal, "paper": full_epochs},
        "cpu_train_img_s": {int(k): round(v, 1) for k, v in cpu_rate.items() if np.isfinite(v)},
        "gpu_s_per_cpu_s": {int(k): round(v, 4) for k, v in gpu_factor.items()},
        "cnn_rules_full": json.loads(cnn.groupby("rule").agg(
            jobs=("s", "size"), measured=("filled", lambda f: int((f == 0).sum())), seconds_small=("s_measured", "sum"),
            fixed_s=("fixed", "max"), seconds_full=("s_full", "sum"), longest_full=("s_full", "max"),
            peak_mb_small=("max_rss_mb", "max"),
        ).reset_index().to_json(orient="records")),
        "a_job_s": float(ja["s"].sum()),
        "cnn_job_s_rehearsal": float(cnn["s_full"].sum()),
        "cnn_job_s_paper": float(cnn["s_paper"].sum()),
        "train_job_s_paper": float(cnn.loc[cnn["base_rule"] == "train", "s_paper"].sum()),
    }
    # one GPU box: part (a) as measured here, then the GPU jobs one after another, the rest as measured
    # (the other jobs on the box's cores, box_cores at a time, never shorter than the longest)
    gpu_s = float(cnn.loc[cnn["gpu"], "s_cluster"].sum())
    others = cnn.loc[~cnn["gpu"], "s_full"]
    rest_s = max(float(others.sum()) / box_cores, float(others.max()))
    est["gpu_box"] = {"data_stage_wall_s": a["wall_s"], "gpu_jobs_s": gpu_s, "other_jobs_s": rest_s,
                      "box_cores": box_cores, "total_s": a["wall_s"] + gpu_s + rest_s}
    # SLURM: the critical path of the rule graph, each rule at its longest job at full N
    longest = {r: float(g["s"].max()) for r, g in ja.groupby("base_rule")}
    longest.update({r: float(g["s_cluster"].max()) for r, g in cnn.groupby("base_rule")})
    path_s, path = critical_path(b["rulegraph"], longest)
    est["cluster"] = {"critical_path_s": path_s, "path": [(r, round(longest.get(r, 0.0), 1)) for r in path]}
    # memory: the CNN jobs' small-N peak + the growth of the stores of their resolution (upper bound)
    sa, sb = ({int(r): v for r, v in p["stores"].items()} for p in (a, b))
    grow = {r: (sa.get(r, 0) - sb.get(r, 0)) / 2**20 for r in sa}
    size = max(int(r) for r in a["stores"])
    cnn["store_res"] = np.where(cnn["base_rule"].eq("domain_check"), size, cnn["res"].fillna(0))
    # the memory-mapped stores' pages, and for train the gathered copy of its train + valid galaxies
    fit = (a["split"]["train"] + a["split"]["valid"]) / sum(a["split"].values())
    copies = np.where(cnn["base_rule"].eq("train"), 1.0 + fit, np.where(cnn["base_rule"].isin(IMAGE_RULES), 1.0, 0.0))
    cnn["mb_full"] = cnn["max_rss_mb"] + cnn["store_res"].astype(int).map(grow).fillna(0.0) * copies
    est["cnn_peak_mb_projected"] = {r: round(float(g["mb_full"].max())) for r, g in cnn.groupby("rule")}
    return est


def hours(s: float) -> str:
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.1f} min"


def report(a: dict | None, b: dict | None, sizes: dict, box_cores: int = 16) -> dict:
    pd.set_option("display.width", 140)
    out: dict = {"sizes.yaml": sizes}
    for part, res in (("a", a), ("b", b)):
        if res is None:
            continue
        costs = per_rule(pd.DataFrame(res["jobs"]))
        what = ("the whole DAG except the CNN trainings and what depends on them (--omit-from train ensemble)"
                if part == "a" else "the complete paper DAG"
                + (", STOPPED before its end" if res.get("stopped") else ""))
        print(f"\npart ({part}): N = {res['n']} galaxies ({res['split']}), {what}; {res['shards']} shards, "
              f"{res['cores']} cores (load average {res['load'][0]} before, {res['load'][1]} after): "
              f"{hours(res['wall_s'])} wall, {hours(costs['seconds'].sum())} summed job time "
              f"(catalog and links built in {res['setup_s']:.0f} s)")
        print(costs.round({"seconds": 1, "longest": 1, "peak_mb": 0}).to_string())
        out[part] = {k: res[k] for k in ("n", "cores", "shards", "load", "wall_s", "setup_s", "split")}
        out[part]["job_s"] = round(float(costs["seconds"].sum()), 1)
        out[part]["rules"] = json.loads(costs.reset_index().to_json(orient="records"))
        if res.get("check"):
            c = res["check"][0]
            print(f"check at the full N: {c['benchmark']}: {c['s']:.0f} s, {c['max_rss_mb']:.0f} MB max_rss "
                  f"({res['split']['train']} training galaxies, one epoch)")
            out[part]["check"] = res["check"]
    if a is None or b is None:
        return out
    est = estimate(a, b, box_cores)
    out["estimate"] = est
    n, ep = a["n"], est["epochs"]
    print(f"\nestimate at N = {n}: part (a) as measured, part (b)'s other rules scaled by the galaxies they "
          f"process (train x {est['scale']['train']:.1f} training galaxies, ensemble x {est['scale']['valid']:.1f} "
          f"validation, the rest x {est['scale']['test']:.1f} test; TTA views and members as run)")
    if est["stopped"]:
        print("PART (b) WAS STOPPED BEFORE ITS END: jobs measured of planned per rule "
              + ", ".join(f"{r} {m}/{k}" for r, m_k in est["jobs_measured_of_planned"].items() for m, k in [m_k])
              + "; a job not run takes its rule's measured jobs at the nearest resolution at or above its own; "
              + "NOT MEASURED (left out of "
              + "every total below, which are therefore lower bounds): "
              + (", ".join(est["rules_not_reached"]) or "none"))
    rules = pd.DataFrame(est["cnn_rules_full"]).set_index("rule").sort_values("seconds_full", ascending=False)
    print(rules.round({"seconds_small": 1, "seconds_full": 0, "longest_full": 0, "peak_mb_small": 0}).to_string())
    print("CNN jobs' peak memory at the full N, projected (small-N peak + growth of the memory-mapped stores of "
          "their resolution, train also its gathered train + valid copy; an upper bound): "
          + ", ".join(f"{r} {v} MB" for r, v in est["cnn_peak_mb_projected"].items()))
    print("this CPU trains at " + ", ".join(f"{r} px {v:.0f}" for r, v in sorted(est["cpu_train_img_s"].items()))
          + " galaxies x epochs / s (part (b)'s train jobs)")
    print(f"this machine, job time at the full N: {hours(est['a_job_s'])} (part a) + "
          f"{hours(est['cnn_job_s_rehearsal'])} (CNN jobs, {ep['rehearsal']} epoch) = "
          f"{hours(est['a_job_s'] + est['cnn_job_s_rehearsal'])}; at the paper's {ep['paper']} epochs the "
          f"trainings alone {hours(est['train_job_s_paper'])}")
    g = est["gpu_box"]
    print(f"one GPU box (NOT MEASURED: basis the paper's ~{GPU_IMG_S:.0f} img/s, ResNet-34 128 px on one P100; "
          f"paper's {ep['paper']} epochs): data stage {hours(g['data_stage_wall_s'])} (part a's wall here) + "
          f"GPU jobs one after another {hours(g['gpu_jobs_s'])} + other jobs {hours(g['other_jobs_s'])} "
          f"({g['box_cores']} at a time) = {hours(g['total_s'])}")
    c = est["cluster"]
    print(f"SLURM cluster (every job in parallel, GPU jobs on the same basis, no queue wait): critical path "
          f"{hours(c['critical_path_s'])}: " + " -> ".join(f"{r} {s:.0f} s" for r, s in c["path"]))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=142_000, help="part (a)'s galaxies (the paper: 142000)")
    ap.add_argument("--small", type=int, default=3000, help="part (b)'s galaxies (the complete DAG)")
    ap.add_argument("--parts", default="ab", help="a, b or ab")
    ap.add_argument("--shards", type=int, default=64, help="part (a)'s shards (the paper's 64)")
    ap.add_argument("--small-shards", type=int, default=4,
                    help="part (b)'s shards: its per-shard jobs are part (a)'s rules, measured there")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--check-res", type=int, default=8, help="part (a): one training at full N at this res (0: none)")
    ap.add_argument("--box-cores", type=int, default=16, help="the GPU box's CPU cores (configs/paper.yaml: 16)")
    ap.add_argument("--keep", help="work in this directory and keep it (default: a temporary one)")
    ap.add_argument("--stopped", action="store_true",
                    help="with --keep: a part stopped before its end is read as it stands (its finished jobs; "
                         "the estimate then lists the rules it did not reach and extrapolates the others' jobs)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="galmet-full-") as tmp:
        top = Path(args.keep or tmp)
        results = {}
        for part, n in (("a", args.n), ("b", args.small)):
            kept = (top / part / "part.json").exists() or (args.stopped and (top / part / "snakemake.log").exists())
            if part in args.parts or kept:
                results[part] = run_part(part, n, top / part, args)
        sizes = size_layer(Path("<workdir>"), args.shards)
        print("configs: configs/paper.yaml + sizes.yaml (the benchmark has no network: a synthetic catalog "
              "and local hard-linked cutouts stand for SkyServer):\n" + yaml.safe_dump(sizes, sort_keys=False))
        out = report(results.get("a"), results.get("b"), sizes, args.box_cores)
    print(json.dumps(out, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
