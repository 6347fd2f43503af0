"""Matplotlib figures of `Picture`s: one step in a row of columns, or two steps one row each with the changes
highlighted.

A column is drawn the way the paper's Figures 3 and 4 draw a block: convs and pools as boxes with their kernel and
channels, norms and activations as labels between them, the residual path beside the branch, meeting it at the
sum. Everything is laid out in inches on one axes with y pointing down, so sizes do not depend on the figure's.
matplotlib is imported here only, when a figure is made.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

from roadmap.draw.picture import Item, Part, Picture
from roadmap.layers import Kind

BOX_H, LABEL_H, GAP = 0.46, 0.24, 0.16  # heights of a box and of a label, and the arrow between two items
MAIN_W, SIDE_W, PLAIN_COL, BLOCK_COL = 1.55, 1.25, 1.9, 3.05  # widths of the lanes and of the columns
TITLE_H, HEADER_H, MARGIN = 0.62, 0.55, 0.2
CHANGED = "#e07000"
COLORS = {  # the paper's palette is plain; these only tell kinds apart
    "spatial": "#cfe2f3", "depthwise": "#d9ead3", "pointwise": "#e4dcf0", "pool": "#e6e6e6",
    Kind.NORM: "#fff2cc", Kind.ACT: "#f8d7d7", "other": "#eeeeee",
}


def color(item: Item) -> str:
    spec = item.spec
    if spec.kind in (Kind.CONV, Kind.LINEAR):
        if spec.kernel == 1:
            return COLORS["pointwise"]
        return COLORS["depthwise"] if spec.depthwise else COLORS["spatial"]
    if spec.kind in (Kind.MAX_POOL, Kind.GLOBAL_POOL):
        return COLORS["pool"]
    return COLORS.get(spec.kind, COLORS["other"])


def height(item: Item) -> float:
    return BOX_H if item.boxed else LABEL_H


def stack_height(items: tuple[Item, ...]) -> float:
    return sum(height(x) + GAP for x in items)


def column_width(part: Part) -> float:
    return BLOCK_COL if part.residual else PLAIN_COL


def column_height(part: Part) -> float:
    """Title, items, the sum and what follows it, the note."""
    h = TITLE_H + stack_height(part.items) + 0.3
    if part.residual:
        h += 0.3 + stack_height(part.after_sum)
    return h + (0.45 if part.note else 0)


@dataclass
class Canvas:
    """One matplotlib axes in inches, y pointing down."""

    ax: object

    def item(self, x: float, y: float, w: float, item: Item) -> float:
        """Draw `item` centred at x with its top at y; returns its bottom."""
        from matplotlib.patches import FancyBboxPatch

        h = height(item)
        edge, lw = (CHANGED, 2.2) if item.changed else ("#555555", 0.8)
        if item.boxed:
            self.ax.add_patch(FancyBboxPatch((x - w / 2, y), w, h, boxstyle="round,pad=0,rounding_size=0.06",
                                             fc=color(item), ec=edge, lw=lw))
        else:
            self.ax.add_patch(FancyBboxPatch((x - w / 3, y + 0.02), 2 * w / 3, h - 0.04,
                                             boxstyle="round,pad=0,rounding_size=0.1", fc=color(item), ec=edge,
                                             lw=lw if item.changed else 0))
        self.ax.text(x, y + h / 2, item.text, ha="center", va="center", fontsize=7 if item.boxed else 6.8,
                     fontweight="bold" if item.changed else "normal", linespacing=1.15)
        return y + h

    def arrow(self, x: float, y0: float, y1: float) -> None:
        self.ax.annotate("", (x, y1), (x, y0), arrowprops=dict(arrowstyle="-|>", lw=0.8, color="#333333",
                                                               shrinkA=0, shrinkB=0, mutation_scale=7))

    def line(self, xs, ys) -> None:
        self.ax.plot(xs, ys, color="#333333", lw=0.8, solid_capstyle="butt", zorder=0.5)  # under the boxes

    def text(self, x: float, y: float, text: str, width: float, changed: bool = False, **kw) -> None:
        chars = max(12, int(width * 17))
        weight = "bold" if changed else kw.pop("fontweight", "normal")
        kw.pop("fontweight", None)
        self.ax.text(x, y, textwrap.fill(text, chars), color=CHANGED if changed else "#222222", fontweight=weight,
                     **kw)


def draw_stack(c: Canvas, x: float, y: float, items: tuple[Item, ...], w: float) -> float:
    """Items top to bottom joined by arrows; returns the bottom of the last."""
    for item in items:
        y = c.item(x, y, w, item)
        c.arrow(x, y, y + GAP)
        y += GAP
    return y


def draw_column(c: Canvas, left: float, top: float, part: Part) -> None:
    width = column_width(part)
    c.text(left + 0.05, top, part.title, width - 0.1, part.changed, va="top", fontsize=7.5, fontweight="bold")
    y = top + TITLE_H
    x = left + (0.1 + MAIN_W / 2 if part.residual else width / 2)
    c.arrow(x, y - 0.14, y)
    start = y
    y = draw_stack(c, x, y, part.items[: part.downsample], MAIN_W)
    if part.downsample:
        c.text(x + MAIN_W / 2 + 0.12, (start + y) / 2, "\u2190 downsampling layers", width, fontsize=6.5,
               style="italic", va="center")
    if part.residual:
        y = draw_block(c, left, x, y, part)
    else:
        y = draw_stack(c, x, y, part.items[part.downsample:], MAIN_W) - GAP
    if part.note:
        c.text(left + 0.05, y + 0.12, part.note, width - 0.1, part.changed, va="top", fontsize=6.5, style="italic")


def draw_block(c: Canvas, left: float, x: float, y: float, part: Part) -> float:
    """The branch down the main lane, the shortcut (a line, or the projection's boxes) down the side lane, and
    the sum where they meet; returns the bottom of what follows the sum."""
    split = y - GAP / 2
    side = left + 0.2 + MAIN_W + SIDE_W / 2
    y = draw_stack(c, x, y, part.items[part.downsample:], MAIN_W)
    radius = 0.11
    add_y = y + radius
    c.line([x, side, side], [split, split, add_y])
    if part.shortcut:
        h = stack_height(part.shortcut) - GAP
        sy = split + (add_y - split - h) / 2
        for item in part.shortcut:
            sy = c.item(side, sy, SIDE_W, item) + GAP
    c.line([side, x + radius], [add_y, add_y])
    from matplotlib.patches import Circle

    c.ax.add_patch(Circle((x, add_y), radius, fc="white", ec="#333333", lw=0.9, zorder=3))
    c.ax.text(x, add_y, "+", ha="center", va="center", fontsize=9, zorder=4)
    c.ax.text(side + 0.05, (split + add_y) / 2, "shortcut" if not part.shortcut else "", rotation=90, fontsize=6,
              va="center", ha="left", style="italic")
    y = add_y + radius
    c.arrow(x, y, y + GAP)
    return draw_stack(c, x, y + GAP, part.after_sum, MAIN_W) - GAP


def row_size(p: Picture) -> tuple[float, float]:
    return (sum(column_width(x) for x in p.parts) + 0.15 * (len(p.parts) - 1) + 2 * MARGIN,
            HEADER_H + max(column_height(x) for x in p.parts) + MARGIN)


def draw_row(c: Canvas, top: float, p: Picture) -> None:
    c.ax.text(MARGIN, top + 0.08, p.title, fontsize=11, fontweight="bold", va="top")
    c.ax.text(MARGIN, top + 0.33, p.summary, fontsize=8, va="top", color="#444444")
    left = MARGIN
    for part in p.parts:
        draw_column(c, left, top + HEADER_H, part)
        left += column_width(part) + 0.15


def figure(*pictures: Picture, legend: bool = False):
    """A matplotlib Figure with one row per picture (not attached to pyplot: nothing global changes)."""
    from matplotlib.figure import Figure

    sizes = [row_size(p) for p in pictures]
    width, height = max(w for w, _ in sizes), sum(h for _, h in sizes) + (0.3 if legend else 0)
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")
    c, top = Canvas(ax), 0.0
    for p, (_, h) in zip(pictures, sizes, strict=True):
        draw_row(c, top, p)
        top += h
    if legend:
        ax.text(MARGIN, top + 0.05, "orange: what the other step does not have here", color=CHANGED, fontsize=8,
                va="top", fontweight="bold")
    return fig
