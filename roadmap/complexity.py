"""Parameters and FLOPs of any design at any input size, counted from its layer plan alone.

FLOPs follow the paper's convention: multiply-accumulates of conv and linear layers (1 MAC = 1 FLOP);
norms, activations, pooling and additions are not counted. This is the convention of torchvision's
`_ops` metadata (ResNet-50 4.089, ConvNeXt-T 4.456). fvcore's default counter also counts norms and
gives slightly more. The tests check these counts against torch's FLOP counter on built modules.

Each layer's cost is its kind's (`roadmap.layers.KINDS`); this module only walks the plan and tracks the
resolution. No torch here: a table of every step at any resolution is instant.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from roadmap.errors import RoadmapError
from roadmap.layers import LayerSpec, kind_of, plan
from roadmap.network import Network


@dataclass(frozen=True)
class Layer:
    """One counted layer: where it is, what it is, what it costs."""

    stage: str  # "stem", "stage1".."stage4", "head"
    name: str  # the layer's module name in the built model (see `roadmap.layers`)
    params: int
    macs: int
    out_shape: tuple[int, int, int]  # (C, H, W) after the layer


@dataclass(frozen=True)
class LayerCounts:
    """A network's counted layers (see `count`); config.json records the totals as `roadmap.schema.Complexity`."""

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


def count(net: Network, img_size: int = 224, num_classes: int = 1000, in_chans: int = 3) -> LayerCounts:
    """Parameters and MACs of `net` on `img_size` x `img_size` inputs, layer by layer."""
    p = plan(net, num_classes, in_chans)
    out: list[Layer] = []

    def walk(stage: str, specs: Iterable[LayerSpec], h: int) -> int:
        for spec in specs:
            kind = kind_of(spec)
            h = kind.out_size(spec, h)
            if h < 1:
                raise RoadmapError(f"{img_size} px images are too small for this network: the feature map vanishes "
                                   f"at {stage} ({_short(spec.name)}); use larger images or a smaller stem stride")
            params, macs = kind.cost(spec, h)
            out.append(Layer(stage, spec.name, params, macs, (spec.c_out, h, h)))
        return h

    h = walk("stem", p.stem, img_size)
    for i, stage in enumerate(p.stages, start=1):
        h = walk(f"stage{i}", stage.downsample, h)
        for block in stage.blocks:
            h_in, h = h, walk(f"stage{i}", block.branch, h)
            walk(f"stage{i}", [x for x in (block.layer_scale, block.drop_path) if x], h)
            walk(f"stage{i}", block.shortcut, h_in)  # the shortcut sees the block's input
            walk(f"stage{i}", [block.act] if block.act else [], h)
    walk("head", p.head, h)
    return LayerCounts(img_size, tuple(out))


def _short(name: str) -> str:
    """"stages.1.blocks.0.branch.conv_spatial" -> "block0.conv_spatial" (the name within its stage)."""
    parts = name.split(".")
    if parts[0] == "stem" or parts[0] == "head":
        return ".".join(parts[1:])
    rest = parts[2:]
    if rest[0] == "blocks":
        rest = [f"block{rest[1]}"] + [x for x in rest[2:] if x != "branch"]
    return ".".join(rest)
