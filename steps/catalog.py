"""The ordered roadmap, name lookup, and composition of steps into designs.

Names users type: every step name, the alias `convnext_tiny` (= `separate_downsampling`) and the
section names (`macro_design`, `resnextify`, `inverted_bottleneck`, `large_kernel`, `micro_design`,
`training_techniques`), which mean the last main-path step of their section.

A *spec* is a step name, optionally followed by edits to the path that leads to it:
`convnext_tiny-layer_norm` leaves `layer_norm` out, `resnet50+gelu+patchify_stem` applies steps in
the given order after the path. Leave-one-out and reordering studies are specs, not new code.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from steps import inverted, kernel, macro, micro, resnextify, training
from steps.step import Section, Step

if TYPE_CHECKING:
    from roadmap.design import Design

# Figure 2's order: the kernel sweep's branches stand around the adopted kernel 7.
ROADMAP: tuple[Step, ...] = (
    training.resnet50,
    training.training_recipe,
    macro.stage_ratio,
    macro.patchify_stem,
    resnextify.depthwise_conv,
    resnextify.resnext_width,
    inverted.inverted_bottleneck,
    kernel.move_up_dwconv,
    kernel.kernel_5,
    kernel.large_kernel,
    kernel.kernel_9,
    kernel.kernel_11,
    micro.gelu,
    micro.fewer_activations,
    micro.fewer_norms,
    micro.layer_norm,
    micro.separate_downsampling,
)

STEPS: dict[str, Step] = {s.name: s for s in ROADMAP}
"""Every step by name, in roadmap order (branches included)."""

MAIN_PATH: tuple[Step, ...] = tuple(s for s in ROADMAP if not s.is_branch)

SECTIONS: dict[str, Section] = {s.section.key: s.section for s in ROADMAP}

ALIASES: dict[str, str] = {"convnext_tiny": "separate_downsampling"}
for _key in SECTIONS:
    ALIASES.setdefault(_key, [s.name for s in MAIN_PATH if s.section.key == _key][-1])

NAMES: tuple[str, ...] = tuple(dict.fromkeys([*STEPS, *ALIASES]))
"""Every name a user may type."""


def get_step(name: str) -> Step:
    """The step called `name` (a step, alias or section name); a clear error otherwise."""
    from roadmap.errors import unknown

    key = ALIASES.get(name, name)
    if key not in STEPS:
        raise unknown("step", name, NAMES)
    return STEPS[key]


def path_to(name: str) -> tuple[Step, ...]:
    """The steps applied, in order, to reach `name` from the start (a branch follows its parent's path)."""
    step = get_step(name)
    anchor = step.branch_of or step.name
    path = []
    for s in MAIN_PATH:
        path.append(s)
        if s.name == anchor:
            break
    if step.is_branch:
        path.append(step)
    return tuple(path)


def design_at(name: str, without: tuple[str, ...] | list[str] = ()) -> Design:
    """The design at step `name`, optionally leaving some steps of its path out (leave-one-out)."""
    return compose(path_with(name, without))


def path_with(name: str, without: tuple[str, ...] | list[str] = ()) -> tuple[Step, ...]:
    """`path_to(name)` less the steps in `without` (which must lie on that path)."""
    from roadmap.errors import RoadmapError

    path = path_to(name)
    drop = {get_step(w).name for w in without}
    if "resnet50" in drop:
        raise RoadmapError("resnet50 is the starting point of every path; it cannot be left out")
    on_path = {s.name for s in path}
    for w in sorted(drop - on_path):
        raise RoadmapError(f"cannot leave out {w!r}: it is not on the path to {get_step(name).name!r}")
    return tuple(s for s in path if s.name not in drop)


def compose(steps: tuple[Step, ...] | list[Step], start: Design | None = None) -> Design:
    """Apply `steps` in the given order to `start` (default: ResNet-50 with its original recipe)."""
    from roadmap.design import RESNET50

    design = RESNET50 if start is None else start
    for step in steps:
        design = step(design)
    return design


_SPEC = re.compile(r"([+-]?)([A-Za-z0-9_]+)")


def parse_spec(spec: str) -> tuple[Step, ...]:
    """The ordered steps of a spec: `NAME`, `NAME-LEFT_OUT...`, `NAME+APPLIED_AFTER...`."""
    from roadmap.errors import RoadmapError

    text = spec.strip()
    terms = _SPEC.findall(text)
    if not terms or "".join(sign + name for sign, name in terms) != text or terms[0][0]:
        raise RoadmapError(
            f"cannot read step spec {spec!r}: write a step name, then -STEP to leave one out or +STEP to apply "
            "one after, e.g. 'convnext_tiny-layer_norm'"
        )
    head = terms[0][1]
    without = [name for sign, name in terms[1:] if sign == "-"]
    path = list(path_with(head, without))
    for sign, name in terms[1:]:
        if sign == "+":
            step = get_step(name)
            if any(s.name == step.name for s in path):
                raise RoadmapError(f"step {step.name!r} is already on the path of {spec!r}; a step applies once")
            path.append(step)
    return tuple(path)


def design_for(spec: str) -> Design:
    """The design a spec describes (see `parse_spec`)."""
    return compose(parse_spec(spec))


def canonical(spec: str) -> str:
    """The spec with aliases resolved, e.g. 'micro_design' -> 'separate_downsampling'."""
    terms = _SPEC.findall(spec.strip())
    parse_spec(spec)  # validate
    return "".join(sign + get_step(name).name for sign, name in terms)
