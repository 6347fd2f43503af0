"""One builder for every point of the design space: `build_model(spec_or_design) -> nn.Module`.

Module names (what a state_dict shows):

    stem.conv, stem.norm[, stem.act, stem.pool]
    stages.{i}.downsample.norm, stages.{i}.downsample.conv          (separate downsampling only)
    stages.{i}.blocks.{j}.branch.conv_{site}, .norm_{site}, .act_{site}   in the block's order
    stages.{i}.blocks.{j}.shortcut.conv, .shortcut.norm             (when the shape changes)
    stages.{i}.blocks.{j}.layer_scale.gamma                         (when layer_scale is set)
    head.norm, head.fc

`roadmap.weights` maps torchvision's and timm's names onto these.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

import torch
from timm.layers import DropPath, LayerNorm2d, LayerScale2d, trunc_normal_
from torch import nn

from roadmap.design import Act, BlockShape, Design, Init, Network, Norm, Site, SpatialPosition
from roadmap.design import Stem as StemKind
from roadmap.errors import RoadmapError, unknown

_ACTS: dict[Act, type[nn.Module]] = {Act.RELU: nn.ReLU, Act.GELU: nn.GELU}


def make_norm(kind: Norm, channels: int) -> nn.Module:
    """BatchNorm2d (torchvision's eps) or a LayerNorm over channels (timm's LayerNorm2d, eps 1e-6)."""
    if kind is Norm.BATCH:
        return nn.BatchNorm2d(channels)
    return LayerNorm2d(channels, eps=1e-6)


def make_act(kind: Act) -> nn.Module:
    # In-place ReLU as in torchvision: it saves memory and never aliases a tensor that is needed later here.
    return nn.ReLU(inplace=True) if kind is Act.RELU else _ACTS[kind]()


def conv(c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1, padding: int | None = None,
         bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, stride, k // 2 if padding is None else padding, groups=groups, bias=bias)


def _conv_bias(net: Network, has_bn_after: bool) -> bool:
    # A conv followed by BatchNorm has no bias (the norm's shift replaces it), as in ResNet; every other conv
    # has one, as in ConvNeXt.
    return not (has_bn_after and net.norm is Norm.BATCH)


class Stem(nn.Sequential):
    """conv [+ max-pool] + norm [+ act]: ResNet's 7x7/2 stem or a patchify conv (paper 2.2)."""

    def __init__(self, net: Network, in_chans: int, width: int):
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        s = net.stem_stride
        if net.stem is StemKind.PATCHIFY:
            layers["conv"] = conv(in_chans, width, s, s, padding=0, bias=_conv_bias(net, True))
        else:
            k, stride = (7, 2) if s >= 2 else (3, 1)
            layers["conv"] = conv(in_chans, width, k, stride, bias=_conv_bias(net, True))
        layers["norm"] = make_norm(net.norm, width)
        if net.stem_act:
            layers["act"] = make_act(net.act)
        if net.stem is StemKind.RESNET and s == 4:
            layers["pool"] = nn.MaxPool2d(3, 2, 1)
        super().__init__(layers)


class Shortcut(nn.Sequential):
    """ResNet's projection shortcut: 1x1 conv with the block's stride, then a norm."""

    def __init__(self, net: Network, shape: BlockShape):
        super().__init__(OrderedDict(
            conv=conv(shape.d_in, shape.d_out, 1, shape.stride, bias=_conv_bias(net, True)),
            norm=make_norm(net.norm, shape.d_out),
        ))


class ChannelsLast(nn.Module):
    """NCHW -> NHWC view: the 1x1 convs after a leading kxk conv run as Linear layers on channels-last tensors."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)


class ChannelsFirst(nn.Module):
    """NHWC -> NCHW view (the memory stays channels-last)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2)


class BatchNormLast(nn.BatchNorm1d):
    """BatchNorm over the last dimension of an NHWC tensor (same parameters and buffers as BatchNorm2d)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).view(x.shape)


class SyncBatchNormLast(nn.SyncBatchNorm):
    """`BatchNormLast` with statistics synchronized over the processes of data-parallel training: SyncBatchNorm over
    the last dimension of an NHWC tensor (same parameters and buffers, so checkpoints load either way)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).view(x.shape)


