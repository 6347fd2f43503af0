"""The report's four figures, drawn from the per-step summary and the per-epoch curves.

Figures are built on `matplotlib.figure.Figure` with the Agg canvas (no pyplot, no global backend switch),
under matplotlib's default style so a user's matplotlibrc cannot change them, and saved with a fixed dpi and
no "Software" metadata: the same records give byte-identical PNGs on any path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from matplotlib import rc_context, style
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import Bbox

from reports.table import spearman
from roadmap.record_files import atomic_write

DPI = 110
FIGURES = ("fig_roadmap.png", "fig_acc_vs_flops.png", "fig_curves.png", "fig_delta.png")
ORDERS_FIGURE = "fig_orders.png"


class StepOrder(NamedTuple):
    """One order of the steps: a name and its nodes (step added, spec trained), the start first."""

    name: str
    nodes: list[tuple[str, str]]

# tab10 without its red (which marks divergence), darkened where white text on a bar would be hard to read.
PALETTE = ("#1f77b4", "#e07000", "#2a9a2a", "#8a5cb8", "#8c564b", "#c2479c", "#11899a", "#8f8f1f", "#6f6f6f")
UNKNOWN_COLOR = "#c7c7c7"
STATUS_COLORS = {"diverged": "#d62728", "missing": "#7f7f7f", "running": "#e6780a", "interrupted": "#e6780a"}


def section_colors(summary: pd.DataFrame) -> dict[str, str]:
    """One colour per paper section, in roadmap order, shared by every figure."""
    keys = [k for k in dict.fromkeys(summary["section_key"]) if k]
    return {k: PALETTE[i % len(PALETTE)] for i, k in enumerate(keys)}


def _color(colors: dict[str, str], key: str) -> str:
    return colors.get(key, UNKNOWN_COLOR)


def _section_handles(summary: pd.DataFrame, colors: dict[str, str]) -> list[Patch]:
    names = dict(zip(summary["section_key"], summary["section"], strict=True))
    return [Patch(facecolor=c, label=names.get(k) or k) for k, c in colors.items()]


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=DPI, metadata={"Software": None},
                                             facecolor="white"), "figure")


def _finite(value: float) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


# --------------------------------------------------------------------------------------------- label placement

_CANDIDATES = [
    (7, 0, "left", "center"), (-7, 0, "right", "center"), (6, 6, "left", "bottom"), (6, -6, "left", "top"),
    (-6, 6, "right", "bottom"), (-6, -6, "right", "top"), (0, 8, "center", "bottom"), (0, -8, "center", "top"),
    (16, 12, "left", "bottom"), (16, -12, "left", "top"), (-16, 12, "right", "bottom"), (-16, -12, "right", "top"),
    (0, 20, "center", "bottom"), (0, -20, "center", "top"), (26, 0, "left", "center"), (-26, 0, "right", "center"),
    (24, 24, "left", "bottom"), (24, -24, "left", "top"), (-24, 24, "right", "bottom"), (-24, -24, "right", "top"),
]


def _overlap(a: Bbox, b: Bbox) -> float:
    inter = Bbox.intersection(a, b)
    return 0.0 if inter is None else inter.width * inter.height


def _distance(box: Bbox, px: float, py: float) -> float:
    """Pixels from a point to the nearest edge of a box (0 inside)."""
    return math.hypot(max(box.x0 - px, 0.0, px - box.x1), max(box.y0 - py, 0.0, py - box.y1))


def place_labels(fig: Figure, ax, xs: Sequence[float], ys: Sequence[float], labels: Sequence[str],
                 obstacles: Sequence[tuple[float, float]] = (), bars: Sequence[tuple[float, float, float]] = (),
                 fontsize: float = 8.5) -> None:
    """Label each point (data coordinates) with the first nearby offset whose text overlaps no other label,
    point, obstacle (points on the arrows) or vertical error bar (x, y_low, y_high) and stays inside the axes;
    failing that, the least-overlapping one. A label nearer another point than its own counts as overlapping
    too (it would name the wrong point). Axis limits and the figure layout must be final: overlaps are measured
    in display space."""
    renderer = FigureCanvasAgg(fig).get_renderer()
    to_px = ax.transData.transform
    r = 5 * fig.dpi / 72
    centers = to_px(np.column_stack([xs, ys]))
    dots = [Bbox.from_bounds(px - r, py - r, 2 * r, 2 * r) for px, py in centers]
    if len(obstacles):
        small = 2 * fig.dpi / 72
        dots += [Bbox.from_bounds(px - small, py - small, 2 * small, 2 * small)
                 for px, py in to_px(np.asarray(obstacles, dtype=float))]
    for x, y0, y1 in bars:
        (px, py0), (_, py1) = to_px([(x, y0), (x, y1)])
        dots.append(Bbox.from_extents(px - 2, min(py0, py1), px + 2, max(py0, py1)))
    frame = ax.get_window_extent(renderer)
    placed: list[Bbox] = []
    for i, (x, y, label) in enumerate(zip(xs, ys, labels, strict=True)):
        best = None
        for dx, dy, ha, va in _CANDIDATES:
            far = abs(dx) > 10 or abs(dy) > 10
            text = ax.annotate(label, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                               fontsize=fontsize, zorder=5,
                               arrowprops=dict(arrowstyle="-", color="#999999", lw=0.6, shrinkA=0, shrinkB=4)
                               if far else None)
            box = text.get_window_extent(renderer).padded(2)
            cost = sum(_overlap(box, b) for b in placed) * 4 + sum(_overlap(box, d) for d in dots)
            inside = _overlap(box, frame)
            cost += (box.width * box.height - inside) * 8
            own = _distance(box, *centers[i])
            nearest_other = min((_distance(box, *c) for j, c in enumerate(centers) if j != i), default=math.inf)
            cost += 40 * max(0.0, own + 8 - nearest_other)
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, text, box)
            else:
                text.remove()
            if cost == 0:
                break
        assert best is not None
        placed.append(best[2])


def _error_bars(xs: pd.Series, ys: pd.Series, errs: pd.Series) -> list[tuple[float, float, float]]:
    """The vertical error bars as (x, low, high), for `place_labels` to keep labels off them."""
    return [(x, y - err, y + err) for x, y, err in zip(xs, ys, errs, strict=True) if _finite(err) and err]


# ------------------------------------------------------------------------------------------------ the figures


def fig_roadmap(summary: pd.DataFrame, path: Path, title: str) -> None:
    """The paper's Figure 2 with our numbers: a bar per step (ours), the paper's top-1 beside it."""
    colors = section_colors(summary)
    n = len(summary)
    fig = Figure(figsize=(12.5, max(4.5, 0.42 * n + 2.2)), layout="constrained")
    ax, axp = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [3.2, 1]})
    ys = np.arange(n)
    lo, hi = _top1_range(summary)
    for y, row in zip(ys, summary.itertuples(index=False), strict=True):
        color = _color(colors, row.section_key)
        _step_bar(ax, y, row, color, lo, hi)
        if _finite(row.paper_top1):
            axp.scatter(row.paper_top1, y, marker="D", s=36, color=color, edgecolor="black", linewidth=0.6,
                        zorder=3)
            axp.annotate(f"{row.paper_top1:.2f}", (row.paper_top1, y), xytext=(7, 0), textcoords="offset points",
                         va="center", fontsize=8)
    for a in (ax, axp):
        keys = list(summary["section_key"])
        for y0 in range(1, n):
            if keys[y0] != keys[y0 - 1]:  # a thin rule between sections
                a.axhline(y0 - 0.5, color="#bbbbbb", lw=0.7, zorder=1)
        a.grid(axis="x", color="#e5e5e5", zorder=0)
        a.set_axisbelow(True)
    ax.set_xlim(lo, hi)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_yticks(ys, list(summary["label"]), fontsize=9)
    ax.set_xlabel("our top-1 (%), final epoch, mean ± std over seeds" + (f" (axis starts at {lo:g})" if lo else ""))
    ax.set_title("this run", fontsize=10)
    paper = summary["paper_top1"].dropna()
    if len(paper):
        axp.set_xlim(float(paper.min()) - 0.8, float(paper.max()) + 1.2)
    axp.set_xlabel("paper top-1 (%), ImageNet-1K")
    axp.set_title("the paper (Figure 2)", fontsize=10)
    axp.tick_params(axis="y", left=False)
    handles = _section_handles(summary, colors)
    handles.append(Patch(facecolor="#dddddd", hatch="///", edgecolor="white", label="branch (kernel sweep)"))
    if summary["is_baseline"].any():
        handles.append(Patch(facecolor="#dddddd", hatch="...", edgecolor="white", label="reference model (timm)"))
    handles.append(Line2D([], [], marker="D", ls="", color="#dddddd", markeredgecolor="black", label="paper top-1"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(5, len(handles)), fontsize=8.5, frameon=False)
    fig.suptitle(f"Modernizing ResNet-50 to ConvNeXt-T: top-1 per step\n{title}", fontsize=11)
    _save(fig, path)


def _top1_range(summary: pd.DataFrame) -> tuple[float, float]:
    """The top-1 axis of Figure 2: from a little below the lowest mean (bars start there) to room for labels."""
    ours = summary["top1_mean"].dropna()
    if not len(ours):
        return 0.0, 100.0
    low, high = float(ours.min()), float((summary["top1_mean"] + summary["top1_std"].fillna(0)).max())
    span = max(high - low, 4.0)
    return max(0.0, math.floor(low - 0.6 * span - 1)), high + 0.45 * span + 2


def _step_bar(ax, y: float, row, color: str, lo: float, hi: float) -> None:
    """One step's bar in Figure 2 (mean, seed spread, GFLOPs on the bar), or its status where it has no result."""
    flops = f"{row.gflops_224:.2f} GFLOPs" if _finite(row.gflops_224) else ""
    if not row.n:
        kind = row.status_kind
        text = row.status + (f"  ·  {flops}" if flops else "")
        ax.text(lo + 0.01 * (hi - lo), y, text, va="center", ha="left", fontsize=8.5,
                color=STATUS_COLORS.get(kind, "black"), fontweight="bold" if kind == "diverged" else "normal",
                fontstyle="italic" if kind == "missing" else "normal", zorder=4)
        return
    ax.barh(y, row.top1_mean - lo, left=lo, height=0.72, color=color, zorder=2,
            hatch="///" if row.is_branch else "..." if row.is_baseline else None, edgecolor="white", linewidth=0.6)
    std = row.top1_std if _finite(row.top1_std) else 0.0
    if std:
        ax.errorbar(row.top1_mean, y, xerr=std, color="black", lw=1, capsize=3, zorder=3)
    value = f"{row.top1_mean:.2f}" + (f" ± {row.top1_std:.2f}" if std else "")
    if row.status_kind == "partial":
        value += f"  ({row.n} of {row.n_runs} runs finished)"
    ax.text(row.top1_mean + std + 0.01 * (hi - lo), y, value, va="center", ha="left", fontsize=8.5, zorder=4)
    if flops:
        ax.text(lo + 0.01 * (hi - lo), y, flops, va="center", ha="left", fontsize=8, color="white",
                fontweight="bold", zorder=4, bbox=dict(boxstyle="square,pad=0.15", facecolor=color, edgecolor="none"))


