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

`RoadmapNet` is a timm model as timm's convnext is one: `feature_info`, `forward_intermediates`,
`prune_intermediate_layers`, the classifier methods and grad checkpointing; `forward` traces with torch.fx and
scripts with TorchScript (no control flow on tensors, no `super().forward`). So this module keeps real annotations
(no `from __future__ import annotations`): FX copies them into the code it generates, which TorchScript compiles.
"""

import dataclasses
import math
from collections import OrderedDict
from collections.abc import Callable

import torch
import torch.nn.functional as F
from timm.layers import AdaptiveAvgMaxPool2d, DropPath, LayerNorm2d, LayerScale2d, trunc_normal_
from timm.models import checkpoint_seq
from timm.models._features import feature_take_indices
from torch import nn

from roadmap.design import Design
from roadmap.enums import Act, Init, Norm
from roadmap.errors import RoadmapError, unknown
from roadmap.layers import BlockPlan, Kind, LayerSpec, Layout, Plan, StagePlan, classifier, plan
from roadmap.network import Network


class ChannelsLast(nn.Module):
    """NCHW -> NHWC view: the 1x1 convs after a leading kxk conv run as Linear layers on channels-last tensors."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)


class ChannelsFirst(nn.Module):
    """NHWC -> NCHW view (the memory stays channels-last)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2)


def count_batch(x: torch.Tensor, counter: torch.Tensor) -> torch.Tensor:
    """`counter += 1`, then `x`: BatchNorm's batch count, as a call torch.fx records (see `torch.fx.wrap` below)."""
    counter.add_(1)
    return x


torch.fx.wrap("count_batch")  # a node in traced graphs, so a traced model counts its batches as the module does