def convert_sync_batchnorm(module: nn.Module, process_group=None) -> nn.Module:
    """torch's `SyncBatchNorm.convert_sync_batchnorm`, keeping the channels-last norm: a `BatchNormLast` becomes a
    `SyncBatchNormLast` (torch's conversion would turn it into a plain SyncBatchNorm, which normalizes the wrong
    axis of its NHWC input), every other BatchNorm a SyncBatchNorm."""
    if isinstance(module, BatchNormLast):
        out = SyncBatchNormLast(module.num_features, module.eps, module.momentum, module.affine,
                                module.track_running_stats, process_group)
        out.load_state_dict(module.state_dict())
        out.to(device=module.running_mean.device if module.running_mean is not None else None)
        out.train(module.training)
        return out
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, nn.SyncBatchNorm):
        return nn.SyncBatchNorm.convert_sync_batchnorm(module, process_group)
    for name, child in module.named_children():
        new = convert_sync_batchnorm(child, process_group)
        if new is not child:
            module.add_module(name, new)
    return module


def make_norm_last(kind: Norm, channels: int) -> nn.Module:
    return BatchNormLast(channels) if kind is Norm.BATCH else nn.LayerNorm(channels, eps=1e-6)


class Block(nn.Module):
    """A residual block: three convs (kxk, 1x1, 1x1) in the design's order, norms and activations where the
    design puts them, optional layer scale and stochastic depth, then the shortcut sum.

    When the kxk conv comes first (paper 2.5), everything after it is pointwise and runs channels-last, the 1x1
    convs as Linear layers, as in ConvNeXt's own code: the same computation, laid out for speed."""

    def __init__(self, net: Network, shape: BlockShape, drop_path: float):
        super().__init__()
        first = net.spatial_position is SpatialPosition.FIRST
        c_spatial = shape.spatial_channels
        groups = 1 if net.group_width is None else c_spatial // net.group_width
        layers: OrderedDict[str, nn.Module] = OrderedDict()

        def add(site: Site, make_layer, channels: int, last: bool) -> None:
            has_norm = site in net.norm_after
            layers[f"conv_{site}"] = make_layer(_conv_bias(net, has_norm))
            if has_norm:
                layers[f"norm_{site}"] = (make_norm_last if last else make_norm)(net.norm, channels)
            if site in net.act_after:
                layers[f"act_{site}"] = make_act(net.act)

        spatial = lambda bias: conv(c_spatial, c_spatial, net.kernel_size, shape.stride, groups, bias=bias)
        if first:
            layers["conv_spatial"] = spatial(_conv_bias(net, Site.SPATIAL in net.norm_after))
            layers["to_channels_last"] = ChannelsLast()
            if Site.SPATIAL in net.norm_after:
                layers["norm_spatial"] = make_norm_last(net.norm, c_spatial)
            if Site.SPATIAL in net.act_after:
                layers["act_spatial"] = make_act(net.act)
            add(Site.PW1, lambda bias: nn.Linear(shape.d_in, shape.mid, bias=bias), shape.mid, last=True)
            add(Site.PW2, lambda bias: nn.Linear(shape.mid, shape.d_out, bias=bias), shape.d_out, last=True)
            layers["to_channels_first"] = ChannelsFirst()
        else:
            add(Site.PW1, lambda bias: conv(shape.d_in, shape.mid, 1, bias=bias), shape.mid, last=False)
            add(Site.SPATIAL, spatial, c_spatial, last=False)
            add(Site.PW2, lambda bias: conv(shape.mid, shape.d_out, 1, bias=bias), shape.d_out, last=False)
        self.branch = nn.Sequential(layers)
        self.layer_scale = LayerScale2d(shape.d_out, net.layer_scale) if net.layer_scale else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.shortcut = Shortcut(net, shape) if shape.projects else nn.Identity()
        self.act = make_act(net.act) if Site.ADD in net.act_after else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop_path(self.layer_scale(self.branch(x))) + self.shortcut(x))


