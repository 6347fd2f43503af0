"""What `load_dataset` returns, whatever the dataset: the two splits and the facts a training run needs about them.

Pure Python (torch only for type checkers): the data set catalog, which `roadmap --help` reads, builds `DatasetInfo`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    # a user's folder (runner.data.folders): how it was read, the split made here, the damaged files left out
    layout: str | None = None  # e.g. "class folders", "train/ and val/", "labels.csv (id,breed) with train/"
    split: dict[str, Any] | None = None  # the split made here: {"val_fraction": 0.2, "seed": 0}; None: given
    skipped: int = 0  # unreadable image files left out (--skip-unreadable)

    def key(self) -> str | dict[str, Any]:
        """The data set as part of a run's identity: its name, and for a user's folder how it was read (layout,
        split, skipped files) and that its images are shrunk to the run's size (runner.data.decoded), so a run on
        another split, or on the files left after skipping, never reuses another's result."""
        if self.layout is None:
            return self.name
        return {"name": self.name, "layout": self.layout, "images": "shorter side at most img_size / 0.875",
                **({"split": self.split} if self.split else {}), **({"skipped": self.skipped} if self.skipped else {})}


@dataclass
class Splits:
    """The train and validation datasets, items (PIL RGB image or its transform, int label), plus their info."""

    train: torch.utils.data.Dataset
    val: torch.utils.data.Dataset
    info: DatasetInfo
