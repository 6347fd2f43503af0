"""How a step's batch is reached: the global batch split over processes, micro-batches (gradient accumulation),
and the checks that both split evenly; the dry run's line about it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from roadmap.errors import RoadmapError
from runner.fitting.timm_parts import mixes

if TYPE_CHECKING:
    from runner.planning.runs import PlannedRun


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



def micro_batch_record(run: PlannedRun, train_size: int, micro: int | str | None, world: int = 1) -> dict[str, Any]:
    """How a step's batch is reached: the global batch, processes, images per process, the micro-batch and the
    accumulation steps (None for `auto` until the run measures the GPU; then config.json gets the chosen value)."""
    per_process = split_batch(run.budget.batch_size, train_size, mixes(run.design.recipe), world)
    m = None if micro in (None, "auto") else min(int(micro), per_process)
    return {"requested": micro, "batch": per_process * world, "processes": world, "per_process": per_process,
            "micro_batch": m if micro != "auto" else None,
            "accumulation_steps": (per_process // m if m else 1) if micro != "auto" else None}


def batch_line(run: PlannedRun, train_size: int, micro: int | str | None, world: int, device) -> str:
    """One line of the dry run: how the batch of one optimizer step is reached."""
    rec = micro_batch_record(run, train_size, micro, world)
    procs = f" on each of {world} processes" if world > 1 else ""
    head = f"batch {rec['batch']} per optimizer step"
    if micro is None:
        return (f"{head}: {rec['per_process']} images in one forward/backward{procs} (--micro-batch N|auto "
                "accumulates the gradients of smaller micro-batches instead)")
    if micro == "auto":
        where = ("the largest divisor of it whose step fits in the GPU's free memory, measured when the run starts"
                 if device.type == "cuda" else f"on {device}: the whole batch in one forward/backward")
        return f"{head}: {rec['per_process']} images{procs}, micro-batch auto ({where})"
    if rec["accumulation_steps"] == 1:
        return f"{head}: {rec['per_process']} images in one forward/backward{procs} (micro-batch {micro} >= batch)"
    return (f"{head} = {rec['accumulation_steps']} accumulation step(s) x micro-batch {rec['micro_batch']}{procs}; "
            "the lr follows the batch, BatchNorm sees micro-batch statistics")

