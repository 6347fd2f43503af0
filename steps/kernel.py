"""Paper 2.5, large kernel sizes: move the depthwise conv up, then grow its kernel (3, 5, 7, 9, 11)."""

from __future__ import annotations

from steps.step import Section, Step, net_edit

KERNEL = Section("large_kernel", "2.5", "Large kernel sizes")

move_up_dwconv = Step(
    name="move_up_dwconv",
    section=KERNEL,
    summary="the kxk conv moves first: kxk on C, 1x1 C->4C, 1x1 4C->C (stride-2 kxk runs on d_in)",
    rationale="like self-attention before the MLP; the costly kxk runs on fewer channels",
    paper_top1=79.92,
    paper_gflops=4.07,
    edit=net_edit(spatial_position="first"),
)


def _kernel_step(k: int, top1: float, gflops: float, branch: bool) -> Step:
    return Step(
        name=f"kernel_{k}" if branch else "large_kernel",
        section=KERNEL,
        summary=f"depthwise kernel 3 -> {k}" + (" (a branch of the sweep; the paper adopts 7)" if branch else ""),
        rationale="larger receptive field per layer; gains saturate at 7x7 (the paper's choice)",
        paper_top1=top1,
        paper_gflops=gflops,
        edit=net_edit(kernel_size=k),
        branch_of="move_up_dwconv" if branch else None,
    )


kernel_5 = _kernel_step(5, 80.35, 4.10, branch=True)
large_kernel = _kernel_step(7, 80.57, 4.15, branch=False)
kernel_9 = _kernel_step(9, 80.57, 4.21, branch=True)
kernel_11 = _kernel_step(11, 80.47, 4.29, branch=True)


STEPS: tuple[Step, ...] = (move_up_dwconv, kernel_5, large_kernel, kernel_9, kernel_11)
"""This section's steps, in Figure 2's order: the kernel sweep's branches stand around the adopted kernel 7."""
