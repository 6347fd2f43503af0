"""The layer plan: every layer of a `Network`, in order, as data. No torch here.

    from roadmap.layers import plan
    p = plan(network, num_classes=1000)
    for spec in p.layers():          # stem, each stage (downsampling, blocks), head: in forward order
        print(spec.name, spec.kind, spec.c_in, spec.c_out, spec.kernel, spec.stride)

Resolving a `Network` (`roadmap.network.resolve`) gives channel counts, depths and strides; `plan` turns them into
one `LayerSpec` per layer, named as in the built module's state_dict. Every architectural rule lives here, once:
the stem's kernel, the order of a block's convs and where its norms and activations sit, groups, conv biases,
the shortcut's projection, separate downsampling, the head. The builder (`roadmap.model`), the complexity counter
(`roadmap.complexity`) and the tables (`roadmap.describe`) only read the plan.

The architecture is data, as in timm's byobnet; what each kind of layer costs sits beside the kind, as in pycls:
`KINDS` maps a kind to its `LayerKind` (cost, output size, its text in `roadmap show`, and, for a block-level
extra such as squeeze-excitation, where the plan places it). `roadmap.model.BUILDERS` maps the same kinds to
`nn.Module` factories. A new kind of layer is one entry in each (see docs/adding-a-step.md).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from roadmap.enums import Norm, Site, SpatialPosition, Stem
from roadmap.errors import RoadmapError, unknown
from roadmap.network import BlockShape, Network


class Kind(enum.StrEnum):
    """The built-in kinds of layer (a `LayerSpec.kind` may also name a kind added to `KINDS`)."""

    CONV = "conv"  # Conv2d: dense, grouped or depthwise (see `groups`)
    LINEAR = "linear"  # a 1x1 conv on a channels-last tensor (ConvNeXt's block), or the classifier
    NORM = "norm"  # `fn` says which (Norm), `layout` over which axis
    ACT = "act"  # `fn` says which (Act)
    MAX_POOL = "max_pool"  # ResNet's stem pool
    GLOBAL_POOL = "global_pool"  # the head's global average pool
    LAYER_SCALE = "layer_scale"  # a learnable per-channel scale, initial value `value`
    DROP_PATH = "drop_path"  # stochastic depth, drop probability `value`
    PERMUTE = "permute"  # turns the tensor into `layout` (a view, no copy)


class Layout(enum.StrEnum):
    """Where the channels are: NCHW, or NHWC for the pointwise part of a ConvNeXt block (paper 2.5)."""

    FIRST = "channels_first"
    LAST = "channels_last"


@dataclass(frozen=True)
class LayerSpec:
    """One layer: what it is, its name in the state_dict, and every number its builder and its cost need."""

    kind: str  # a `Kind`, or a kind added to `KINDS`
    name: str  # module name in the built model, e.g. "stages.1.blocks.0.branch.conv_pw1"
    c_in: int
    c_out: int
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    groups: int = 1
    bias: bool = False
    layout: Layout = Layout.FIRST  # the layout the layer works in (for a permute: the layout it produces)
    fn: str | None = None  # which norm (`Norm`) or activation (`Act`)
    site: Site | None = None  # the block site whose conv this layer is, or follows
    value: float | None = None  # layer scale's initial value, drop path's probability
    mid: int = 0  # the inner width of a layer that has one (a squeeze-excitation's bottleneck)

    @property
    def depthwise(self) -> bool:
        """A conv with one group per channel (paper 2.3): the depthwise conv of ResNeXt-ify and of ConvNeXt."""
        return self.groups > 1 and self.groups == self.c_in == self.c_out

    @property
    def leaf(self) -> str:
        """The layer's own name inside its parent module, e.g. "conv_pw1"."""
        return self.name.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class BlockPlan:
    """A residual block: x -> act(drop_path(layer_scale(branch(x))) + shortcut(x)); absent parts are None/()."""

    name: str  # "stages.{i}.blocks.{j}"
    d_in: int
    d_out: int
    stride: int  # > 1 where this block downsamples (the first block of stages 2-4 with in-block downsampling)
    branch: tuple[LayerSpec, ...]  # the residual branch, in order
    layer_scale: LayerSpec | None
    drop_path: LayerSpec | None
    shortcut: tuple[LayerSpec, ...]  # () = identity; else a projection (1x1 conv with the block's stride, norm)
    act: LayerSpec | None  # the activation after the sum

    def layers(self) -> Iterator[LayerSpec]:
        yield from self.branch
        yield from (x for x in (self.layer_scale, self.drop_path) if x is not None)
        yield from self.shortcut
        if self.act is not None:
            yield self.act


