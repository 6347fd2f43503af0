"""Paper 2.6, micro design: activations, norms and downsampling the Transformer way."""

from __future__ import annotations

from steps.step import Section, Step, net_edit

MICRO = Section("micro_design", "2.6", "Micro design")

gelu = Step(
    name="gelu",
    section=MICRO,
    summary="every ReLU becomes GELU",
    rationale="the activation of BERT, GPT-2 and ViT; accuracy stays the same",
    paper_top1=80.62,
    paper_gflops=4.15,
    edit=net_edit(act="gelu"),
)

fewer_activations = Step(
    name="fewer_activations",
    section=MICRO,
    summary="one activation per block, between the two 1x1 convs (none after the sum, none in the stem)",
    rationale="a Transformer block has a single activation, in its MLP",
    paper_top1=81.27,
    paper_gflops=4.15,
    edit=net_edit(act_after=("pw1",), stem_act=False),
)

fewer_norms = Step(
    name="fewer_norms",
    section=MICRO,
    summary="one norm per block, after the kxk conv (before the 1x1 convs)",
    rationale="a Transformer block has few norms; one before the 1x1 convs is enough",
    paper_top1=81.41,
    paper_gflops=4.15,
    edit=net_edit(norm_after=("spatial",)),
)

layer_norm = Step(
    name="layer_norm",
    section=MICRO,
    summary="every BatchNorm becomes LayerNorm over channels (eps 1e-6)",
    rationale="simpler than BN and, once the rest is modern, no worse",
    paper_top1=81.47,
    paper_gflops=4.46,
    edit=net_edit(norm="layer"),
    footnote="The paper prints 4.46 GFLOPs here (its Figure 2 shows 4.2). Swapping BN for LN adds no "
    "multiply-accumulate: the architecture counts 4.15, which we report.",
)

separate_downsampling = Step(
    name="separate_downsampling",
    section=MICRO,
    summary="LN + 2x2/2 conv between stages, LN after the global pool, layer scale 1e-6: ConvNeXt-T",
    rationale="Swin-style downsampling layers, with a norm wherever the resolution changes for stability",
    paper_top1=81.97,
    paper_gflops=4.49,
    edit=net_edit(downsample="separate", head_norm=True, layer_scale=1e-6),
    footnote="ConvNeXt-T counts 4.456 GFLOPs (torchvision's metadata says 4.456 too); the paper prints 4.49 "
    "here and 4.5 in its main table. We report the count.",
)


STEPS: tuple[Step, ...] = (gelu, fewer_activations, fewer_norms, layer_norm, separate_downsampling)
"""This section's steps, in Figure 2's order."""
