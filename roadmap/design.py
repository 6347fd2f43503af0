"""The design space: frozen descriptions of a network and its training recipe.

A `Network` is one point in the space the ConvNeXt paper walks through (Liu et al. 2022, Section 2):
every intermediate model of the roadmap, and every leave-one-out or reordered variant of it, is a
`Network`. A `Recipe` is a training setting (paper Table 5, or the original ResNet one). A `Design`
pairs the two. All three are immutable; the paper's steps (package `steps`) edit them with
`dataclasses.replace`, and `roadmap.model.build_model` turns a design into an `nn.Module`.

This module imports no torch: it is the pure description, shared by the builder, the complexity
counter and the runner's records.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from roadmap.errors import RoadmapError, unknown


class Stem(enum.StrEnum):
    """How the network turns pixels into the first feature map (paper 2.2, "patchify stem")."""

    RESNET = "resnet"  # conv 7x7/2 + norm + act + max-pool 3x3/2 (torchvision ResNet)
    PATCHIFY = "patchify"  # one non-overlapping conv, kernel = stride = patch size (ViT/Swin/ConvNeXt)


class Site(enum.StrEnum):
    """A place inside a residual block where a norm or an activation can sit (after that layer)."""

    SPATIAL = "spatial"  # the kxk (grouped/depthwise) conv
    PW1 = "pw1"  # the first 1x1 conv
    PW2 = "pw2"  # the second 1x1 conv
    ADD = "add"  # the residual addition (activations only)


class SpatialPosition(enum.StrEnum):
    """Where the kxk conv sits in the block (paper 2.5, "moving up depthwise conv layer")."""

    MIDDLE = "middle"  # 1x1 -> kxk -> 1x1 (ResNet bottleneck, inverted bottleneck)
    FIRST = "first"  # kxk -> 1x1 -> 1x1 (ConvNeXt; like self-attention before the MLP)


class Act(enum.StrEnum):
    RELU = "relu"
    GELU = "gelu"


class Norm(enum.StrEnum):
    BATCH = "batch"  # BatchNorm2d, eps 1e-5 (torchvision)
    LAYER = "layer"  # LayerNorm over channels, eps 1e-6 (ConvNeXt)


class Downsample(enum.StrEnum):
    """How stages 2-4 halve the resolution (paper 2.6, "separate downsampling layers")."""

    IN_BLOCK = "in_block"  # stride 2 on the first block's kxk conv, 1x1/2 conv + norm shortcut (ResNet v1.5)
    SEPARATE = "separate"  # norm + 2x2/2 conv between stages, blocks keep their resolution (Swin, ConvNeXt)


class Init(enum.StrEnum):
    KAIMING = "kaiming"  # torchvision ResNet: conv kaiming-normal fan-out, nn.Linear's default head
    TRUNC_NORMAL = "trunc_normal"  # ConvNeXt: trunc-normal std 0.02 for conv and linear, zero biases


class Optimizer(enum.StrEnum):
    SGD = "sgd"
    ADAMW = "adamw"


class Crop(enum.StrEnum):
    """How a training image is cropped before the rest of the augmentation."""

    RANDOM_RESIZED = "random_resized"  # random area `crop_scale` and aspect 3/4-4/3, resized to size (ImageNet)
    PAD = "pad"  # zero-pad by `crop_padding` x size on each side, random crop of size (CIFAR practice)


class Schedule(enum.StrEnum):
    STEP = "step"  # x gamma every `step_every` epochs (original ResNet)
    COSINE = "cosine"  # linear warmup then cosine decay (paper Table 5)


ALL_SITES = (Site.SPATIAL, Site.PW1, Site.PW2, Site.ADD)
NORM_SITES = (Site.SPATIAL, Site.PW1, Site.PW2)


def _doc(text: str, default: Any = dataclasses.MISSING, **kw: Any) -> Any:
    """A dataclass field that carries its documentation (shown by `roadmap show` and the README)."""
    return field(default=default, metadata={"doc": text}, **kw)


@dataclass(frozen=True)
class Network:
    """A network of the roadmap's design space. Defaults are torchvision's ResNet-50 v1.5."""

    # -- stem (paper 2.2)
    stem: Stem = _doc("stem kind: 'resnet' (7x7/2 conv, max-pool) or 'patchify' (pxp conv, stride p)", Stem.RESNET)
    stem_width: int = _doc("channels out of the stem", 64)
    stem_stride: int = _doc(
        "total stride of the stem: the patch size for 'patchify'; for 'resnet' 4 = 7x7/2 conv + 3x3/2 max-pool, "
        "2 = 7x7/2 conv without max-pool, 1 = 3x3/1 conv (low-resolution inputs)",
        4,
    )
    stem_act: bool = _doc("an activation after the stem's norm (ResNet has one, ConvNeXt none)", True)
    # -- stages (paper 2.2, 2.3)
    depths: tuple[int, ...] = _doc("blocks per stage", (3, 4, 6, 3))
    widths: tuple[int, ...] = _doc("output channels of each stage's blocks", (256, 512, 1024, 2048))
    # -- block (paper 2.3-2.6)
    expansion: float = _doc(
        "inner width / output width of a block: 0.25 = ResNet bottleneck, 4 = inverted bottleneck (paper 2.4)", 0.25
    )
    spatial_position: SpatialPosition = _doc(
        "where the kxk conv sits: 'middle' (1x1, kxk, 1x1) or 'first' (kxk, 1x1, 1x1; paper 2.5)",
        SpatialPosition.MIDDLE,
    )
    group_width: int | None = _doc(
        "channels per group of the kxk conv: null = dense (ResNet), 1 = depthwise (paper 2.3)", None
    )
    kernel_size: int = _doc("kernel size of the kxk conv, odd (paper 2.5)", 3)
    act: Act = _doc("activation function: 'relu' or 'gelu' (paper 2.6)", Act.RELU)
    act_after: tuple[Site, ...] = _doc(
        "block sites followed by an activation, among spatial, pw1, pw2, add (add = after the residual sum)",
        (Site.PW1, Site.SPATIAL, Site.ADD),
    )
    norm: Norm = _doc("normalization everywhere in the network: 'batch' or 'layer' (paper 2.6)", Norm.BATCH)
    norm_after: tuple[Site, ...] = _doc(
        "block sites followed by a norm, among spatial, pw1, pw2", (Site.PW1, Site.SPATIAL, Site.PW2)
    )
    downsample: Downsample = _doc(
        "how stages 2-4 downsample: 'in_block' (strided kxk conv, projection shortcut) or 'separate' "
        "(norm + 2x2/2 conv between stages; paper 2.6)",
        Downsample.IN_BLOCK,
    )
    layer_scale: float | None = _doc(
        "initial value of a learnable per-channel scale on each residual branch; null = none", None
    )
    drop_path_rate: float = _doc(
        "stochastic depth: probability of dropping a residual branch, rising linearly to this value", 0.0
    )
    # -- head
    head_norm: bool = _doc("a norm after global average pooling, before the classifier (paper 2.6)", False)
    head_init_scale: float = _doc("multiplier on the classifier's initial weights and bias (fine-tuning: 0.001)", 1.0)
    init: Init = _doc(
        "weight initialization: 'kaiming' (torchvision ResNet) or 'trunc_normal' (ConvNeXt)", Init.KAIMING
    )
    # -- size adaptations (package steps.adapt); the paper's models all have 1.0
    width_mult: float = _doc("multiplier on every width, rounded to a multiple of 8 (for CPU work and teaching)", 1.0)
    depth_mult: float = _doc("multiplier on every stage depth, at least one block a stage", 1.0)

    def __post_init__(self) -> None:
        _coerce(self)
        _validate_network(self)

    def resolved(self) -> Resolved:
        """Concrete channel counts, depths and strides after the multipliers (see `Resolved`)."""
        return resolve(self)


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
        _coerce(self)
        _validate_recipe(self)


@dataclass(frozen=True)
class Design:
    """A network and the recipe it is trained with: what one step of the roadmap describes."""

    net: Network = field(default_factory=Network, metadata={"doc": "the network"})
    recipe: Recipe = field(default_factory=Recipe, metadata={"doc": "the training recipe"})

    def __post_init__(self) -> None:
        if not isinstance(self.net, Network) or not isinstance(self.recipe, Recipe):
            raise RoadmapError("a Design is made of a Network and a Recipe")

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_dict(), **kw)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Design:
        return from_dict(cls, data)

    @classmethod
    def from_json(cls, text: str) -> Design:
        return cls.from_dict(json.loads(text))


# --------------------------------------------------------------------------------------------------
# JSON round trip and typed overrides


def to_dict(obj: Any) -> dict[str, Any]:
    """A JSON-ready dict (enums as their strings, tuples as lists)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, enum.Enum):
            return v.value
        return v

    return plain(obj)


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a dataclass from `to_dict` output; unknown keys are an error, missing keys take defaults."""
    if not isinstance(data, dict):
        raise RoadmapError(f"expected a JSON object for {cls.__name__}, got {type(data).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise unknown(f"{cls.__name__} field", key, names)
    kwargs = {}
    for key, value in data.items():
        hint = typing.get_type_hints(cls)[key]
        kwargs[key] = from_dict(hint, value) if dataclasses.is_dataclass(hint) else value
    return cls(**kwargs)


def field_docs(cls: type) -> dict[str, str]:
    """Each field's one-line documentation."""
    return {f.name: f.metadata.get("doc", "") for f in dataclasses.fields(cls)}


