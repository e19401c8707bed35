"""The six figures of docs/method.md, section 7, one function each, returning a matplotlib Figure.

Figures are built with the object-oriented API (``matplotlib.figure.Figure``, Agg canvas), so
importing this module never touches pyplot or a display, and figures are not kept alive by a
global registry. Sizes are for a journal column (3.5 in) or page (7.2 in), fonts 8 pt.

- :func:`fig1_examples`    example cutouts with Z_pred and Z_true (7 selections x 5)
- :func:`fig2_histograms`  histograms of Z_true and Z_pred (Freedman-Diaconis bins)
- :func:`fig3_scatter`     Z_pred against Z_true, every galaxy drawn, with binned statistics (sizes keyed)
                           and the residuals' histogram beside the panels
- :func:`fig4_resolution`  RMSE and NMAD against image resolution with 1-sigma errors, beside the
                           baselines, each curve's test set named
- :func:`fig5_mass`        predicted against true stellar mass; Z_MZR against Z_true
- :func:`fig6_mzr`         Z_pred against true stellar mass beside the empirical MZR
- :func:`fig_calibration`  calibrated intervals: observed against nominal coverage, and the PIT
- :func:`fig_risk_coverage` RMSE of the most confident fraction of the galaxies
- :func:`loss_curve`       train and validation RMSE per epoch of one training run (in the target's unit)
- :func:`fig7_saliency`    saliency maps beside the cutouts (:func:`saliency_display`: no rings, no frames)

Figures 3 and 6 draw a calibrated ensemble's 68% intervals when given (``intervals``).
- :func:`save_figure`      write PNG/PDF atomically
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)  # no display needed; a no-op when pyplot already chose one

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import ListedColormap, LogNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from galmet import metrics, mzr  # noqa: E402
from galmet.backbones import BACKBONES  # noqa: E402
from galmet.io import atomic_path  # noqa: E402
from galmet.targets import MASS, METALLICITY, TARGETS, get_target  # noqa: E402

COLUMN_WIDTH = 3.5  # inches, one journal column
PAGE_WIDTH = 7.2  # inches, two columns

STYLE = {
    "font.size": 8,
    "axes.labelsize": 8,
    "axes.titlesize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "xtick.direction": "in",
    "ytick.direction": "in",
    "savefig.dpi": 200,
}

__all__ = [
    "fig1_examples",
    "select_examples",
    "fig2_histograms",
    "fig3_scatter",
    "fig4_resolution",
    "fig5_mass",
    "fig6_mzr",
    "fig_calibration",
    "fig_risk_coverage",
    "loss_curve",
    "save_figure",
]

_Z = TARGETS[METALLICITY]
_MASS = TARGETS[MASS]
#: grey scale of the 2-D histograms whose lowest count is a visible grey, never white.
_GREYS = ListedColormap(matplotlib.colormaps["Greys"](np.linspace(0.3, 1.0, 256)), name="greys_visible")


def _styled(func):
    """Build the figure under :data:`STYLE` (rcParams are read as artists are created)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(STYLE):
            return func(*args, **kwargs)

    return wrapper


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height))


def _finite_pair(a, b):
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"arrays of different lengths: {a.size} and {b.size}")
    ok = np.isfinite(a) & np.isfinite(b)
    return a[ok], b[ok]


def _fd_edges(values: np.ndarray, max_bins: int = 200) -> np.ndarray:
    """Freedman-Diaconis bin edges (at most ``max_bins``; a few bins for degenerate data)."""
    v = values[np.isfinite(values)]
    if v.size < 2 or np.ptp(v) == 0:
        c = float(v[0]) if v.size else 0.0
        return np.array([c - 0.5, c + 0.5])
    edges = np.histogram_bin_edges(v, bins="fd")
    if edges.size - 1 > max_bins or edges.size < 3:
        edges = np.histogram_bin_edges(v, bins=min(max_bins, max(5, int(np.sqrt(v.size)))))
    return edges


def _stats_text(s: dict, unit: str) -> str:
    u = f" {unit}" if unit else ""
    return (f"N = {s['n']:,}\nRMSE = {s['rmse']:.3f}{u}\nNMAD = {s['nmad']:.3f}{u}\n"
            f"median $\\Delta$ = {s['median_residual']:+.3f}{u}")


def _in_unit(text: str, unit: str) -> str:
    """An axis label with the target's unit in brackets (none for a bare column)."""
    return f"{text} [{unit}]" if unit else text


# ---------------------------------------------------------------------------------------------
# Figure 1


EXAMPLE_ROWS = [
    ("lowest_pred", "lowest predicted"),
    ("lowest_true", "lowest true"),
    ("highest_pred", "highest predicted"),
    ("highest_true", "highest true"),
    ("most_under", "most under-predicted"),
    ("most_over", "most over-predicted"),
    ("random", "random"),
]


def select_examples(y_true, y_pred, n: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    """Row indices of the seven example selections of Figure 1 (``n`` each).

    Rows with a NaN are never chosen. Keys as :data:`EXAMPLE_ROWS`; an empty selection when
    there are no valid rows, fewer than ``n`` when there are fewer galaxies.
    """
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    valid = np.flatnonzero(np.isfinite(t) & np.isfinite(p))
    k = min(n, valid.size)
    d = p[valid] - t[valid]
    rng = np.random.default_rng(seed)
    order = {
        "lowest_pred": np.argsort(p[valid], kind="stable")[:k],
        "lowest_true": np.argsort(t[valid], kind="stable")[:k],
        "highest_pred": np.argsort(-p[valid], kind="stable")[:k],
        "highest_true": np.argsort(-t[valid], kind="stable")[:k],
        "most_under": np.argsort(d, kind="stable")[:k],
        "most_over": np.argsort(-d, kind="stable")[:k],
        "random": np.sort(rng.choice(valid.size, size=k, replace=False)) if k else np.array([], int),
    }
    return {key: valid[idx] for key, idx in order.items()}


@_styled
def fig1_examples(images: np.ndarray, table: pd.DataFrame, truth: str = METALLICITY,
                  pred: str = "prediction", n: int = 5, seed: int = 0,
                  title: str | None = None) -> Figure:
    """Grid of real cutouts: 7 selections (rows) of ``n`` galaxies, each labelled with its values.

    ``images`` is a uint8 ``N x H x W x 3`` array aligned row by row with ``table`` (which
    holds the ``truth`` and ``pred`` columns), or any sequence of ``H x W x 3`` images with
    ``len`` and indexing (e.g. a lazy view of memory-mapped stores): only the 35 shown are read.
    """
    if not hasattr(images, "__getitem__"):
        images = np.asarray(images)
    n_images = len(images)
    shape = tuple(np.shape(images[0])) if n_images else (0, 0, 3)
    if len(shape) != 3 or shape[-1] != 3:
        raise ValueError(f"images must be N x H x W x 3, got images of shape {shape}")
    if len(table) != n_images:
        raise ValueError(f"{n_images} images but {len(table)} table rows")
    t = table[truth].to_numpy(dtype=np.float64)
    p = table[pred].to_numpy(dtype=np.float64)
    picks = select_examples(t, p, n=n, seed=seed)
    info = get_target(truth)
    sym_t, sym_p = info.symbol_true, info.symbol_pred
    ncol = max(n, 1)
    fig = _figure(PAGE_WIDTH, PAGE_WIDTH * len(EXAMPLE_ROWS) / ncol * 1.02 + 0.3)
    grid = fig.add_gridspec(len(EXAMPLE_ROWS), ncol, left=0.11, right=0.995, top=0.97,
                            bottom=0.005, wspace=0.04, hspace=0.18)
    for r, (key, label) in enumerate(EXAMPLE_ROWS):
        idx = picks[key]
        for c in range(ncol):
            ax = fig.add_subplot(grid[r, c])
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label.replace(" ", "\n", 1), fontsize=7)
            if c >= idx.size:
                ax.set_axis_off()
                continue
            i = int(idx[c])
            ax.imshow(np.asarray(images[i]), interpolation="nearest")
            ax.text(0.03, 0.97, f"{sym_p} = {p[i]:.2f}", transform=ax.transAxes, va="top",
                    ha="left", color="white", fontsize=6.5)
            ax.text(0.03, 0.03, f"{sym_t} = {t[i]:.2f}", transform=ax.transAxes, va="bottom",
                    ha="left", color="yellow", fontsize=6.5)
    values = f"; values in {info.unit}" if info.unit else ""
    fig.suptitle(title or f"Example cutouts ({shape[0]} px){values}", fontsize=8, y=0.995)
    return fig


