"""Pictures of a step's network, drawn from the layer plan that builds it (`roadmap draw`, issue 15).

    from roadmap.draw import draw, draw_diff, save
    fig = draw("convnext_tiny")                      # stem, each stage's block, head
    fig = draw_diff("large_kernel", "gelu")          # both, one above the other, what changed in orange
    save(fig, "block.svg")                           # SVG or PNG, by the suffix

`roadmap.draw.picture` says what is drawn (as data, tested against the built module); `roadmap.draw.render`
draws it with matplotlib, which is imported only when a figure is made.
"""

from __future__ import annotations

from pathlib import Path

from roadmap.design import Design
from roadmap.draw.picture import Item, Part, Picture, mark_changes, picture
from roadmap.errors import RoadmapError
from roadmap.network import Network

SUFFIXES = (".svg", ".png")

__all__ = ["Item", "Part", "Picture", "SUFFIXES", "draw", "draw_diff", "mark_changes", "picture", "save"]


def draw(spec: str | Design | Network, **options):
    """The figure of one step (a name, spec, `Design` or `Network`); `options` go to `picture`
    (regime, width_mult, depth_mult, num_classes, img_size)."""
    from roadmap.draw.render import figure

    return figure(picture(spec, **options))


def draw_diff(spec: str | Design | Network, other: str | Design | Network, **options):
    """Two steps, one row each, column by column, with what differs between them highlighted."""
    from roadmap.draw.render import figure

    return figure(*mark_changes(picture(spec, **options), picture(other, **options)), legend=True)


def check_suffix(path: str | Path) -> Path:
    """`path` if it ends in .svg or .png; a clear error otherwise (before any drawing is done)."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise RoadmapError(f"cannot draw into {str(path)!r}: the file name must end in .svg or .png")
    return path


def save(fig, path: str | Path) -> Path:
    """Write `fig` as SVG or PNG, chosen by the suffix of `path`."""
    path = check_suffix(path)
    if not path.parent.is_dir():
        raise RoadmapError(f"cannot write {str(path)!r}: the folder {str(path.parent)!r} does not exist")
    fig.savefig(path, format=path.suffix.lower()[1:], dpi=120)
    return path
