"""Which applicability-domain score (issue 17, point 2): compared on the validation split and on
shifted copies of the validation galaxies.

A trained model (``--model``, single or ensemble) and the workflow's results folder (its image
stores, split and clean catalog) give: the training images (at most ``MAX_IMAGES`` of them,
the reference), the validation images (in-domain) and, for each shift of
:mod:`galmet.shifts` applied to the validation cutouts at full size, the same galaxies shifted
(out of domain). Each candidate score is computed for all of them; printed per candidate and
shift: the AUROC of in-domain against shifted (1 = every shifted image scores above every
in-domain one), and the false-flag rate of the conformal p-value on validation galaxies it was
not calibrated on (random halves of the validation split, 20 repeats), at alpha 0.05 and 0.1
(the demo's 74 validation galaxies cannot give p-values below 1/38 within a half).

Candidates: ``knn`` (k = 1, 5, 20; mean cosine distance to the nearest training embeddings, the
embedding being the input of the head's last layer averaged over the TTA views),
``mahalanobis_emb`` (in the embedding, on its first 20 principal components), ``disagreement``
(the standard deviation over members x TTA views), ``stats`` (Mahalanobis distance of
:func:`galmet.domain.image_statistics`: what galmet uses), and the combinations
``max(knn5, stats)`` and ``max(mahalanobis_emb, stats)`` (each part over its median on the
training images). The test split is never read.

    .venv/bin/python benchmarks/domain_shift.py --model results/models/oh_p50/resnet18-64px-seed0/model.pt \\
        [--results results] [--target oh_p50] [--json out.json] [--flags]

``--flags`` prints instead the decision rule's flag rates at alpha 0.01 and 0.05 (:func:`flag_rates`):
galmet's test (the statistics distance and the band-order discriminant, cross-conformal on the
training galaxies) against the statistics distance alone, on the validation galaxies and their
shifted copies: what chose the band-order test and its share of the level.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from galmet import domain  # noqa: E402
from galmet.augment import d4  # noqa: E402
from galmet.dataset import load_split, sample_split, split_members  # noqa: E402
from galmet.imaging import bring_to_resolution  # noqa: E402
from galmet.model import members as model_members  # noqa: E402
from galmet.model import normalisation_constants, to_input  # noqa: E402
from galmet.modelfile import load  # noqa: E402
from galmet.shifts import SHIFTS, shift  # noqa: E402


@torch.no_grad()
def forward(model, meta, x: np.ndarray, tta: int, batch: int = 128) -> dict:
    """``views`` (N x M x tta outputs), ``embedding`` (N x M x D: the input of each member's last
    head layer, averaged over the views) and ``images`` (at the model's resolution)."""
    nets = model_members(model)
    layers = [[m for m in net.head.modules() if isinstance(m, torch.nn.Linear)][-1] for net in nets]
    seen = [None] * len(nets)
    hooks = [layer.register_forward_pre_hook(lambda _m, a, j=j: seen.__setitem__(j, a[0].detach()))
             for j, layer in enumerate(layers)]
    res = int(meta["resolution"])
    scale, shift_ = normalisation_constants(meta["normalisation"]["mean"], meta["normalisation"]["std"], "cpu")
    xr = bring_to_resolution(np.ascontiguousarray(x), res)
    views, embs = [], []
    model.eval()
    try:
        for s in range(0, len(xr), batch):
            inp = to_input(torch.from_numpy(xr[s:s + batch]).permute(0, 3, 1, 2), scale, shift_)
            v, e = [], 0
            for k in range(tta):
                v.append(model(d4(inp, k)).reshape(len(inp), len(nets)))
                e = e + torch.stack(seen, dim=1)
            views.append(torch.stack(v, dim=2).double().numpy())
            embs.append((e / tta).numpy())
    finally:
        for h in hooks:
            h.remove()
    return {"views": np.concatenate(views), "embedding": np.concatenate(embs), "images": xr}


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """P(score of a shifted image > score of an in-domain one), ties counting one half."""
    inside, outside = np.asarray(inside), np.asarray(outside)
    greater = (outside[:, None] > inside[None, :]).mean()
    ties = (outside[:, None] == inside[None, :]).mean()
    return float(greater + 0.5 * ties)


def knn_distance(emb: np.ndarray, reference: np.ndarray, k: int, exclude_self: bool = False) -> np.ndarray:
    """Mean cosine distance to the ``k`` nearest reference embeddings, averaged over members."""
    q = torch.nn.functional.normalize(torch.as_tensor(emb).float(), dim=-1)
    ref = torch.nn.functional.normalize(torch.as_tensor(reference).float(), dim=-1)
    out = 0
    for j in range(q.shape[1]):
        d = 1.0 - q[:, j] @ ref[:, j].T
        near = torch.topk(d, min(k + int(exclude_self), d.shape[1]), dim=1, largest=False).values
        out = out + (near[:, 1:] if exclude_self else near).double().mean(dim=1)
    return (out / q.shape[1]).numpy()


def pca(emb: np.ndarray, n: int = 20) -> dict:
    """Mean, first ``n`` principal axes and their standard deviations of member-averaged embeddings."""
    m = emb.mean(axis=1)
    mean = m.mean(axis=0)
    _, s, vt = np.linalg.svd(m - mean, full_matrices=False)
    n = min(n, len(s))
    fitted = {"mean": mean, "components": vt[:n], "sd": s[:n] / np.sqrt(max(len(m) - 1, 1)) + 1e-9}
    fitted["median"] = float(np.median(emb_mahalanobis(fitted, emb)))
    return fitted


def emb_mahalanobis(fitted: dict, emb: np.ndarray) -> np.ndarray:
    z = (emb.mean(axis=1) - fitted["mean"]) @ fitted["components"].T / fitted["sd"]
    return np.sqrt((z ** 2).sum(axis=1))


def candidates(ref: dict, out: dict) -> dict[str, np.ndarray]:
    """Every candidate score of one set of forward outputs (``ref``: what the training images give)."""
    emb = out["embedding"]
    knn = {f"knn{k}": knn_distance(emb, ref["embedding"], k) for k in (1, 5, 20)}
    maha = emb_mahalanobis(ref["pca"], emb)
    stats = domain.stats_distance(domain.image_statistics(out["images"]), ref["stats_fit"])
    rel = stats / ref["stats_median"]
    return {**knn, "mahalanobis_emb": maha, "disagreement": out["views"].reshape(len(emb), -1).std(axis=1),
            "stats": stats, "max(knn5, stats)": np.maximum(knn["knn5"] / ref["knn5_median"], rel),
            "max(mahalanobis_emb, stats)": np.maximum(maha / ref["pca"]["median"], rel)}


def false_flags(valid_scores: np.ndarray, alphas=(0.05, 0.1), repeats: int = 20) -> dict:
    """Mean fraction flagged among held-out validation galaxies (calibrated on the other half)."""
    rng = np.random.default_rng(0)
    out = {a: [] for a in alphas}
    for _ in range(repeats):
        perm = rng.permutation(len(valid_scores))
        cal, held = perm[: len(perm) // 2], perm[len(perm) // 2:]
        p = domain.p_values({"version": 1, "scores": np.sort(valid_scores[cal])}, valid_scores[held])
        for a in alphas:
            out[a].append(float(np.mean(p < a)))
    return {a: float(np.mean(v)) for a, v in out.items()}


def flag_rates(train_x: np.ndarray, valid_x: np.ndarray, res: int, alphas=(0.01, 0.05)) -> dict:
    """The decision rule's flag rates: the domain test fitted and calibrated cross-conformally on the
    training images only, as galmet does (``galmet``: statistics distance and band order) and with
    the statistics distance alone (``distance only``), applied to the validation galaxies and their
    shifted copies: ``{variant: {set: {alpha: fraction flagged}}}``."""
    stats, band = domain._features(train_x, res)
    sets = {"validation": valid_x, **{s: shift(s, valid_x, seed=1) for s in SHIFTS}}
    feats = {name: domain._features(x, res) for name, x in sets.items()}
    out = {}
    for variant, weight in (("distance only", 0.0), ("galmet", domain.BAND_WEIGHT)):
        block = domain.fit_features(stats, band, res, alpha=0.05, band_weight=weight, split="train")
        out[variant] = {}
        for name, (st, bd) in feats.items():
            p = domain.p_values(block, domain.feature_scores(block, st, bd))
            out[variant][name] = {a: float(np.mean(p < a)) for a in alphas}
    return out


def print_flags(rates: dict, n_train: int, n_valid: int, res: int) -> None:
    names = list(next(iter(rates.values())))
    print(f"\nflagged fraction at alpha 0.01 / 0.05 ({res} px; cross-conformal on {n_train} training galaxies; "
          f"{n_valid} validation galaxies and their shifted copies)\n")
    print("| test | " + " | ".join(n.replace("_", " ") for n in names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for variant, row in rates.items():
        print(f"| {variant} | " + " | ".join(f"{row[n][0.01]:.0%} / {row[n][0.05]:.0%}" for n in names) + " |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--results", default="results")
    ap.add_argument("--target", default="oh_p50")
    ap.add_argument("--json")
    ap.add_argument("--flags", action="store_true",
                    help="only the flag rates of the decision rule (no forward passes; --model gives the resolution)")
    args = ap.parse_args()
    res_dir = Path(args.results)
    model, meta = load(args.model)
    res, tta = int(meta["resolution"]), int(meta.get("tta", 8))
    index = sorted(res_dir.glob("images/*/index.parquet"))
    full = [p.parent / f"{max(int(q.stem[:-2]) for q in p.parent.glob('*px.npy'))}px.npy" for p in index]
    members = split_members(res_dir / "catalog" / "clean.parquet", res_dir / "split.parquet", index, args.target)
    train = sample_split(members, "train", args.target, index, full, domain.MAX_IMAGES)
    valid = load_split(members, "valid", args.target, index, full)
    if args.flags:
        rates = flag_rates(train.x, valid.x, res)
        print_flags(rates, len(train), len(valid), res)
        if args.json:
            Path(args.json).write_text(json.dumps(rates, indent=2))
        return 0
    t0 = time.perf_counter()
    tr = forward(model, meta, train.x, tta)
    fitted = domain.fit_stats(domain.image_statistics(tr["images"]))
    ref = {"embedding": tr["embedding"], "pca": pca(tr["embedding"]), "stats_fit": fitted,
           "knn5_median": float(np.median(knn_distance(tr["embedding"], tr["embedding"], 5, exclude_self=True))),
           "stats_median": float(np.median(domain.stats_distance(domain.image_statistics(tr["images"]), fitted)))}
    inside = candidates(ref, forward(model, meta, valid.x, tta))
    shifted = {s: candidates(ref, forward(model, meta, shift(s, valid.x, seed=1), tta)) for s in SHIFTS}
    secs = time.perf_counter() - t0
    names = list(inside)
    table = {c: {s: auroc(inside[c], shifted[s][c]) for s in SHIFTS} for c in names}
    flags = {c: false_flags(inside[c]) for c in names}
    print(f"model {args.model} ({res} px, TTA x{tta}); {len(train)} training (reference), {len(valid)} validation "
          f"galaxies; {secs:.0f} s\n")
    print("| score | " + " | ".join(SHIFTS) + " | worst but pasted | false flags a=0.05 / 0.1 |")
    print("|---" * (len(SHIFTS) + 3) + "|")
    for c in names:
        worst = min(v for s, v in table[c].items() if s != "pasted_neighbour")
        print(f"| {c} | " + " | ".join(f"{table[c][s]:.3f}" for s in SHIFTS) +
              f" | {worst:.3f} | {flags[c][0.05]:.3f} / {flags[c][0.1]:.3f} |")
    result = {"model": str(args.model), "n_train": len(train), "n_valid": len(valid), "auroc": table,
              "false_flags": {c: {str(a): v for a, v in f.items()} for c, f in flags.items()}, "seconds": secs}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