def fig_acc_vs_flops(summary: pd.DataFrame, path: Path, title: str) -> None:
    """Top-1 against GFLOPs at 224 px: the main path as arrows from ResNet-50 to ConvNeXt-T, branches apart."""
    colors = section_colors(summary)
    fig = Figure(figsize=(11.5, 7.2))
    fig.subplots_adjust(left=0.08, right=0.76, top=0.85, bottom=0.16)
    ax = fig.add_subplot()
    pts = summary[summary["top1_mean"].notna() & summary["gflops_224"].notna()]
    main = pts[~pts["is_branch"] & ~pts["edited"] & ~pts["is_baseline"]]
    if len(pts):
        xr = (float(pts["gflops_224"].min()), float(pts["gflops_224"].max()))
        yr = (float((pts["top1_mean"] - pts["top1_std"].fillna(0)).min()),
              float((pts["top1_mean"] + pts["top1_std"].fillna(0)).max()))
        xpad, ypad = max(xr[1] - xr[0], 0.2) * 0.14, max(yr[1] - yr[0], 1.0) * 0.14
        ax.set_xlim(xr[0] - xpad, xr[1] + 2 * xpad)  # room for labels right of the rightmost points
        ax.set_ylim(yr[0] - ypad, yr[1] + ypad)
    obstacles = _main_path_arrows(ax, list(main["gflops_224"]), list(main["top1_mean"]))
    by_step = {r.step: r for r in pts.itertuples(index=False)}
    for row in pts.itertuples(index=False):
        _flops_point(ax, row, _color(colors, row.section_key), by_step)
    # Many steps share ~4.15 GFLOPs and similar accuracy: number the points (roadmap order) and key the numbers
    # beside the plot, so no label can hide another.
    number = {step: i for i, step in enumerate(summary["step"])}
    labels = [str(number[r.step]) for r in pts.itertuples(index=False)]
    bars = _error_bars(pts["gflops_224"], pts["top1_mean"], pts["top1_std"])
    place_labels(fig, ax, list(pts["gflops_224"]), list(pts["top1_mean"]), labels, obstacles, bars)
    key = "\n".join(f"{number[r.step]:>2}  {r.step}" for r in pts.itertuples(index=False))
    fig.text(0.78, 0.47, key, fontsize=7.5, family="monospace", va="top")
    unplotted = summary[summary["top1_mean"].isna()]
    if len(unplotted):
        lines = ", ".join(f"{r.step} ({r.status})" for r in unplotted.itertuples(index=False))
        fig.text(0.08, 0.03, "not plotted (no finished run): " + lines, fontsize=8.5, color="#b22222", wrap=True)
    ax.set_xlabel("GFLOPs at 224 px (paper convention: multiply-accumulates of conv and linear layers)")
    ax.set_ylabel("our top-1 (%), final epoch")
    ax.grid(color="#eeeeee", zorder=0)
    ax.set_axisbelow(True)
    fig.legend(handles=_flops_legend(summary, colors), loc="upper left", bbox_to_anchor=(0.775, 0.85), fontsize=8.5,
               frameon=False)
    fig.suptitle(f"Top-1 vs GFLOPs along the roadmap\n{title}", fontsize=11)
    _save(fig, path)


