"""Planning: every run the options ask for (spec x seed), with its effective design, budget and identity, and its
complexity as trained and at the paper's size."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roadmap import schema
from roadmap.complexity import count
from roadmap.dataclass_fields import to_dict
from roadmap.design import Design
from roadmap.errors import RoadmapError
from roadmap.recipe import FINETUNE_RECIPE
from runner import baselines as timm_baselines
from runner.planning.budget import (
    Budget,
    apply_budget,
    crop_for,
    get_preset,
    make_budget,
    scale_regularization,
    stem_stride_for,
)
from runner.planning.options import RunOptions
from runner.planning.overrides import parse_sets
from runner.planning.provenance import code_version
from runner.planning.selection import select_steps
from runner.store import run_id
from steps import Roadmap, get_regime, low_resolution, scaled

FINETUNE_IMG_SIZE = 224
"""The size the checkpoints --init-from takes are trained at (torchvision's ResNet-50, ConvNeXt's ImageNet-1k
weights: 224 px), so a fine-tuning run's default; --img-size overrides it."""


@dataclass
class PlannedRun:
    spec: str
    seed: int
    design: Design  # a baseline: the final step's design, of which only the recipe and drop_path_rate apply
    budget: Budget
    run_id: str
    identity: dict[str, Any]
    model: str | None = None  # a baseline's timm model name (spec `timm:NAME`); None for roadmap specs


NOT_IN_IDENTITY = ("preset", "epochs_rule", "steps", "budget_epochs", "budget_batches")
"""The budget's fields a run's identity leaves out: names and what is derived from the fields it keeps (the steps
follow from the epochs and the data set), so that a budget the step rule leaves as it was hashes as before."""


def plan(opts: RunOptions, dataset_key: str, native_size: int, num_classes: int, train_size: int,
         precision: dict[str, str] | None = None) -> list[PlannedRun]:
    """Every run the options ask for, with its effective design and budget (its epochs follow the preset's budget
    in optimizer steps on a training set of `train_size` images, runner.planning.budget); `precision`: the
    identity's precision entry (runner.precision.identity_entry: empty where the run trains as its device did before
    --precision)."""
    what, how = opts.selection, opts.training
    preset = get_preset(how.preset)
    seeds = seeds_of(opts)
    if seeds <= 0:
        raise RoadmapError(f"--seeds must be positive, got {seeds}")
    init = _init_identity(how.init_from)
    # fine-tuning takes the checkpoint's network, at the size its weights were trained at unless --img-size says
    img_size = how.img_size or (FINETUNE_IMG_SIZE if init else preset.img_size or native_size)
    if img_size <= 0:
        raise RoadmapError(f"--img-size must be positive, got {img_size}")
    net_sets, recipe_sets = parse_sets(how.sets)
    regime = get_regime(what.regime)
    weights = None  # the checkpoint's shapes, read at the first roadmap step that fine-tunes
    runs, specs = [], select_steps(what.upto, what.steps, what.branches, regime, what.orders, what.baselines)
    for spec in (s for s in specs if init and timm_baselines.is_baseline(s)):
        raise RoadmapError(f"--init-from fine-tunes roadmap steps; {spec} is a timm baseline (leave it out)")
    for spec in specs:
        model = timm_baselines.model_name(spec) if timm_baselines.is_baseline(spec) else None
        # a baseline trains with the recipe of the regime's final model (ConvNeXt-T), as the paper's Swin-T did
        design = regime.compose(regime.main_path if model else regime.parse_spec(spec))
        if init:  # paper Table 6: the fine-tuning recipe, and a head that starts near zero
            design = dataclasses.replace(design, recipe=FINETUNE_RECIPE,
                                         net=dataclasses.replace(design.net, head_init_scale=0.001))
        design = _adapt(design, preset, img_size, net_sets, recipe_sets, finetune=init is not None)
        if init and model is None:
            from runner.planning.init_weights import InitWeights  # torch: only for a fine-tuning plan

            weights = weights or InitWeights(how.init_from)
            weights.check(spec, design.net, num_classes, regime, net_sets, preset)
        budget = make_budget(design.recipe, preset, img_size, how.epochs, how.batch_size, how.same_epochs,
                             how.train_batches, how.val_batches, train_size)
        design = apply_budget(design, budget)
        if model is None:
            count(design.net, img_size, num_classes)  # fails early, with a clear message, if the images are too small
        else:
            timm_baselines.complexity(model, num_classes, img_size)  # likewise for a timm model
        for seed in range(seeds) if what.only_seed is None else [what.only_seed]:
            budget_id = {k: v for k, v in dataclasses.asdict(budget).items() if k not in NOT_IN_IDENTITY}
            identity = {"design": described(design, model), "dataset": dataset_key, "img_size": img_size,
                        "seed": seed, "budget": budget_id, "code_version": code_version(),
                        **({"init_from": init} if init else {}), **(precision or {})}
            runs.append(PlannedRun(spec, seed, design, budget, run_id(spec, seed, identity), identity, model))
    return runs