def parse_value(cls: type, name: str, text: str) -> Any:
    """Parse the string `text` for field `name` of `cls`, checked against the field's type.

    Used by `--set key=value`: 'null' for optional fields, comma lists for tuples, true/false for bools.
    """
    hints = typing.get_type_hints(cls)
    if name not in hints:
        raise unknown(f"{cls.__name__} field", name, hints)
    return _parse(hints[name], text, f"{cls.__name__}.{name}")


def _parse(hint: Any, text: str, where: str) -> Any:
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if text.strip().lower() in ("null", "none"):
            return None
        return _parse(next(a for a in args if a is not type(None)), text, where)
    if origin is tuple:
        return tuple(_parse(args[0], t, where) for t in text.split(",") if t.strip())
    try:
        if hint is bool:
            low = text.strip().lower()
            if low not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return low in ("true", "1", "yes")
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            return hint(text.strip())
        return hint(text.strip())
    except ValueError:
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            raise unknown(f"value for {where}", text, [m.value for m in hint]) from None
        raise RoadmapError(f"{where} expects {getattr(hint, '__name__', hint)}, got {text!r}") from None


def _coerce(obj: Any) -> None:
    """Turn JSON-ish values (strings, lists) into the declared enums and tuples, rejecting wrong types."""
    for f in dataclasses.fields(obj):
        hint = typing.get_type_hints(type(obj))[f.name]
        value = getattr(obj, f.name)
        new = _coerce_value(hint, value, f"{type(obj).__name__}.{f.name}")
        if new is not value:
            object.__setattr__(obj, f.name, new)