@dataclass(frozen=True)
class StagePlan:
    name: str  # "stages.{i}"
    downsample: tuple[LayerSpec, ...]  # separate downsampling before the blocks (norm, 2x2/2 conv); () = none
    blocks: tuple[BlockPlan, ...]

    def layers(self) -> Iterator[LayerSpec]:
        yield from self.downsample
        for block in self.blocks:
            yield from block.layers()


@dataclass(frozen=True)
class Plan:
    """Every layer of a network: stem, stages, head. Read by the builder, the counter and the tables."""

    stem: tuple[LayerSpec, ...]
    stages: tuple[StagePlan, ...]
    head: tuple[LayerSpec, ...]  # global pool, [norm], [classifier]
    num_features: int  # channels into the head

    def layers(self) -> Iterator[LayerSpec]:
        """Every layer, in the order the forward pass meets them (a block's shortcut after its branch)."""
        yield from self.stem
        for stage in self.stages:
            yield from stage.layers()
        yield from self.head


# --------------------------------------------------------------------------------------------------
# Kinds of layer: cost, output size and label beside each other (pycls keeps a module's cost beside it)

Cost = tuple[int, int]  # (parameters, multiply-accumulates)


def same_size(spec: LayerSpec, h: int) -> int:
    """The output size of a layer that keeps the resolution."""
    return h


def window_size(spec: LayerSpec, h: int) -> int:
    """The output size of a sliding window (conv, pool): (h + 2 padding - kernel) // stride + 1."""
    return (h + 2 * spec.padding - spec.kernel) // spec.stride + 1


