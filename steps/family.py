"""The ConvNeXt family's other end points (paper Section 3): ConvNeXt-T's design at other sizes.

They are not steps of the roadmap: each is a branch off its last step that changes depths and widths (and the
stochastic depth the paper trains that size with), so `roadmap show convnext_base` and
`build_model("convnext_large")` work like any step and compose with leave-one-out specs.
"""

from __future__ import annotations

from steps.step import Section, Step, widen

FAMILY = Section("convnext_family", "3", "ConvNeXt variants")


def _variant(name: str, label: str, depths, factor: float, drop: float, top1: float, gflops: float) -> Step:
    return Step(
        name=name,
        section=FAMILY,
        summary=f"{label}: depths {depths}, widths x{factor:g} of ConvNeXt-T's, stochastic depth {drop}",
        rationale="the same design at another size (paper Section 3, Table 1)",
        paper_top1=top1,
        paper_gflops=gflops,
        edit=widen(factor, depths=depths, drop_path_rate=drop),
        branch_of="separate_downsampling",
    )


# ImageNet-1K, 224 px, paper Table 1
convnext_small = _variant("convnext_small", "ConvNeXt-S", (3, 3, 27, 3), 1.0, 0.4, 83.1, 8.7)
convnext_base = _variant("convnext_base", "ConvNeXt-B", (3, 3, 27, 3), 4 / 3, 0.5, 83.8, 15.4)
convnext_large = _variant("convnext_large", "ConvNeXt-L", (3, 3, 27, 3), 2.0, 0.5, 84.3, 34.4)

ENDPOINTS: tuple[Step, ...] = (convnext_small, convnext_base, convnext_large)