def _coerce_value(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        return _coerce_value(next(a for a in args if a is not type(None)), value, where)
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            raise RoadmapError(f"{where} expects a list, got {value!r}")
        return tuple(_coerce_value(args[0], v, where) for v in value)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        if isinstance(value, hint):
            return value
        try:
            return hint(value)
        except ValueError:
            raise unknown(f"value for {where}", value, [m.value for m in hint]) from None
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, bool, str) and (type(value) is not hint):
        raise RoadmapError(f"{where} expects {hint.__name__}, got {value!r}")
    return value


# --------------------------------------------------------------------------------------------------
# Resolution: concrete channel counts and strides, shared by the builder and the complexity counter


@dataclass(frozen=True)
class BlockShape:
    d_in: int
    d_out: int
    mid: int  # inner width (the two 1x1 convs meet here)
    stride: int  # on the kxk conv; the shortcut projects when stride > 1 or d_in != d_out
    spatial_first: bool = False  # the kxk conv runs first, on d_in channels (paper 2.5)

    @property
    def spatial_channels(self) -> int:
        """Channels the kxk conv runs on: d_in when it comes first, else the inner width."""
        return self.d_in if self.spatial_first else self.mid

    @property
    def projects(self) -> bool:
        """Whether the shortcut needs a 1x1 conv + norm (shape changes)."""
        return self.stride != 1 or self.d_in != self.d_out


@dataclass(frozen=True)
class StageShape:
    downsample: tuple[int, int] | None  # (d_in, d_out) of a separate 2x2/2 downsampling layer
    blocks: tuple[BlockShape, ...]


