"""The batches one run trains and evaluates on, per epoch: the CPU DataLoader (timm/torchvision transforms on PIL
images, in worker processes) or the device-resident path (images held on the device, augmented there, batched);
both sharded over data-parallel ranks, both seeded from (seed, epoch) so that a resumed epoch repeats exactly."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch.utils.data import DataLoader, Dataset

from runner.device_data import DeviceLoader, GpuAugment, GpuEval
from runner.dist import Shard, ShardedPermutation
from runner.fitting import timm_parts as recipes
from runner.fitting.job import Job
from runner.fitting.seeding import epoch_seed
from runner.planning.batching import BatchPlan
from runner.planning.budget import Budget


class Transformed(Dataset):
    """A dataset of (PIL image, label) with a transform applied on access."""

    def __init__(self, base: Dataset, transform: Callable):
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        img, label = self.base[i]
        return self.transform(img), label


def eval_batch_size(batch: int) -> int:
    """Evaluation keeps no activations for backward: twice the training batch, up to 512 images."""
    return min(2 * batch, 512)


def loaders(job: Job, plan: BatchPlan, epoch: int):
    """Training batches from a seeded permutation (sharded over ranks), evaluation in order (sharded too).

    The training loader yields the plan's micro-batches: `plan.per_process / plan.micro_batch` of them per optimizer
    step when the micro-batch splits the batch (the same images as one batch: consecutive slices of the rank's
    order), else whole per-process batches.
    With `device_data`, both come from the device-resident path instead (images never leave the device)."""
    recipe, b, d = job.design.recipe, job.budget, job.dist
    if job.device_data is not None:
        return _device_loaders(job, plan, epoch)
    train = Transformed(job.train_set, recipes.train_transform(recipe, b.img_size))
    val = Transformed(job.val_set, recipes.eval_transform(recipe, b.img_size))
    per_rank = plan.split or plan.per_process
    common = dict(num_workers=job.workers, pin_memory=job.device.type == "cuda", persistent_workers=False)
    sampler = ShardedPermutation(len(train), epoch_seed(job.seed, epoch), d.rank, d.world)
    train_loader = DataLoader(train, batch_size=per_rank, sampler=sampler, drop_last=True, **common)
    # per-rank evaluation batches of size B/w over shards r::w: step k covers the same images as one process
    val_batch = max(1, eval_batch_size(b.batch_size) // d.world)
    val_loader = DataLoader(val, batch_size=val_batch, sampler=Shard(len(val), d.rank, d.world), **common)
    return train_loader, val_loader


@functools.lru_cache(maxsize=2)
def _augment(recipe, img_size: int, num_classes: int, dev: torch.device):
    """One GpuAugment per run's recipe, kept across epochs, so that under --compile its graph compiles once."""
    return GpuAugment(recipe, img_size, num_classes, dev)


def compiles_augment(job: Job) -> bool:
    """Whether the device path's augmentation runs as one compiled graph: on CUDA always (eager, it dispatches some
    1,500 small kernels per batch, as long as a ConvNeXt-T step on a large GPU: the loop would wait on the host), on
    CPU with --compile. It falls back to eager, with a warning, where it cannot compile."""
    return job.compile or job.device.type == "cuda"


def _device_loaders(job: Job, plan: BatchPlan, epoch: int):
    """The device-resident path's loaders (see `loaders`)."""
    recipe, b, dev, d = job.design.recipe, job.budget, job.device, job.dist
    train_data, val_data = job.device_data
    per_rank = plan.split or plan.per_process  # each rank mixes its own part of the batch
    augment = _augment(recipe, b.img_size, job.num_classes, dev) if recipe.train_augment else GpuEval(
        recipe, b.img_size, dev)
    common = dict(seed=job.seed, epoch=epoch, rank=d.rank, world=d.world)
    train = DeviceLoader(train_data, per_rank, augment, shuffle=True, drop_last=True, compiled=compiles_augment(job),
                         **common)
    val = DeviceLoader(val_data, max(1, eval_batch_size(b.batch_size) // d.world), GpuEval(recipe, b.img_size, dev),
                       shuffle=False, drop_last=False, **common)
    return train, val


def val_batches_at(budget: Budget, epoch: int) -> int:
    """Validation batches after `epoch` (0-based): the run's result (the last epoch) is measured on `val_batches`,
    the epochs before it, which only show progress, on `monitor_batches` when the budget sets it (a fixed subset:
    the first batches of the validation set, always the same images)."""
    last = epoch + 1 == budget.epochs
    return budget.val_batches if last or not budget.monitor_batches else budget.monitor_batches


def limit_batches(n: int, limit: int) -> int:
    """At most `limit` of `n` batches (0: all of them)."""
    return n if limit <= 0 else min(n, limit)