def init_note(opts: RunOptions, runs: list[PlannedRun]) -> str | None:
    """What a fine-tuning plan rests on, in one line (None without --init-from)."""
    how = opts.training
    if how.init_from is None:
        return None
    size = f"{runs[0].budget.img_size} px (--img-size)" if how.img_size else \
        f"{FINETUNE_IMG_SIZE} px, the size the weights were trained at (--img-size to change it)"
    return (f"fine-tuning from {how.init_from}: the checkpoint's network as it is (no preset width/depth scaling, no "
            f"small-image stem), {size}, the paper's fine-tuning recipe")


def seeds_of(opts: RunOptions) -> int:
    """How many seeds each step trains with: `--seeds`, else the preset's default (3 on the CPU preset)."""
    return opts.selection.seeds if opts.selection.seeds is not None else get_preset(opts.training.preset).seeds


def described(design: Design, model: str | None) -> dict[str, Any]:
    """What a run trains, as stored: the design; for a timm baseline its name, drop-path rate and recipe."""
    if model is None:
        return design.to_dict()
    return {"timm_model": model, "drop_path_rate": design.net.drop_path_rate,
            "recipe": to_dict(design.recipe, as_recorded=True)}


def complexity_of(run: PlannedRun, num_classes: int, regime: Roadmap) -> schema.Complexity:
    """Params and GFLOPs (multiply-accumulates) of a run's network as trained and at full size at 224 px, unrounded
    (config.json stores them rounded)."""
    img = run.budget.img_size
    if run.model is not None:
        params, gflops = timm_baselines.complexity(run.model, num_classes, img)
        params_224, gflops_224 = timm_baselines.complexity(run.model, 1000, 224)
    else:
        trained, full = count(run.design.net, img, num_classes), count(regime.design_for(run.spec).net, 224)
        params, gflops, params_224, gflops_224 = trained.params, trained.gflops, full.params, full.gflops
    return schema.Complexity(params=params, gflops_run=gflops, img_size=img, gflops_224=gflops_224,
                             params_224=params_224)


def _init_identity(path: str | None) -> dict[str, Any] | None:
    """What identifies the weights a fine-tuning run starts from: their path and size."""
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise RoadmapError(f"--init-from {path!r} does not exist: pass a torchvision ResNet-50 or timm/official "
                           "ConvNeXt checkpoint file")
    return {"path": str(p.resolve()), "bytes": p.stat().st_size}


def _adapt(design: Design, preset, img_size: int, net_sets: dict, recipe_sets: dict, finetune: bool) -> Design:
    """The step's design as this run trains it: the preset's scale, regularization and small-image stem, then the
    user's --set overrides. Fine-tuning keeps the checkpoint's network: no scaling and no stem change."""
    if not finetune and (preset.width_mult != 1.0 or preset.depth_mult != 1.0):
        design = scaled(design, preset.width_mult, preset.depth_mult)
    design = scale_regularization(design, preset.regularization)
    stem_stride = preset.stem_stride or stem_stride_for(img_size)
    if not finetune and design.net.stem_stride == 4 and stem_stride != 4:
        design = low_resolution(design, stem_stride)
    if design.recipe.crop is not crop_for(img_size):  # small images: pad-and-crop, evaluated on the whole image
        design = dataclasses.replace(design, recipe=dataclasses.replace(design.recipe, crop=crop_for(img_size),
                                                                        eval_crop_pct=1.0))
    if net_sets:
        design = dataclasses.replace(design, net=dataclasses.replace(design.net, **net_sets))
    if recipe_sets:
        design = dataclasses.replace(design, recipe=dataclasses.replace(design.recipe, **recipe_sets))
    return design