@dataclass(frozen=True)
class Resolved:
    stem_width: int
    stages: tuple[StageShape, ...]
    drop_path: tuple[float, ...]  # per block, rising linearly from 0 to drop_path_rate

    @property
    def num_features(self) -> int:
        return self.stages[-1].blocks[-1].d_out


def scale_width(width: int, mult: float) -> int:
    """`width * mult` rounded to a multiple of 8 (at least 8); exact when `mult` is 1."""
    if mult == 1.0:
        return width
    return max(8, int(width * mult / 8 + 0.5) * 8)


def scale_depth(depth: int, mult: float) -> int:
    """`depth * mult` rounded half up, at least 1: (3, 3, 9, 3) x 1/3 keeps the 1:1:3:1 ratio."""
    return max(1, int(depth * mult + 0.5))


def resolve(net: Network) -> Resolved:
    stem = scale_width(net.stem_width, net.width_mult)
    widths = [scale_width(w, net.width_mult) for w in net.widths]
    depths = [scale_depth(d, net.depth_mult) for d in net.depths]
    first = net.spatial_position is SpatialPosition.FIRST
    separate = net.downsample is Downsample.SEPARATE
    stages, d_in = [], stem
    for i, (depth, d_out) in enumerate(zip(depths, widths, strict=True)):
        down = (d_in, d_out) if separate and i > 0 else None
        if down:
            d_in = d_out
        mid = max(1, int(round(d_out * net.expansion)))
        blocks = []
        for j in range(depth):
            stride = 2 if (i > 0 and j == 0 and not separate) else 1
            blocks.append(BlockShape(d_in, d_out, mid, stride, first))
            d_in = d_out
        stages.append(StageShape(down, tuple(blocks)))
    n = sum(depths)
    rates = tuple(net.drop_path_rate * k / (n - 1) if n > 1 else 0.0 for k in range(n))
    return Resolved(stem, tuple(stages), rates)


# --------------------------------------------------------------------------------------------------
# Validation: invalid combinations are rejected with a message that says what to change


def _validate_network(n: Network) -> None:
    def need(ok: bool, message: str) -> None:
        if not ok:
            raise RoadmapError(f"invalid network: {message}")

    need(len(n.depths) == len(n.widths) and len(n.depths) >= 1, "depths and widths need one entry per stage")
    need(all(d >= 1 for d in n.depths), f"every stage needs at least one block, got depths {n.depths}")
    need(all(w >= 1 for w in n.widths) and n.stem_width >= 1, "widths must be positive")
    need(n.kernel_size >= 1 and n.kernel_size % 2 == 1, f"kernel_size must be odd and positive, got {n.kernel_size}")
    need(n.expansion > 0, f"expansion must be positive, got {n.expansion}")
    need(n.stem_stride >= 1, f"stem_stride must be at least 1, got {n.stem_stride}")
    if n.stem is Stem.RESNET:
        need(n.stem_stride in (1, 2, 4), f"a 'resnet' stem has stride 1, 2 or 4, got {n.stem_stride}")
    need(all(s in NORM_SITES for s in n.norm_after), "norm_after takes spatial, pw1, pw2 (no norm after 'add')")
    need(len(set(n.norm_after)) == len(n.norm_after), "norm_after lists a site twice")
    need(len(set(n.act_after)) == len(n.act_after), "act_after lists a site twice")
    need(n.layer_scale is None or n.layer_scale > 0, "layer_scale must be positive or null")
    need(0.0 <= n.drop_path_rate < 1.0, f"drop_path_rate must be in [0, 1), got {n.drop_path_rate}")
    need(n.head_init_scale > 0, "head_init_scale must be positive")
    need(n.width_mult > 0 and n.depth_mult > 0, "width_mult and depth_mult must be positive")
    if n.group_width is not None:
        need(n.group_width >= 1, f"group_width must be at least 1 (1 = depthwise) or null, got {n.group_width}")
        for stage in resolve(n).stages:
            for b in stage.blocks:
                c = b.spatial_channels
                need(c % n.group_width == 0, f"the kxk conv's {c} channels are not divisible by group_width "
                     f"{n.group_width}")


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


# --------------------------------------------------------------------------------------------------
# The two ends of the roadmap

RESNET50 = Design(Network(), Recipe())
"""torchvision's ResNet-50 v1.5 with its original 90-epoch recipe: the roadmap's first design."""

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
