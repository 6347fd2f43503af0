"""How much training a run gets: presets, and how the paper's recipe scales to a smaller budget.

The paper trains the modern recipe for 300 epochs and the original ResNet recipe for 90. `--epochs N`
sets the modern recipe's epochs; by default the original recipe keeps the paper's 90:300 ratio (so its
step decay still happens at 1/3 and 2/3 of training), and `--same-epochs` gives it N too. Warmup keeps
its fraction (20/300 of training). The learning rate scales linearly with the batch, as in the paper.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from roadmap.design import Design, Recipe, Schedule
from roadmap.errors import RoadmapError, unknown


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
    val_batches: int = 0
    scale_lr: bool = True  # the paper's linear scaling rule; off for smoke, whose few steps need the full lr
    note: str = ""


IMAGENETTE_SHAPED = "synthetic:classes=10,size=160,train=9469,val=3925"
"""A synthetic data set with Imagenette-160's image count, classes and size: all its throughput depends on
(`roadmap bench`'s default; the real set cannot be fetched everywhere)."""

PRESETS: dict[str, Preset] = {
    "paper": Preset("paper", None, None, None, note="the paper's epochs, batch and learning rate"),
    "quick": Preset("quick", 20, 128, None, note="full-size models, 20 epochs (6 for the original recipe)"),
    "cpu": Preset(
        "cpu", 6, 64, 32, width_mult=1 / 8, depth_mult=1 / 3, train_batches=100, val_batches=0, scale_lr=False,
        note="small models for two CPU cores: 1/8 width, 1/3 depth, 32 px, 6 epochs of 100 batches, unscaled lr",
    ),
    "smoke": Preset(
        "smoke", 5, 32, 32, width_mult=1 / 8, depth_mult=1 / 3, train_batches=40, val_batches=10, scale_lr=False,
        note="a pipeline check: tiny models, 32 px, 40 batches an epoch, unscaled lr; its accuracies mean nothing",
    ),
}

ORIGINAL_TO_MODERN = 90 / 300  # the paper's budget ratio between the two recipes


@dataclass(frozen=True)
class Budget:
    """The effective training budget of one run (stored in its config.json)."""

    preset: str
    epochs: int
    batch_size: int
    lr: float  # after linear scaling to `batch_size`
    warmup_epochs: float
    img_size: int
    train_batches: int  # 0 = all
    val_batches: int
    epochs_rule: str  # how `epochs` was derived, for the report


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
) -> Budget:
    """The budget for `recipe` under `preset` and the user's overrides."""
    for name, value in (("epochs", epochs), ("batch size", batch_size), ("image size", img_size)):
        if value is not None and value <= 0:
            raise RoadmapError(f"{name} must be positive, got {value}")
    modern_epochs = epochs or preset.epochs
    original = recipe.schedule is Schedule.STEP
    if modern_epochs is None:
        n, rule = recipe.epochs, f"the paper's {recipe.epochs} epochs"
    elif original and not same_epochs:
        n = max(1, round(modern_epochs * ORIGINAL_TO_MODERN))
        rule = f"{n} epochs: the original recipe keeps the paper's 90:300 ratio to the modern recipe's {modern_epochs}"
    else:
        n = modern_epochs
        rule = f"{n} epochs" + (" (same as the modern recipe, --same-epochs)" if original else "")
    batch = batch_size or preset.batch_size or recipe.batch_size
    return Budget(
        preset=preset.name,
        epochs=n,
        batch_size=batch,
        lr=recipe.lr * batch / recipe.lr_batch if preset.scale_lr else recipe.lr,
        warmup_epochs=recipe.warmup_epochs * n / recipe.epochs,
        img_size=img_size,
        train_batches=preset.train_batches if train_batches is None else train_batches,
        val_batches=preset.val_batches if val_batches is None else val_batches,
        epochs_rule=rule,
    )


def apply_budget(design: Design, budget: Budget) -> Design:
    """The design's recipe rescaled to the budget: epochs, warmup and the step schedule's period."""
    r = design.recipe
    step_every = max(1, round(r.step_every * budget.epochs / r.epochs))
    recipe = dataclasses.replace(
        r,
        epochs=budget.epochs,
        warmup_epochs=budget.warmup_epochs,
        step_every=step_every,
    )
    return dataclasses.replace(design, recipe=recipe)


def stem_stride_for(img_size: int) -> int:
    """The stem stride that suits an image size (paper: 4 at 224; small images need 1 or 2).

    >= 128 px keeps the paper's 4; 48-127 px uses 2; smaller (Fashion-MNIST, CIFAR) uses 1.
    """
    if img_size >= 128:
        return 4
    return 2 if img_size >= 48 else 1
