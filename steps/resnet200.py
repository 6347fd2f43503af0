"""The paper's ResNet-200 regime (Appendix C, Table 11): the same steps from ResNet-200 to ConvNeXt-B.

Two edits differ from the ResNet-50 regime: the stage-ratio step also widens the base width 64 -> 84, and
ResNeXt-ify widens 84 -> 128 (ConvNeXt-B's width). Every other step is the same transform; the paper's
numbers are this regime's. Table 11 prints no GFLOPs for GELU, fewer activations, fewer norms and LayerNorm.
"""

from __future__ import annotations

import dataclasses

from steps import inverted, kernel, macro, micro, resnextify, training
from steps.step import Section, Step, widen

START = Section("resnet200", "2", "Starting point")


def _r200(step: Step, top1: float, gflops: float | None, **changes) -> Step:
    return dataclasses.replace(step, paper_top1=top1, paper_gflops=gflops, footnote="", **changes)


resnet200 = Step(
    name="resnet200",
    section=START,
    summary="ResNet-200 v1.5 (blocks 3, 24, 36, 3), original 90-epoch recipe",
    rationale="the larger baseline of the paper's Appendix C",
    paper_top1=78.20,
    paper_gflops=15.01,
    edit=lambda design: design,
)

ROADMAP: tuple[Step, ...] = (
    resnet200,
    _r200(training.training_recipe, 81.14, 15.01,
          edit=lambda d, e=training.training_recipe.edit: _with_drop_path(e(d), 0.5),
          summary=training.training_recipe.summary.replace("stochastic depth 0.1", "stochastic depth 0.5")),
    _r200(macro.stage_ratio, 81.33, 14.52, edit=widen(84 / 64, depths=(3, 3, 27, 3)),
          summary="blocks (3, 24, 36, 3) -> (3, 3, 27, 3) and base width 64 -> 84"),
    _r200(macro.patchify_stem, 81.59, 14.38),
    _r200(resnextify.depthwise_conv, 80.54, 7.23,
          summary="the 3x3 conv becomes depthwise (groups = channels); widths stay 84..672"),
    _r200(resnextify.resnext_width, 81.85, 16.76, edit=widen(128 / 84),
          summary="base width 84 -> 128: stem 128, bottleneck widths 128..1024, block outputs 512..4096"),
    _r200(inverted.inverted_bottleneck, 82.64, 15.68,
          summary="block becomes 1x1 C->4C, kxk on 4C, 1x1 4C->C with C = 128..1024"),
    _r200(kernel.move_up_dwconv, 82.04, 14.63),
    _r200(kernel.kernel_5, 82.32, 14.70),
    _r200(kernel.large_kernel, 82.30, 14.81),
    _r200(kernel.kernel_9, 82.27, 14.95),
    _r200(kernel.kernel_11, 82.18, 15.13),
    _r200(micro.gelu, 82.19, None),
    _r200(micro.fewer_activations, 82.71, None),
    _r200(micro.fewer_norms, 83.17, None),
    _r200(micro.layer_norm, 83.35, None),
    _r200(micro.separate_downsampling, 83.60, 15.35,
          summary="LN + 2x2/2 conv between stages, LN after the global pool, layer scale 1e-6: ConvNeXt-B"),
)
"""Table 11's rows in Figure 2's order."""

ALIASES = {"convnext_base": "separate_downsampling"}


def _with_drop_path(design, rate: float):
    # The recipe of this regime's B-sized models has stochastic depth 0.5 (paper Table 5); it adds no FLOP
    return dataclasses.replace(design, net=dataclasses.replace(design.net, drop_path_rate=rate))


