"""``galmet explain``: saliency maps of a trained model on a folder of ``<objID>.jpg`` cutouts,
with their sanity checks (:mod:`galmet.explain`).

Writes ``OUT/<objID>.png`` (|map| over the cutout at the model's resolution, titled with the
prediction, with a colour bar), ``OUT/saliency.npz``, ``OUT/saliency_checks.json`` and
``OUT/skipped.log`` (unreadable images, skipped with a warning as ``galmet predict`` does).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from galmet.backbones import AUTO_LAYER, saliency_layers
from galmet.cli.common import fail, load_model, model_errors, reproducible_option, start_logging, write_skipped_log
from galmet.config import default, section
from galmet.explain import METHODS, ExplainSettings, explain, overlay, write_maps
from galmet.inputs import FolderSource
from galmet.io import atomic_path, write_json
from galmet.predict import prepare

log = logging.getLogger("galmet.explain")


def cli_parser() -> argparse.ArgumentParser:
    d = section("saliency")  # the defaults of the config's saliency section
    p = argparse.ArgumentParser(
        description="Saliency maps of a trained galmet model (or ensemble) for <objID>.jpg cutouts, with the "
        "randomisation and deletion sanity checks: OUT/<objID>.png, OUT/saliency.npz, OUT/saliency_checks.json; "
        "unreadable images are skipped and listed in OUT/skipped.log.")
    p.add_argument("--model", required=True, help="model.pt written by the workflow's training")
    p.add_argument("--images", required=True, help="directory of <objID>.jpg")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--method", choices=METHODS, default=d["method"], help=f"attribution method (default {d['method']})")
    p.add_argument("--layer", default=d["layer"],
                   help=f"Grad-CAM layer: {AUTO_LAYER} (the backbone's own, e.g. layer2 of a ResNet) or one of "
                        f"{', '.join(saliency_layers())} (default {d['layer']})")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="maps of the prediction averaged over the D4 symmetries (default: the model's TTA setting)")
    p.add_argument("--steps", type=int, default=d["steps"], help=f"deletion-test steps (default {d['steps']})")
    p.add_argument("--random-orders", type=int, default=d["random_orders"],
                   help=f"random deletion orders to compare with (default {d['random_orders']})")
    p.add_argument("--check-max", type=int, default=d["check_max"],
                   help=f"run the checks on at most this many images (default {d['check_max']})")
    p.add_argument("--seed", type=int, default=d["seed"], help="seed of the re-initialisation and random orders")
    p.add_argument("--no-png", action="store_true", help="write no per-image PNG")
    p.add_argument("--batch-size", type=int, default=d["batch_size"],
                   help=f"images per batch (default {d['batch_size']})")
    device = default("predict.device")
    p.add_argument("--device", default=device, help=f"auto (CUDA if available), cpu or cuda (default {device})")
    reproducible_option(p, default("predict.reproducible"))
    p.add_argument("--domain-alpha", type=float, default=None, metavar="A",
                   help="images with domain_p < A (default: the level the model file records) are named in "
                        "OUT/skipped.log as out of the model's domain: their maps explain images unlike the "
                        "training images")
    max_pixels = default("cutouts.max_pixels")
    p.add_argument("--max-pixels", type=int, default=max_pixels, metavar="N",
                   help=f"skip images of more than N pixels, unread (default {max_pixels:,}, the config's "
                        "cutouts.max_pixels)")
    p.add_argument("--allow-survey-mismatch", action="store_true",
                   help="explain even when the images' cutouts.json says another survey, band order or pixel "
                        "scale than the model's training images (a warning in OUT/skipped.log)")
    return p


def cli_main(args) -> int:
    start_logging()
    images, out = Path(args.images), Path(args.out)
    if not images.is_dir():
        return fail("explain", f"--images {images}: not a directory")
    try:
        model, meta = load_model(args)
        source = FolderSource(images, 1 << 30)
        run = prepare(meta, source, args.model, args.tta, (), args.domain_alpha, args.allow_survey_mismatch,
                      logger="galmet.explain")
        settings = ExplainSettings(method=args.method, layer=args.layer, tta=run.tta,
                                   steps=args.steps, random_orders=args.random_orders, check_max=args.check_max,
                                   seed=args.seed, batch_size=args.batch_size)
    except model_errors() as exc:
        return fail("explain", exc)
    got = list(source.chunks(int(meta["resolution"]), args.max_pixels))
    ids = [int(i) for k, _, _ in got for i in k]
    x = np.concatenate([x for _, x, _ in got]) if got else np.empty((0, 0, 0, 3), np.uint8)
    notes = run.notes + _domain_warnings(meta, ids, x, run.alpha)
    out.mkdir(parents=True, exist_ok=True)
    write_skipped_log(out / "skipped.log", f"model {args.model}; {len(ids)} explained, {len(source.skipped)} "
                      f"skipped of {source.n_seen}", source.skipped, command="galmet explain", warnings=notes)
    if not ids:
        return fail("explain", f"no image to explain in {images} (see {out / 'skipped.log'})", 1)
    dev = str(next(model.parameters()).device)
    log.info("explaining %d images with %s (TTA x%d) on %s", len(ids), settings.method, settings.tta, dev)
    maps, preds, checks = explain(model, meta, x, settings, device=dev)
    write_maps(out / "saliency.npz", ids, maps, preds)
    write_json({"model": str(args.model), **checks}, out / "saliency_checks.json")
    if not args.no_png:
        png = PngWriter()
        for oid, img, m, pred in zip(ids, x, maps, preds):
            png.write(out / f"{oid}.png", overlay(img, m), png_title(oid, pred, meta))
    log_checks(checks)
    return 0


def _domain_warnings(meta: dict, ids, x, alpha: float) -> list[str]:
    """Lines for the log naming the images outside the model's applicability domain."""
    from galmet.domain import columns

    cols = columns(meta.get("domain"), x, alpha) if len(ids) else {}
    if not cols:
        return []
    out = [(oid, p) for oid, p in zip(ids, cols["domain_p"]) if p < alpha]
    for oid, p in out:
        log.warning("%s is out of the model's domain (domain_p %.4f < %g): its map explains an image unlike the "
                    "training images", oid, p, alpha)
    head = f"{len(out)} of {len(ids)} explained images are out of the model's domain (domain_p < {alpha:g})"
    return [head + (": " + ", ".join(f"{oid} (domain_p {p:.4f})" for oid, p in out) if out else "")]