def _main_path_arrows(ax, mx: list[float], my: list[float]) -> list[tuple[float, float]]:
    """Arrows along the main path, step to step; returns points along the straight ones, for labels to avoid."""
    obstacles: list[tuple[float, float]] = []
    xspan = max(ax.get_xlim()[1] - ax.get_xlim()[0], 1e-9)
    for x0, y0, x1, y1 in zip(mx, my, mx[1:], my[1:], strict=False):
        # Steps that keep the GFLOPs move straight up or down: bend those arrows so up and down stay apart.
        rad = 0.3 if abs(x1 - x0) < 0.01 * xspan else 0.0
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0), zorder=2,
                    arrowprops=dict(arrowstyle="-|>", color="#555555", lw=1.1, shrinkA=5, shrinkB=5,
                                    mutation_scale=11, connectionstyle=f"arc3,rad={rad}"))
        if not rad:
            obstacles += [(x0 + (x1 - x0) * t, y0 + (y1 - y0) * t) for t in np.linspace(0.15, 0.85, 8)]
    return obstacles


def _flops_point(ax, row, color: str, by_step: dict) -> None:
    """One step in the top-1 vs GFLOPs plot: a main-path dot, a branch or composed spec linked to its parent,
    or a reference model's star."""
    std = row.top1_std if _finite(row.top1_std) else None
    if std:
        ax.errorbar(row.gflops_224, row.top1_mean, yerr=std, color=color, lw=1, capsize=2, zorder=2)
    if row.is_baseline:  # a reference point, not a step: no line to a parent
        ax.scatter(row.gflops_224, row.top1_mean, marker="*", s=170, color=color, edgecolor="black",
                   linewidth=0.6, zorder=4)
    elif row.is_branch or row.edited:
        ax.scatter(row.gflops_224, row.top1_mean, marker="s" if row.is_branch else "^", s=55,
                   facecolor="white", edgecolor=color, linewidth=1.8, zorder=4)
        parent = by_step.get(row.delta_vs or "")
        if parent is not None:
            ax.plot([parent.gflops_224, row.gflops_224], [parent.top1_mean, row.top1_mean], ls=":",
                    color=color, lw=1, zorder=1)
    else:
        ax.scatter(row.gflops_224, row.top1_mean, s=60, color=color, edgecolor="black", linewidth=0.5, zorder=4)


