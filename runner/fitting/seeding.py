"""Seeds: every epoch re-seeds Python, NumPy and torch from (seed, epoch), and each data-parallel rank from its
own stream, so a resumed epoch repeats exactly and ranks draw different masks."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 1_000_003 + epoch


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank `rank` in data-parallel training: rank 0 keeps `seed` (so one process draws exactly what it
    always drew), every other rank its own stream, so that the ranks' stochastic depth (DropPath), and any other
    draw from the global generators, differ instead of repeating rank 0's masks on other images."""
    return seed if rank == 0 else (seed * 1009 + rank) % 2**63

