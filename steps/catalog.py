"""The ordered roadmap, name lookup, and composition of steps into designs.

Names users type: every step name, the alias `convnext_tiny` (= `separate_downsampling`) and the
section names (`macro_design`, `resnextify`, `inverted_bottleneck`, `large_kernel`, `micro_design`,
`training_techniques`), which mean the last main-path step of their section.

A *spec* is a step name, optionally followed by edits to the path that leads to it:
`convnext_tiny-layer_norm` leaves `layer_norm` out, `resnet50+gelu+patchify_stem` applies steps in
the given order after the path. Leave-one-out and reordering studies are specs, not new code.

A `Roadmap` is one regime of the paper: the ResNet-50 regime (Figure 2, the default; the module-level
functions use it) or the ResNet-200 regime (Appendix C) ending at ConvNeXt-B.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

from roadmap.design import RESNET50, Design
from roadmap.errors import RoadmapError, unknown
from steps import family, inverted, kernel, macro, micro, resnet200, resnextify, training
from steps.step import Section, Step

# Figure 2's order: the sections in the paper's order, each section's steps in its own module's order.
RESNET50_STEPS: tuple[Step, ...] = (
    *training.STEPS, *macro.STEPS, *resnextify.STEPS, *inverted.STEPS, *kernel.STEPS, *micro.STEPS,
)

_SPEC = re.compile(r"([+-]?)([A-Za-z0-9_]+)")


class Roadmap:
    """One regime's ordered steps, the names users may type for them, and composition into designs."""

    def __init__(self, name: str, steps: tuple[Step, ...], start: Callable[[], Design], aliases: dict[str, str],
                 extras: tuple[Step, ...] = ()):
        self.name = name
        self.steps = steps  # the roadmap, branches included, in Figure 2's order
        self.extras = extras  # steps off the roadmap (the family's other sizes): named, not trained by default
        self._start = start
        self.by_name: dict[str, Step] = {s.name: s for s in (*steps, *extras)}
        self.main_path = tuple(s for s in steps if not s.is_branch)
        self.sections: dict[str, Section] = {s.section.key: s.section for s in steps}
        self.aliases = dict(aliases)
        for key in self.sections:
            self.aliases.setdefault(key, [s.name for s in self.main_path if s.section.key == key][-1])
        names = [s.name for s in steps] + [a for a in self.aliases if a not in self.by_name]
        self.names: tuple[str, ...] = tuple(dict.fromkeys(names + [s.name for s in extras]))

    def start(self) -> Design:
        """The design every path starts from (before the first step, which is the identity)."""
        return self._start()

    def get_step(self, name: str) -> Step:
        """The step called `name` (a step, alias or section name); a clear error otherwise."""
        key = self.aliases.get(name, name)
        if key not in self.by_name:
            raise unknown("step", name, self.names)
        return self.by_name[key]

    def path_to(self, name: str) -> tuple[Step, ...]:
        """The steps applied, in order, to reach `name` (a branch follows its parent's path)."""
        step = self.get_step(name)
        anchor = step.branch_of or step.name
        path = []
        for s in self.main_path:
            path.append(s)
            if s.name == anchor:
                break
        if step.is_branch:
            path.append(step)
        return tuple(path)

    def path_with(self, name: str, without: tuple[str, ...] | list[str] = ()) -> tuple[Step, ...]:
        """`path_to(name)` less the steps in `without` (which must lie on that path)."""
        path = self.path_to(name)
        drop = {self.get_step(w).name for w in without}
        first = self.main_path[0].name
        if first in drop:
            raise RoadmapError(f"{first} is the starting point of every path; it cannot be left out")
        on_path = {s.name for s in path}
        for w in sorted(drop - on_path):
            raise RoadmapError(f"cannot leave out {w!r}: it is not on the path to {self.get_step(name).name!r}")
        return tuple(s for s in path if s.name not in drop)

    def design_at(self, name: str, without: tuple[str, ...] | list[str] = ()) -> Design:
        """The design at step `name`, optionally leaving some steps of its path out (leave-one-out)."""
        return self.compose(self.path_with(name, without))

    def compose(self, steps: tuple[Step, ...] | list[Step], start: Design | None = None) -> Design:
        """Apply `steps` in the given order to `start` (default: this regime's starting design)."""
        design = self.start() if start is None else start
        for step in steps:
            design = step(design)
        return design

    def parse_spec(self, spec: str) -> tuple[Step, ...]:
        """The ordered steps of a spec: `NAME`, `NAME-LEFT_OUT...`, `NAME+APPLIED_AFTER...`."""
        text = spec.strip()
        terms = _SPEC.findall(text)
        if not terms or "".join(sign + name for sign, name in terms) != text or terms[0][0]:
            raise RoadmapError(
                f"cannot read step spec {spec!r}: write a step name, then -STEP to leave one out or +STEP to apply "
                "one after, e.g. 'convnext_tiny-layer_norm'"
            )
        without = [name for sign, name in terms[1:] if sign == "-"]
        path = list(self.path_with(terms[0][1], without))
        for sign, name in terms[1:]:
            if sign == "+":
                step = self.get_step(name)
                if any(s.name == step.name for s in path):
                    raise RoadmapError(f"step {step.name!r} is already on the path of {spec!r}; a step applies once")
                path.append(step)
        return tuple(path)

    def design_for(self, spec: str) -> Design:
        """The design a spec describes (see `parse_spec`)."""
        return self.compose(self.parse_spec(spec))

    def canonical(self, spec: str) -> str:
        """The spec with aliases resolved, e.g. 'micro_design' -> 'separate_downsampling'."""
        self.parse_spec(spec)  # validate
        return "".join(sign + self.get_step(name).name for sign, name in _SPEC.findall(spec.strip()))


