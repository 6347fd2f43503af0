"""A run's checkpoints: written each epoch in the background (atomically, keeping the one before), read back on
resume (a damaged one set aside), and the pretrained weights a fine-tuning run starts from: checked against the
step's network when the run is planned (`InitWeights`), loaded when it starts (`load_pretrained`)."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch.utils._pytree import tree_map

from roadmap.errors import RoadmapError
from roadmap.model import build_model
from roadmap.network import Network
from roadmap.weights import load_checkpoint as load_weights
from runner.fitting.job import Job
from runner.store import RunDir


class CheckpointWriter:
    """Writes each epoch's checkpoint in a background thread, so training goes on while it is serialized and
    written (a ConvNeXt-T checkpoint with AdamW state is ~330 MB: on a GPU that is as long as an epoch of a small
    data set). The state is first copied off the device and out of the tensors training keeps updating; a
    checkpoint waits for the previous one, and the write is atomic and keeps the one before (RunDir.save_checkpoint),
    so a crash or a damaged file leaves a finished one.
    The thread is not a daemon: an interrupted process still finishes the write it started."""

    def __init__(self, run_dir: RunDir) -> None:
        self.run_dir = run_dir
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def save(self, state: dict[str, Any]) -> None:
        self.wait()
        snapshot = tree_map(lambda v: v.detach().to("cpu", copy=True) if isinstance(v, torch.Tensor) else v, state)

        def write() -> None:
            try:
                buffer = io.BytesIO()
                torch.save(snapshot, buffer)
                self.run_dir.save_checkpoint(buffer.getvalue())
            except BaseException as e:  # re-raised in the training thread by wait()
                self._error = e

        self._thread = threading.Thread(target=write, name="checkpoint-writer")
        self._thread.start()

    def wait(self) -> None:
        """Block until the last checkpoint is on disk; raise what writing it raised."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def load_checkpoint(job: Job) -> dict[str, Any] | None:
    """The state of the newest readable checkpoint, or None (the run starts over). An unreadable one (cut short,
    empty, not a checkpoint) is moved aside with a one-line warning, and the one before it is tried."""
    for path in job.run_dir.checkpoints():
        try:
            state = torch.load(path, map_location=job.device, weights_only=False)
            if isinstance(state, dict) and {"model", "optimizer", "epoch", "history"} <= set(state):
                return state
            why = "not a training checkpoint"
        except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for a damaged file
            why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if job.dist.is_main:  # the other ranks read the same file and skip it too
            aside = job.run_dir.set_aside(path)
            then = "resuming from the one before it" if job.run_dir.checkpoints() else "starting the run over"
            job.log(f"warning: {job.label}: {path} is unreadable ({why}); moved to {aside.name}, {then}")
    return None


def load_pretrained(model: torch.nn.Module, path: str, log: Callable[[str], None], label: str) -> None:
    """Load converted weights strictly; only a classifier of another class count is left at its new init."""
    weights = load_weights(path)
    own = model.state_dict()
    fresh = [k for k in ("head.fc.weight", "head.fc.bias") if k in weights and k in own
             and weights[k].shape != own[k].shape]
    for k in fresh:
        del weights[k]
    bad = [k for k, v in weights.items() if k in own and v.shape != own[k].shape]
    if bad:
        raise RoadmapError(f"--init-from {path}: the shape of {bad[0]} differs from this step's network; fine-tune "
                           "the step (and size) the weights were trained for")
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if set(missing) - set(fresh) or unexpected:
        wrong = sorted(set(missing) - set(fresh)) + sorted(unexpected)
        raise RoadmapError(f"--init-from {path}: the weights do not fit this step's network ({len(wrong)} tensors "
                           f"differ, e.g. {wrong[0]}); fine-tune the step they were trained for")
    note = f", classifier re-initialized for {own['head.fc.weight'].shape[0]} classes" if fresh else ""
    log(f"{label}: loaded {len(weights)} tensors from {path}{note}")



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
        self.shapes: Shapes = {k: tuple(v.shape) for k, v in load_weights(path).items()}

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
