"""What the paper config's cheaper random-forest search costs in validation RMSE (issue 10, point 6).

On real photometry (tests/data/gz_photometry.csv: 5,000 SDSS galaxies with ugriz and a stellar
mass, the only real magnitudes bundled), predicting log stellar mass from ugriz + colours on a
60/20/20 split, compares:

- ``default``: the schema's default grid (200 trees, max_depth None/16, min_samples_leaf
  1/5/20: 6 candidates, fully grown trees allowed) searched on every training galaxy;
- ``paper``: configs/paper.yaml's grid (100 trees, max_depth 12/16, min_samples_leaf 5/20,
  max_features 0.5: 4 candidates), searched on a quarter of the training galaxies (as 20,000 of
  ~85,000 at the paper's scale) and the chosen forest refit on all.

Prints, per setting, the chosen hyperparameters, the validation RMSE of the chosen forest, the
fit seconds; the test split is not looked at. The last line
is one JSON object.

    .venv/bin/python benchmarks/rf_grid.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from galmet import baselines  # noqa: E402
from galmet.config import section  # noqa: E402
from galmet.split import assign_splits  # noqa: E402


def load() -> pd.DataFrame:
    df = pd.read_csv(ROOT / "tests" / "data" / "gz_photometry.csv")
    df["objID"] = np.arange(1, len(df) + 1, dtype="int64")  # the file's ids are float-damaged
    df.loc[df["stellar_mass"] < 0, "stellar_mass"] = np.nan
    df["split"] = assign_splits(df["objID"].to_numpy(), seed=1,
                                fractions={"train": 0.6, "valid": 0.2, "test": 0.2})
    return df


def settings(n_train: int) -> dict:
    paper = yaml.safe_load((ROOT / "configs" / "paper.yaml").read_text())["baselines"]
    common = {"magnitude_columns": "mag_{band}", "seed": 0, "n_jobs": 2}
    return {"default": {**common, "rf": section("baselines")["rf"]},
            "paper": {**common, "rf": paper["rf"], "search_max_train": n_train // 4}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    df = load()
    n_train = int((df["split"] == "train").sum())
    runs: dict[str, list] = {"default": [], "paper": []}
    for _ in range(args.repeats):  # interleaved
        for name, params in settings(n_train).items():
            t0 = time.perf_counter()
            result, _ = baselines.random_forest_baseline(df, "stellar_mass", "ugriz", params=params)
            runs[name].append({"seconds": time.perf_counter() - t0, "valid_rmse": result["params"]["valid_rmse"],
                               "chosen": {k: result["params"][k] for k in
                                          ("n_estimators", "max_depth", "min_samples_leaf", "max_features")},
                               "n_search": result["n_search"], "n_train": result["n_train"]})
    out = {}
    for name, rs in runs.items():
        out[name] = {"valid_rmse": rs[0]["valid_rmse"], "seconds_median": statistics.median(r["seconds"] for r in rs),
                     "chosen": rs[0]["chosen"], "n_search": rs[0]["n_search"], "n_train": rs[0]["n_train"]}
        print(f"{name:8s} valid RMSE {out[name]['valid_rmse']:.4f} dex  {out[name]['seconds_median']:.1f} s "
              f"(median of {len(rs)})  searched on {out[name]['n_search']} of {out[name]['n_train']}  "
              f"chosen {out[name]['chosen']}")
    out["valid_rmse_cost"] = out["paper"]["valid_rmse"] - out["default"]["valid_rmse"]
    out["time_ratio"] = out["paper"]["seconds_median"] / out["default"]["seconds_median"]
    print(f"paper - default: {out['valid_rmse_cost']:+.4f} dex valid RMSE, time x{out['time_ratio']:.2f}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