# ---------------------------------------------------------------------------------------------
# Figure 2


@_styled
def fig2_histograms(y_true, y_pred, target: str = METALLICITY, z_high: float | None = None,
                    title: str | None = None) -> Figure:
    """Histograms of the true and predicted values on common Freedman-Diaconis bins.

    For a target with a threshold statistic (galmet.targets: 9.1 dex for metallicity) the legend
    gives the fraction above it (``z_high`` overrides it) and a dotted line marks it.
    """
    t, p = _finite_pair(y_true, y_pred)
    info = get_target(target)
    if z_high is None:
        z_high = info.threshold
    edges = _fd_edges(np.concatenate([t, p]))
    sym_t, sym_p = info.symbol_true, info.symbol_pred
    fig = _figure(COLUMN_WIDTH, 2.6)
    ax = fig.add_subplot(1, 1, 1)
    for values, sym, colour, style in ((t, sym_t, "0.3", "stepfilled"), (p, sym_p, "C0", "step")):
        label = f"{sym} (median {np.median(values):.2f})" if values.size else sym
        if z_high is not None and values.size:
            label += f", {100 * np.mean(values > z_high):.1f}% > {z_high:g}"
        ax.hist(values, bins=edges, histtype=style, color=colour, alpha=0.5 if style ==
                "stepfilled" else 1.0, lw=1.2, label=label)
    if z_high is not None:
        ax.axvline(z_high, color="k", ls=":", lw=0.8)
    ax.set_xlabel(info.axis_text)
    width = f"{np.diff(edges).mean():.3f}" + (f" {info.unit}" if info.unit else "")
    ax.set_ylabel(f"galaxies per bin ({width}, FD)")
    ax.set_title(title or f"Distributions of true and predicted values (N = {t.size:,})")
    ax.legend(loc="upper left", frameon=False)
    fig.tight_layout(pad=0.3)
    return fig


# ---------------------------------------------------------------------------------------------
# Figure 3


@_styled
def fig3_scatter(y_true, y_pred, target: str = METALLICITY, bin_width: float = 0.1,
                 min_count: int = 5, reference: tuple | None = None,
                 reference_label: str = "published", title: str | None = None,
                 intervals: tuple | None = None) -> Figure:
    """Predictions against truth; every galaxy is drawn.

    Lower panel: each galaxy a point where galaxies are sparse (all of them up to
    :data:`POINTS_MAX`), a 2-D histogram (log colour scale) only in pixels holding at least
    :data:`DENSE_MIN` galaxies; galaxies beyond the axes (absurd values) are drawn on the border
    and counted. Running median of the prediction in bins of the truth with its 16-84 percentile
    band, and the one-to-one line. Upper panel: binned RMSE and NMAD against the truth, marker area
    by count (bins with at least ``min_count`` galaxies; the key gives the sizes). ``reference`` =
    (y_true, y_pred) of another set of predictions (e.g. the published ones) adds their binned
    RMSE to the upper panel. ``intervals`` = (p16, p84) of a calibrated ensemble: 68% error bars
    on up to 300 galaxies and, in the upper panel, the mean half-width of the intervals per bin
    (about the RMSE when they are calibrated). Legends, the statistics and the histogram of the
    residuals sit to the right of the panels, off the data.
    """
    t, p = _finite_pair(y_true, y_pred)
    s = metrics.summarize(t, p)
    info = get_target(target)
    fig = _figure(5.2, 4.6)
    grid = fig.add_gridspec(2, 1, height_ratios=[1, 2.6], hspace=0.05, left=0.12, right=0.64,
                            top=0.93, bottom=0.1)
    ax = fig.add_subplot(grid[1])
    top = fig.add_subplot(grid[0], sharex=ax)
    lo, hi = _window(np.concatenate([t, p]))
    try:  # every bin of the truth with enough galaxies, even beyond the plotted window
        edges = metrics.make_edges(t, bin_width) if t.size else _edges([lo, hi], bin_width)
    except ValueError:  # absurd values (e.g. -9999): bin only what is drawn
        edges = _edges([lo, hi], bin_width)
    binned = metrics.binned_statistics(t, p, edges=edges, min_count=min_count)
    if len(binned):
        lo, hi = min(lo, binned["lo"].min()), max(hi, binned["hi"].max())
    _every_galaxy(fig, ax, t, p, lo, hi)
    ax.plot([lo, hi], [lo, hi], color="C3", lw=0.9, ls="--", label="one-to-one")
    if intervals is not None:
        _interval_bars(ax, y_true, y_pred, *intervals)
    if len(binned):
        ax.plot(binned["center"], binned["median_pred"], color="C0", lw=1.4,
                label="running median")
        ax.fill_between(binned["center"], binned["p16_pred"], binned["p84_pred"], color="C0",
                        alpha=0.2, lw=0, label="16-84%")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel(info.label("true"))
    ax.set_ylabel(info.label("pred"))
    ax.legend(loc="upper left", bbox_to_anchor=(1.03, 1.0), frameon=False, borderaxespad=0)
    if t.size:
        ax.text(1.05, 0.68, _stats_text(s, info.unit), transform=ax.transAxes, ha="left", va="top", fontsize=6.5)
    _residual_histogram(ax, p - t, s, info.unit)
    _binned_scatter(top, binned)
    if intervals is not None:
        _binned_halfwidth(top, y_true, intervals, edges, min_count)
    if reference is not None:
        rt, rp = _finite_pair(*reference)
        rb = metrics.binned_statistics(rt, rp, edges=_edges([lo, hi], bin_width),
                                       min_count=min_count)
        rb = rb[(rb["lo"] >= lo) & (rb["hi"] <= hi)]
        if len(rb):
            top.plot(rb["center"], rb["rmse"], color="0.5", lw=1.0,
                     label=f"RMSE, {reference_label}")
    top.set_ylabel(_in_unit("scatter", info.unit))
    top.set_ylim(bottom=0)
    top.tick_params(labelbottom=False)
    _size_key(top, binned, min_count)
    top.set_title(title or "Predicted against true values", pad=3)
    return fig