class PngWriter:
    """``OUT/<objID>.png``: the overlay titled with the galaxy and its prediction, above a colour bar
    of |map| / its maximum (one figure, its image and title replaced for each galaxy)."""

    def __init__(self):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.cm import ScalarMappable
        from matplotlib.figure import Figure

        self.fig = Figure(figsize=(2.8, 3.25))
        FigureCanvasAgg(self.fig)
        ax = self.fig.add_axes([0.04, 0.2, 0.92, 0.7])
        ax.set_axis_off()
        self.image = ax.imshow(np.zeros((2, 2, 3), np.uint8))
        self.title = ax.set_title("", fontsize=7.5)
        cax = self.fig.add_axes([0.1, 0.11, 0.8, 0.03])
        bar = self.fig.colorbar(ScalarMappable(cmap="inferno"), cax=cax, orientation="horizontal")
        bar.set_label("|saliency| / its maximum (opaque where strong)", fontsize=6)
        bar.ax.tick_params(labelsize=6)

    def write(self, path: Path, rgb: np.ndarray, title: str) -> None:
        self.image.set_data(rgb)
        self.title.set_text(title)
        with atomic_path(path) as tmp:
            self.fig.savefig(tmp, format="png", dpi=110)


def png_title(oid, prediction: float, meta: dict) -> str:
    from galmet.targets import get_target

    target = meta.get("target")
    unit = get_target(target).unit if target else ""
    return f"objID {oid}\npredicted {target or 'value'} = {prediction:.2f}{' ' + unit if unit else ''}"


def log_checks(checks: dict) -> None:
    """One log line per check, each with its own verdict."""
    from galmet.captions import check_verdicts

    for name, verdict in check_verdicts(checks).items():
        log.info("check %s: %s", name, verdict)


__all__ = ["cli_parser", "cli_main", "PngWriter", "png_title", "log_checks"]
