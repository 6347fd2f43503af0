"""Parameters and FLOPs of any design at any input size, counted from the description alone.

FLOPs follow the paper's convention: multiply-accumulates of conv and linear layers (1 MAC = 1 FLOP);
norms, activations, pooling and additions are not counted. This is the convention of torchvision's
`_ops` metadata (ResNet-50 4.089, ConvNeXt-T 4.456). fvcore's default counter also counts norms and
gives slightly more. The tests check these counts against torch's FLOP counter on built modules.

No torch here: a table of every step at any resolution is instant.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from roadmap.design import Network, Norm, Site, SpatialPosition, Stem
from roadmap.errors import RoadmapError


@dataclass(frozen=True)
class Layer:
    """One counted layer: where it is, what it is, what it costs."""

    stage: str  # "stem", "stage1".."stage4", "head"
    name: str
    params: int
    macs: int
    out_shape: tuple[int, int, int]  # (C, H, W) after the layer


@dataclass(frozen=True)
class Complexity:
    img_size: int
    layers: tuple[Layer, ...] = field(repr=False)

    @property
    def params(self) -> int:
        return sum(x.params for x in self.layers)

    @property
    def macs(self) -> int:
        return sum(x.macs for x in self.layers)

    @property
    def gflops(self) -> float:
        """Paper convention: giga multiply-accumulates of conv and linear layers."""
        return self.macs / 1e9

    def by_stage(self) -> list[dict]:
        """Rows of a per-stage table: stage, params, GFLOPs, output shape."""
        rows: dict[str, dict] = {}
        for x in self.layers:
            row = rows.setdefault(x.stage, {"stage": x.stage, "params": 0, "macs": 0, "out_shape": x.out_shape})
            row["params"] += x.params
            row["macs"] += x.macs
            row["out_shape"] = x.out_shape
        for row in rows.values():
            row["gflops"] = row.pop("macs") / 1e9
        return list(rows.values())


def _out(size: int, k: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - k) // stride + 1


def count(net: Network, img_size: int = 224, num_classes: int = 1000, in_chans: int = 3) -> Complexity:
    """Parameters and MACs of `net` on `img_size` x `img_size` inputs, layer by layer."""
    shapes = net.resolved()
    batch_norm = net.norm is Norm.BATCH
    layers: list[Layer] = []
    h = img_size

    def add_conv(stage: str, name: str, c_in: int, c_out: int, k: int, stride: int, pad: int, groups: int = 1,
                 norm_after: bool = False) -> None:
        nonlocal h
        h = _out(h, k, stride, pad)
        if h < 1:
            raise RoadmapError(f"{img_size} px images are too small for this network: the feature map vanishes at "
                               f"{stage} ({name}); use larger images or a smaller stem stride")
        bias = 0 if (norm_after and batch_norm) else c_out
        weights = c_out * (c_in // groups) * k * k
        layers.append(Layer(stage, name, weights + bias, weights * h * h, (c_out, h, h)))

    def add_norm(stage: str, name: str, c: int) -> None:
        layers.append(Layer(stage, name, 2 * c, 0, (c, h, h)))

    # stem
    w, s = shapes.stem_width, net.stem_stride
    if net.stem is Stem.PATCHIFY:
        add_conv("stem", "conv", in_chans, w, s, s, 0, norm_after=True)
    else:
        k, stride = (7, 2) if s >= 2 else (3, 1)
        add_conv("stem", "conv", in_chans, w, k, stride, k // 2, norm_after=True)
    add_norm("stem", "norm", w)
    if net.stem is Stem.RESNET and s == 4:
        h = _out(h, 3, 2, 1)
        layers.append(Layer("stem", "pool", 0, 0, (w, h, h)))

    first = net.spatial_position is SpatialPosition.FIRST
    for i, stage in enumerate(shapes.stages, start=1):
        name = f"stage{i}"
        if stage.downsample:
            d_in, d_out = stage.downsample
            add_norm(name, "downsample.norm", d_in)
            add_conv(name, "downsample.conv", d_in, d_out, 2, 2, 0)
        for j, b in enumerate(stage.blocks):
            h_in = h
            c_sp = b.spatial_channels
            groups = 1 if net.group_width is None else c_sp // net.group_width
            convs = {
                Site.SPATIAL: (c_sp, c_sp, net.kernel_size, b.stride, net.kernel_size // 2, groups),
                Site.PW1: (b.d_in, b.mid, 1, 1, 0, 1),
                Site.PW2: (b.mid, b.d_out, 1, 1, 0, 1),
            }
            order = (Site.SPATIAL, Site.PW1, Site.PW2) if first else (Site.PW1, Site.SPATIAL, Site.PW2)
            for site in order:
                c_in, c_out, k, stride, pad, g = convs[site]
                has_norm = site in net.norm_after
                add_conv(name, f"block{j}.conv_{site}", c_in, c_out, k, stride, pad, g, norm_after=has_norm)
                if has_norm:
                    add_norm(name, f"block{j}.norm_{site}", c_out)
            h_out = h
            if b.projects:
                h = h_in
                add_conv(name, f"block{j}.shortcut.conv", b.d_in, b.d_out, 1, b.stride, 0, norm_after=True)
                add_norm(name, f"block{j}.shortcut.norm", b.d_out)
                h = h_out
            if net.layer_scale:
                layers.append(Layer(name, f"block{j}.layer_scale", b.d_out, 0, (b.d_out, h, h)))

    # head
    f = shapes.num_features
    h = 1
    if net.head_norm:
        add_norm("head", "norm", f)
    if num_classes > 0:
        layers.append(Layer("head", "fc", f * num_classes + num_classes, f * num_classes, (num_classes, 1, 1)))
    return Complexity(img_size, tuple(layers))