def _flops_legend(summary: pd.DataFrame, colors: dict[str, str]) -> list:
    """The legend of the top-1 vs GFLOPs plot: sections, then the marks the plot uses."""
    handles: list = _section_handles(summary, colors)
    handles += [
        Line2D([], [], color="#555555", marker=">", lw=1.1, label="main path, in order"),
        Line2D([], [], marker="s", ls="", markerfacecolor="white", markeredgecolor="#555555", label="branch"),
    ]
    if summary["edited"].any():
        handles.append(Line2D([], [], marker="^", ls="", markerfacecolor="white", markeredgecolor="#555555",
                              label="composed spec (e.g. leave-one-out)"))
    if summary["is_baseline"].any():
        handles.append(Line2D([], [], marker="*", ls="", markersize=11, color="#dddddd", markeredgecolor="black",
                              label="reference model (timm)"))
    return handles


def fig_curves(summary: pd.DataFrame, curves: pd.DataFrame, path: Path, title: str) -> None:
    """Learning curves (mean over seeds per epoch): validation top-1 and training loss, colour by section."""
    colors = section_colors(summary)
    fig = Figure(figsize=(14, 6.2), layout="constrained")
    acc_ax, loss_ax, key_ax = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 0.45]})
    key_ax.axis("off")
    styles = ("-", "--", ":", "-.")
    seen: dict[str, int] = {}
    handles = []
    max_epoch = curves["epoch"].max() if len(curves) else 0
    for row in summary.itertuples(index=False):
        color = _color(colors, row.section_key)
        k = seen.get(row.section_key, 0)
        seen[row.section_key] = k + 1
        style = styles[k % len(styles)]
        mine = curves[curves["step"] == row.step]
        label = row.label if row.status_kind in ("done", "partial") else f"{row.label} ({row.status})"
        handles.append(Line2D([], [], color=color, ls=style, lw=1.6, label=label))
        if not len(mine):
            continue
        mean = mine.groupby("epoch")[["val_top1", "train_loss"]].mean()
        marker = "o" if max_epoch <= 20 else None
        for ax, col in ((acc_ax, "val_top1"), (loss_ax, "train_loss")):
            series = mean[col][np.isfinite(mean[col])]
            ax.plot(series.index, series.values, color=color, ls=style, lw=1.6, marker=marker, markersize=3)
            if row.status_kind == "diverged" and len(series):
                ax.scatter(series.index[-1], series.values[-1], marker="x", s=50, color=STATUS_COLORS["diverged"],
                           zorder=4)
    acc_ax.set_title("validation top-1 (%)", fontsize=10)
    loss_ax.set_title("training loss", fontsize=10)
    for ax in (acc_ax, loss_ax):
        ax.set_xlabel("epoch")
        ax.grid(color="#eeeeee")
        if max_epoch and max_epoch <= 20:
            ax.set_xticks(range(1, int(max_epoch) + 1))
    if not len(curves):
        acc_ax.text(0.5, 0.5, "no finished epoch yet", ha="center", transform=acc_ax.transAxes)
    if (summary["status_kind"] == "diverged").any():
        handles.append(Line2D([], [], marker="x", ls="", color=STATUS_COLORS["diverged"], label="diverged here"))
    key_ax.legend(handles=handles, loc="upper left", fontsize=8, frameon=False, title="step (colour: section)",
                  title_fontsize=8.5, borderaxespad=0)
    fig.suptitle(f"Learning curves, mean over seeds\n{title}", fontsize=11)
    _save(fig, path)


