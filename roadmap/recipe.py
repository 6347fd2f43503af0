"""A training setting (paper Table 5, or the original ResNet one), its validation, and the paper's recipes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from roadmap.dataclass_fields import coerce_fields
from roadmap.dataclass_fields import doc_field as _doc
from roadmap.enums import Crop, Optimizer, Schedule
from roadmap.errors import RoadmapError


@dataclass(frozen=True)
class Recipe:
    """A training setting. Defaults are the original ResNet-50 recipe (torchvision reference)."""

    name: str = _doc("a short label for tables", "resnet")
    optimizer: Optimizer = _doc("'sgd' (momentum, nesterov off) or 'adamw'", Optimizer.SGD)
    lr: float = _doc("peak learning rate at a batch of `lr_batch` images; scaled linearly with the batch", 0.1)
    lr_batch: int = _doc("the batch size `lr` refers to", 256)
    batch_size: int = _doc("the paper's global batch size for this recipe", 256)
    momentum: float = _doc("SGD momentum, or AdamW's beta1", 0.9)
    beta2: float = _doc("AdamW's beta2 (unused by SGD)", 0.999)
    weight_decay: float = _doc("weight decay", 1e-4)
    decay_1d: bool = _doc("apply weight decay to biases and norm weights too (original recipe) or not", True)
    epochs: int = _doc("training epochs at the paper's scale", 90)
    warmup_epochs: float = _doc("linear warmup epochs from a tiny lr", 0.0)
    schedule: Schedule = _doc("'step' (x step_gamma every step_every epochs) or 'cosine'", Schedule.STEP)
    step_every: float = _doc(
        "epochs between lr drops for the 'step' schedule (fractional when a short budget rescales it)", 30.0
    )
    step_gamma: float = _doc("lr multiplier at each drop of the 'step' schedule", 0.1)
    min_lr: float = _doc("the cosine schedule's final lr", 1e-6)
    rand_augment: str | None = _doc("timm RandAugment config string, e.g. 'rand-m9-mstd0.5-inc1'; null = none", None)
    mixup: float = _doc("mixup alpha (0 = off)", 0.0)
    cutmix: float = _doc("cutmix alpha (0 = off)", 0.0)
    random_erasing: float = _doc("random erasing probability, training only", 0.0)
    label_smoothing: float = _doc("label smoothing", 0.0)
    ema: bool = _doc("keep an exponential moving average of the weights and evaluate it", False)
    ema_decay: float = _doc("EMA decay per step", 0.9999)
    grad_clip: float | None = _doc("gradient norm clipping; null = none", None)
    layer_decay: float | None = _doc(
        "layer-wise lr decay: each block's lr is this times the next one's (fine-tuning: 0.7-0.8); null = none", None
    )
    train_augment: bool = _doc(
        "augment training images; false = the evaluation transform only (debugging, exactness tests)", True
    )
    sync_bn: bool = _doc("synchronize BatchNorm statistics across processes in data-parallel training", False)
    crop: Crop = _doc(
        "training crop: 'random_resized' (ImageNet's, area `crop_scale`) or 'pad' (pad-and-crop, for small images)",
        Crop.RANDOM_RESIZED,
    )
    crop_scale: tuple[float, ...] = _doc(
        "area range of the random-resized crop, as fractions of the image", (0.08, 1.0)
    )
    crop_padding: float = _doc("padding of the 'pad' crop on each side, as a fraction of the image size", 0.125)
    train_interpolation: str = _doc("interpolation of the training random-resized-crop", "bilinear")
    eval_crop_pct: float = _doc("evaluation: resize to size/crop_pct, then center-crop size", 0.875)
    eval_interpolation: str = _doc("interpolation of the evaluation resize", "bilinear")

    def __post_init__(self) -> None:
        coerce_fields(self)
        _validate_recipe(self)

    @property
    def mixes(self) -> bool:
        """Whether the recipe mixes images (mixup or cutmix): its targets are soft, and a batch pairs its images."""
        return self.mixup > 0 or self.cutmix > 0


def _validate_recipe(r: Recipe) -> None:
    def need(ok: bool, message: str) -> None:
        if not ok:
            raise RoadmapError(f"invalid recipe: {message}")

    need(r.lr > 0 and r.lr_batch >= 1 and r.batch_size >= 1, "lr, lr_batch and batch_size must be positive")
    need(r.epochs >= 1, f"epochs must be at least 1, got {r.epochs}")
    need(0 <= r.warmup_epochs < r.epochs, f"warmup_epochs must be in [0, epochs), got {r.warmup_epochs}")
    need(r.weight_decay >= 0, "weight_decay must be non-negative")
    need(r.step_every > 0 and 0 < r.step_gamma <= 1, "step_every > 0 and 0 < step_gamma <= 1")
    need(len(r.crop_scale) == 2 and 0 < r.crop_scale[0] <= r.crop_scale[1] <= 1,
         f"crop_scale is two area fractions 0 < min <= max <= 1, got {list(r.crop_scale)}")
    need(0 <= r.crop_padding < 1, f"crop_padding is a fraction of the image size in [0, 1), got {r.crop_padding}")
    need(r.mixup >= 0 and r.cutmix >= 0, "mixup and cutmix alphas must be non-negative")
    need(0 <= r.random_erasing <= 1, "random_erasing is a probability in [0, 1]")
    need(0 <= r.label_smoothing < 1, "label_smoothing must be in [0, 1)")
    need(0 < r.ema_decay < 1, "ema_decay must be in (0, 1)")
    need(r.grad_clip is None or r.grad_clip > 0, "grad_clip must be positive or null")
    need(0 < r.eval_crop_pct <= 1, "eval_crop_pct must be in (0, 1]")
    need(r.train_interpolation in ("bilinear", "bicubic") and r.eval_interpolation in ("bilinear", "bicubic"),
         "interpolations are 'bilinear' or 'bicubic'")
    need(r.layer_decay is None or 0 < r.layer_decay <= 1, "layer_decay must be in (0, 1] or null")
    if r.rand_augment is not None:
        need(r.rand_augment.startswith("rand-"), f"rand_augment is a timm string like 'rand-m9-mstd0.5-inc1', "
             f"got {r.rand_augment!r}")


MODERN_RECIPE = Recipe(
    name="convnext",
    optimizer=Optimizer.ADAMW,
    lr=4e-3,
    lr_batch=4096,
    batch_size=4096,
    momentum=0.9,
    beta2=0.999,
    weight_decay=0.05,
    decay_1d=False,
    epochs=300,
    warmup_epochs=20,
    schedule=Schedule.COSINE,
    rand_augment="rand-m9-mstd0.5-inc1",
    mixup=0.8,
    cutmix=1.0,
    random_erasing=0.25,
    label_smoothing=0.1,
    ema=False,  # the paper turns EMA off for the roadmap: it hurt the models that still have BatchNorm
    train_interpolation="bicubic",
    eval_interpolation="bicubic",
)
"""The paper's recipe (Table 5) as used for the roadmap, i.e. without EMA."""

FINETUNE_RECIPE = dataclasses.replace(  # what Table 6 changes in the pre-training recipe (Table 5)
    MODERN_RECIPE,
    name="finetune",
    lr=5e-5,
    lr_batch=512,
    batch_size=512,
    weight_decay=1e-8,
    epochs=30,
    warmup_epochs=0,
    mixup=0.0,
    cutmix=0.0,
    layer_decay=0.8,
)
"""The paper's fine-tuning setting (Table 6): AdamW lr 5e-5 at batch 512, weight decay 1e-8, 30 epochs, cosine,
no warmup, layer-wise lr decay 0.8, no mixup or cutmix; the head starts at 0.001 of its usual init scale."""