#: Figure 3 draws every galaxy as a point up to this many; beyond, points where sparse.
POINTS_MAX = 2000
#: pixels of Figure 3's 2-D histogram with at least this many galaxies are shaded, the rest points.
DENSE_MIN = 5


def _window(values: np.ndarray) -> tuple[float, float]:
    """Axis limits holding every galaxy, except values far beyond the bulk (an absurd -9999):
    those lie beyond the 5-95 percentile range by more than three times its width."""
    v = values[np.isfinite(values)]
    if not v.size:
        return 0.0, 1.0
    q_lo, q_hi = np.percentile(v, [5, 95])
    w = q_hi - q_lo if q_hi > q_lo else 1.0
    v = v[(v >= q_lo - 3 * w) & (v <= q_hi + 3 * w)]
    lo, hi = float(v.min()), float(v.max())
    pad = 0.05 * (hi - lo if hi > lo else 1.0)
    return lo - pad, hi + pad


def _every_galaxy(fig, ax, t, p, lo, hi) -> None:
    """Every galaxy of Figure 3: points, shaded density in the dense pixels of a large sample,
    and the galaxies beyond the axes on the border (counted in the legend)."""
    if not t.size:
        return
    x, y = np.clip(t, lo, hi), np.clip(p, lo, hi)
    outside = (x != t) | (y != p)
    sparse = np.ones(t.size, bool)
    if t.size > POINTS_MAX:
        nb = int(min(120, max(10, np.sqrt(t.size))))
        counts, xe, ye = np.histogram2d(x, y, bins=nb, range=[[lo, hi], [lo, hi]])
        ix = np.clip(np.searchsorted(xe, x, side="right") - 1, 0, nb - 1)
        iy = np.clip(np.searchsorted(ye, y, side="right") - 1, 0, nb - 1)
        sparse = counts[ix, iy] < DENSE_MIN
        dense = np.ma.masked_less(counts.T, DENSE_MIN)
        mesh = ax.pcolormesh(xe, ye, dense, cmap=_GREYS, norm=LogNorm(vmin=DENSE_MIN), rasterized=True)
        cax = ax.inset_axes([1.05, 0.04, 0.45, 0.035])
        cb = fig.colorbar(mesh, cax=cax, orientation="horizontal")
        cb.set_label(f"galaxies per pixel (< {DENSE_MIN}: points)", fontsize=6)
        cb.ax.tick_params(labelsize=5.5)
    pts = sparse & ~outside
    size = 5 if t.size <= 300 else 2
    ax.scatter(x[pts], y[pts], s=size, color="0.15", lw=0, alpha=0.8, zorder=2, rasterized=t.size > 300,
               label=f"galaxies ({t.size:,})" if t.size <= POINTS_MAX else "galaxies (sparse pixels)")
    if outside.any():
        ax.scatter(x[outside], y[outside], s=12, marker="x", color="C3", lw=0.8, zorder=4, clip_on=False,
                   label=f"{int(outside.sum())} beyond the axes (on the border)")


def _residual_histogram(ax, d: np.ndarray, s: dict, unit: str) -> None:
    """Histogram of the residuals, right of the lower panel (not on the data)."""
    inset = ax.inset_axes([1.05, 0.22 if d.size > POINTS_MAX else 0.1, 0.45, 0.22])
    if d.size:
        inset.hist(d, bins=_fd_edges(d), color="0.4", histtype="stepfilled")
        lim = max(1e-3, 4 * (s["rmse"] or 0.0))
        inset.set_xlim(-lim, lim)
    inset.axvline(0, color="C3", lw=0.7, ls="--")
    inset.set_yticks([])
    inset.set_xlabel(_in_unit(r"$\Delta$ = predicted $-$ true", unit), fontsize=6, labelpad=1)
    inset.tick_params(labelsize=5.5)


def _binned_scatter(top, binned: pd.DataFrame) -> None:
    """RMSE and NMAD per bin of the truth, marker area by the bin's count (:func:`_marker_area`)."""
    if not len(binned):
        return
    sizes = _marker_area(binned["n"], binned["n"].max())
    top.scatter(binned["center"], binned["rmse"], s=sizes, color="C0", label="RMSE", zorder=3)
    top.scatter(binned["center"], binned["nmad"], s=sizes, facecolor="none", edgecolor="C1",
                label="NMAD", zorder=3)


def _marker_area(n, n_max) -> np.ndarray:
    return 4 + 60 * np.asarray(n, dtype=np.float64) / float(n_max)


