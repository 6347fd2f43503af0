"""A network of the roadmap's design space, its validation, and its resolution into concrete shapes.

A `Network` is one point in the space the ConvNeXt paper walks through (Liu et al. 2022, Section 2): every
intermediate model of the roadmap, and every leave-one-out or reordered variant of it. `resolve` turns the
multipliers into concrete channel counts, depths and strides; `roadmap.layers.plan` turns those into the one
list of layers that the builder, the complexity counter and the tables read. No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass

from roadmap.dataclass_fields import coerce_fields
from roadmap.dataclass_fields import doc_field as _doc
from roadmap.enums import NORM_SITES, Act, Downsample, Init, Norm, Site, SpatialPosition, Stem
from roadmap.errors import RoadmapError


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
        coerce_fields(self)
        _validate_network(self)

    def resolved(self) -> Resolved:
        """Concrete channel counts, depths and strides after the multipliers (see `Resolved`)."""
        return resolve(self)


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

