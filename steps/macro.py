"""Paper 2.2, macro design: Swin-T's stage compute ratio and a patchify stem."""

from __future__ import annotations

from steps.step import Section, Step, net_edit

MACRO = Section("macro_design", "2.2", "Macro design")

stage_ratio = Step(
    name="stage_ratio",
    section=MACRO,
    summary="blocks per stage (3, 4, 6, 3) -> (3, 3, 9, 3)",
    rationale="match Swin-T's 1:1:3:1 stage compute ratio",
    paper_top1=79.36,
    paper_gflops=4.53,
    edit=net_edit(depths=(3, 3, 9, 3)),
)

patchify_stem = Step(
    name="patchify_stem",
    section=MACRO,
    summary="7x7/2 conv + 3x3/2 max-pool -> 4x4 conv with stride 4 (the stem keeps its norm and activation)",
    rationale="a non-overlapping 'patchify' stem like ViT's and Swin's",
    paper_top1=79.51,
    paper_gflops=4.42,
    edit=net_edit(stem="patchify"),
)


STEPS: tuple[Step, ...] = (stage_ratio, patchify_stem)
"""This section's steps, in Figure 2's order."""
