"""Size adaptations that compose with every step: smaller networks for CPUs and small images.

They are not steps of the paper. They set multipliers and the stem stride, which every step keeps, so
`scaled(design_at("stage_ratio"), width=0.25, depth=1/3)` is the stage-ratio model at a quarter width
with depths (1, 1, 3, 1): each step keeps its character at any size.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from roadmap.design import Design


def scaled(design: Design, width: float = 1.0, depth: float = 1.0) -> Design:
    """Multiply every width (rounded to a multiple of 8) and every stage depth (at least 1 block)."""
    net = dataclasses.replace(
        design.net, width_mult=design.net.width_mult * width, depth_mult=design.net.depth_mult * depth
    )
    return dataclasses.replace(design, net=net)


def low_resolution(design: Design, stem_stride: int = 1) -> Design:
    """Adapt the stem to 28-64 px images: total stem stride 1 or 2 instead of 4.

    A patchify stem becomes a 1x1 or 2x2 patch; a ResNet stem becomes a 3x3/1 conv (stride 1) or a
    7x7/2 conv without max-pool (stride 2). On 64 px CIFAR-10 a public ConvNeXt found patch size 1
    best; patch 2 and 4 cost about 6 and 12 points.
    """
    return dataclasses.replace(design, net=dataclasses.replace(design.net, stem_stride=stem_stride))
