"""One builder for every point of the design space: `build_model(spec_or_design) -> nn.Module`.

It builds what the layer plan (`roadmap.layers.plan`) lists, one module per `LayerSpec` from `BUILDERS`, and
decides nothing about the architecture itself. Module names (what a state_dict shows):

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
from collections.abc import Callable

import torch
from timm.layers import DropPath, LayerNorm2d, LayerScale2d, trunc_normal_
from torch import nn

from roadmap.choices import Act, Init, Norm
from roadmap.design import Design
from roadmap.errors import RoadmapError, unknown
from roadmap.layers import BlockPlan, Kind, LayerSpec, Layout, StagePlan, classifier, plan
from roadmap.network import Network


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


def make_norm(spec: LayerSpec) -> nn.Module:
    """BatchNorm (torchvision's eps) or LayerNorm over channels (eps 1e-6, timm's LayerNorm2d on NCHW), over the
    channel axis of the spec's layout."""
    last = spec.layout is Layout.LAST
    if spec.fn == Norm.BATCH:
        return BatchNormLast(spec.c_out) if last else nn.BatchNorm2d(spec.c_out)
    return nn.LayerNorm(spec.c_out, eps=1e-6) if last else LayerNorm2d(spec.c_out, eps=1e-6)


def make_act(spec: LayerSpec) -> nn.Module:
    # In-place ReLU as in torchvision: it saves memory and never aliases a tensor that is needed later here.
    if spec.fn == Act.RELU:
        return nn.ReLU(inplace=True)
    if spec.fn == Act.GELU:
        return nn.GELU()
    raise unknown("activation", spec.fn, list(Act))


BUILDERS: dict[str, Callable[[LayerSpec], nn.Module]] = {
    Kind.CONV: lambda s: nn.Conv2d(s.c_in, s.c_out, s.kernel, s.stride, s.padding, groups=s.groups, bias=s.bias),
    Kind.LINEAR: lambda s: nn.Linear(s.c_in, s.c_out, bias=s.bias),
    Kind.NORM: make_norm,
    Kind.ACT: make_act,
    Kind.MAX_POOL: lambda s: nn.MaxPool2d(s.kernel, s.stride, s.padding),
    Kind.GLOBAL_POOL: lambda s: nn.AdaptiveAvgPool2d(1),
    Kind.LAYER_SCALE: lambda s: LayerScale2d(s.c_out, s.value),
    Kind.DROP_PATH: lambda s: DropPath(s.value),
    Kind.PERMUTE: lambda s: ChannelsLast() if s.layout is Layout.LAST else ChannelsFirst(),
}
"""The module of each kind of layer in `roadmap.layers.KINDS` (which holds its cost); a new kind is one entry in
each."""


def build_layer(spec: LayerSpec | None) -> nn.Module:
    """The module a spec describes; `nn.Identity` for an absent (None) one."""
    if spec is None:
        return nn.Identity()
    if spec.kind not in BUILDERS:
        raise unknown("layer kind", spec.kind, BUILDERS)
    return BUILDERS[spec.kind](spec)


def build_layers(specs: tuple[LayerSpec, ...]) -> OrderedDict[str, nn.Module]:
    """The modules of `specs`, by their names within their parent."""
    return OrderedDict((spec.leaf, build_layer(spec)) for spec in specs)


class Stem(nn.Sequential):
    """conv + norm [+ act] [+ max-pool]: ResNet's 7x7/2 stem or a patchify conv (paper 2.2)."""

    def __init__(self, specs: tuple[LayerSpec, ...]):
        super().__init__(build_layers(specs))


class Shortcut(nn.Sequential):
    """ResNet's projection shortcut: 1x1 conv with the block's stride, then a norm."""

    def __init__(self, specs: tuple[LayerSpec, ...]):
        super().__init__(build_layers(specs))


class Block(nn.Module):
    """A residual block as its plan says (`roadmap.layers.branch_plan`): the branch's convs, norms and activations
    in order, optional layer scale and stochastic depth, then the shortcut sum and its activation."""

    def __init__(self, block: BlockPlan):
        super().__init__()
        self.branch = nn.Sequential(build_layers(block.branch))
        self.layer_scale = build_layer(block.layer_scale)
        self.drop_path = build_layer(block.drop_path)
        self.shortcut = Shortcut(block.shortcut) if block.shortcut else nn.Identity()
        self.act = build_layer(block.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop_path(self.layer_scale(self.branch(x))) + self.shortcut(x))


class Stage(nn.Module):
    """[Separate downsampling: norm, 2x2/2 conv (paper 2.6)] then the blocks."""

    def __init__(self, stage: StagePlan):
        super().__init__()
        blocks = [Block(b) for b in stage.blocks]  # built before the downsampling layers, as ever: same RNG draws
        self.downsample = nn.Sequential(build_layers(stage.downsample)) if stage.downsample else nn.Identity()
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class Head(nn.Module):
    """Global average pool [+ norm] + linear classifier."""

    def __init__(self, specs: tuple[LayerSpec, ...]):
        super().__init__()
        layers = build_layers(specs)
        self.pool = layers["pool"]
        self.norm = layers.get("norm", nn.Identity())
        self.fc = layers.get("fc", nn.Identity())

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.norm(self.pool(x)).flatten(1)
        return x if pre_logits else self.fc(x)


class RoadmapNet(nn.Module):
    """Any network of the roadmap's design space. `design` is kept on the module for reference."""

    def __init__(self, net: Network, num_classes: int = 1000, in_chans: int = 3):
        super().__init__()
        self.network = net
        self.num_classes = num_classes
        layers = plan(net, num_classes, in_chans)
        self.num_features = layers.num_features
        self.stem = Stem(layers.stem)
        self.stages = nn.Sequential(*[Stage(stage) for stage in layers.stages])
        self.head = Head(layers.head)
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
        self.head.fc = build_layer(classifier(self.num_features, num_classes))


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
    if changes:
        names = {f.name for f in dataclasses.fields(Network)}
        for key in changes:
            if key not in names:
                raise unknown("Network field", key, names)
        net = dataclasses.replace(net, **changes)
    return RoadmapNet(net, num_classes=num_classes, in_chans=in_chans)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


