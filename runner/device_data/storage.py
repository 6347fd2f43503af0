"""Where the device data path keeps a dataset: uint8 images and int64 labels, uploaded once to one device.

Images are stored RGB (grey ones as three equal channels, as PIL's convert("RGB") gives the CPU pipeline). Image
files are decoded once, each image in the top-left corner of a canvas of the largest height by the largest width, with
its own size kept in `sizes`, so every transform reads only that part. A set mixing landscape and portrait images
therefore holds (and resamples) more pixels than it has.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

Device = torch.device | str



def _to_nchw(images: np.ndarray | Tensor, device: Device) -> Tensor:
    """uint8 (N, C, H, W) with 3 channels on `device` from (N,H,W) grey, (N,H,W,1|3) or (N,1|3,H,W) arrays.

    An array that could be read both ways (e.g. (N, 3, W, 3)) is taken as channels-last, the layout of
    `runner.data`'s in-memory datasets and torchvision's CIFAR.
    """
    t = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else torch.as_tensor(images)
    if t.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images, got {t.dtype}")
    t = t.to(device)
    if t.ndim == 3:
        t = t.unsqueeze(1)
    elif t.ndim == 4 and t.shape[-1] in (1, 3):
        t = t.permute(0, 3, 1, 2)
    elif not (t.ndim == 4 and t.shape[1] in (1, 3)):
        raise ValueError(f"expected images (N,H,W), (N,H,W,3) or (N,3,H,W), got shape {tuple(t.shape)}")
    if t.shape[1] == 1:  # grey -> RGB, like PIL's convert("RGB")
        t = t.expand(-1, 3, -1, -1)
    return t.contiguous()


class DeviceDataset:
    """uint8 images (N, 3, H, W) + int64 labels held on one device.

    Grey images are stored as three equal channels (what `runner.data` feeds the CPU pipeline: PIL's
    convert("RGB")), so every transform sees RGB. Images of different sizes (an image folder such as Imagenette)
    sit in the top-left corner of one H x W canvas, with their own (height, width) in `sizes`; every transform
    reads only that part, so the padding never shows.
    """

    def __init__(self, images: Tensor, targets: Tensor, sizes: Tensor | None = None):
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 (N, 3, H, W) images, got {images.dtype} {tuple(images.shape)}")
        if targets.ndim != 1 or len(targets) != len(images) or targets.device != images.device:
            raise ValueError(f"expected {len(images)} labels on {images.device}, got {tuple(targets.shape)}")
        if sizes is not None and (sizes.shape != (len(images), 2) or sizes.device != images.device):
            raise ValueError(f"expected ({len(images)}, 2) sizes on {images.device}, got {tuple(sizes.shape)}")
        self.images = images
        self.targets = targets.long()
        self.sizes = sizes.long() if sizes is not None else None

    @staticmethod
    def file_sizes(ds: Any) -> np.ndarray | None:
        """(N, 2) (height, width) of the image files of `ds` (a dataset with `.samples` of (path, label), such as
        ImageFolder), read from the file headers without decoding; None for a dataset of another kind. A dataset that
        yields its images resized (`folder:PATH`'s, runner.data.decoded) says their sizes itself (`image_sizes`)."""
        from PIL import Image

        own = getattr(ds, "image_sizes", None)
        if callable(own):
            return own()
        samples = getattr(ds, "samples", None)
        if not isinstance(samples, list) or not samples:
            return None
        sizes = np.empty((len(samples), 2), dtype=np.int64)
        for i, (path, _) in enumerate(samples):
            with Image.open(path) as img:
                sizes[i] = img.size[1], img.size[0]
        return sizes

    @classmethod
    def from_files(cls, ds: Any, device: Device, sizes: np.ndarray | None = None, workers: int = 0,
                   progress: bool = False) -> DeviceDataset | None:
        """Decode every image of `ds` (a dataset of (PIL image, label) with `.samples`) once into a canvas of the
        largest height x width, on `device`; None when `ds` has no image files. `workers` decode in parallel."""
        from tqdm.auto import tqdm

        sizes = cls.file_sizes(ds) if sizes is None else sizes
        if sizes is None:
            return None
        n, (h, w) = len(sizes), sizes.max(0)
        canvas = torch.zeros((n, 3, int(h), int(w)), dtype=torch.uint8)
        targets = torch.empty(n, dtype=torch.long)
        batches = torch.utils.data.DataLoader(_Decoded(ds), batch_size=64, num_workers=workers, collate_fn=_as_list)
        i = 0
        for items in tqdm(batches, desc="decoding images", unit="batch", disable=not progress, leave=False):
            for pixels, label in items:
                ih, iw = pixels.shape[:2]
                if (ih, iw) != tuple(sizes[i]):
                    raise ValueError(f"image {i} decoded to {ih}x{iw}, its header said {tuple(sizes[i])}")
                canvas[i, :, :ih, :iw] = torch.from_numpy(pixels).permute(2, 0, 1)
                targets[i] = label
                i += 1
        return cls(canvas.to(device), targets.to(device), torch.from_numpy(sizes).to(device))

    @classmethod
    def from_arrays(cls, images: np.ndarray | Tensor, targets: Any, device: Device) -> DeviceDataset:
        """Upload `images` ((N,H,W) grey, (N,H,W,3) or (N,3,H,W) uint8) and `targets` (N ints) to `device`."""
        imgs = _to_nchw(images, device)
        labels = torch.as_tensor(np.asarray(targets, dtype=np.int64) if not torch.is_tensor(targets) else targets)
        if labels.ndim != 1 or len(labels) != len(imgs):
            raise ValueError(f"expected {len(imgs)} labels, got shape {tuple(labels.shape)}")
        return cls(imgs, labels.to(device=device, dtype=torch.long))

    @classmethod
    def from_dataset(cls, ds: Any, device: Device) -> DeviceDataset | None:
        """The in-memory arrays of `ds` on `device`, or None when it has none (then use the CPU DataLoader path).

        Understands `runner.data`'s `.images`/`.targets` (Fashion-MNIST, synthetic), torchvision's
        `.data`/`.targets` (CIFAR, MNIST) and `torch.utils.data.Subset` of those.
        """
        arrays = cls._arrays(ds)
        return None if arrays is None else cls.from_arrays(*arrays, device)

    @classmethod
    def array_bytes(cls, ds: Any) -> int | None:
        """What `from_dataset(ds, ...)` would hold on the device (RGB uint8 images), without building it; None when
        `ds` has no in-memory arrays."""
        arrays = cls._arrays(ds)
        if arrays is None:
            return None
        shape = tuple(arrays[0].shape)
        # (N, H, W) grey or (N, H, W, C) channels-last (what _to_nchw reads first), else (N, C, H, W)
        h, w = shape[1:3] if len(shape) == 3 or shape[-1] in (1, 3) else shape[2:4]
        return shape[0] * (3 * h * w + 8)

    @staticmethod
    def _arrays(ds: Any) -> tuple[Any, np.ndarray] | None:
        """(uint8 images, int64 targets) of a dataset held in memory (see `from_dataset`), or None."""
        indices = None
        while isinstance(ds, torch.utils.data.Subset):
            sub = np.asarray(ds.indices, dtype=np.int64)
            indices = sub if indices is None else sub[indices]
            ds = ds.dataset
        images = getattr(ds, "images", None)  # SyntheticDataset renders its images here, once
        if images is None:
            images = getattr(ds, "data", None)
        targets = getattr(ds, "targets", None)
        if not isinstance(images, np.ndarray | Tensor) or targets is None:
            return None
        if images.dtype not in (np.uint8, torch.uint8) or images.ndim not in (3, 4) or len(images) != len(targets):
            return None
        targets = targets.cpu().numpy() if torch.is_tensor(targets) else np.asarray(targets, dtype=np.int64)
        if indices is not None:
            images = images[torch.from_numpy(indices)] if torch.is_tensor(images) else images[indices]
            targets = targets[indices]
        return images, targets

    def __len__(self) -> int:
        return len(self.images)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def nbytes(self) -> int:
        """Device memory held by the images and labels."""
        return self.images.numel() * self.images.element_size() + self.targets.numel() * self.targets.element_size()


def _as_list(items: list) -> list:
    """A DataLoader collate_fn that keeps the items as they are (a module-level function: picklable for workers)."""
    return items


class _Decoded(torch.utils.data.Dataset):
    """(H, W, 3) uint8 arrays and labels of a dataset of (PIL image, label): what `from_files` decodes."""

    def __init__(self, ds: Any):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        img, label = self.ds[i]
        return np.array(img.convert("RGB"), dtype=np.uint8), int(label)