def conv_cost(spec: LayerSpec, h_out: int) -> Cost:
    """Weights (+ bias) and one MAC per weight per output pixel: a Linear is a 1x1 conv."""
    weights = spec.c_out * (spec.c_in // spec.groups) * spec.kernel * spec.kernel
    return weights + (spec.c_out if spec.bias else 0), weights * h_out * h_out


def conv_label(spec: LayerSpec) -> str:
    """"7x7 dw 96", "3x3 g32 128", "1x1 384": a conv as `roadmap show` writes it in a block's layout."""
    groups = "" if spec.groups == 1 else " dw" if spec.depthwise else f" g{spec.groups}"
    return f"{spec.kernel}x{spec.kernel}{groups} {spec.c_out}"


@dataclass(frozen=True)
class LayerKind:
    """What the plan, the counter and the tables know about one kind of layer.

    `cost(spec, h_out)` is (params, MACs) in the paper's convention (MACs of conv and linear layers only);
    `out_size(spec, h)` the output resolution; `label(spec)` its text in a block's layout (None: not shown).
    A block-level extra sets `after` (the block site it follows, after that site's norm and activation) and
    `place(net, channels, prefix, layout)`, which returns its spec, or None where `net` does not ask for it.
    """

    name: str
    cost: Callable[[LayerSpec, int], Cost] = lambda spec, h_out: (0, 0)
    out_size: Callable[[LayerSpec, int], int] = same_size
    label: Callable[[LayerSpec], str] | None = None
    after: Site | None = None
    place: Callable[[Network, int, str, Layout], LayerSpec | None] | None = None


KINDS: dict[str, LayerKind] = {k.name: k for k in (
    LayerKind(Kind.CONV, conv_cost, window_size, conv_label),
    LayerKind(Kind.LINEAR, conv_cost, same_size, conv_label),
    LayerKind(Kind.NORM, lambda spec, h_out: (2 * spec.c_out, 0)),  # weight and bias; BN's statistics are buffers
    LayerKind(Kind.ACT),
    LayerKind(Kind.MAX_POOL, out_size=window_size),
    LayerKind(Kind.GLOBAL_POOL, out_size=lambda spec, h: 1),
    LayerKind(Kind.LAYER_SCALE, lambda spec, h_out: (spec.c_out, 0)),
    LayerKind(Kind.DROP_PATH),
    LayerKind(Kind.PERMUTE),
)}
"""Every kind of layer by name. A new kind is one entry here and one in `roadmap.model.BUILDERS`."""


def kind_of(spec: LayerSpec) -> LayerKind:
    """The `LayerKind` of a spec; a clear error for a kind nobody registered."""
    if spec.kind not in KINDS:
        raise unknown("layer kind", spec.kind, KINDS)
    return KINDS[spec.kind]


# --------------------------------------------------------------------------------------------------
# The plan


def conv_bias(net: Network, norm_follows: bool) -> bool:
    """A conv followed by BatchNorm has no bias (the norm's shift replaces it), as in ResNet; every other conv has
    one, as in ConvNeXt."""
    return not (norm_follows and net.norm is Norm.BATCH)


def stem_plan(net: Network, in_chans: int, width: int) -> tuple[LayerSpec, ...]:
    """conv + norm [+ act] [+ max-pool]: ResNet's 7x7/2 stem (3x3/1 for low resolution) or a patchify conv
    (paper 2.2)."""
    s = net.stem_stride
    if net.stem is Stem.PATCHIFY:
        k, stride, pad = s, s, 0
    else:
        k, stride = (7, 2) if s >= 2 else (3, 1)
        pad = k // 2
    layers = [
        LayerSpec(Kind.CONV, "stem.conv", in_chans, width, k, stride, pad, bias=conv_bias(net, True)),
        LayerSpec(Kind.NORM, "stem.norm", width, width, fn=net.norm),
    ]
    if net.stem_act:
        layers.append(LayerSpec(Kind.ACT, "stem.act", width, width, fn=net.act))
    if net.stem is Stem.RESNET and s == 4:
        layers.append(LayerSpec(Kind.MAX_POOL, "stem.pool", width, width, 3, 2, 1))
    return tuple(layers)


def block_extras(net: Network, site: Site, channels: int, prefix: str, layout: Layout) -> list[LayerSpec]:
    """The block-level extras of `KINDS` that `net` asks for after `site`."""
    found = (k.place(net, channels, prefix, layout) for k in KINDS.values() if k.after is site and k.place)
    return [spec for spec in found if spec is not None]


def branch_plan(net: Network, b: BlockShape, prefix: str) -> tuple[LayerSpec, ...]:
    """A block's residual branch: three convs (kxk, 1x1, 1x1) in the design's order, each followed by its norm and
    activation where the design puts them.

    When the kxk conv comes first (paper 2.5), everything after it is pointwise and runs channels-last, the 1x1
    convs as Linear layers, as in ConvNeXt's own code: the same computation, laid out for speed."""
    first = net.spatial_position is SpatialPosition.FIRST
    c_sp, k = b.spatial_channels, net.kernel_size
    groups = 1 if net.group_width is None else c_sp // net.group_width
    convs = {
        Site.SPATIAL: dict(c_in=c_sp, c_out=c_sp, kernel=k, stride=b.stride, padding=k // 2, groups=groups),
        Site.PW1: dict(c_in=b.d_in, c_out=b.mid),
        Site.PW2: dict(c_in=b.mid, c_out=b.d_out),
    }
    layout = Layout.LAST if first else Layout.FIRST  # of everything after the kxk conv
    layers: list[LayerSpec] = []
    for site in (Site.SPATIAL, Site.PW1, Site.PW2) if first else (Site.PW1, Site.SPATIAL, Site.PW2):
        kind = Kind.CONV if site is Site.SPATIAL or not first else Kind.LINEAR
        c = convs[site]["c_out"]
        norm = site in net.norm_after
        layers.append(LayerSpec(kind, f"{prefix}.conv_{site}", **convs[site], bias=conv_bias(net, norm),
                                layout=Layout.LAST if kind is Kind.LINEAR else Layout.FIRST, site=site))
        if first and site is Site.SPATIAL:
            layers.append(LayerSpec(Kind.PERMUTE, f"{prefix}.to_channels_last", c, c, layout=Layout.LAST))
        if norm:
            layers.append(LayerSpec(Kind.NORM, f"{prefix}.norm_{site}", c, c, layout=layout, fn=net.norm, site=site))
        if site in net.act_after:
            layers.append(LayerSpec(Kind.ACT, f"{prefix}.act_{site}", c, c, layout=layout, fn=net.act, site=site))
        layers += block_extras(net, site, c, prefix, layout)
    if first:
        layers.append(LayerSpec(Kind.PERMUTE, f"{prefix}.to_channels_first", b.d_out, b.d_out))
    return tuple(layers)


def block_plan(net: Network, b: BlockShape, name: str, drop_path: float) -> BlockPlan:
    """The branch, layer scale, stochastic depth, ResNet's projection shortcut (when the shape changes) and the
    activation after the sum."""
    d = b.d_out
    shortcut = () if not b.projects else (
        LayerSpec(Kind.CONV, f"{name}.shortcut.conv", b.d_in, d, 1, b.stride, bias=conv_bias(net, True)),
        LayerSpec(Kind.NORM, f"{name}.shortcut.norm", d, d, fn=net.norm),
    )
    scale = LayerSpec(Kind.LAYER_SCALE, f"{name}.layer_scale", d, d, value=net.layer_scale) if net.layer_scale else None
    drop = LayerSpec(Kind.DROP_PATH, f"{name}.drop_path", d, d, value=drop_path) if drop_path > 0 else None
    act = LayerSpec(Kind.ACT, f"{name}.act", d, d, fn=net.act, site=Site.ADD) if Site.ADD in net.act_after else None
    return BlockPlan(name, b.d_in, d, b.stride, branch_plan(net, b, f"{name}.branch"), scale, drop, shortcut, act)


def classifier(num_features: int, num_classes: int) -> LayerSpec | None:
    """The head's linear classifier; None for `num_classes` 0 (a feature extractor)."""
    return LayerSpec(Kind.LINEAR, "head.fc", num_features, num_classes, bias=True) if num_classes > 0 else None


def head_plan(net: Network, num_features: int, num_classes: int) -> tuple[LayerSpec, ...]:
    """Global average pool [+ norm] + linear classifier."""
    f = num_features
    layers = [LayerSpec(Kind.GLOBAL_POOL, "head.pool", f, f)]
    if net.head_norm:  # paper 2.6
        layers.append(LayerSpec(Kind.NORM, "head.norm", f, f, fn=net.norm))
    fc = classifier(f, num_classes)
    return tuple(layers + ([fc] if fc else []))


def plan(net: Network, num_classes: int = 1000, in_chans: int = 3) -> Plan:
    """Every layer of `net` with `num_classes` outputs (0: none, the pooled features) on `in_chans` channels."""
    if num_classes < 0 or in_chans < 1:
        raise RoadmapError(f"num_classes must be >= 0 and in_chans >= 1, got {num_classes} and {in_chans}")
    shapes = net.resolved()
    rates = iter(shapes.drop_path)
    stages = []
    for i, st in enumerate(shapes.stages):
        down: tuple[LayerSpec, ...] = ()
        if st.downsample is not None:  # separate downsampling (paper 2.6): norm, then 2x2/2 conv
            d_in, d_out = st.downsample
            down = (LayerSpec(Kind.NORM, f"stages.{i}.downsample.norm", d_in, d_in, fn=net.norm),
                    LayerSpec(Kind.CONV, f"stages.{i}.downsample.conv", d_in, d_out, 2, 2, 0, bias=True))
        blocks = tuple(block_plan(net, b, f"stages.{i}.blocks.{j}", next(rates)) for j, b in enumerate(st.blocks))
        stages.append(StagePlan(f"stages.{i}", down, blocks))
    return Plan(stem_plan(net, in_chans, shapes.stem_width), tuple(stages),
                head_plan(net, shapes.num_features, num_classes), shapes.num_features)
