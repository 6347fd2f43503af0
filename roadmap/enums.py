"""The named choices of the design space: the enums a `Network` and a `Recipe` are made of.

Each value is the string users type (`--set norm=layer`) and JSON stores. No torch, no other module of the
package: everything else builds on these.
"""

from __future__ import annotations

import enum


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
