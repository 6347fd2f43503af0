"""A trained run, loaded back: the network in eval mode, its weights and its evaluation transform.

    from roadmap import load_run
    run = load_run("runs/gelu-s0-85a12aeb31")                  # a run directory
    run = load_run("runs", step="gelu", seed=0)                # or a result directory, a step (and a seed)
    with torch.no_grad():
        logits = run.model(run.transform(image).unsqueeze(0))

Everything comes from the run's own records (docs/records.md): config.json's design as trained (after the preset's
scaling), its classes and input size, its recipe's evaluation crop and interpolation; model.pt's weights (EMA's when
the recipe keeps one), read without unpickling anything but tensors. Mistakes (an unfinished run, missing or damaged
weights, a path that holds no run, a step with several runs) are one-line `RoadmapError`s. The runner is never
imported: loading a model needs no training code.

The same description makes a timm pretrained cfg (`pretrained_cfg`) and the model arguments that rebuild the network
from a registered `roadmap_<step>` (`model_args`): `roadmap export` writes both (docs/trained-models.md).
"""

from __future__ import annotations

import dataclasses
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform

from roadmap.design import Design
from roadmap.errors import RoadmapError, first_line
from roadmap.model import RoadmapNet, network_with
from roadmap.record_files import Unreadable
from roadmap.schema import RunConfig, RunResult, read_config, read_result

__all__ = ["TrainedRun", "find_runs", "finished_top1", "load_run", "model_args", "pretrained_cfg", "read_weights",
           "select_run"]

CONFIG, RESULT, WEIGHTS = "config.json", "result.json", "model.pt"
_SEEDS = ("best", "median")


@dataclass(frozen=True)
class TrainedRun:
    """A finished run loaded back. `model` is in eval mode; `transform` takes a PIL image to the input tensor the run
    was evaluated on (timm's `create_transform` of `data_config`)."""

    model: RoadmapNet
    transform: Any
    data_config: dict[str, Any]
    config: RunConfig
    result: RunResult
    path: Path


# ------------------------------------------------------------------------------------------------ finding the run


def _config(run_dir: Path) -> RunConfig:
    try:
        return read_config(run_dir / CONFIG)
    except Unreadable as e:
        raise RoadmapError(f"{e}: {run_dir} is not a readable run") from None


def find_runs(out: Path) -> list[tuple[Path, RunConfig]]:
    """The run directories of a result directory (its subfolders with a config.json), with their configs."""
    return [(p, _config(p)) for p in sorted(out.iterdir()) if p.is_dir() and (p / CONFIG).is_file()]


def _same_step(cfg: RunConfig, step: str) -> bool:
    """Whether `cfg` trained `step` (a name, alias or spec, compared once aliases are resolved in its regime)."""
    if cfg.step == step or cfg.step_name == step:
        return True
    from steps import get_regime

    try:
        return get_regime(cfg.regime or "resnet50").canonical(step) == cfg.step
    except RoadmapError:
        return False


def finished_top1(run_dir: Path) -> float | None:
    """The final top-1 of a run that ended "done", else None (unfinished, diverged, unreadable)."""
    try:
        result = read_result(run_dir / RESULT)
    except Unreadable:
        return None
    return result.val_top1 if result.status == "done" else None


