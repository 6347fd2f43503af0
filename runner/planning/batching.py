"""How a step's batch is reached, decided once per run (`BatchPlan`): the global batch split over processes,
micro-batches (gradient accumulation), the checks that both split evenly; the dry run's line about it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from roadmap.errors import RoadmapError


def split_batch(batch: int, n_train: int, mixes: bool, world: int) -> int:
    """Images per process per optimizer step: the global batch, at most the training set, even on every rank when
    mixing (timm's batch mixup pairs images), split over `world` processes."""
    batch = min(batch, n_train)
    if mixes:
        batch -= batch % (2 * world)
    _check_split(batch, world)
    return batch // world


def _check_split(batch: int, world: int) -> None:
    if batch % world:
        raise RoadmapError(f"--batch-size {batch} (global) does not split evenly over {world} processes")


def check_micro_batch(micro: int, per_rank: int, mixes: bool) -> None:
    """A micro-batch must split the per-process batch into equal parts (each step then sees exactly the batch's
    images), and be even when mixing (timm's batch mixup pairs each image with the reversed batch's)."""
    if micro <= 0:
        raise RoadmapError(f"--micro-batch must be positive, got {micro}")
    if per_rank % micro:
        divisors = [d for d in range(1, per_rank + 1) if per_rank % d == 0 and d <= micro]
        raise RoadmapError(f"--micro-batch {micro} does not divide the per-process batch {per_rank}; "
                           f"e.g. --micro-batch {divisors[-1]}")
    if mixes and micro % 2:
        raise RoadmapError(f"--micro-batch {micro}: mixup/cutmix need an even micro-batch")


@dataclass(frozen=True)
class BatchPlan:
    """How one run's optimizer step is reached, decided once (`BatchPlan.decide`) and carried by its job: the global
    batch, the processes, each one's images, and the micro-batch of one forward/backward with the accumulation steps.

    `requested` is --micro-batch as asked (None, N or "auto"); `micro_batch` is None only while "auto" waits for
    the run to measure the GPU (runner.fitting.micro_batch resolves it, before config.json is written)."""

    requested: int | str | None
    batch: int  # images per optimizer step, all processes together
    processes: int
    per_process: int
    micro_batch: int | None  # images per forward/backward on each process (the whole per-process batch: no split)

    @property
    def resolved(self) -> bool:
        return self.micro_batch is not None

    @property
    def accumulation_steps(self) -> int | None:
        """Micro-batches per optimizer step (None until "auto" is resolved)."""
        return self.per_process // self.micro_batch if self.micro_batch else None

    @property
    def split(self) -> int | None:
        """The micro-batch when it splits the per-process batch, else None (one forward/backward per step)."""
        return self.micro_batch if self.micro_batch and self.micro_batch < self.per_process else None

    @classmethod
    def decide(cls, batch: int, n_train: int, mixes: bool, world: int = 1, requested: int | str | None = None
               ) -> BatchPlan:
        """The batch plan of a step, checked: the global batch split over `world` processes (`split_batch`), and
        the micro-batch `requested` (None: the whole per-process batch; N: at most the batch, dividing it; "auto":
        left for the run to measure)."""
        per_process = split_batch(batch, n_train, mixes, world)
        if requested is None:
            micro = per_process
        elif requested == "auto":
            micro = None
        else:
            micro = min(int(requested), per_process)
            check_micro_batch(micro, per_process, mixes)
        return cls(requested, per_process * world, world, per_process, micro)

    def with_micro_batch(self, micro: int) -> BatchPlan:
        """This plan with "auto" resolved to `micro` images per forward/backward."""
        return dataclasses.replace(self, micro_batch=min(micro, self.per_process))

    def record(self) -> dict[str, Any] | None:
        """config.json's `micro_batch`: only when --micro-batch was given (not part of the run's identity)."""
        if self.requested is None:
            return None
        return {"requested": self.requested, "batch": self.batch, "processes": self.processes,
                "per_process": self.per_process, "micro_batch": self.micro_batch,
                "accumulation_steps": self.accumulation_steps}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> BatchPlan:
        return cls(record["requested"], record["batch"], record["processes"], record["per_process"],
                   record["micro_batch"])


def batch_line(plan: BatchPlan, device) -> str:
    """One line of the dry run: how the batch of one optimizer step is reached."""
    world, micro = plan.processes, plan.requested
    procs = f" on each of {world} processes" if world > 1 else ""
    head = f"batch {plan.batch} per optimizer step"
    if micro is None:
        return (f"{head}: {plan.per_process} images in one forward/backward{procs} (--micro-batch N|auto "
                "accumulates the gradients of smaller micro-batches instead)")
    if micro == "auto":
        where = ("the largest divisor of it whose step fits in the GPU's free memory, measured when the run starts"
                 if device.type == "cuda" else f"on {device}: the whole batch in one forward/backward")
        return f"{head}: {plan.per_process} images{procs}, micro-batch auto ({where})"
    if plan.accumulation_steps == 1:
        return f"{head}: {plan.per_process} images in one forward/backward{procs} (micro-batch {micro} >= batch)"
    return (f"{head} = {plan.accumulation_steps} accumulation step(s) x micro-batch {plan.micro_batch}{procs}; "
            "the lr follows the batch, BatchNorm sees micro-batch statistics")
