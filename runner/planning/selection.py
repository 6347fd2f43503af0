"""Which specs `roadmap run` trains: an explicit list, the roadmap up to a step (branches as the catalog says),
the nodes of step orders (`--order`), and timm baselines (`--baselines`)."""

from __future__ import annotations

from collections.abc import Sequence

from roadmap.errors import RoadmapError
from runner import baselines as timm_baselines
from steps import Roadmap, get_regime
from steps.catalog import steps_upto


def select_steps(upto: str | None, steps: Sequence[str] | None, branches: bool, regime: Roadmap | None = None,
                 orders: Sequence[Sequence[str]] | None = None, baselines: Sequence[str] | None = None) -> list[str]:
    """The specs to train, in order: an explicit list (`timm:NAME` specs included), or the roadmap up to a step
    (its branches included as `steps.catalog.steps_upto` says, unless `branches` is False);
    then the nodes of each step order (see `order_specs`), then the baselines as `timm:NAME` specs."""
    r = regime or get_regime("resnet50")
    if steps:
        specs = [timm_baselines.check(s) if timm_baselines.is_baseline(s) else r.canonical(s) for s in steps]
        if len(set(specs)) != len(specs):
            raise RoadmapError("--steps lists a step twice; each spec is trained once per seed")
    else:
        specs = steps_upto(r, upto, branches)
    for steps_in_order in orders or []:
        specs += order_specs(steps_in_order, r)
    specs += [timm_baselines.check(b) for b in baselines or []]
    return list(dict.fromkeys(specs))


def order_specs(order: Sequence[str], regime: Roadmap) -> list[str]:
    """The nodes of the path that applies `order`'s steps one at a time to the regime's starting model:
    `resnet50`, `resnet50+a`, `resnet50+a+b`, ... A node whose design equals a main-path step's design takes
    that step's name (the same model, trained once): e.g. applying training_recipe first reaches the paper's
    training_recipe itself."""
    start = regime.main_path[0].name
    paper = {regime.design_for(s.name): s.name for s in regime.main_path}
    specs, spec = [start], start
    for name in order_steps(order, regime):
        spec = f"{spec}+{name}"
        design = regime.design_for(spec)  # validates the spec
        specs.append(paper.get(design, spec))
    return specs


def order_steps(order: Sequence[str], regime: Roadmap) -> list[str]:
    """The step names of an `--order` (aliases resolved, a leading start step dropped), checked: at least one
    step, none twice, the start step only first."""
    start = regime.main_path[0].name
    names = [regime.get_step(s.strip()).name for s in order if s.strip()]
    if names and names[0] == start:
        names = names[1:]
    if not names:
        raise RoadmapError(f"--order needs at least one step after {start}, e.g. --order gelu,patchify_stem")
    if len(set(names)) != len(names):
        raise RoadmapError("--order lists a step twice; a step applies once")
    if start in names:
        raise RoadmapError(f"--order: {start} is the starting point of every path; list only the steps after it")
    return names


def parse_order(text: str) -> list[str]:
    """`--order a,b,c` -> [a, b, c]."""
    return [s.strip() for s in text.split(",") if s.strip()]

