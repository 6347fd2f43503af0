"""Data-parallel training with torch.distributed, started by `torchrun` (or `roadmap run --nproc N`).

Semantics: `--batch-size` is the global batch (split evenly over the processes) and the learning rate
follows it, so a run on N processes trains like one process with the same batch. Every process draws the
same shuffled order of the training set and takes every N-th sample of it, so the union of the N per-rank
batches at step k is exactly the single-process batch at step k. Rank 0 alone writes records and
checkpoints; every rank resumes from them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as torch_dist
from torch.utils.data import Sampler


@dataclass(frozen=True)
class Dist:
    """This process's place in the job: rank, world size, local rank (one process per device)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


SINGLE = Dist()
"""One process, no collectives."""


def from_env(backend: str, device: torch.device | None = None) -> Dist:
    """Join the process group torchrun describes (WORLD_SIZE, RANK, LOCAL_RANK); a single process otherwise.

    On CUDA every process is bound to its own GPU, cuda:LOCAL_RANK, before the group is created
    (`torch.cuda.set_device` and `init_process_group(device_id=...)`), so that NCCL's collectives, including the
    object broadcasts and barriers, run on that GPU rather than all on cuda:0."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        bind_device(device)
        return Dist()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device is not None and device.type == "cuda"
    if cuda:
        device = torch.device("cuda", local_rank)
        bind_device(device)
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend=backend, **({"device_id": device} if cuda else {}))
    return Dist(torch_dist.get_rank(), torch_dist.get_world_size(), local_rank)


def finish(dist: Dist) -> None:
    """The end of a data-parallel run: every process leaves the group (`destroy_process_group`), so that NCCL frees
    its communicators before the interpreter exits (torch warns, and can hang, when they are left to it)."""
    if dist.active and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def bind_device(device: torch.device | None) -> None:
    """Make `device` this process's current CUDA device (nothing on CPU): kernels, streams and collectives
    without an explicit device then go to it, and no context is opened on cuda:0 by a process meant for cuda:1
    (a `--launcher gpus` child)."""
    if device is not None and device.type == "cuda":
        torch.cuda.set_device(device if device.index is not None else torch.device("cuda", 0))


def synchronize(device: torch.device) -> None:
    """Wait for `device`'s queued work (nothing to wait for on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def all_reduce_sum(dist: Dist, *tensors: torch.Tensor) -> None:
    """Sum tensors in place over all processes (nothing to do for one process)."""
    if dist.active:
        for t in tensors:
            torch_dist.all_reduce(t, op=torch_dist.ReduceOp.SUM)


def broadcast(dist: Dist, obj: Any) -> Any:
    """Rank 0's `obj` on every rank (decisions that must agree: skip, train, diverged)."""
    if not dist.active:
        return obj
    box = [obj]
    torch_dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(dist: Dist) -> None:
    if dist.active:
        torch_dist.barrier()


class ShardedPermutation(Sampler[int]):
    """A seeded random permutation of range(n); rank r of w takes positions r, r + w, r + 2w, ...

    Every rank gets the same number of samples, n // w (the last n % w of the order are left out when w > 1), so
    every rank runs the same number of steps and no collective waits for a step another rank never takes."""

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.seed, self.rank, self.world = n, seed, rank, world

    def __iter__(self) -> Iterator[int]:
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed))
        return iter(order[self.rank::self.world][: len(self)].tolist())

    def __len__(self) -> int:
        return self.n // self.world


class Shard(Sampler[int]):
    """Every w-th index from r, in order: evaluation split over ranks without padding or duplicates."""

    def __init__(self, n: int, rank: int = 0, world: int = 1):
        self.indices = range(rank, n, world)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