def fig_delta(summary: pd.DataFrame, path: Path, title: str) -> None:
    """Our per-step change against the paper's, with the y = x line and Spearman's rank correlation."""
    colors = section_colors(summary)
    fig = Figure(figsize=(10.5, 7.5))
    fig.subplots_adjust(left=0.09, right=0.74, top=0.85, bottom=0.1)
    ax = fig.add_subplot()
    pts = summary[summary["delta"].notna() & summary["paper_delta"].notna() & ~summary["is_baseline"]]
    if len(pts):
        err = pts["pooled_std"].fillna(0)
        xr = (min(0.0, float(pts["paper_delta"].min())), max(0.0, float(pts["paper_delta"].max())))
        yr = (min(0.0, float((pts["delta"] - err).min())), max(0.0, float((pts["delta"] + err).max())))
        xpad, ypad = max(xr[1] - xr[0], 0.5) * 0.15, max(yr[1] - yr[0], 0.5) * 0.15
        ax.set_xlim(xr[0] - xpad, xr[1] + 2 * xpad)  # room for labels right of the rightmost points
        ax.set_ylim(yr[0] - ypad, yr[1] + ypad)
    lo = min(ax.get_xlim()[0], ax.get_ylim()[0])
    hi = max(ax.get_xlim()[1], ax.get_ylim()[1])
    xlim, ylim = ax.get_xlim(), ax.get_ylim()
    ax.plot([lo, hi], [lo, hi], ls="--", color="#888888", lw=1, zorder=1)
    ax.axhline(0, color="#cccccc", lw=0.8, zorder=0)
    ax.axvline(0, color="#cccccc", lw=0.8, zorder=0)
    ax.set_xlim(xlim)
    ax.set_ylim(ylim)
    for row in pts.itertuples(index=False):
        color = _color(colors, row.section_key)
        if _finite(row.pooled_std):
            ax.errorbar(row.paper_delta, row.delta, yerr=row.pooled_std, color=color, lw=1, capsize=2, zorder=2)
        if row.is_branch or row.edited:
            ax.scatter(row.paper_delta, row.delta, marker="s" if row.is_branch else "^", s=55, facecolor="white",
                       edgecolor=color, linewidth=1.8, zorder=4)
        else:
            ax.scatter(row.paper_delta, row.delta, s=60, color=color, edgecolor="black", linewidth=0.5, zorder=4)
    labels = [r.step if r.delta_vs_nominal else f"{r.step} (vs {r.delta_vs})" for r in pts.itertuples(index=False)]
    bars = _error_bars(pts["paper_delta"], pts["delta"], pts["pooled_std"])
    place_labels(fig, ax, list(pts["paper_delta"]), list(pts["delta"]), labels, bars=bars)
    rho, count = spearman(summary)
    rho_text = f"Spearman ρ = {rho:+.2f} over {count} steps" if _finite(rho) else f"Spearman ρ: n/a ({count} steps)"
    ax.text(0.02, 0.98, rho_text + "\ndashed: y = x (same change as the paper)", transform=ax.transAxes,
            va="top", fontsize=9, bbox=dict(boxstyle="round", facecolor="white", edgecolor="#aaaaaa"), zorder=6)
    ax.set_xlabel("paper Δ top-1 (points, ImageNet-1K)")
    ax.set_ylabel("our Δ top-1 (points), ± pooled seed std")
    ax.grid(color="#f0f0f0", zorder=0)
    ax.set_axisbelow(True)
    handles = _section_handles(summary, colors)
    handles.append(Line2D([], [], marker="s", ls="", markerfacecolor="white", markeredgecolor="#555555",
                          label="branch (vs its parent)"))
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.755, 0.85), fontsize=8.5, frameon=False)
    fig.suptitle(f"Per-step change of top-1: ours vs the paper's\n{title}", fontsize=11)
    _save(fig, path)