def _size_key(top, binned: pd.DataFrame, min_count: int) -> None:
    """The upper panel's legend beside it, with a key of marker sizes (galaxies per bin)."""
    from matplotlib.lines import Line2D

    handles, labels = top.get_legend_handles_labels()
    if len(binned):
        n_max = int(binned["n"].max())
        for n in sorted({max(min_count, int(binned["n"].min())), max(min_count, n_max // 2), n_max}):
            handles.append(Line2D([], [], ls="", marker="o", color="0.6",
                                  markersize=float(np.sqrt(_marker_area(n, n_max)))))
            labels.append(f"{n:,} galaxies / bin")
    top.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.03, 1.05), frameon=False,
               borderaxespad=0, fontsize=6, handletextpad=0.4)


# ---------------------------------------------------------------------------------------------
# Figure 4


@_styled
def fig4_resolution(cnn: pd.DataFrame, baselines: Sequence[dict] = (),
                    published: pd.DataFrame | None = None, target: str = METALLICITY,
                    title: str | None = None) -> Figure:
    """RMSE and NMAD of the test predictions against image resolution, with 1-sigma errors.

    ``cnn`` and ``published``: tables with columns ``resolution, rmse, nmad`` and ``n`` (the test
    galaxies scored; one row per model). Each model is a point with its sampling error
    (:func:`galmet.metrics.sampling_error`); several seeds at one resolution have their mean joined,
    with the standard deviation of the seeds as a wider bar. ``baselines``: dicts with ``name``,
    ``rmse``, ``nmad`` (and ``n``), resolution-free, drawn as horizontal lines with their sampling
    band. Every curve's legend names its test set and size: the published CNNs were scored on their
    own test set (Wu & Boada 2019), not on this run's galaxies.
    """
    fig = _figure(COLUMN_WIDTH, 4.6)
    axes = [fig.add_subplot(2, 1, 1)]
    axes.append(fig.add_subplot(2, 1, 2, sharex=axes[0]))
    styles = ["--", ":", "-.", "-"]
    resolutions: set[int] = set()
    series = [("CNN, this run ({} test galaxies)", cnn, "C0", "o"),
              ("CNN, published (Wu & Boada 2019; their test set, {} galaxies)", published, "C1", "s")]
    for ax, stat in zip(axes, ("rmse", "nmad"), strict=True):
        for label, df, colour, marker in series:
            if df is not None and len(df):
                resolutions.update(_resolution_series(ax, df, stat, label, colour, marker))
        for i, b in enumerate(baselines):
            v = b.get(stat)
            if v is None or not np.isfinite(v):
                continue
            err = metrics.sampling_error(stat, v, b.get("n"))
            ax.axhline(v, color=f"C{2 + i}", lw=1.0, ls=styles[i % len(styles)],
                       label=f"{b['name']} ({v:.3f}{_pm(err)}{_n_test(b.get('n'))})")
            if np.isfinite(err):
                ax.axhspan(v - err, v + err, color=f"C{2 + i}", alpha=0.12, lw=0)
        ax.set_ylabel(_in_unit(stat.upper(), get_target(target).unit))
        ax.set_xscale("log", base=2)
    if resolutions:
        ticks = sorted(resolutions)
        axes[1].set_xticks(ticks)
        axes[1].set_xticklabels([str(r) for r in ticks])
        axes[1].set_xlim(min(ticks) / 1.4, max(ticks) * 1.4)
    axes[0].tick_params(labelbottom=False)
    axes[1].set_xlabel("image resolution [pixels]")
    _error_key(axes[0], seeds=any(df is not None and len(df) and df["resolution"].duplicated().any()
                                  for _, df, _, _ in series))
    fig.suptitle(title or f"Scatter of the test {get_target(target).noun} against resolution", fontsize=8)
    fig.tight_layout(pad=0.3, h_pad=0.2)
    return fig


def _error_key(ax, seeds: bool) -> None:
    """Figure 4's legend above the panels, with what the bars are."""
    from matplotlib.lines import Line2D

    handles, labels = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], ls="", marker="|", ms=8, mew=0.8, color="0.4"))
    labels.append("bars: 1σ sampling error (RMSE/√(2n), 1.17 NMAD/√n)")
    if seeds:
        handles.append(Line2D([], [], ls="", marker="|", ms=8, mew=2.2, color="0.4", alpha=0.45))
        labels.append("wide bars: 1σ spread of the seeds")
    ax.legend(handles, labels, loc="lower left", bbox_to_anchor=(0.0, 1.02), frameon=False, fontsize=6,
              borderaxespad=0)


def _pm(err: float) -> str:
    return f" ± {err:.3f}" if np.isfinite(err) else ""


def _n_test(n) -> str:
    return f", {int(n):,} test galaxies" if n is not None and np.isfinite(n) and n > 0 else ""


def _resolution_series(ax, df: pd.DataFrame, stat: str, label: str, colour: str, marker: str) -> set[int]:
    """One curve of Figure 4: each model with its sampling error, the mean over seeds joined, and
    the seeds' standard deviation where a resolution has several; ``label`` has a ``{}`` for the
    number of test galaxies. Returns the resolutions drawn."""
    df = df.dropna(subset=[stat])
    n = df["n"] if "n" in df else pd.Series(np.nan, index=df.index)
    err = [metrics.sampling_error(stat, v, k) for v, k in zip(df[stat], n)]
    ax.errorbar(df["resolution"], df[stat], yerr=np.nan_to_num(err), fmt=marker, color=colour, ms=3.5,
                alpha=0.6, elinewidth=0.8, capsize=0, zorder=3)
    groups = df.groupby("resolution")[stat]
    mean, spread, count = groups.mean().sort_index(), groups.std(ddof=1).sort_index(), groups.size().sort_index()
    sizes = sorted({int(k) for k in n.dropna()})
    size = (f"{sizes[0]:,}" if len(sizes) == 1 else f"{sizes[0]:,}-{sizes[-1]:,}") if sizes else "?"
    ax.plot(mean.index, mean.values, color=colour, marker=marker, ms=4, lw=1.2, label=label.format(size))
    seeds = count > 1
    if seeds.any():
        ax.errorbar(mean.index[seeds], mean.values[seeds], yerr=spread.values[seeds], fmt="none", ecolor=colour,
                    elinewidth=2.2, alpha=0.45, capsize=2.5, zorder=2)
    return {int(r) for r in df["resolution"]}


# ---------------------------------------------------------------------------------------------
# Figures 5 and 6


def _hist2d(fig, ax, x, y, xr, yr, bins=60):
    if x.size:
        h = ax.hist2d(x, y, bins=bins, range=[xr, yr], cmap=_GREYS, norm=LogNorm(),
                      rasterized=True)
        return h[3]
    return None


def _edges(limits, width: float) -> np.ndarray:
    """Bin edges on multiples of ``width`` covering the plotted range ``limits``."""
    return metrics.make_edges(np.asarray(limits, dtype=np.float64), width)


def _range(*arrays, q=(0.2, 99.8), pad=0.05):
    v = np.concatenate([np.asarray(a, dtype=np.float64) for a in arrays])
    v = v[np.isfinite(v)]
    if not v.size:
        return [0.0, 1.0]
    lo, hi = np.percentile(v, q)
    w = hi - lo if hi > lo else 1.0
    return [float(lo - pad * w), float(hi + pad * w)]


def _sample(fig, ax, x, y, xr, yr) -> None:
    """The galaxies of Figures 5 and 6: each a point up to :data:`POINTS_MAX` galaxies, a 2-D
    histogram (log colour scale) beyond; galaxies beyond the axes on the border, counted."""
    if not x.size:
        return
    cx, cy = np.clip(x, *xr), np.clip(y, *yr)
    outside = (cx != x) | (cy != y)
    if x.size > POINTS_MAX:
        _hist2d(fig, ax, cx, cy, xr, yr)
    else:
        ax.scatter(cx[~outside], cy[~outside], s=5 if x.size <= 300 else 2, color="0.15", lw=0, alpha=0.8,
                   zorder=2, label=f"galaxies ({x.size:,})")
    if outside.any():
        ax.scatter(cx[outside], cy[outside], s=12, marker="x", color="C3", lw=0.8, zorder=4, clip_on=False,
                   label=f"{int(outside.sum())} beyond the axes (on the border)")