def select_run(path: str | Path, step: str | None = None, seed: int | str | None = None) -> Path:
    """The run directory `path` names: itself when it holds a config.json, else the run of `step` (and `seed`) in
    the result directory `path`. `seed` is a number, "best" or "median" (by final top-1 among the step's finished
    runs; the lower of the two middle ones for an even count); it may be left out where the step has one run."""
    path = Path(path)
    if not path.is_dir():
        raise RoadmapError(f"{path} does not exist or is not a directory: pass a run directory or a result directory")
    if (path / CONFIG).is_file():
        cfg = _config(path)
        if step is not None and not _same_step(cfg, step):
            raise RoadmapError(f"{path} is a run of {cfg.step!r}, not {step!r}: leave out the step, or pass its "
                               "result directory")
        if seed is not None and not isinstance(seed, str) and seed != cfg.seed:
            raise RoadmapError(f"{path} is seed {cfg.seed} of {cfg.step!r}, not seed {seed}")
        return path
    runs = find_runs(path)
    if not runs:
        raise RoadmapError(f"{path} is not a run (no config.json) and holds no runs: pass a run directory or the "
                           "--out directory of `roadmap run`")
    steps = sorted({c.step for _, c in runs if c.step})
    if step is None:
        if len(steps) > 1:
            raise RoadmapError(f"{path} holds runs of {len(steps)} steps ({', '.join(steps)}): say which step")
        step = steps[0]
    matching = [(p, c) for p, c in runs if _same_step(c, step)]
    if not matching:
        raise RoadmapError(f"{path} holds no run of {step!r}; its steps: {', '.join(steps)}")
    specs = sorted({c.step for _, c in matching if c.step})
    if len(specs) > 1:
        raise RoadmapError(f"{step!r} is ambiguous in {path}: runs of {', '.join(specs)}; name one of them")
    return _pick_seed(path, step, matching, seed)


def _pick_seed(path: Path, step: str, runs: list[tuple[Path, RunConfig]], seed: int | str | None) -> Path:
    seeds = sorted(c.seed for _, c in runs if c.seed is not None)
    if isinstance(seed, str) and seed.isdigit():
        seed = int(seed)
    if isinstance(seed, str):
        if seed not in _SEEDS:
            raise RoadmapError(f"seed {seed!r}: pass a seed number, 'best' or 'median'")
        scored = sorted(((t, c.seed, p) for p, c in runs if (t := finished_top1(p)) is not None),
                        key=lambda x: (-x[0], x[1]))
        if not scored:
            raise RoadmapError(f"{step!r} has no finished run in {path}: finish it with `roadmap run --out {path}`")
        if seed == "best":
            return scored[0][2]
        low = statistics.median_low([t for t, _, _ in scored])
        return next(p for t, _, p in sorted(scored, key=lambda x: (x[0], x[1])) if t == low)
    if seed is None:
        if len(runs) > 1:
            raise RoadmapError(f"{step!r} has {len(runs)} runs in {path} (seeds {', '.join(map(str, seeds))}): "
                               "pass a seed, 'best' or 'median'")
        return runs[0][0]
    for p, c in runs:
        if c.seed == seed:
            return p
    raise RoadmapError(f"{step!r} has no seed {seed} in {path}; its seeds: {', '.join(map(str, seeds))}")


# ------------------------------------------------------------------------------------------------ the network


def design_of(cfg: RunConfig, run_dir: Path) -> Design:
    """The design the run trained (config.json's, after the preset's scaling)."""
    data = cfg.design or {}
    if "timm_model" in data:
        raise RoadmapError(f"{run_dir} is a run of the timm reference model {data['timm_model']!r}: load it with "
                           "timm.create_model and its model.pt (load_run loads the roadmap's own networks)")
    try:
        return Design.from_dict(data)
    except (RoadmapError, TypeError, ValueError, KeyError) as e:
        raise RoadmapError(f"{run_dir / CONFIG} holds no design this code can build ({e})") from None


def base_step(cfg: RunConfig) -> str:
    """The registered name a run's network is rebuilt from: the first name of its spec, aliases resolved."""
    from steps import NAMES, canonical

    first = re.split(r"[+-]", cfg.step or "", maxsplit=1)[0]
    if first not in NAMES:
        raise RoadmapError(f"step {cfg.step!r} starts with no step of the ResNet-50 roadmap: it cannot be exported "
                           "as a roadmap_<step> model")
    return canonical(first)


