"""Baselines the CNN is compared with (docs/method.md, section 6), on the CNN's own train/valid/test split.

- ``constant``: every galaxy gets the mean of the training targets.
- ``rf_gri`` / ``rf_ugriz``: a scikit-learn random forest on the g, r, i (or u, g, r, i, z)
  magnitudes, plus the adjacent colours (g-r, r-i, ...) when ``colours`` is set. The
  hyperparameters are chosen on the validation split from a grid (every candidate's validation
  RMSE is kept in the result), then the chosen forest is scored once on the test split. At the
  paper's scale the grid is searched on a random subsample of ``search_max_train`` training
  galaxies and the chosen candidate refit on the whole training set (``max_train`` caps both),
  so the search costs a fixed amount whatever the catalog's size.
  The paper: gri RF RMSE 0.130 dex; with ugriz a peer reached 0.081-0.093 dex.

A baseline never crashes on a catalog that cannot support it: without the target or the
magnitude columns (the bundled demo has only objID and oh_p50) it returns
``status="skipped"`` with the reason. Missing magnitudes (NaN, 0 or -9999, as in real SDSS
exports) are not features: such galaxies are left out of training and, in the test split,
counted in ``n_test_unpredictable``.

Result shape (``results/baselines/{target}/{name}.json``)::

    {"name", "target", "status": "ok" | "skipped", "reason": str | None,
     "test": {n, rmse, nmad, nmad_about_zero, median_residual, ..., binned},
     "params": {...chosen hyperparameters...}, "features": [...], "n_train", "n_valid",
     "n_test_unpredictable", "search": [{params, valid_rmse}]}
"""

from __future__ import annotations

import itertools
import logging
import time

import numpy as np
import pandas as pd

from galmet.metrics import evaluate_predictions, rmse
from galmet.targets import get_target

log = logging.getLogger("galmet.baselines")

#: Names of the baselines and the bands each uses (None: no features).
BASELINES = {"constant": None, "rf_gri": "gri", "rf_ugriz": "ugriz"}

#: Magnitudes outside this range are missing values (SDSS writes 0 or -9999 for them).
VALID_MAG = (5.0, 40.0)

__all__ = [
    "BASELINES",
    "feature_matrix",
    "constant_baseline",
    "random_forest_baseline",
    "run_baseline",
    "skipped",
]

_EMPTY_TEST = {"n": 0, "rmse": None, "nmad": None, "nmad_about_zero": None,
               "median_residual": None}


def skipped(name: str, target: str, reason: str, params: dict | None = None) -> dict:
    """The result of a baseline that could not run, with the reason."""
    log.warning("baseline %s for %s skipped: %s", name, target, reason)
    return {"name": name, "target": target, "status": "skipped", "reason": reason,
            "test": dict(_EMPTY_TEST), "params": params or {}}


def _merge_params(params: dict | None) -> dict:
    """``params``: ``config["baselines"]`` (missing keys take the schema defaults, a bad value raises
    :class:`galmet.config.ConfigError`) and ``n_jobs``, the forests' worker processes (default 1)."""
    from galmet.config import section

    given = dict(params or {})
    n_jobs = given.pop("n_jobs", 1)
    return {**section("baselines", given), "n_jobs": n_jobs}


def feature_matrix(table: pd.DataFrame, bands: str, colours: bool = True,
                   template: str = "modelMag_{band}") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Magnitudes (and adjacent colours) of ``bands`` as a float matrix.

    Returns ``(X, valid, names)``: ``valid`` marks rows whose magnitudes are all finite and
    within :data:`VALID_MAG`. Raises KeyError naming the missing columns.
    """
    cols = [template.format(band=b) for b in bands]
    missing = [c for c in cols if c not in table.columns]
    if missing:
        raise KeyError(f"no magnitude column(s) {', '.join(missing)}")
    mags = np.column_stack([pd.to_numeric(table[c], errors="coerce").to_numpy(np.float64)
                            for c in cols]) if len(table) else np.empty((0, len(cols)))
    valid = np.all(np.isfinite(mags) & (mags > VALID_MAG[0]) & (mags < VALID_MAG[1]), axis=1)
    names = list(cols)
    feats = [mags]
    if colours and len(bands) > 1:
        feats.append(mags[:, :-1] - mags[:, 1:])
        names += [f"{a}-{b}" for a, b in zip(bands[:-1], bands[1:], strict=True)]
    return np.column_stack(feats), valid, names


def _split_parts(table: pd.DataFrame, target: str):
    y = pd.to_numeric(table[target], errors="coerce").to_numpy(np.float64)
    split = table["split"].astype(str).to_numpy()
    return y, split


def constant_baseline(table: pd.DataFrame, target: str, bin_width: float | None = None):
    """Mean of the training targets for every test galaxy. Returns (result, predictions).
    ``bin_width``: of the binned statistics (:func:`galmet.metrics.evaluate_predictions`)."""
    y, split = _split_parts(table, target)
    train = (split == "train") & np.isfinite(y)
    test = (split == "test") & np.isfinite(y)
    if not train.any():
        return skipped("constant", target, "no training galaxy with a valid target"), None
    if not test.any():
        return skipped("constant", target, "no test galaxy with a valid target"), None
    value = float(np.mean(y[train]))
    pred = np.full(int(test.sum()), value)
    result = {
        "name": "constant", "target": target, "status": "ok", "reason": None,
        "test": evaluate_predictions(y[test], pred, bin_width=bin_width, threshold=get_target(target).threshold),
        "params": {"value": value}, "features": [], "n_train": int(train.sum()),
        "n_valid": int(((split == "valid") & np.isfinite(y)).sum()), "n_test_unpredictable": 0,
    }
    preds = pd.DataFrame({"objID": table["objID"].to_numpy()[test], target: y[test],
                          "prediction": pred})
    return result, preds


def _grid(rf: dict) -> list[dict]:
    keys = ["n_estimators", "max_depth", "min_samples_leaf", "max_features"]
    values = [list(rf[k]) if isinstance(rf[k], (list, tuple)) else [rf[k]] for k in keys]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]


def _search(X, y, tr, va, p: dict, what: str):
    """Fit every grid candidate on ``tr``, score it on ``va``: ``(score, params, model, search)``
    of the best, with every candidate's validation RMSE in ``search``."""
    from sklearn.ensemble import RandomForestRegressor

    search, best = [], None
    for cand in _grid(p["rf"]):
        model = RandomForestRegressor(random_state=p["seed"], n_jobs=p["n_jobs"], **cand)
        model.fit(X[tr], y[tr])
        score = rmse(model.predict(X[va]) - y[va])
        search.append({"params": cand, "valid_rmse": score})
        log.info("%s: %s on %d galaxies -> valid RMSE %.4f", what, cand, tr.size, score)
        if best is None or score < best[0]:
            best = (score, cand, model)
    return (*best, search)