def _two_columns(height: float = 4.4):
    """Figures 5 and 6: two columns, each a lower panel (the galaxies) under an upper panel (the
    binned scatter) sharing its x axis; room below for the legend."""
    fig = _figure(PAGE_WIDTH, height)
    grid = fig.add_gridspec(2, 2, height_ratios=[1, 2.4], hspace=0.06, wspace=0.28, left=0.08, right=0.98,
                            top=0.93, bottom=0.25)
    lower = [fig.add_subplot(grid[1, i]) for i in range(2)]
    upper = [fig.add_subplot(grid[0, i], sharex=lower[i]) for i in range(2)]
    return fig, lower, upper


def _upper_panel(top, binned: pd.DataFrame, ylabel: str, title: str, line=None) -> None:
    """Binned RMSE and NMAD (marker area by count), ``line`` = (y, label) a horizontal reference."""
    _binned_scatter(top, binned)
    if line is not None:
        top.axhline(line[0], color="C3", lw=0.8, ls=":", label=line[1])
    top.set_ylabel(ylabel)
    top.set_ylim(bottom=0)
    top.tick_params(labelbottom=False)
    top.set_title(title, pad=3)


def _figure_legend(fig, axes, upper, min_count: int, binned) -> None:
    """One legend below the panels: every label of ``axes`` once, then the marker-size key."""
    from matplotlib.lines import Line2D

    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    binned = binned[binned["n"] > 0] if len(binned) else binned
    if len(binned):
        n_max = int(binned["n"].max())
        for n in sorted({max(min_count, int(binned["n"].min())), n_max}):
            handles.append(Line2D([], [], ls="", marker="o", color="0.6",
                                  markersize=float(np.sqrt(_marker_area(n, n_max)))))
            labels.append(f"{n:,} galaxies / bin")
    fig.legend(handles, labels, loc="lower center", ncol=4, frameon=False, fontsize=6.5,
               bbox_to_anchor=(0.5, 0.0), handletextpad=0.4, columnspacing=1.2)


def _with_unit_window(*arrays) -> tuple[float, float]:
    return _window(np.concatenate([np.asarray(a, np.float64) for a in arrays]))


@_styled
def fig5_mass(mass_true, mass_pred, z_true, z_pred=None, title: str | None = None,
              min_count: int = 5) -> Figure:
    """Left: predicted against true stellar mass. Right: Z_MZR (the Tremonti et al. 2004
    metallicity of the predicted mass) against Z_true, beside the direct CNN Z_pred if given.

    All arrays are aligned galaxy by galaxy (the test galaxies with both a mass and a
    metallicity). Lower panels: every galaxy (points; a 2-D histogram beyond
    :data:`POINTS_MAX`), the one-to-one line and the running median with its 16-84% band; the
    right panel marks the highest metallicity the relation gives (its maximum, near 9.13 dex at
    11.5), which caps Z_MZR. Upper panels, as Figure 3's: RMSE and NMAD in bins of the true value
    (0.2 dex of mass, 0.1 dex of metallicity; marker area by count), the direct CNN's RMSE as a
    line. Each lower panel states N, RMSE and NMAD.
    """
    mt, mp, zt = (np.asarray(a, float) for a in (mass_true, mass_pred, z_true))
    if not (mt.size == mp.size == zt.size):
        raise ValueError("mass_true, mass_pred and z_true must have the same length")
    fig, (ax_m, ax_z), (top_m, top_z) = _two_columns()
    a, b = _finite_pair(mt, mp)
    r = _with_unit_window(a, b)
    _sample(fig, ax_m, a, b, r, r)
    bm = _running(ax_m, a, b, _edges(r, mzr.MASS_BIN_WIDTH), min_count, r"median $M_{*,\rm pred}$")
    _square(ax_m, r, _MASS.label_true, _MASS.label_pred)
    _stats_box(ax_m, metrics.summarize(a, b), _MASS.unit, "", xy=(a, b))
    _upper_panel(top_m, bm, _in_unit("scatter", _MASS.unit), "Stellar mass from the images")

    a, b = _finite_pair(zt, mzr.mzr_metallicity(mp))
    zr = _with_unit_window(a, b)
    _sample(fig, ax_z, a, b, zr, zr)
    bz = _running(ax_z, a, b, _edges(zr, 0.1), min_count, r"median $Z_{\rm MZR}$")
    ax_z.axhline(mzr.tremonti_max(), color="C3", lw=0.8, ls=":",
                 label=f"highest $Z$ of the relation ({mzr.tremonti_max():.2f} dex)")
    text = r"$Z_{\rm MZR} - Z_{\rm true}$:" + "\n" + _stats_text(metrics.summarize(a, b), _Z.unit)
    if z_pred is not None:
        c, d = _finite_pair(zt, z_pred)
        bd = metrics.binned_statistics(c, d, edges=_edges(zr, 0.1), min_count=min_count)
        if len(bd):
            ax_z.plot(bd["center"], bd["median_pred"], color="C1", lw=1.2, ls="-.",
                      label=r"median $Z_{\rm pred}$ (direct CNN)")
            top_z.plot(bd["center"], bd["rmse"], color="C1", lw=1.0, ls="-.", label="RMSE, direct CNN")
        sd = metrics.summarize(c, d)
        text += f"\ndirect CNN: RMSE = {sd['rmse']:.3f}, NMAD = {sd['nmad']:.3f} dex"
    _square(ax_z, zr, _Z.label_true, "$Z_{\\rm MZR}$ [dex]: Tremonti et al.\n(2004) of predicted $M_*$")
    _stats_box(ax_z, None, _Z.unit, text if a.size else "", xy=(a, b))
    _upper_panel(top_z, bz, _in_unit("scatter", _Z.unit), "Metallicity through the mass-metallicity relation")
    _figure_legend(fig, [ax_m, ax_z, top_m, top_z], None, min_count, pd.concat([bm, bz]) if len(bm) else bz)
    if title:
        fig.suptitle(title)
    return fig


def _running(ax, t, p, edges, min_count: int, label: str) -> pd.DataFrame:
    """Running median of p in bins of t with its 16-84% band; the bins (for the upper panel)."""
    binned = metrics.binned_statistics(t, p, edges=edges, min_count=min_count)
    if len(binned):
        ax.plot(binned["center"], binned["median_pred"], color="C0", lw=1.4, zorder=6, label=label)
        ax.fill_between(binned["center"], binned["p16_pred"], binned["p84_pred"], color="C0", alpha=0.2, lw=0,
                        label="16-84%")
    return binned


