"""Paper 2.1, training techniques: the start of the roadmap and the modern recipe."""

from __future__ import annotations

import dataclasses

from roadmap.design import Design
from roadmap.enums import Init
from roadmap.recipe import MODERN_RECIPE
from steps.step import Section, Step

START = Section("resnet50", "2", "Starting point")
TRAINING = Section("training_techniques", "2.1", "Training techniques")


def _modern_recipe(design: Design) -> Design:
    # Table 5 lists stochastic depth and the trunc-normal init with the recipe: they are training choices that add
    # no parameter and no FLOP, so they come with the recipe; layer scale (which adds parameters) comes in 2.6.
    net = dataclasses.replace(design.net, drop_path_rate=0.1, init=Init.TRUNC_NORMAL)
    return dataclasses.replace(design, net=net, recipe=MODERN_RECIPE)


resnet50 = Step(
    name="resnet50",
    section=START,
    summary="torchvision ResNet-50 v1.5 (stride on the 3x3), original 90-epoch recipe",
    rationale="the baseline the paper modernizes",
    paper_top1=76.13,
    paper_gflops=4.09,
    edit=lambda design: design,
)

training_recipe = Step(
    name="training_recipe",
    section=TRAINING,
    summary="AdamW, 300 epochs, warmup + cosine, RandAugment, mixup, cutmix, random erasing, label smoothing, "
    "stochastic depth 0.1 (no EMA)",
    rationale="DeiT/Swin-style training alone lifts ResNet-50 by 2.7 points",
    paper_top1=78.82,
    paper_gflops=4.09,
    edit=_modern_recipe,
)


STEPS: tuple[Step, ...] = (resnet50, training_recipe)
"""This section's steps, in Figure 2's order (the catalog joins the sections' tuples into the roadmap)."""
