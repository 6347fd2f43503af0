"""What a step of the roadmap is: a pure, named transform of a `Design` that carries the paper's numbers."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # steps never imports torch, and needs the design classes only for type hints
    from roadmap.design import Design


@dataclass(frozen=True)
class Section:
    """A subsection of the paper's Section 2 ("Modernizing a ConvNet: a Roadmap")."""

    key: str  # what users type, e.g. "macro_design"
    number: str  # e.g. "2.2"
    title: str  # e.g. "Macro design"

    def __str__(self) -> str:
        return f"{self.number} {self.title}"


@dataclass(frozen=True)
class Step:
    """One step of the roadmap: `step(design) -> design`, plus what the paper says about it.

    `branch_of` names the main-path step a branch (the kernel sweep's 5, 9 and 11) starts from;
    main-path steps have None. A step the paper never trained has no paper numbers (None).
    """

    name: str
    section: Section
    summary: str  # what changes, one line
    rationale: str  # why the paper makes the change, one line
    paper_top1: float | None  # ImageNet-1K top-1 in the paper (Figure 2 / Table 10); None: not in the paper
    paper_gflops: float | None  # GFLOPs at 224 px in the paper; None where it prints none
    edit: Callable[[Design], Design] = dataclasses.field(repr=False)
    branch_of: str | None = None
    footnote: str = ""  # where our count differs from the paper's print, and why

    def __call__(self, design: Design) -> Design:
        return self.edit(design)

    @property
    def is_branch(self) -> bool:
        return self.branch_of is not None

    @property
    def in_paper(self) -> bool:
        """Whether the paper trained this step (a step of one's own, like a squeeze-excitation branch, is not)."""
        return self.paper_top1 is not None


def net_edit(**changes: Any) -> Callable[[Design], Design]:
    """An edit that sets network fields: `net_edit(kernel_size=7)`."""

    def edit(design: Design) -> Design:
        return dataclasses.replace(design, net=dataclasses.replace(design.net, **changes))

    return edit


def net_map(fn: Callable[[Any], dict[str, Any]]) -> Callable[[Design], Design]:
    """An edit whose new network fields are computed from the current network: `net_map(lambda n: {...})`."""

    def edit(design: Design) -> Design:
        return dataclasses.replace(design, net=dataclasses.replace(design.net, **fn(design.net)))

    return edit


def widen(factor: float, **also: Any) -> Callable[[Design], Design]:
    """An edit that multiplies the stem width and every stage width by `factor`, rounded to whole channels, and
    sets the fields in `also`: ResNeXt-ify's 64 -> 96, the ResNet-200 regime's 64 -> 84 -> 128, the family's sizes.

    (Not `width_mult`, which every step keeps and which rounds to multiples of 8 for small CPU models.)"""
    return net_map(lambda net: {
        "stem_width": round(net.stem_width * factor),
        "widths": tuple(round(w * factor) for w in net.widths),
        **also,
    })