def _square(ax, r, xlabel: str, ylabel: str) -> None:
    ax.plot(r, r, color="C3", ls="--", lw=0.9, label="one-to-one")
    ax.set_xlim(r)
    ax.set_ylim(r)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def _stats_box(ax, stats: dict | None, unit: str, text: str, xy=None) -> None:
    """``text`` (or the statistics ``stats``) in the corner of ``ax`` that holds fewer of the
    galaxies ``xy`` = (x, y): lower right, else upper left, so that it hides no data."""
    if stats is not None and stats["n"]:
        text = _stats_text(stats, unit)
    if not text:
        return
    corner = (0.97, 0.03, "right", "bottom")
    if xy is not None and len(xy[0]):
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        u = (np.asarray(xy[0], float) - x0) / (x1 - x0)
        v = (np.asarray(xy[1], float) - y0) / (y1 - y0)
        if ((u > 0.45) & (v < 0.4)).sum() > ((u < 0.55) & (v > 0.6)).sum():
            corner = (0.03, 0.97, "left", "top")
    ax.text(corner[0], corner[1], text, transform=ax.transAxes, ha=corner[2], va=corner[3], fontsize=6, zorder=7,
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1.5})


def _tremonti_band(ax, xr, label=True):
    lo, hi = mzr.TREMONTI_VALID_RANGE
    x = np.linspace(max(lo, xr[0]), min(hi, xr[1]), 100)
    if x.size and x[-1] > x[0]:
        z = mzr.tremonti_z(x)
        ax.plot(x, z, color="C3", lw=1.2, zorder=5,
                label="Tremonti et al. (2004)" if label else None)
        for edge in (z - mzr.TREMONTI_SCATTER, z + mzr.TREMONTI_SCATTER):  # visible over a dense histogram
            ax.plot(x, edge, color="C3", lw=0.6, ls="--", zorder=5)
        ax.fill_between(x, z - mzr.TREMONTI_SCATTER, z + mzr.TREMONTI_SCATTER, color="C3",
                        alpha=0.15, lw=0, zorder=1,
                        label=rf"$\pm${mzr.TREMONTI_SCATTER:.2f} dex (dashed)" if label else None)


@_styled
def fig6_mzr(mass_true, z_pred, z_true, bin_width: float = mzr.MASS_BIN_WIDTH,
             title: str | None = None, intervals: tuple | None = None, min_count: int = 5) -> Figure:
    """Left: Z_pred against true stellar mass (the predicted MZR). Right: Z_true against the
    same masses (the empirical MZR), on the same axes. Lower panels: every galaxy (points; a 2-D
    histogram beyond :data:`POINTS_MAX`), the running median in ``bin_width`` dex mass bins with
    its 16-84% band, and the Tremonti et al. (2004) curve with its ~0.10 dex scatter over the
    masses where it holds (8.5-11.5). Upper panels: RMSE and NMAD about the Tremonti curve per
    mass bin (marker area by count) beside the relation's own 0.10 dex scatter. The text gives N
    and the scatter about the curve of every galaxy in its range (as the caption and the MZR
    table: galmet.mzr.mzr_summary). ``intervals`` = (p16, p84) of a calibrated ensemble: 68%
    error bars on up to 300 galaxies of the left panel.
    """
    m, zp, zt = (np.asarray(a, float) for a in (mass_true, z_pred, z_true))
    if not (m.size == zp.size == zt.size):
        raise ValueError("mass_true, z_pred and z_true must have the same length")
    fig, lower, upper = _two_columns()
    upper[1].sharey(upper[0])
    ok = np.isfinite(m) & np.isfinite(zp) & np.isfinite(zt)
    mr, zr = _with_unit_window(m[ok]), _with_unit_window(zp[ok], zt[ok])
    _, numbers = mzr.mzr_summary(m[ok], zp[ok], zt[ok], bin_width=bin_width)
    if intervals is not None:
        _interval_bars(lower[0], m[ok], zp[ok], *(np.asarray(b, float)[ok] for b in intervals))
    edges = _edges(mr, bin_width)
    panels = [(zp[ok], "predicted MZR", _Z.label_pred, "pred"), (zt[ok], "empirical MZR", _Z.label_true, "true")]
    all_bins = []
    for ax, top, (z, name, ylabel, key) in zip(lower, upper, panels):
        _sample(fig, ax, m[ok], z, mr, zr)
        ax.set_xlim(mr)
        ax.set_ylim(zr)
        b = mzr.binned_mzr(m[ok], z, edges=edges, min_count=min_count)
        all_bins.append(b)
        if len(b):
            ax.plot(b["center"], b["median_z"], color="C0", lw=1.4, marker="o", ms=2.5, zorder=6,
                    label=f"median ({bin_width:g} dex bins)")
            ax.fill_between(b["center"], b["p16_z"], b["p84_z"], color="C0", alpha=0.2, lw=0, label="16-84%")
        _tremonti_band(ax, mr)
        rms = numbers[f"{key}_rmse_about_tremonti"]
        if rms is not None:
            _stats_box(ax, None, "", f"N = {numbers['n']:,} ({numbers['n_in_tremonti_range']:,} in 8.5-11.5)\n"
                       f"RMS about Tremonti = {rms:.3f} dex", xy=(m[ok], z))
        ax.set_xlabel(_MASS.label_true)
        ax.set_ylabel(ylabel)
        _upper_panel(top, b, "scatter about\nTremonti [dex]", name,
                     line=(mzr.TREMONTI_SCATTER, f"scatter of the relation ({mzr.TREMONTI_SCATTER:.2f} dex)"))
    _figure_legend(fig, [*lower, *upper], None, min_count, pd.concat(all_bins))
    if title:
        fig.suptitle(title)
    return fig


# ---------------------------------------------------------------------------------------------
# Calibrated intervals (galmet.uncertainty)


def _interval_bars(ax, x, y, lo, hi, max_n: int = 300, seed: int = 0) -> None:
    """68% error bars of up to ``max_n`` randomly chosen galaxies (all of them when fewer)."""
    x, y, lo, hi = (np.asarray(a, float) for a in (x, y, lo, hi))
    ok = np.flatnonzero(np.isfinite(x) & np.isfinite(y) & np.isfinite(lo) & np.isfinite(hi))
    if len(ok) > max_n:
        ok = np.sort(np.random.default_rng(seed).choice(ok, max_n, replace=False))
    ax.errorbar(x[ok], y[ok], yerr=[y[ok] - lo[ok], hi[ok] - y[ok]], fmt="o", ms=1.5, color="C2", ecolor="C2",
                elinewidth=0.5, alpha=0.6, zorder=2, label="68% interval" + (f" ({max_n} shown)" if len(x) > max_n
                                                                              else ""))