class Stage(nn.Module):
    def __init__(self, net: Network, downsample: tuple[int, int] | None, blocks: list[Block]):
        super().__init__()
        if downsample is not None:  # paper 2.6: norm, then 2x2/2 conv
            d_in, d_out = downsample
            self.downsample = nn.Sequential(OrderedDict(
                norm=make_norm(net.norm, d_in), conv=conv(d_in, d_out, 2, 2, padding=0)
            ))
        else:
            self.downsample = nn.Identity()
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class Head(nn.Module):
    """Global average pool [+ norm] + linear classifier."""

    def __init__(self, net: Network, num_features: int, num_classes: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.norm = make_norm(net.norm, num_features) if net.head_norm else nn.Identity()
        self.fc = nn.Linear(num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.norm(self.pool(x)).flatten(1)
        return x if pre_logits else self.fc(x)


class RoadmapNet(nn.Module):
    """Any network of the roadmap's design space. `design` is kept on the module for reference."""

    def __init__(self, net: Network, num_classes: int = 1000, in_chans: int = 3):
        super().__init__()
        self.network = net
        self.num_classes = num_classes
        shapes = net.resolved()
        self.num_features = shapes.num_features
        self.stem = Stem(net, in_chans, shapes.stem_width)
        rates = iter(shapes.drop_path)
        self.stages = nn.Sequential(*[
            Stage(net, st.downsample, [Block(net, b, next(rates)) for b in st.blocks]) for st in shapes.stages
        ])
        self.head = Head(net, self.num_features, num_classes)
        self.init_weights()

    def init_weights(self) -> None:
        """torchvision's ResNet init or ConvNeXt's trunc-normal init, then the head scale.

        The blocks' Linear layers are 1x1 convs laid out channels-last and are initialized as such; only the
        classifier keeps nn.Linear's own default under the ResNet init, as torchvision does."""
        net = self.network
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                if net.init is Init.TRUNC_NORMAL:
                    trunc_normal_(m.weight, std=0.02)
                elif m is self.head.fc:
                    m.reset_parameters()
                    continue
                else:
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d, nn.LayerNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if isinstance(self.head.fc, nn.Linear) and net.head_init_scale != 1.0:
            with torch.no_grad():
                self.head.fc.weight.mul_(net.head_init_scale)
                self.head.fc.bias.mul_(net.head_init_scale)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    # timm-style helpers, so timm's scripts and fine-tuning code can use these models
    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        """Parameter groups for timm's layer-wise lr decay: stem first, then each block (or stage), head last."""
        return {
            "stem": r"^stem",
            "blocks": r"^stages\.(\d+)" if coarse else [
                (r"^stages\.(\d+)\.downsample", (0,)),
                (r"^stages\.(\d+)\.blocks\.(\d+)", None),
            ],
        }

    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.head.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()


def to_network(spec: str | Design | Network) -> Network:
    """A `Network` from a step name or spec (see `steps.parse_spec`), a `Design` or a `Network`."""
    if isinstance(spec, Network):
        return spec
    if isinstance(spec, Design):
        return spec.net
    if isinstance(spec, str):
        from steps import design_for

        return design_for(spec).net
    raise RoadmapError(f"build_model takes a step name, a Design or a Network, not {type(spec).__name__}")


def build_model(spec: str | Design | Network, num_classes: int = 1000, in_chans: int = 3, **changes) -> RoadmapNet:
    """The `nn.Module` of a step (name or spec), `Design` or `Network`.

    `changes` set network fields first, e.g. `build_model("gelu", 10, width_mult=0.25, drop_path_rate=0.1)`.
    """
    net = to_network(spec)
    if num_classes < 0 or in_chans < 1:
        raise RoadmapError(f"num_classes must be >= 0 and in_chans >= 1, got {num_classes} and {in_chans}")
    if changes:
        names = {f.name for f in dataclasses.fields(Network)}
        for key in changes:
            if key not in names:
                raise unknown("Network field", key, names)
        net = dataclasses.replace(net, **changes)
    return RoadmapNet(net, num_classes=num_classes, in_chans=in_chans)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