class BatchNormLast(nn.BatchNorm1d):
    """BatchNorm over the last dimension of an NHWC tensor (same parameters and buffers as BatchNorm2d).

    `BatchNorm1d.forward` on the (N*H*W, C) view, written out: the same `F.batch_norm` call, without its input-dim
    check (control flow on the input, which torch.fx cannot trace) and without `super().forward` (which TorchScript
    cannot compile)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            x = count_batch(x, self.num_batches_tracked)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        keep = not self.training or self.track_running_stats  # buffers are read or updated, else left alone
        out = F.batch_norm(x.reshape(-1, x.shape[-1]), self.running_mean if keep else None,
                           self.running_var if keep else None, self.weight, self.bias, use_batch_stats, factor,
                           self.eps)
        return out.view(x.shape)


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
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)


GLOBAL_POOLS: dict[str, Callable[[], nn.Module]] = {
    "avg": lambda: nn.AdaptiveAvgPool2d(1),  # the plan's (and the paper's) global average pool
    "max": lambda: nn.AdaptiveMaxPool2d(1),
    "avgmax": lambda: AdaptiveAvgMaxPool2d(1),
    "": nn.Identity,  # no pooling: the head keeps the spatial map (timm's `global_pool=""`)
}
"""The head's pooling by timm's `global_pool` name (those that keep the channel count, so the head's norm fits)."""


def make_pool(global_pool: str) -> nn.Module:
    if global_pool not in GLOBAL_POOLS:
        raise unknown("global_pool", global_pool, GLOBAL_POOLS)
    return GLOBAL_POOLS[global_pool]()


class Head(nn.Module):
    """Global pool [+ norm] + linear classifier. Without pooling (`global_pool=""`) the norm applies to every
    position and the output keeps its spatial map, as timm's ConvNeXt head does."""

    def __init__(self, specs: tuple[LayerSpec, ...], global_pool: str = "avg"):
        super().__init__()
        layers = build_layers(specs)
        self.pool = layers["pool"] if global_pool == "avg" else make_pool(global_pool)
        self.norm = layers.get("norm", nn.Identity())
        self.fc = layers.get("fc", nn.Identity())
        self.flatten = bool(global_pool)

    def set_pool(self, global_pool: str) -> None:
        self.pool = make_pool(global_pool)
        self.flatten = bool(global_pool)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.norm(self.pool(x))
        if self.flatten:
            x = x.flatten(1)
        return x if pre_logits else self.fc(x)


def feature_info(layers: Plan) -> list[dict]:
    """timm's `feature_info` from the plan: each stage's output channels, its stride from the input (the strides of
    the stem, the separate downsampling and the blocks) and its module name."""
    reduction = math.prod(spec.stride for spec in layers.stem)
    info = []
    for i, stage in enumerate(layers.stages):
        reduction *= math.prod(spec.stride for spec in stage.downsample) * math.prod(b.stride for b in stage.blocks)
        info.append(dict(num_chs=stage.blocks[-1].d_out, reduction=reduction, module=f"stages.{i}"))
    return info


def check_pool(num_classes: int, pooled: bool) -> None:
    if not pooled and num_classes > 0:
        raise RoadmapError(f"global_pool='' keeps the spatial map and needs num_classes=0, not {num_classes}")


class RoadmapNet(nn.Module):
    """Any network of the roadmap's design space. `network` is kept on the module for reference.

    `global_pool` is timm's: "avg" (the plan's), "max", "avgmax", or "" (no pooling: with `num_classes=0`, `forward`
    returns the normed spatial map)."""

    def __init__(self, net: Network, num_classes: int = 1000, in_chans: int = 3, global_pool: str = "avg"):
        super().__init__()
        check_pool(num_classes, bool(global_pool))
        self.network = net
        self.num_classes = num_classes
        self.in_chans = in_chans
        layers = plan(net, num_classes, in_chans)
        self.num_features = self.head_hidden_size = layers.num_features
        self.feature_info = feature_info(layers)
        self.stem = Stem(layers.stem)
        self.stages = nn.Sequential(*[Stage(stage) for stage in layers.stages])
        self.head = Head(layers.head, global_pool)
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

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: int | list[int] | None = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = "NCHW",
            intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Each stage's output, as timm's ConvNeXt gives them: `indices` the last n stages (int), these stages
        (list) or all (None); `stop_early` skips the stages after the last one taken; `intermediates_only` returns
        only the list, else (final features, list). `norm` changes nothing: the head's norm comes after its pooling,
        as in ConvNeXt, so there is no norm between the stages and the head (timm's convnext: `norm_pre` Identity)."""
        if output_fmt != "NCHW":
            raise RoadmapError(f"output_fmt must be 'NCHW', not {output_fmt!r}")
        intermediates = []
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        x = self.stem(x)
        stages = self.stages if torch.jit.is_scripting() or not stop_early else self.stages[:max_index + 1]
        for i, stage in enumerate(stages):
            x = stage(x)
            if i in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
            self,
            indices: int | list[int] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> list[int]:
        """Drop the stages after the last of `indices` (and the classifier, with `prune_head` or when stages go);
        returns the indices taken. `prune_norm` has no norm to drop (see `forward_intermediates`)."""
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        prune_end = max_index < len(self.stages) - 1
        self.stages = self.stages[:max_index + 1]
        if prune_end:  # the head was sized for the last stage's features
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
        if prune_head or prune_end:
            self.reset_classifier(0, "", reset_other=True)
        return take_indices

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

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage's blocks in the backward pass (timm's `checkpoint_seq`): same outputs, less memory."""
        for stage in self.stages:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None, reset_other: bool = False) -> None:
        """A new classifier for `num_classes` (0: none); `global_pool` replaces the pooling ("": none, keep the
        spatial map); `reset_other` also drops the head's norm (as timm's ConvNeXt head does)."""
        check_pool(num_classes, self.head.flatten if global_pool is None else bool(global_pool))
        self.num_classes = num_classes
        if global_pool is not None:
            self.head.set_pool(global_pool)
        if reset_other:
            self.head.norm = nn.Identity()
        weight = self.stem.conv.weight  # the new classifier on the model's device, in its dtype
        self.head.fc = build_layer(classifier(self.num_features, num_classes)).to(weight.device, weight.dtype)


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
    return RoadmapNet(network_with(spec, **changes), num_classes=num_classes, in_chans=in_chans)


def network_with(spec: str | Design | Network, **changes) -> Network:
    """`to_network(spec)` with `changes` to its fields (a clear error for a field `Network` does not have)."""
    net = to_network(spec)
    if changes:
        names = {f.name for f in dataclasses.fields(Network)}
        for key in changes:
            if key not in names:
                raise unknown("Network field", key, names)
        net = dataclasses.replace(net, **changes)
    return net


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


