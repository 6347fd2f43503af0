"""What `load_dataset` returns, whatever the dataset: the two splits and the facts a training run needs about them.

Pure Python (torch only for type checkers): the data set catalog, which `roadmap --help` reads, builds `DatasetInfo`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch.utils.data
    from PIL import Image

Transform = Callable[["Image.Image"], object] | None
PathLike = str | Path | None


@dataclass(frozen=True)
class DatasetInfo:
    """What a training run needs to know about a dataset, independent of how it is stored."""

    name: str  # canonical name, e.g. "imagenette", "fashion-mnist", "synthetic"
    num_classes: int
    classes: tuple[str, ...]  # human-readable class names, in label order
    train_size: int
    val_size: int
    native_size: int  # typical image side in px (shorter side for photos of varying size)
    synthetic: bool  # True only for "synthetic": its numbers say nothing about real images


@dataclass
class Splits:
    """The train and validation datasets, items (PIL RGB image or its transform, int label), plus their info."""

    train: torch.utils.data.Dataset
    val: torch.utils.data.Dataset
    info: DatasetInfo
