"""The notebook entry point: :func:`load_model` and its :class:`Model`.

``galmet.load_model(path)`` opens a model file (weights only, :func:`galmet.modelfile.load`) and
gives a :class:`Model` with

``.predict(images)``  the predictions of ``galmet predict`` as an astropy ``Table`` (units on its
                      columns from the target registry, :mod:`galmet.targets`), or a pandas
                      ``DataFrame`` with ``as_frame=True``;
``.explain(images)``  saliency maps with their sanity checks (:func:`galmet.explain.explain`), as
                      an :class:`Explanation`;
``.info``             what the model is and where it comes from: name, target, unit, architecture,
                      resolution, training images, calibration, applicability domain, TTA, galmet
                      version, the file's SHA-256.

``images`` is one of: a folder of ``<objID>.jpg`` cutouts (as ``galmet predict --images``; its
``cutouts.json`` is checked against the model's training images, and a mismatch raises
:class:`galmet.cutouts.manifest.SurveyMismatchError` unless ``allow_survey_mismatch=True``), a
list of image paths, or a uint8 array ``N x H x W x 3`` (one ``H x W x 3`` image is a batch of
one) of any size, brought to the model's resolution as the command line does
(:func:`galmet.imaging.to_resolution`). The first column names each image: ``objID`` for a folder,
for paths named ``<objID>.jpg`` and for an array given ``ids=``, else ``path`` (a list of other
file names) or ``index`` (the row of the array). Then ``prediction`` (the mean over the TTA views
and an ensemble's members), a calibrated ensemble's interval bounds (``p2p5, p16, p84, p97p5``;
``levels=[0.9]`` adds ``p5, p95``) and, for a model with an applicability-domain block,
``domain_p`` and ``in_domain`` (``domain_p >= domain_alpha``, by default the alpha the model file
records; an out-of-domain row keeps its prediction, its interval bounds are left empty and
``meta["n_out_of_domain"]`` counts them): the columns of ``galmet predict``.

An image the model cannot answer is skipped with the command line's reason (``too_small``,
``not_colour``, ``undecodable``, ``bad_objid`` for a folder's file not named ``<objID>.jpg``,
...), logged as a warning (logger ``galmet.api``) and listed in the table's
``meta["skipped"]`` (a DataFrame's ``attrs["skipped"]``); it never costs the other images
anything, and each gets exactly the number ``galmet predict`` gives it: both (and the workflow's
``infer`` target) are thin callers of one path, :mod:`galmet.inputs` and :mod:`galmet.predict`.
When every image is refused (a folder of grayscale images, say) the table is empty, with the
reasons in ``meta["skipped"]``; a folder without a single ``<objID>.jpg`` is a ValueError.

Example, with a calibrated ensemble (``model_path``) on a folder of the demo's cutouts
(``DEMO_IMAGES``: ``resources/demo/images``, or a part of it)::

    >>> import galmet
    >>> import numpy as np
    >>> model = galmet.load_model(model_path)
    >>> model.info["target"], model.info["unit"], model.info["resolution"], model.info["kind"]
    ('oh_p50', 'dex', 16, 'ensemble')
    >>> table = model.predict(DEMO_IMAGES, levels=[0.9])
    >>> table.colnames
    ['objID', 'prediction', 'p2p5', 'p5', 'p16', 'p84', 'p95', 'p97p5', 'domain_p', 'in_domain']
    >>> len(table) == len(list(DEMO_IMAGES.glob("*.jpg"))), str(table["prediction"].unit), str(table["p16"].unit)
    (True, 'dex', 'dex')
    >>> inside = np.asarray(table["in_domain"])  # domain_p >= the model's own alpha
    >>> bool(((table["p16"] <= table["prediction"]) & (table["prediction"] <= table["p84"]))[inside].all())
    True
    >>> bool(np.isnan(np.asarray(table["p16"])[~inside]).all())  # out of the domain: no interval
    True

An image unlike the training images (here noise) is out of the domain at the model's own alpha: its
row keeps the prediction and ``domain_p``, its interval bounds are empty, and the log says how many::

    >>> noise = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    >>> out = model.predict(noise)
    >>> bool(out["in_domain"][0]), bool(np.isnan(out["p16"][0])), out.meta["n_out_of_domain"]
    (False, True, 1)

The same images as arrays of another size, and as a pandas DataFrame::

    >>> from galmet.imaging import read_image
    >>> from PIL import Image
    >>> first = read_image(DEMO_IMAGES / f"{table['objID'][0]}.jpg")
    >>> big = np.asarray(Image.fromarray(first).resize((100, 100)))
    >>> frame = model.predict(np.stack([first, first[..., ::-1].copy()]), as_frame=True)
    >>> list(frame.columns[:2]), len(frame)
    (['index', 'prediction'], 2)
    >>> bool(abs(frame["prediction"][0] - table["prediction"][0]) < 1e-6)
    True
    >>> len(model.predict(big[None], ids=[table["objID"][0]]))
    1

A grayscale image is skipped with the command line's reason, the others are predicted::

    >>> grey = np.repeat(first[..., :1], 3, axis=-1)
    >>> out = model.predict(np.stack([grey, first]))
    >>> out["index"].tolist(), out.meta["skipped"][0]["reason"].split(":")[0]
    ([1], 'not_colour')

Saliency maps::

    >>> ex = model.explain(np.stack([first, first[:, ::-1]]), check_max=2, steps=4, random_orders=1)
    >>> ex.maps.shape, ex.overlay(0).shape
    ((2, 16, 16), (256, 256, 3))
    >>> sorted(ex.checks)[:3]
    ['deletion', 'kind', 'layer']
    >>> bool(np.allclose(ex.predictions, model.predict(ex.images)["prediction"]))
    True
    >>> [ex.verdicts[k].split(":")[0] for k in ("randomisation", "deletion")]  # two images decide nothing
    ['inconclusive', 'inconclusive']
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from galmet._version import __version__
from galmet.config import default
from galmet.domain import default_alpha, smallest_alpha
from galmet.inputs import log_skipped, open_source
from galmet.predict import choose_tta, predict_rows, prepare
from galmet.predict import domain_alpha as resolve_alpha
from galmet.tables import column_info, file_sha256

log = logging.getLogger("galmet.api")

#: the columns that name the images, by input (see the module docstring).
ID_COLUMNS = ("objID", "path", "index")


def load_model(path, device: str | None = None, domain_alpha: float | None = None, reproducible=None) -> Model:
    """Open a model file (weights only, :func:`galmet.modelfile.load`) for :meth:`Model.predict`
    and :meth:`Model.explain`. ``device``: ``auto`` (CUDA if available), ``cpu`` or ``cuda``
    (default: the config's ``predict.device``); ``domain_alpha``: the level of ``in_domain``
    (default: the one the model file records; one its calibration cannot reach raises
    :class:`galmet.domain.DomainAlphaError` naming the smallest usable value); ``reproducible``: True predicts in the
    reproducible mode, bit-identical on every x86-64 CPU at about 6.5x the CPU time (default: the
    config's ``predict.reproducible``, whose ``auto`` is the fast kernels here). Raises
    :class:`galmet.modelfile.ModelFileError` naming the file when it is not a galmet model."""
    from galmet.modelfile import load
    from galmet.reproducible import for_prediction

    path = Path(path)
    setting = default("predict.reproducible") if reproducible is None else reproducible
    net, meta = load(path, default("predict.device") if device is None else device,
                     reproducible=for_prediction(setting, evaluation=False))
    return Model(net, meta, path, domain_alpha=domain_alpha)


@dataclass
class Explanation:
    """What :meth:`Model.explain` gives: ``table`` (the images' names, ``prediction`` and, for a
    model with a domain block, ``domain_p`` / ``in_domain``), ``maps`` (signed, float
    ``N x res x res``: positive where the pixels push the prediction up), ``images`` (uint8
    ``N x res x res x 3``, as the model saw them), ``checks`` (the sanity checks, as
    ``saliency_checks.json`` of ``galmet explain``) and ``skipped`` (the images left out, with
    their reasons)."""

    table: object
    maps: np.ndarray
    images: np.ndarray
    checks: dict
    skipped: list = field(default_factory=list)

    @property
    def predictions(self) -> np.ndarray:
        return np.asarray(self.table["prediction"], dtype=np.float64)

    @property
    def verdicts(self) -> dict[str, str]:
        """Each sanity check's verdict in words, as ``galmet explain`` logs them: ``passes``,
        ``FAILS`` or ``inconclusive`` with the number of images that would decide it
        (:func:`galmet.captions.check_verdicts`)."""
        from galmet.captions import check_verdicts

        return check_verdicts(self.checks)

    def overlay(self, i: int, size: int = 256) -> np.ndarray:
        """Image ``i`` with its |map| over it (inferno, opaque where strong): ``size x size x 3`` uint8."""
        from galmet.explain import overlay

        return overlay(self.images[i], self.maps[i], size=size)


class Model:
    """A loaded galmet model (single network or calibrated ensemble): see :mod:`galmet.api`."""

    def __init__(self, net, meta: dict, path, domain_alpha: float | None = None):
        self.net, self.meta, self.path = net, meta, Path(path)
        self.domain_alpha = resolve_alpha(meta, domain_alpha, option="domain_alpha=")
        self.sha256 = file_sha256(self.path)
        self.device = str(next(net.parameters()).device)

    def __repr__(self) -> str:
        i = self.info
        what = f"ensemble of {len(i['members'])} {i['arch']}" if i["kind"] == "ensemble" else i["arch"]
        cal = f", calibrated on {i['calibration']['n']} galaxies" if i["calibration"] else ""
        return f"<galmet.Model {i['name']}: {i['target']}, {what}, {i['resolution']} px{cal}>"

    @property
    def info(self) -> dict:
        """The model's provenance (from its file's meta) and identity (path, SHA-256)."""
        from galmet.targets import get_target

        m = self.meta
        cal, dom = m.get("calibration"), m.get("domain")
        return {
            "name": m.get("name") or self.path.parent.name, "path": str(self.path), "sha256": self.sha256,
            "target": m.get("target"), "unit": get_target(m["target"]).unit if m.get("target") else "",
            "kind": m.get("kind", "single"), "arch": m.get("arch"), "resolution": int(m["resolution"]),
            "members": [mm.get("name") for mm in m.get("members") or []],
            "images": m.get("images"), "tta": choose_tta(None, m),
            "calibration": None if cal is None else {
                "split": cal.get("split"), "n": int(cal["n"]), "tta": int(cal["tta"]),
                "max_level": round(int(cal["n"]) / (int(cal["n"]) + 1), 4), "valid_rmse": cal.get("valid_rmse")},
            "domain": None if dom is None else {
                "alpha": self.domain_alpha, "model_alpha": default_alpha(dom), "n": int(dom["n"]),
                "min_p": round(1 / (int(dom["n"]) + 1), 6), "smallest_alpha": smallest_alpha(int(dom["n"]))},
            "galmet_version": m.get("galmet_version"),  # that wrote the file; None where it is not recorded
            "loaded_with": __version__,
        }

    # ------------------------------------------------------------------------- predict

    def predict(self, images, ids=None, tta: bool | None = None, levels=(), as_frame: bool = False,
                batch_size: int | None = None, chunk_size: int | None = None, max_pixels: int | None = None,
                allow_survey_mismatch: bool = False):
        """Predictions of ``images`` (a folder, a list of paths or a uint8 array: see :mod:`galmet.api`)
        as ``galmet predict`` makes them, through the same path (:mod:`galmet.inputs`,
        :func:`galmet.predict.prepare`, :func:`galmet.predict.predict_rows`): an astropy ``Table``, or
        a pandas ``DataFrame`` with ``as_frame=True``. ``ids``: the objIDs of an array's images.
        ``tta``: None for the model's own TTA, True / False as ``--tta`` / ``--no-tta`` (a calibrated
        ensemble refuses False); ``levels``: interval levels besides 0.68 and 0.95; ``max_pixels``:
        the config's ``cutouts.max_pixels`` by default. Images that are all refused give an empty
        table with the reasons in its ``meta["skipped"]``."""
        source = open_source(images, ids, chunk_size)
        run = prepare(self.meta, source, self.path, tta, levels, self.domain_alpha, allow_survey_mismatch,
                      fix="allow_survey_mismatch=True", logger="galmet.api")
        parts = list(predict_rows(source, self.net, self.meta, run, batch_size, self.device, max_pixels))
        if run.n_seen == 0:
            raise ValueError(f"{source.empty_message()}: nothing to predict")
        names = run.columns(self.meta)
        columns = {source.id_name: np.concatenate([k for k, _, _ in parts]) if parts else np.empty(0),
                   **{n: np.concatenate([c[n] for _, c, _ in parts]) if parts else np.empty(0) for n in names}}
        extra = {"tta": run.tta, "levels": run.levels, "domain_alpha": run.alpha, "warnings": run.notes}
        if run.log_domain(self.meta, "galmet.api") is not None:
            extra["n_out_of_domain"] = run.n_out_of_domain
        return self._table(columns, source, extra, as_frame)

    def _table(self, columns: dict, source, extra: dict, as_frame: bool):
        skipped = source.skipped_records()
        log_skipped(source.skipped, "galmet.api")
        meta = {"model": str(self.path), "sha256": self.sha256, "target": self.meta.get("target"),
                **extra, "skipped": skipped}
        columns = {k: _dtype(k, v) for k, v in columns.items()}
        units, descriptions = column_info(self.meta.get("target"), list(columns))
        units = {k: u for k, u in units.items() if u}
        if as_frame:
            import pandas as pd

            frame = pd.DataFrame(columns)
            frame.attrs.update(meta, units=units)
            return frame
        from astropy.table import Table

        return Table(columns, units=units, descriptions={k: d for k, d in descriptions.items() if d}, meta=meta)

    # ------------------------------------------------------------------------- explain

    def explain(self, images, ids=None, tta: bool | None = None, method: str | None = None,
                max_pixels: int | None = None, allow_survey_mismatch: bool = False, as_frame: bool = False,
                **settings) -> Explanation:
        """Saliency maps of ``images`` (as for :meth:`predict`) and their sanity checks, as
        ``galmet explain`` makes them (:func:`galmet.explain.explain`); ``method`` (gradcam, ig,
        occlusion) and ``settings`` (``layer``, ``steps``, ``random_orders``, ``check_max``, ``seed``,
        ``ig_steps``, ``batch_size``) default to the config's ``saliency`` section."""
        from galmet.domain import columns as domain_columns
        from galmet.explain import ExplainSettings, explain

        source = open_source(images, ids, 1 << 30)
        run = prepare(self.meta, source, self.path, tta, (), self.domain_alpha, allow_survey_mismatch,
                      fix="allow_survey_mismatch=True", logger="galmet.api")
        given = {"method": method, **settings}
        exs = ExplainSettings(tta=run.tta, **{k: v for k, v in given.items() if v is not None})
        got = list(source.chunks(int(self.meta["resolution"]), max_pixels))
        keys = np.concatenate([k for k, _, _ in got]) if got else np.empty(0)
        x = np.concatenate([x for _, x, _ in got]) if got else np.empty((0, 0, 0, 3), np.uint8)
        if len(x) == 0:
            raise ValueError(f"no image to explain: all {len(source.skipped)} were skipped "
                             f"({'; '.join(r for *_, r in source.skipped)})")
        maps, preds, checks = explain(self.net, self.meta, x, exs, device=self.device)
        columns = {source.id_name: keys, "prediction": preds,
                   **domain_columns(self.meta.get("domain"), x, self.domain_alpha)}
        table = self._table(columns, source, {"tta": exs.tta, "warnings": run.notes}, as_frame)
        return Explanation(table, maps, x, checks, source.skipped_records())


def _dtype(name: str, values) -> np.ndarray:
    v = np.asarray(values)
    if name in ("objID", "index"):
        return v.astype(np.int64)
    if name == "in_domain":
        return v.astype(bool)
    return v.astype(str) if name == "path" else v.astype(np.float64)



__all__ = ["load_model", "Model", "Explanation", "ID_COLUMNS"]
