"""The torch Datasets every reader builds on: image folders, listed image files, and images held in memory.

Every one yields RGB PIL images (grey ones are converted) and int labels, so one transform pipeline fits all.
In-memory datasets keep their raw uint8 pixels in `.images` (N, H, W[, 3]) and labels in `.targets` (int64), like
torchvision's CIFAR `.data`/`.targets`, so a device-side data path (`runner.device_data`) can skip PIL entirely.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch.utils.data
import torchvision.datasets as tvd
from PIL import Image

from runner.data.formats import load_rgb
from runner.data.splits import Transform

IMAGE_EXTENSIONS = (*tvd.folder.IMG_EXTENSIONS, ".gif")
"""The file names taken as images: torchvision's (.jpg, .jpeg, .png, .ppm, .bmp, .pgm, .tif, .tiff, .webp) and
.gif, as Keras and fastai take them."""


def is_image_file(path: str) -> bool:
    """Whether `path` names an image: a known extension, and not hidden (macOS's "._name.jpg" are no images)."""
    return path.lower().endswith(IMAGE_EXTENSIONS) and not os.path.basename(path).startswith(".")


def class_dirs(directory: Path) -> list[str]:
    """Sorted names of the non-hidden sub-folders of `directory` (ImageFolder's classes)."""
    with os.scandir(directory) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


def first_per_class(ds) -> list[str]:
    """The path of the first sample of each class present in a dataset with `.samples` (ImageFolder sorts them by
    class)."""
    seen: dict[int, str] = {}
    for path, label in ds.samples:
        seen.setdefault(label, path)
    return list(seen.values())


class ImageFolderRGB(tvd.ImageFolder):
    """torchvision's ImageFolder that yields RGB images, names unreadable files, skips hidden folders and files,
    and takes GIFs too (`IMAGE_EXTENSIONS`).

    Hidden folders (".ipynb_checkpoints", ".DS_Store" dirs...) would otherwise become extra classes.
    """

    def __init__(self, root: str | Path, transform: Transform = None):
        super().__init__(str(root), transform=transform, loader=load_rgb, is_valid_file=is_image_file,
                         allow_empty=True)

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        classes = class_dirs(Path(directory))
        return classes, {c: i for i, c in enumerate(classes)}


class FileListDataset(torch.utils.data.Dataset):
    """Images listed as (path, label) pairs, e.g. Tiny ImageNet's validation split (one folder, labels in a file)."""

    def __init__(self, samples: list[tuple[str, int]], classes: list[str], transform: Transform = None):
        self.samples = samples
        self.targets = [label for _, label in samples]
        self.classes = classes
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[object, int]:
        path, label = self.samples[index]
        img = load_rgb(path)
        return (self.transform(img) if self.transform else img), label


class ArrayDataset(torch.utils.data.Dataset):
    """Images held in memory as uint8 (N, H, W) grey or (N, H, W, 3) RGB; items are RGB PIL images.

    `.images` and `.targets` (int64) stay accessible so a GPU data path can upload them in one go.
    """

    def __init__(self, images: np.ndarray, targets: np.ndarray, classes: Iterable[str], transform: Transform = None):
        if images.dtype != np.uint8 or images.ndim not in (3, 4) or len(images) != len(targets):
            raise ValueError(f"expected uint8 (N,H,W[,3]) images matching {len(targets)} targets, got {images.shape}")
        self.images = images
        self.targets = np.asarray(targets, dtype=np.int64)
        self.classes = list(classes)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[object, int]:
        img = Image.fromarray(self.images[index]).convert("RGB")
        return (self.transform(img) if self.transform else img), int(self.targets[index])