def _binned_halfwidth(ax, y_true, intervals, edges, min_count: int) -> None:
    t = np.asarray(y_true, float)
    half = (np.asarray(intervals[1], float) - np.asarray(intervals[0], float)) / 2
    idx = np.where(np.isfinite(half), metrics.bin_index(t, edges), -1)  # out-of-domain rows have no interval
    rows = [(0.5 * (edges[b] + edges[b + 1]), half[idx == b].mean()) for b in range(len(edges) - 1)
            if (idx == b).sum() >= min_count]
    if rows:
        ax.plot(*zip(*rows), color="C2", lw=1.0, label="68% half-width")


@_styled
def fig_calibration(curve: Sequence[dict], pit: dict, n: int, title: str | None = None) -> Figure:
    """Left: observed against nominal coverage of the intervals (``curve``:
    :func:`galmet.uncertainty.calibration_curve` rows) with the binomial 95% band of ``n`` test
    galaxies. Right: the PIT histogram (:func:`galmet.uncertainty.pit_histogram`), flat when
    calibrated, with the expected count and its Poisson 1-sigma band."""
    fig = _figure(PAGE_WIDTH, 3.0)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    nominal = np.array([r["level"] for r in curve])
    left.fill_between(nominal, [r["band_lo"] for r in curve], [r["band_hi"] for r in curve], color="0.85", lw=0,
                      label=f"95% binomial band, n = {n}")
    left.plot([0, 1], [0, 1], color="C3", lw=0.9, ls="--", label="calibrated")
    left.plot(nominal, [r["observed"] for r in curve], "o-", color="C0", ms=3, lw=1.2, label="observed (test)")
    left.set_xlim(0, 1)
    left.set_ylim(0, 1)
    left.set_xlabel("nominal coverage")
    left.set_ylabel("observed coverage")
    left.legend(loc="upper left", frameon=False, fontsize=6.5)
    edges, counts = np.asarray(pit["edges"]), np.asarray(pit["counts"])
    right.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="0.6", edgecolor="white")
    e = pit["expected"]
    right.axhspan(e - np.sqrt(e), e + np.sqrt(e), color="C0", alpha=0.15, lw=0)
    right.axhline(e, color="C0", lw=1.0, label="uniform (calibrated)")
    right.set_xlim(0, 1)
    right.set_xlabel("PIT")
    right.set_ylabel("test galaxies")
    right.legend(loc="upper center", frameon=False, fontsize=6.5)
    if title:
        fig.suptitle(title)
    fig.tight_layout(pad=0.3, w_pad=1.5)
    return fig


@_styled
def fig_risk_coverage(curve: Sequence[dict], title: str | None = None, target: str = METALLICITY) -> Figure:
    """RMSE of the most confident fraction of the galaxies (``curve``:
    :func:`galmet.uncertainty.risk_coverage` rows) against that fraction, with the RMSE of all,
    in the unit of ``target``."""
    fig = _figure(COLUMN_WIDTH, 2.8)
    ax = fig.add_subplot(1, 1, 1)
    f = [r["fraction"] for r in curve]
    ax.plot(f, [r["rmse"] for r in curve], "o-", color="C0", ms=3, lw=1.2, label="most confident fraction")
    ax.axhline(curve[-1]["rmse"], color="0.5", lw=0.9, ls="--", label="all galaxies")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("fraction of galaxies kept (smallest spread first)")
    ax.set_ylabel(_in_unit("RMSE", get_target(target).unit))
    ax.legend(loc="lower right", frameon=False)
    ax.set_title(title or "Risk against coverage")
    fig.tight_layout(pad=0.3)
    return fig


# ---------------------------------------------------------------------------------------------
# Training


@_styled
def loss_curve(log_df: pd.DataFrame, title: str = "", unit: str = "") -> Figure:
    """Train and validation RMSE per epoch (``train_log.csv`` of galmet.train: ``epoch, stage,
    train_rmse, valid_rmse``) in the target's ``unit``, log scale; a dotted line where stage 2
    unfreezes the body."""
    fig = _figure(6, 4)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(log_df["epoch"], log_df["train_rmse"], "o-", label="train (augmented, dropout)")
    ax.plot(log_df["epoch"], log_df["valid_rmse"], "s-", label="validation")
    s2 = log_df.loc[log_df["stage"] == 2, "epoch"]
    if (log_df["stage"] == 1).any() and len(s2):
        ax.axvline(s2.iloc[0] - 0.5, color="grey", ls=":", label="body unfrozen")
    ax.set_xlabel("epoch")
    ax.set_ylabel(_in_unit("RMSE", unit))
    ax.set_yscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")  # 0.2, not 2 x 10^-1
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# Saving


def save_figure(fig: Figure, paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Save ``fig`` to each path (format from the extension: .png, .pdf, .svg), atomically."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    written = []
    for path in paths:
        path = Path(path)
        fmt = path.suffix.lstrip(".").lower()
        if fmt not in ("png", "pdf", "svg"):
            raise ValueError(f"{path}: unsupported figure format {fmt!r} (png, pdf or svg)")
        with matplotlib.rc_context(STYLE), atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=STYLE["savefig.dpi"], bbox_inches="tight")
        written.append(path)
    return written


# ---------------------------------------------------------------------------------------------
# Figure 7 (issue 12): saliency maps beside the cutouts


SALIENCY_ROWS = [row for row in EXAMPLE_ROWS if row[0] in ("lowest_pred", "highest_pred", "most_under", "most_over")]


#: pixels of the input per cell of a body layer's feature map (Grad-CAM's resolution), from galmet.backbones.
LAYER_STRIDE = {layer: stride for b in BACKBONES.values() for layer, stride in b.layers.items()}
#: the outermost ring of cells is masked when the layer's map has at least this many across.
EDGE_MASK_MIN = 6


def saliency_display(saliency: np.ndarray, cells: int | None = None) -> np.ma.MaskedArray:
    """The magnitude of a signed map as Figure 7 shows it, scaled to its maximum.

    ``cells``: the width of the layer map the signed map was upsampled from (Grad-CAM; None for a
    map made at the input's resolution). Then the map is averaged over each cell and its magnitude
    taken there, before any display interpolation: |upsampled signed map| has a dark ring wherever
    the sign changes between cells, which is no structure of the galaxy. With
    :data:`EDGE_MASK_MIN` cells or more, the outermost ring of cells is masked: there the layer's
    features saw the zero padding of the convolutions, and their frame is no structure either.
    """
    m = np.asarray(saliency, dtype=np.float64)
    res = m.shape[-1]
    if cells and cells < res and res % cells == 0:
        k = res // cells
        m = m.reshape(cells, k, cells, k).mean(axis=(1, 3))
    mag = np.ma.masked_invalid(np.abs(m))
    if cells and cells >= EDGE_MASK_MIN and mag.shape[-1] == cells:
        mag[[0, -1], :] = np.ma.masked
        mag[:, [0, -1]] = np.ma.masked
    top = float(mag.max()) if mag.count() else 0.0
    return mag / top if top > 0 else mag


