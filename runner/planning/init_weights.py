"""The checkpoint a fine-tuning run starts from (--init-from), read once when the run is planned: whether its shapes
fit a step's network, and if not, which step they are nearest to and where they first differ. Imported only by a
fine-tuning plan (it reads the file with torch); runner.fitting.checkpoint loads the weights when the run starts."""

from __future__ import annotations

from dataclasses import replace

import torch

from roadmap.errors import RoadmapError
from roadmap.model import build_model
from roadmap.network import Network
from roadmap.weights import state_dict_from_file

CLASSIFIER = ("head.fc.weight", "head.fc.bias")  # another class count re-initializes these: never a mismatch

Shapes = dict[str, tuple[int, ...]]


def net_shapes(net: Network, num_classes: int) -> Shapes:
    """The state_dict shapes of a network, built on the meta device (no memory, no initialization cost)."""
    with torch.device("meta"):
        model = build_model(net, num_classes=num_classes)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def first_mismatch(weights: Shapes, own: Shapes, name: str = "the step") -> tuple[int, str | None]:
    """(how many tensors differ, the first one described) between checkpoint shapes and a network's; (0, None) when
    the checkpoint loads strictly (its classifier may have another class count)."""
    problems = []
    for k, shape in own.items():
        if k not in weights:
            problems.append(f"{k} {shape} is not in the checkpoint")
        elif weights[k] != shape and k not in CLASSIFIER:
            problems.append(f"{k} is {weights[k]} in the checkpoint, {shape} in {name}")
    problems += [f"{k} {shape} is in the checkpoint only" for k, shape in weights.items() if k not in own]
    return len(problems), (problems[0] if problems else None)


class InitWeights:
    """The checkpoint a fine-tuning run starts from, read once when the run is planned: whether its shapes fit a
    step's network, and if not, which step they are nearest to and where they first differ."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.shapes: Shapes = {k: tuple(v.shape) for k, v in state_dict_from_file(path).items()}

    def check(self, spec: str, net: Network, num_classes: int, regime, net_sets: dict, preset) -> None:
        """Raise a one-line RoadmapError unless the checkpoint loads into `net` (spec `spec`, as planned)."""
        count, first = first_mismatch(self.shapes, net_shapes(net, num_classes), spec)
        if not count:
            return
        where = f"--init-from {self.path}"
        scaled = replace(net, width_mult=preset.width_mult, depth_mult=preset.depth_mult)
        if (preset.width_mult, preset.depth_mult) != (1, 1) and not first_mismatch(
                self.shapes, net_shapes(scaled, num_classes))[0]:
            raise RoadmapError(
                f"{where} holds {spec} at the {preset.name} preset's scale, and fine-tuning takes the full-size "
                f"network (first difference: {first}): add --set width_mult={preset.width_mult:.4g} "
                f"--set depth_mult={preset.depth_mult:.4g}")
        ranked = []
        for step in regime.steps:
            try:
                candidate = net_shapes(replace(regime.design_for(step.name).net, **net_sets), num_classes)
            except RoadmapError:  # the user's --set does not apply to this step: not a candidate
                continue
            ranked.append((*first_mismatch(self.shapes, candidate, step.name), step.name))
        if not ranked:
            raise RoadmapError(f"{where} does not fit {spec} (first difference: {first}): fine-tune the step and size "
                               "the weights were trained for")
        n, nearest_first, nearest = min(ranked, key=lambda r: r[0])
        if n == 0:
            raise RoadmapError(f"{where} holds the weights of {nearest}, not of {spec} (first difference: {first}): "
                               f"fine-tune {nearest} (--steps {nearest})")
        raise RoadmapError(
            f"{where} fits no step of the roadmap: the nearest is {nearest} ({n} of {len(self.shapes)} tensors "
            f"differ; the first: {nearest_first}); fine-tune the step and size the weights were trained for")
