"""Paper 2.4, inverted bottleneck: the wide part of the block goes inside."""

from __future__ import annotations

from steps.step import Section, Step, net_map

INVERTED = Section("inverted_bottleneck", "2.4", "Inverted bottleneck")


def _invert(net) -> dict:
    # The inner and outer widths swap: 1x1 C_in -> 4C, kxk on 4C, 1x1 4C -> C with C = 96..768.
    return {
        "widths": tuple(round(w * net.expansion) for w in net.widths),
        "expansion": 1.0 / net.expansion,
    }


inverted_bottleneck = Step(
    name="inverted_bottleneck",
    section=INVERTED,
    summary="block becomes 1x1 C->4C, kxk on 4C, 1x1 4C->C with C = 96..768 (inner and outer widths swap)",
    rationale="the Transformer MLP block's 4x hidden width; fewer FLOPs because the shortcuts get thinner",
    paper_top1=80.64,
    paper_gflops=4.64,
    edit=net_map(_invert),
)


STEPS: tuple[Step, ...] = (inverted_bottleneck,)
"""This section's steps, in Figure 2's order."""
