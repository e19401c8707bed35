"""Writing prediction tables: time and size of 100k predictions in each format of galmet.tables.

    .venv/bin/python benchmarks/table_formats.py [--rows 100000] [--repeats 5] [--chunk 1024]

The rows are what a calibrated ensemble with an applicability-domain block writes (``objID``,
``prediction``, ``p2p5, p16, p84, p97p5``, ``domain_p``, ``in_domain``; target ``oh_p50``), fed
to :class:`galmet.predict.PredictionWriter` in chunks of ``--chunk`` rows (``infer.chunk_size``'s
default; ``galmet predict``'s is 8192) with a provenance block, as ``galmet predict --out`` does. CSV and Parquet
are streamed; FITS, ECSV and VOTable are collected and written at the end. Formats are
interleaved within each repeat (the order rotates), so a slow moment of the machine hits every
format alike; medians over repeats, ratios to Parquet. Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

FORMATS = ["parquet", "csv", "fits", "ecsv", "vot"]
PROVENANCE = {
    "galmet_version": "bench", "model": "resnet18-64px-seeds0-1-2", "model_sha256": "0" * 64, "target": "oh_p50",
    "images": {"source": "skyserver", "provider": "skyserver", "survey": "SDSS", "layer": None,
               "data_release": "DR14", "bands": ["i", "r", "g"], "scale": "adaptive", "size": [128, 128]},
    "calibration": {"method": "split conformal, score |y - mean| / spread", "split": "valid", "n": 74,
                    "levels": [0.68, 0.95]},
    "domain_alpha": 0.01, "tta": 8, "date": "2026-01-01T00:00:00+00:00",
}


def rows(n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    mean = rng.normal(8.9, 0.2, n)
    sd = rng.uniform(0.05, 0.3, n)
    p = rng.uniform(0, 1, n)
    return {"objID": 1237648702973411443 + np.arange(n, dtype=np.int64), "prediction": mean,
            "p2p5": mean - 2 * sd, "p16": mean - sd, "p84": mean + sd, "p97p5": mean + 2 * sd,
            "domain_p": p, "in_domain": p >= 0.01}


def write(path: Path, data: dict, chunk: int) -> float:
    from galmet.predict import PredictionWriter

    t0 = time.perf_counter()
    with PredictionWriter(path, target="oh_p50", provenance=PROVENANCE) as w:
        for s in range(0, len(data["objID"]), chunk):
            sl = slice(s, s + chunk)
            w.write(data["objID"][sl], data["prediction"][sl],
                    after={k: v[sl] for k, v in data.items() if k not in ("objID", "prediction")})
    return time.perf_counter() - t0


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--chunk", type=int, default=1024)
    args = ap.parse_args(argv)
    data = rows(args.rows)
    times: dict[str, list[float]] = {f: [] for f in FORMATS}
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        small = rows(100)
        for f in FORMATS:  # warm-up: imports (astropy) and first-call costs stay out of the timing
            write(Path(tmp) / f"warm.{f}", small, args.chunk)
        for r in range(args.repeats):
            for f in FORMATS[r % len(FORMATS):] + FORMATS[:r % len(FORMATS)]:
                path = Path(tmp) / f"pred.{f}"
                times[f].append(write(path, data, args.chunk))
                sizes[f] = path.stat().st_size
                path.unlink()
    med = {f: statistics.median(v) for f, v in times.items()}
    print(f"{args.rows} rows, {args.repeats} interleaved repeats, chunks of {args.chunk}")
    print(f"{'format':8} {'median s':>9} {'x parquet':>10} {'MB':>8} {'x parquet':>10}")
    for f in FORMATS:
        print(f"{f:8} {med[f]:9.3f} {med[f] / med['parquet']:10.1f} {sizes[f] / 1e6:8.2f} "
              f"{sizes[f] / sizes['parquet']:10.2f}")
    result = {"rows": args.rows, "repeats": args.repeats, "chunk": args.chunk, "seconds": med,
              "all_seconds": times, "bytes": sizes,
              "time_ratio_to_parquet": {f: med[f] / med["parquet"] for f in FORMATS},
              "size_ratio_to_parquet": {f: sizes[f] / sizes["parquet"] for f in FORMATS}}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