def fig_orders(summary: pd.DataFrame, paths: Sequence[StepOrder], path: Path, title: str) -> None:
    """Top-1 against GFLOPs at 224 px, one line per order of the steps: the same steps, met in another order,
    trace another path. Nodes are named <path letter><position> and keyed beside the plot."""
    fig = Figure(figsize=(11.5, 7.2))
    fig.subplots_adjust(left=0.08, right=0.70, top=0.85, bottom=0.16)
    ax = fig.add_subplot()
    by_step = {r.step: r for r in summary.itertuples(index=False)}
    names: dict[str, list[str]] = {}  # spec -> the node names it has (a node two paths share has two)
    key, unplotted = [], []
    for p, order in enumerate(paths):
        letter = chr(ord("A") + p)
        color = PALETTE[p % len(PALETTE)]
        key.append(f"{letter}  {order.name}")
        xs, ys = [], []
        for k, (added, spec) in enumerate(order.nodes):
            node = f"{letter}{k}"
            key.append(f"  {node:<4}{'start: ' + spec if k == 0 else '+ ' + added}")
            row = by_step.get(spec)
            if row is None or not (_finite(row.top1_mean) and _finite(row.gflops_224)):
                unplotted.append(f"{node} ({row.status if row is not None else 'not in the records'})")
                continue
            names.setdefault(spec, []).append(node)
            xs.append(row.gflops_224)
            ys.append(row.top1_mean)
            if _finite(row.top1_std) and row.top1_std:
                ax.errorbar(row.gflops_224, row.top1_mean, yerr=row.top1_std, color=color, lw=1, capsize=2,
                            zorder=2)
        ax.plot(xs, ys, color=color, lw=1.6, ls="-" if p == 0 else "--", marker="o", markersize=6, zorder=3,
                label=f"{letter}: {order.name}")
        for x0, y0, x1, y1 in zip(xs, ys, xs[1:], ys[1:], strict=False):
            ax.annotate("", xy=(x1, y1), xytext=(x0, y0), zorder=3,
                        arrowprops=dict(arrowstyle="-|>", color=color, lw=0, mutation_scale=12, shrinkA=0,
                                        shrinkB=6))
    ax.margins(0.15)
    specs = list(names)
    if specs:
        place_labels(fig, ax, [by_step[s].gflops_224 for s in specs], [by_step[s].top1_mean for s in specs],
                     ["=".join(names[s]) for s in specs], fontsize=8)
    fig.text(0.72, 0.85, "\n".join(key), fontsize=7.5, family="monospace", va="top")
    if unplotted:
        fig.text(0.08, 0.03, "not plotted (no finished run): " + ", ".join(unplotted), fontsize=8.5,
                 color="#b22222", wrap=True)
    ax.set_xlabel("GFLOPs at 224 px (paper convention: multiply-accumulates of conv and linear layers)")
    ax.set_ylabel("our top-1 (%), final epoch")
    ax.grid(color="#eeeeee", zorder=0)
    ax.set_axisbelow(True)
    ax.legend(loc="lower right", fontsize=8.5, frameon=False)
    fig.suptitle(f"Top-1 vs GFLOPs, the steps in different orders\n{title}", fontsize=11)
    _save(fig, path)


def render_all(summary: pd.DataFrame, curves: pd.DataFrame, out_dir: Path, title: str,
               orders: Sequence[StepOrder] = ()) -> list[str]:
    """Write the four figures (and the orders figure when there are orders) into `out_dir`; return their file
    names (relative, for the report)."""
    with style.context("default"), rc_context({"svg.hashsalt": "roadmap", "font.size": 9}):
        fig_roadmap(summary, out_dir / FIGURES[0], title)
        fig_acc_vs_flops(summary, out_dir / FIGURES[1], title)
        fig_curves(summary, curves, out_dir / FIGURES[2], title)
        fig_delta(summary, out_dir / FIGURES[3], title)
        if len(orders) > 1:
            fig_orders(summary, orders, out_dir / ORDERS_FIGURE, title)
    return list(FIGURES) + ([ORDERS_FIGURE] if len(orders) > 1 else [])
