"""A `Recipe` turned into the parts a run trains with, all of it from timm and torch (nothing hand-written):
transforms, optimizer, learning-rate schedule, mixup/cutmix, loss and EMA.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.data import Mixup, create_transform
from timm.data.transforms import str_to_interp_mode
from timm.loss import SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler, StepLRScheduler
from timm.scheduler.scheduler import Scheduler
from torch import nn
from torchvision import transforms

from roadmap.enums import Crop, Optimizer, Schedule
from roadmap.recipe import Recipe

WARMUP_LR_INIT = 1e-6


def train_transform(recipe: Recipe, img_size: int):
    """The recipe's crop + flip, then RandAugment and random erasing when the recipe has them (timm's).

    The crop is timm's random-resized-crop (area `crop_scale`), or for `Crop.PAD` a resize to `img_size` (a no-op
    at the native size), zero padding of `crop_padding` x size on each side and a random crop of `img_size`
    (torchvision's RandomCrop), followed by the same flip, RandAugment and erasing as timm's pipeline.
    Color jitter is off: the original recipe has none, and timm turns it off under RandAugment anyway.
    Without `train_augment` this is the evaluation transform (deterministic).
    """
    if not recipe.train_augment:
        return eval_transform(recipe, img_size)
    primary, secondary, final = create_transform(
        img_size,
        is_training=True,
        scale=tuple(recipe.crop_scale),
        hflip=0.5,
        color_jitter=None,
        auto_augment=recipe.rand_augment,
        interpolation=recipe.train_interpolation,
        re_prob=recipe.random_erasing,
        re_mode="pixel",
        re_count=1,
        separate=True,
    )
    if recipe.crop is Crop.PAD:
        primary = transforms.Compose([
            transforms.Resize(img_size, interpolation=str_to_interp_mode(recipe.train_interpolation)),
            transforms.RandomCrop(img_size, padding=pad_pixels(recipe, img_size)),
            transforms.RandomHorizontalFlip(),
        ])
    return transforms.Compose([primary, secondary, final])


def pad_pixels(recipe: Recipe, img_size: int) -> int:
    """The pad-and-crop padding in pixels: `crop_padding` x size, rounded (4 px at 32 and at 28 with 0.125)."""
    return int(recipe.crop_padding * img_size + 0.5)


def eval_transform(recipe: Recipe, img_size: int):
    """Resize to img_size / crop_pct, center-crop img_size. No augmentation (no random erasing at test time)."""
    return create_transform(
        img_size, is_training=False, crop_pct=recipe.eval_crop_pct, interpolation=recipe.eval_interpolation
    )


def optimizer(recipe: Recipe, model: nn.Module, lr: float, fused: bool = True) -> torch.optim.Optimizer:
    """SGD with momentum (no Nesterov) or AdamW; weight decay skips 1-D parameters unless `decay_1d`; optional
    layer-wise lr decay (fine-tuning), through timm's parameter groups. AdamW on CUDA is torch's fused kernel
    unless `fused` is False (timm's default implementation, what `roadmap bench`'s reference loop uses)."""
    common = dict(lr=lr, weight_decay=recipe.weight_decay, filter_bias_and_bn=not recipe.decay_1d,
                  layer_decay=recipe.layer_decay)
    if recipe.optimizer is Optimizer.SGD:
        return create_optimizer_v2(model, "momentum", momentum=recipe.momentum, **common)
    use_fused = {"fused": True} if fused and any(p.is_cuda for p in model.parameters()) else {}
    return create_optimizer_v2(model, "adamw", betas=(recipe.momentum, recipe.beta2), **common, **use_fused)


def scheduler(recipe: Recipe, opt: torch.optim.Optimizer, steps_per_epoch: int) -> Scheduler:
    """Per-iteration schedule: linear warmup then cosine to `min_lr`, or the original step decay.

    The cosine runs over the iterations after the warmup, so it reaches `min_lr` at the last one (as the official
    code and timm's train.py do). The step decay's period is counted in iterations, so a short budget still
    decays at the same fractions of training (1/3 and 2/3 for the original recipe) however few its epochs."""
    total = recipe.epochs * steps_per_epoch
    warmup = round(recipe.warmup_epochs * steps_per_epoch)
    if recipe.schedule is Schedule.COSINE:
        return CosineLRScheduler(
            opt,
            t_initial=max(1, total - warmup),
            lr_min=recipe.min_lr,
            warmup_t=warmup,
            warmup_lr_init=WARMUP_LR_INIT,
            warmup_prefix=True,
            t_in_epochs=False,
        )
    return StepLRScheduler(
        opt,
        decay_t=max(1, round(recipe.step_every * steps_per_epoch)),
        decay_rate=recipe.step_gamma,
        warmup_t=warmup,
        warmup_lr_init=WARMUP_LR_INIT,
        t_in_epochs=False,
    )


@dataclass
class Targets:
    """Mixup/cutmix (when the recipe has them) and the loss that fits the resulting targets."""

    mixup: Mixup | None
    loss: nn.Module

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mixup(x, y) if self.mixup is not None else (x, y)


def targets(recipe: Recipe, num_classes: int) -> Targets:
    if recipe.mixes:
        mix = Mixup(
            mixup_alpha=recipe.mixup,
            cutmix_alpha=recipe.cutmix,
            prob=1.0,
            switch_prob=0.5,
            mode="batch",
            label_smoothing=recipe.label_smoothing,
            num_classes=num_classes,
        )
        return Targets(mix, SoftTargetCrossEntropy())
    return Targets(None, nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing))


def ema(recipe: Recipe, model: nn.Module):
    """timm's ModelEmaV3 when the recipe asks for EMA (the roadmap's runs do not: paper, Section 2.1)."""
    if not recipe.ema:
        return None
    from timm.utils import ModelEmaV3

    return ModelEmaV3(model, decay=recipe.ema_decay)