def _resnet50_start() -> Design:
    return RESNET50


def _resnet200_start() -> Design:
    return dataclasses.replace(RESNET50, net=dataclasses.replace(RESNET50.net, depths=(3, 24, 36, 3)))


RESNET50_REGIME = Roadmap("resnet50", RESNET50_STEPS, _resnet50_start, {"convnext_tiny": "separate_downsampling"},
                          extras=family.ENDPOINTS)
RESNET200_REGIME = Roadmap("resnet200", resnet200.ROADMAP, _resnet200_start, resnet200.ALIASES)
REGIMES: dict[str, Roadmap] = {r.name: r for r in (RESNET50_REGIME, RESNET200_REGIME)}


def get_regime(name: str) -> Roadmap:
    if name not in REGIMES:
        raise unknown("regime", name, REGIMES)
    return REGIMES[name]


# The ResNet-50 regime (Figure 2) is the default everywhere.
ROADMAP: tuple[Step, ...] = RESNET50_REGIME.steps
STEPS: dict[str, Step] = {s.name: s for s in ROADMAP}
"""Every step of the roadmap by name, in order (branches included)."""
MAIN_PATH: tuple[Step, ...] = RESNET50_REGIME.main_path
SECTIONS: dict[str, Section] = RESNET50_REGIME.sections
ALIASES: dict[str, str] = RESNET50_REGIME.aliases
NAMES: tuple[str, ...] = RESNET50_REGIME.names
"""Every name a user may type."""

get_step = RESNET50_REGIME.get_step
path_to = RESNET50_REGIME.path_to
path_with = RESNET50_REGIME.path_with
design_at = RESNET50_REGIME.design_at
compose = RESNET50_REGIME.compose
parse_spec = RESNET50_REGIME.parse_spec
design_for = RESNET50_REGIME.design_for
canonical = RESNET50_REGIME.canonical


# -------------------------------------------------------------------------------- what `roadmap run` trains


def alternative_to(regime: Roadmap, branch: Step) -> Step | None:
    """The main-path step a branch stands beside: the one right after its `branch_of` (for the kernel sweep's
    kernel_5/9/11, large_kernel, the kernel the paper adopts). None for a main-path step, and for a branch of the
    last step (such a branch is trained when named, e.g. `--steps convnext_tiny,squeeze_excite`)."""
    if not branch.is_branch:
        return None
    names = [s.name for s in regime.main_path]
    after = names.index(branch.branch_of) + 1
    return regime.main_path[after] if after < len(names) else None


def steps_upto(regime: Roadmap, upto: str | None = None, branches: bool = True) -> list[str]:
    """The step names `roadmap run --upto` trains, in the regime's order: the path to `upto` (default: the whole
    main path) and, with `branches`, each branch whose alternative (see `alternative_to`) is on that path, as in
    the paper's Figure 2 (the kernel sweep's branches once the path reaches large_kernel)."""
    names = [s.name for s in regime.path_to(upto or regime.main_path[-1].name)]
    if branches:
        reached = [s for s in regime.steps if s.is_branch and s.name not in names
                   and (alt := alternative_to(regime, s)) is not None and alt.name in names]
        names += [s.name for s in reached]
    order = [s.name for s in (*regime.steps, *regime.extras)]
    return sorted(names, key=order.index)
