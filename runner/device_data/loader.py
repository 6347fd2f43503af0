"""Batches from a `DeviceDataset`, gathered and augmented on its device.

Nothing in the iteration path reads a value back to the host (batch bounds are Python ints, batches are
index_select'ed on the device), so the GPU is never stalled by the data path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from runner.device_data.augment import GpuAugment
from runner.device_data.storage import DeviceDataset


def loader_seed(seed: int, epoch: int) -> int:
    """The generator seed of one epoch: the runner's epoch_seed rule (seed * 1_000_003 + epoch), kept non-negative."""
    return (seed * 1_000_003 + epoch) % 2**63


class DeviceLoader:
    """Iterates (x, y) batches from a DeviceDataset, entirely on its device.

    Each pass draws a permutation (when shuffling) and all augmentation randomness from one `torch.Generator` on the
    device seeded by (seed, epoch), so equal seeds and epochs give equal batches. The epoch advances by one at every
    `iter()` (like reshuffling DataLoaders); `set_epoch` pins it (e.g. when resuming). `transform` is a GpuAugment
    (called with labels and the generator), any callable images -> tensor (e.g. GpuEval), or None (raw uint8).
    No host syncs in iteration: batch bounds are Python ints, batches are index_select'ed on the device.

    Under DDP (`world` > 1) every rank holds the whole data set, draws the same permutation and keeps every
    `world`-th index from position `rank`; with a per-rank `batch_size` of B / world, step k of rank r is then
    the r::world part of step k of one process at batch B (the rule the CPU path's ShardedPermutation follows).
    With `drop_last`, every rank gets the same number of batches. Rank r > 0 draws its augmentation from its own
    generator, seeded by (seed, epoch, rank). With `compiled`, a GpuAugment runs as one compiled graph
    (`GpuAugment.compiled`) drawing from the global RNG instead of the generator (eager when it fails to compile).
    """

    def __init__(
        self,
        data: DeviceDataset,
        batch_size: int,
        transform: GpuAugment | Callable[[Tensor], Tensor] | None,
        shuffle: bool,
        drop_last: bool,
        seed: int,
        epoch: int = 0,
        rank: int = 0,
        world: int = 1,
        compiled: bool = False,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not 0 <= rank < world:
            raise ValueError(f"rank must be in [0, {world}), got {rank}")
        self.data, self.batch_size, self.transform = data, int(batch_size), transform
        self.shuffle, self.drop_last, self.seed, self.epoch = shuffle, drop_last, int(seed), int(epoch)
        self.rank, self.world, self.compiled = int(rank), int(world), compiled

    def _count(self) -> int:
        """How many samples this rank iterates over."""
        n = len(self.data)
        if self.drop_last:
            return n // self.world  # equal on every rank, so no rank waits for a batch another never runs
        return len(range(self.rank, n, self.world))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = self._count()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch = self.epoch
        self.epoch += 1
        return self._batches(epoch)

    def _batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        dev = self.data.device
        g = torch.Generator(device=dev)
        g.manual_seed(loader_seed(self.seed, epoch))
        n = len(self.data)
        if self.shuffle:
            order = torch.randperm(n, generator=g, device=dev)
        else:
            order = torch.arange(n, device=dev)
        if self.world > 1:
            order = order[self.rank :: self.world][: self._count()]
            if self.rank > 0:
                g = torch.Generator(device=dev)
                g.manual_seed(loader_seed(self.seed, epoch) * 1009 + self.rank)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            x = self.data.images.index_select(0, idx)
            y = self.data.targets.index_select(0, idx)
            sizes = {} if self.data.sizes is None else {"sizes": self.data.sizes.index_select(0, idx)}
            if isinstance(self.transform, GpuAugment):  # compiled (falling back to eager if it cannot be), or eager
                x, y = self.transform.run(x, y, g, self.compiled, **sizes)
            elif self.transform is not None:
                x = self.transform(x, **sizes)
            yield x, y
