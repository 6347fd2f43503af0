"""Paper 2.3, ResNeXt-ify: depthwise convolution, then more width with the FLOPs it saved."""

from __future__ import annotations

from steps.step import Section, Step, net_edit, widen

RESNEXTIFY = Section("resnextify", "2.3", "ResNeXt-ify")

WIDTH_FACTOR = 1.5  # base width 64 -> 96, Swin-T's channel count


depthwise_conv = Step(
    name="depthwise_conv",
    section=RESNEXTIFY,
    summary="the 3x3 conv becomes depthwise (groups = channels); widths stay 64..512",
    rationale="depthwise conv mixes only space, like the weighted sum of self-attention",
    paper_top1=78.28,
    paper_gflops=2.35,
    edit=net_edit(group_width=1),
)

resnext_width = Step(
    name="resnext_width",
    section=RESNEXTIFY,
    summary="base width 64 -> 96: stem 96, bottleneck widths 96..768, block outputs 384..3072",
    rationale="spend the FLOPs depthwise conv saved on width, as ResNeXt does",
    paper_top1=80.50,
    paper_gflops=5.27,
    edit=widen(WIDTH_FACTOR),
)


STEPS: tuple[Step, ...] = (depthwise_conv, resnext_width)
"""This section's steps, in Figure 2's order."""