def model_args(cfg: RunConfig, run_dir: Path) -> dict[str, Any]:
    """The network fields of the run's design that differ from its base step's (`base_step`), as plain JSON
    values: `timm.create_model(f"roadmap_{base_step(cfg)}", **model_args(...))` builds the run's network."""
    from steps import design_for

    net = design_of(cfg, run_dir).net
    base = design_for(base_step(cfg)).net
    ours = Design(net).to_dict()["net"]
    args = {f.name: ours[f.name] for f in dataclasses.fields(net) if getattr(net, f.name) != getattr(base, f.name)}
    if network_with(base, **args) != net:  # a guard: the arguments must rebuild exactly this network
        raise RoadmapError(f"{run_dir}: the network cannot be rebuilt from roadmap_{base_step(cfg)} and arguments")
    return args


def pretrained_cfg(cfg: RunConfig, run_dir: Path) -> dict[str, Any]:
    """The run's timm pretrained cfg: its classes, input size, evaluation crop and interpolation, ImageNet's mean
    and std (what the runner normalizes with), and where the model comes from."""
    recipe = design_of(cfg, run_dir).recipe
    dataset, budget = cfg.dataset, cfg.budget
    if dataset is None or budget is None or not dataset.num_classes:
        raise RoadmapError(f"{run_dir / CONFIG} does not say the run's classes or input size")
    size = budget.img_size
    return {
        "num_classes": dataset.num_classes, "label_names": list(dataset.classes) or None,
        "input_size": (3, size, size), "crop_pct": recipe.eval_crop_pct, "crop_mode": "center",
        "interpolation": recipe.eval_interpolation,
        "mean": tuple(IMAGENET_DEFAULT_MEAN), "std": tuple(IMAGENET_DEFAULT_STD),
        "first_conv": "stem.conv", "classifier": "head.fc",
        "license": "mit", "paper_ids": "arXiv:2201.03545", "paper_name": "A ConvNet for the 2020s",
    }


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict file (model.pt), read with `weights_only=True`: tensors only, no object unpickled."""
    if not path.is_file():
        raise RoadmapError(f"{path} is missing: the run has no weights (train it again to write them)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for a damaged file
        raise RoadmapError(f"{path} is damaged or not a weight file ({first_line(e)[:160]})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RoadmapError(f"{path} is not a state_dict (expected tensors by name)")
    return state


def _finished(run_dir: Path, cfg: RunConfig) -> RunResult:
    if not (run_dir / RESULT).is_file():
        raise RoadmapError(f"{run_dir} is not finished (no result.json): resume it with `roadmap run` on its "
                           "result directory")
    try:
        result = read_result(run_dir / RESULT)
    except Unreadable as e:
        raise RoadmapError(f"{e}: {run_dir} is not a readable run") from None
    if result.status != "done":
        raise RoadmapError(f"{run_dir} ended {result.status!r}, not done: it has no trained weights")
    return result


def load_run(path: str | Path, step: str | None = None, seed: int | str | None = None) -> TrainedRun:
    """The trained network of a finished run, in eval mode, with its evaluation transform (see `TrainedRun`).

    `path` is a run directory, or a result directory with `step` (a name, alias or spec) and, where the step has
    several runs, `seed` (a number, "best" or "median")."""
    run_dir = select_run(path, step, seed)
    cfg = _config(run_dir)
    result = _finished(run_dir, cfg)
    design = design_of(cfg, run_dir)
    data_config = pretrained_cfg(cfg, run_dir)
    model = RoadmapNet(design.net, num_classes=data_config["num_classes"])
    weights = read_weights(run_dir / WEIGHTS)
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise RoadmapError(f"{run_dir / WEIGHTS} does not fit the run's network ({first_line(e)[:160]})") from None
    model.pretrained_cfg = model.default_cfg = dict(data_config, architecture=f"roadmap_{cfg.step}")
    model.eval()
    data = {k: data_config[k] for k in ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")}
    return TrainedRun(model, create_transform(**data, is_training=False), data, cfg, result, run_dir)