@_styled
def fig7_saliency(images, maps: np.ndarray, table: pd.DataFrame, truth: str = METALLICITY,
                  pred: str = "prediction", n: int = 4, radius: float = 1 / 8, method: str = "",
                  layer: str | None = None, title: str | None = None) -> Figure:
    """The categories of Figure 1 (lowest and highest predicted, most under- and over-predicted;
    ``n`` galaxies each), each cutout with the magnitude of its saliency map beside it.

    ``images`` (uint8 ``N x H x W x 3``, or a lazy sequence), ``maps`` (signed ``N x res x res``)
    and ``table`` (``truth`` and ``pred`` columns) are aligned row by row. A Grad-CAM map (its
    ``layer`` given) is shown as :func:`saliency_display` makes it: magnitude per cell of the
    layer, smoothly interpolated, edge cells masked (grey); each map is scaled to its own maximum
    (one colour bar). The dashed circle (radius ``radius`` x res) is the central region of the
    science statement.
    """
    from matplotlib.patches import Circle

    maps = np.asarray(maps)
    if len(table) != len(images) or len(table) != len(maps):
        raise ValueError(f"{len(images)} images, {len(maps)} maps but {len(table)} table rows")
    t = table[truth].to_numpy(dtype=np.float64)
    p = table[pred].to_numpy(dtype=np.float64)
    picks = select_examples(t, p, n=n)
    info = get_target(truth)
    res = maps.shape[-1] if maps.ndim == 3 else 0
    cells = res // LAYER_STRIDE[layer] if layer in LAYER_STRIDE and res >= LAYER_STRIDE[layer] else None
    cmap = matplotlib.colormaps["inferno"].with_extremes(bad="0.55")
    ncol = 2 * max(n, 1)
    fig = _figure(PAGE_WIDTH, PAGE_WIDTH * len(SALIENCY_ROWS) / ncol * 1.06 + 0.6)
    grid = fig.add_gridspec(len(SALIENCY_ROWS), ncol, left=0.09, right=0.995, top=0.93, bottom=0.07,
                            wspace=0.03, hspace=0.12)
    shown = None
    for r, (key, label) in enumerate(SALIENCY_ROWS):
        for c in range(max(n, 1)):
            axes = [fig.add_subplot(grid[r, 2 * c + j]) for j in (0, 1)]
            for ax in axes:
                ax.set_xticks([])
                ax.set_yticks([])
            if c == 0:
                axes[0].set_ylabel(label.replace(" ", "\n", 1), fontsize=7)
            if c >= picks[key].size:
                for ax in axes:
                    ax.set_axis_off()
                continue
            i = int(picks[key][c])
            axes[0].imshow(np.asarray(images[i]), interpolation="nearest")
            axes[0].text(0.03, 0.97, f"{info.symbol_pred} = {p[i]:.2f}", transform=axes[0].transAxes, va="top",
                         color="white", fontsize=6)
            axes[0].text(0.03, 0.03, f"{info.symbol_true} = {t[i]:.2f}", transform=axes[0].transAxes,
                         va="bottom", color="yellow", fontsize=6)
            shown = axes[1].imshow(saliency_display(maps[i], cells), cmap=cmap, vmin=0, vmax=1,
                                   interpolation="bilinear" if cells else "nearest",
                                   extent=(-0.5, res - 0.5, res - 0.5, -0.5))
            axes[1].add_patch(Circle(((res - 1) / 2, (res - 1) / 2), radius * res, fill=False, color="cyan",
                                     lw=0.6, ls="--"))
    if shown is not None:
        cax = fig.add_axes([0.35, 0.025, 0.3, 0.012])
        cb = fig.colorbar(shown, cax=cax, orientation="horizontal")
        cb.set_label("|map| / its maximum" + (" (grey: edge cells, masked)" if cells and cells >= EDGE_MASK_MIN
                                               else ""), fontsize=6.5)
        cb.ax.tick_params(labelsize=6)
    shape = np.shape(images[0]) if len(images) else (0,)
    how = f"|map| on the {cells} x {cells} grid of {layer}" if cells else f"|map| ({res} px)"
    fig.suptitle(title or f"Saliency{' (' + method + ')' if method else ''}: cutouts ({shape[0]} px) and {how}, "
                 "each scaled to its maximum", fontsize=8, y=0.995)
    return fig


__all__ += ["fig7_saliency", "saliency_display"]


@_styled
def fig_domain(check: dict, table: pd.DataFrame, target: str = METALLICITY, title: str | None = None) -> Figure:
    """The applicability-domain test on the test split (:func:`galmet.domain.shift_check`): left,
    ``domain_p`` of the test galaxies as observed and of the same galaxies shifted, one strip each,
    with the fraction flagged and the alpha line; right, the prediction against ``domain_p``
    (``table``: ``prediction``, ``domain_p``)."""
    t = get_target(target)
    alpha, sets = check["alpha"], check["sets"]
    fig = _figure(12, 5.2)
    ax, bx = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    rng = np.random.default_rng(0)
    floor = check["min_p"] / 2
    for i, s in enumerate(sets.values()):
        p = np.clip(np.asarray(s["domain_p"], float), floor, 1)
        colour = np.where(p < alpha, "#d62728", "#1f77b4")
        ax.scatter(p, i + rng.uniform(-0.25, 0.25, len(p)), s=9, c=colour, alpha=0.7, linewidths=0)
        ax.text(1.6, i, f"{100 * s['fraction']:.0f}%", va="center", fontsize=9)
    ax.axvline(alpha, color="k", lw=1, ls="--", label=f"alpha = {alpha:g}")
    ax.axvline(check["min_p"], color="grey", lw=0.8, ls=":", label=f"smallest p, 1/(n+1) = {check['min_p']:.3f}")
    ax.set_xscale("log")
    ax.set_xlim(floor / 1.5, 3.5)
    ax.set_yticks(range(len(sets)), [n.replace("_", " ") for n in sets])
    ax.invert_yaxis()
    ax.set_xlabel("domain_p (cross-conformal, calibrated on the train and valid splits)")
    ax.set_title("test galaxies as observed and shifted; % flagged", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize=8, frameon=False)
    inside = table["domain_p"] >= alpha
    bx.scatter(table.loc[inside, "domain_p"], table.loc[inside, "prediction"], s=14, c="#1f77b4",
               label=f"in domain ({int(inside.sum())})")
    bx.scatter(table.loc[~inside, "domain_p"].clip(lower=floor), table.loc[~inside, "prediction"], s=18,
               c="#d62728", marker="x", label=f"flagged ({int((~inside).sum())})")
    bx.axvline(alpha, color="k", lw=1, ls="--")
    bx.set_xscale("log")
    bx.set_xlabel("domain_p")
    bx.set_ylabel(t.label_pred)
    bx.set_title("test split: prediction against domain_p", fontsize=10)
    bx.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig
