"""How much training a run gets: presets, and how the paper's recipe scales to a smaller budget.

The paper trains the modern recipe for 300 epochs and the original ResNet recipe for 90. `--epochs N`
sets the modern recipe's epochs; by default the original recipe keeps the paper's 90:300 ratio (so its
step decay still happens at 1/3 and 2/3 of training), and `--same-epochs` gives it N too. Warmup keeps
its fraction (20/300 of training). The learning rate scales linearly with the batch, as in the paper.

A preset's budget is a number of optimizer steps: its epochs of its batches an epoch (`Preset.budget_batches`,
by default its cap `train_batches`: the `cpu` preset's 10 epochs of 200 batches are 2,000 steps, the original
recipe's 3 of them 600). A training set of fewer batches an epoch trains more epochs, the fewest that reach those
steps (`stretch`), so a preset trains as long on a folder of 1,500 images as on Fashion-MNIST; on a data set that
fills the preset's batches nothing changes. An explicit `--epochs` is a budget in epochs (no stretching), and so
is `--train-batches 0`; `--train-batches N` makes the budget N batches an epoch. The `paper` preset's budget is the
paper's epochs.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from roadmap.design import Design
from roadmap.enums import Crop, Schedule
from roadmap.errors import RoadmapError, unknown
from roadmap.recipe import Recipe
from roadmap.schema import Budget  # the record type config.json stores; derived here (make_budget)
from runner.planning.batching import split_batch


@dataclass(frozen=True)
class Preset:
    """Defaults for a kind of run; every field can be overridden on the command line."""

    name: str
    epochs: int | None  # modern-recipe epochs; None = the paper's (300)
    batch_size: int | None  # None = the paper's (4096 modern, 256 original)
    img_size: int | None  # None = the dataset's native size
    width_mult: float = 1.0
    depth_mult: float = 1.0
    train_batches: int = 0  # max batches per epoch (0 = all)
    budget_batches: int | None = None  # the batches an epoch its epochs count (None: train_batches; 0: none, the
    # budget is in epochs): the budget is epochs x budget_batches optimizer steps, on any data set (`stretch`)
    val_batches: int = 0
    scale_lr: bool = True  # the paper's linear scaling rule; off for smoke, whose few steps need the full lr
    lr_mult: float = 1.0  # a multiplier on every recipe's learning rate (after the scaling rule, if any)
    monitor_batches: int = 0  # validation batches of every epoch but the last (0 = as many as the last)
    stem_stride: int | None = None  # None = the rule of `stem_stride_for` (by image size)
    regularization: float = 1.0  # strength of the modern recipe's regularizers (see `scale_regularization`)
    seeds: int = 1  # default number of seeds
    run_per_core: bool = False  # on the CPU, --jobs defaults to one run per core at 1 thread (docs/bench-cpu.md)
    note: str = ""


QUICK_BATCHES = 64
"""The `quick` preset's floor of batches an epoch: 20 epochs of at least 64 batches of 128 (1,280 optimizer steps).
It has no cap (a larger set trains longer, as before); every data set of the catalog fills the floor at batch 128
(the smallest, Imagewoof's 9,025 images, has 70 batches), so only a smaller folder trains more epochs."""

IMAGENETTE_SHAPED = "synthetic:classes=10,size=160,train=9469,val=3925"
"""A synthetic data set with Imagenette-160's image count, classes and size: all its throughput depends on
(`roadmap bench`'s default; the real set cannot be fetched everywhere)."""

PRESETS: dict[str, Preset] = {
    "paper": Preset("paper", None, None, None, note="the paper's epochs, batch and learning rate"),
    "quick": Preset("quick", 20, 128, None, budget_batches=QUICK_BATCHES,
                    note=f"full-size models, 20 epochs (6 for the original recipe) of at least {QUICK_BATCHES} "
                    "batches: a smaller training set trains more epochs"),
    "cpu": Preset(  # chosen by a sweep on the first and last models: docs/cpu-preset-sweep.md
        "cpu", 10, 64, 28, width_mult=1 / 8, depth_mult=1 / 3, train_batches=200, val_batches=0, scale_lr=False,
        monitor_batches=16, stem_stride=2, regularization=0.1, seeds=3, run_per_core=True,
        note="small models for two CPU cores: 1/8 width, 1/3 depth, 28 px (Fashion-MNIST's own size) with stem "
        "stride 2, 2,000 optimizer steps (10 epochs of 200 batches of 64; a smaller training set trains more epochs), "
        "unscaled lr, regularization at 0.1 of the paper's strength, 3 seeds",
    ),
    "smoke": Preset(
        "smoke", 5, 32, 32, width_mult=1 / 8, depth_mult=1 / 3, train_batches=40, val_batches=10, scale_lr=False,
        stem_stride=2,
        note="a pipeline check: tiny models, 32 px, stem stride 2, 200 optimizer steps (5 epochs of 40 batches), "
             "unscaled lr; its accuracies mean nothing",
    ),
}

ORIGINAL_TO_MODERN = 90 / 300  # the paper's budget ratio between the two recipes


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise unknown("preset", name, PRESETS)
    return PRESETS[name]


def make_budget(
    recipe: Recipe,
    preset: Preset,
    img_size: int,
    epochs: int | None = None,
    batch_size: int | None = None,
    same_epochs: bool = False,
    train_batches: int | None = None,
    val_batches: int | None = None,
    train_size: int | None = None,
) -> Budget:
    """The budget for `recipe` under `preset` and the user's overrides, on a training set of `train_size` images
    (None: unknown, the preset's epochs as they are, no steps recorded)."""
    for name, value in (("epochs", epochs), ("batch size", batch_size), ("image size", img_size)):
        if value is not None and value <= 0:
            raise RoadmapError(f"{name} must be positive, got {value}")
    modern_epochs = epochs or preset.epochs
    original = recipe.schedule is Schedule.STEP
    why = ""  # why the original recipe has its epochs
    if modern_epochs is None:
        n, rule = recipe.epochs, f"the paper's {recipe.epochs} epochs"
    elif original and not same_epochs:
        n = max(1, round(modern_epochs * ORIGINAL_TO_MODERN))
        why = f"the original recipe keeps the paper's 90:300 ratio to the modern recipe's {modern_epochs}"
        rule = f"{n} epochs: {why}"
    else:
        n = modern_epochs
        why = "same as the modern recipe, --same-epochs" if original else ""
        rule = f"{n} epochs" + (f" ({why})" if why else "")
    batch = batch_size or preset.batch_size or recipe.batch_size
    cap = preset.train_batches if train_batches is None else train_batches
    per_epoch = budget_batches(preset, epochs, train_batches)
    steps = budget_epochs = None
    if train_size is not None:
        available = epoch_batches(train_size, batch, recipe.mixes, cap)
        if per_epoch and 0 < available < per_epoch:
            budget_epochs, n = n, stretch(n, per_epoch, available)
            rule = (f"{n} epochs of this training set's {available} batch{'es' if available > 1 else ''} = "
                    f"{n * available:,} optimizer steps: "
                    f"the budget, {budget_epochs} epochs of {per_epoch} batches ({budget_epochs * per_epoch:,} steps"
                    f"{'; ' + why if why else ''}), on a training set of fewer batches an epoch")
        elif per_epoch:
            budget_epochs = n
        steps = n * available
    return Budget(
        preset=preset.name,
        epochs=n,
        batch_size=batch,
        lr=(recipe.lr * batch / recipe.lr_batch if preset.scale_lr else recipe.lr) * preset.lr_mult,
        warmup_epochs=recipe.warmup_epochs * n / recipe.epochs,
        img_size=img_size,
        train_batches=cap,
        val_batches=preset.val_batches if val_batches is None else val_batches,
        epochs_rule=rule,
        monitor_batches=preset.monitor_batches,
        steps=steps,
        budget_epochs=budget_epochs,
        budget_batches=per_epoch if budget_epochs is not None else None,
    )


def budget_batches(preset: Preset, epochs: int | None = None, train_batches: int | None = None) -> int:
    """The batches an epoch a budget counts (0: none, the budget is in epochs): `--train-batches N` if given, else
    the preset's (`Preset.budget_batches`, by default its cap); an explicit `--epochs` is a budget in epochs."""
    if epochs is not None:
        return 0
    if train_batches is not None:
        return max(0, train_batches)
    return preset.train_batches if preset.budget_batches is None else preset.budget_batches


def epoch_batches(train_size: int, batch: int, mixes: bool, cap: int) -> int:
    """The optimizer steps of one epoch on `train_size` images, as the runner counts them
    (runner.fitting.training_run.prepare): whole batches of the batch a step takes (`split_batch`: at most the
    set, even when mixing), at most `cap` (0 = all). The same on any number of processes: each takes N // w images
    in batches of B / w, and (N // w) // (B / w) = N // B."""
    b = split_batch(batch, train_size, mixes, 1) if train_size > 0 else 0
    n = train_size // b if b else 0
    return n if cap <= 0 else min(n, cap)


def stretch(epochs: int, budget_batches: int, available: int) -> int:
    """The fewest epochs of `available` batches that reach `epochs` x `budget_batches` optimizer steps."""
    return -(-epochs * budget_batches // available)


def apply_budget(design: Design, budget: Budget) -> Design:
    """The design's recipe rescaled to the budget: epochs, warmup and the step schedule's period (kept as a
    fraction of training, not rounded to whole epochs: the scheduler counts it in iterations)."""
    r = design.recipe
    recipe = dataclasses.replace(
        r,
        epochs=budget.epochs,
        warmup_epochs=budget.warmup_epochs,
        step_every=r.step_every * budget.epochs / r.epochs,
    )
    return dataclasses.replace(design, recipe=recipe)


SMALL_IMAGE = 64
"""Below this size (CIFAR, Fashion-MNIST) training crops with pad-and-crop, the practice for small images: the
ImageNet random-resized crop can keep 8 % of the area, a few pixels of a 28 px image (issue 13 measured
75 % against 86 % top-1 for ConvNeXt-T on Fashion-MNIST, augmentation otherwise off)."""


def crop_for(img_size: int) -> Crop:
    """The training crop that suits an image size: the paper's random-resized crop from 64 px, pad-and-crop below."""
    return Crop.RANDOM_RESIZED if img_size >= SMALL_IMAGE else Crop.PAD


def scale_regularization(design: Design, strength: float) -> Design:
    """The design with every regularizer of its recipe at `strength` times its value (1 = as it is, 0 = none):
    the crop (the pad-and-crop's padding; the random-resized crop's lost area, 1 - min scale), RandAugment's
    magnitude and probability, the mixup and cutmix alphas, the random-erasing probability and the stochastic-depth
    rate. Label smoothing, the flip, the optimizer and the schedule stay.

    Short budgets need weaker regularization: "ResNet strikes back" trains its 100-epoch A3 procedure with
    RandAugment m6 and mixup 0.1, where the paper's 300 epochs use m9, mixup 0.8 and cutmix 1.0. At two epochs of
    Fashion-MNIST every augmentation costs accuracy (docs/cpu-preset-sweep.md), so the `cpu` preset keeps every
    component of each recipe, at the strength its sweep chose."""
    if strength == 1.0:
        return design
    r, n = design.recipe, design.net
    augment = r.rand_augment
    if augment is not None:
        magnitude = re.search(r"-m(\d+(?:\.\d+)?)", augment)
        prob = re.search(r"-p(\d+(?:\.\d+)?)", augment)
        augment = augment.replace(magnitude.group(0), f"-m{round(float(magnitude.group(1)) * strength)}") \
            if magnitude else augment
        p = (float(prob.group(1)) if prob else 0.5) * strength  # timm applies each op with p = 0.5 by default
        augment = augment.replace(prob.group(0), f"-p{p:g}") if prob else f"{augment}-p{p:g}"
    low, high = r.crop_scale
    recipe = dataclasses.replace(
        r, rand_augment=augment, mixup=r.mixup * strength, cutmix=r.cutmix * strength,
        random_erasing=r.random_erasing * strength, crop_padding=r.crop_padding * strength,
        crop_scale=(1 - (1 - low) * strength, high))
    net = dataclasses.replace(n, drop_path_rate=n.drop_path_rate * strength)
    return dataclasses.replace(design, recipe=recipe, net=net)


def stem_stride_for(img_size: int) -> int:
    """The stem stride that suits an image size (paper: 4 at 224; small images need 1 or 2).

    >= 128 px keeps the paper's 4; 48-127 px uses 2; smaller (Fashion-MNIST, CIFAR) uses 1.
    """
    if img_size >= 128:
        return 4
    return 2 if img_size >= 48 else 1