def random_forest_baseline(table: pd.DataFrame, target: str, bands: str, name: str | None = None,
                           params: dict | None = None, bin_width: float | None = None):
    """Random forest on the magnitudes (and colours) of ``bands``; grid chosen on validation.

    ``table`` holds ``objID``, ``split``, the target and the magnitude columns named by
    ``params["magnitude_columns"]`` (a template with ``{band}``). Returns (result, predictions);
    predictions is None when skipped.
    """
    from sklearn.ensemble import RandomForestRegressor

    p = _merge_params(params)
    name = name or f"rf_{bands}"
    try:
        X, valid, names = feature_matrix(table, bands, p["colours"], p["magnitude_columns"])
    except KeyError as e:
        return skipped(name, target, f"the catalog has {e.args[0]}"), None
    y, split = _split_parts(table, target)
    ok = valid & np.isfinite(y)
    tr = np.flatnonzero(ok & (split == "train"))
    va = np.flatnonzero(ok & (split == "valid"))
    te_all = (split == "test") & np.isfinite(y)
    te = np.flatnonzero(te_all & valid)
    for part, idx, need in (("training", tr, 10), ("validation", va, 2), ("test", te, 1)):
        if idx.size < need:
            return skipped(name, target, f"only {idx.size} {part} galaxies with valid "
                           f"{bands} magnitudes and target (need {need})"), None
    rng = np.random.default_rng(p["seed"])
    if p["max_train"] and tr.size > p["max_train"]:
        tr = np.sort(rng.choice(tr, size=int(p["max_train"]), replace=False))
    search_tr = tr
    if p["search_max_train"] and tr.size > p["search_max_train"]:
        search_tr = np.sort(rng.choice(tr, size=int(p["search_max_train"]), replace=False))
    t0 = time.time()
    score, chosen, model, search = _search(X, y, search_tr, va, p, f"{name} {target}")
    if search_tr.size < tr.size:  # refit the chosen candidate on every training galaxy
        model = RandomForestRegressor(random_state=p["seed"], n_jobs=p["n_jobs"], **chosen).fit(X[tr], y[tr])
        score = rmse(model.predict(X[va]) - y[va])
        log.info("%s %s: %s refit on %d galaxies -> valid RMSE %.4f", name, target, chosen, tr.size, score)
    pred = model.predict(X[te])
    result = {
        "name": name, "target": target, "status": "ok", "reason": None,
        "test": evaluate_predictions(y[te], pred, bin_width=bin_width,
                                     threshold=get_target(target).threshold),
        "params": {**chosen, "random_state": p["seed"], "valid_rmse": score},
        "features": names, "colours": bool(p["colours"]),
        "n_train": int(tr.size), "n_search": int(search_tr.size), "n_valid": int(va.size),
        "n_test_unpredictable": int(te_all.sum() - te.size),
        "search": search, "fit_seconds": round(time.time() - t0, 2),
        "feature_importances": dict(zip(names, map(float, model.feature_importances_),
                                        strict=True)),
    }
    preds = pd.DataFrame({"objID": table["objID"].to_numpy()[te], target: y[te],
                          "prediction": pred})
    return result, preds


def run_baseline(name: str, catalog: pd.DataFrame, split: pd.DataFrame | None, target: str,
                 params: dict | None = None, bin_width: float | None = None):
    """Run baseline ``name`` on the catalog joined to its split. Returns (result, predictions).

    ``split`` (``objID, split``) is joined on objID; pass None when ``catalog`` already has a
    ``split`` column. Predictions (``objID, {target}, prediction``, test split) are an empty
    table when the baseline is skipped.
    """
    empty = pd.DataFrame({"objID": pd.Series(dtype="int64"), target: pd.Series(dtype=float),
                          "prediction": pd.Series(dtype=float)})
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
    if target not in catalog.columns:
        return skipped(name, target, f"the catalog has no {target!r} column"), empty
    table = catalog
    if split is not None:
        table = catalog.drop(columns=["split"], errors="ignore").merge(
            split[["objID", "split"]], on="objID", how="inner", validate="one_to_one")
    if "split" not in table.columns:
        raise ValueError("no split: give a split table or a 'split' column")
    if name == "constant":
        result, preds = constant_baseline(table, target, bin_width=bin_width)
    else:
        result, preds = random_forest_baseline(table, target, BASELINES[name], name=name,
                                               params=params, bin_width=bin_width)
    return result, (preds if preds is not None else empty)
