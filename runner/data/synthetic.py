"""`synthetic`: generated images for tests and throughput benchmarks, never for conclusions about real images.

    load_dataset("synthetic:classes=10,size=64,train=2000,val=500,seed=0")

The class is a noisy grating's colour (and, past 12 classes, its frequency); every image is generated on its own from
(seed, split, index), so any size costs no memory until `.images` renders them all for the device data path.
"""

from __future__ import annotations

import math

import numpy as np
import torch.utils.data
from PIL import Image

from roadmap.errors import RoadmapError, unknown
from runner.data.catalog import names
from runner.data.splits import DatasetInfo, Splits, Transform

SYNTHETIC_DEFAULTS = {"classes": 10, "size": 32, "train": 2000, "val": 500, "seed": 0}
_SYNTHETIC_RANGES = {
    "classes": (2, 100_000),
    "size": (8, 1024),
    "train": (1, 10**8),
    "val": (1, 10**8),
    "seed": (0, 2**31 - 1),
}


def _parse_synthetic(spec: str) -> dict[str, int]:
    """Options from "synthetic" or "synthetic:classes=10,size=64,train=2000,val=500[,seed=0]"."""
    opts = dict(SYNTHETIC_DEFAULTS)
    example = "e.g. synthetic:classes=10,size=64,train=2000,val=500"
    head, sep, body = spec.partition(":")
    if head.strip().lower() != "synthetic":
        raise unknown("dataset", spec, names())
    if not sep:
        return opts
    for part in body.split(","):
        key, eq, value = (s.strip() for s in part.partition("="))
        if not eq or not key:
            raise RoadmapError(f"bad synthetic option {part.strip()!r}: write key=value pairs, {example}")
        key = key.lower()
        if key not in opts:
            raise unknown("synthetic option", key, opts)
        try:
            number = int(value)
        except ValueError:
            raise RoadmapError(f"synthetic option {key}={value!r} must be a whole number, {example}") from None
        lo, hi = _SYNTHETIC_RANGES[key]
        if not lo <= number <= hi:
            raise RoadmapError(f"synthetic option {key}={number} is out of range: use {lo}..{hi}")
        opts[key] = number
    return opts


NOISE = 0.15  # std of the synthetic images' pixel noise, on a 0..1 scale


def _hue_rgb(hue: float) -> np.ndarray:
    """A saturated colour of the given hue (0..1) as an RGB offset from grey, in -0.5..0.5."""
    k = (np.array([5.0, 3.0, 1.0]) + hue * 6.0) % 6.0
    return 0.5 - np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


class SyntheticDataset(torch.utils.data.Dataset):
    """Procedural images whose class is the colour and frequency of a noisy grating; for tests and benchmarks.

    Learnable through the training recipe's augmentation: the class is the grating's hue (and, past 12 classes,
    its spatial frequency), which random-resized crops, flips, rotations and shears all keep; orientation, phase,
    position, contrast, a distracting blob of random colour and pixel noise vary per image. Image `i` is
    generated from the seed (seed, split, i), so any item is reproducible on its own and large sets cost no
    memory; `.images` renders and keeps them all on request.
    """

    def __init__(
        self, size: int, num_classes: int, length: int, seed: int, split: int, transform: Transform = None
    ) -> None:
        self.size, self.num_classes, self.length, self.seed, self.split = size, num_classes, length, seed, split
        self.transform = transform
        self.targets = np.arange(length, dtype=np.int64) % num_classes  # balanced for every prefix
        self.classes = [f"class {c}" for c in range(num_classes)]
        n_hue = min(num_classes, 12)
        n_freq = math.ceil(num_classes / n_hue)
        c = np.arange(num_classes)
        level = c // n_hue
        lo, hi = 2.0, max(2.0, min(size / 4.0, 9.0))  # cycles per image; size/4 keeps a period of >= 4 px
        self._freq = lo + (hi - lo) * level / max(n_freq - 1, 1)
        hue = (c % n_hue) / n_hue + 0.5 * (level % 2) / n_hue  # stagger hues between frequency levels
        self._tint = np.stack([_hue_rgb(h) for h in hue]).astype(np.float32)
        ax = (np.arange(size, dtype=np.float32) + 0.5) / size
        self._yy, self._xx = np.meshgrid(ax, ax, indexing="ij")
        self._images: np.ndarray | None = None
        self._bank: np.ndarray | None = None

    def __len__(self) -> int:
        return self.length

    def _noise_bank(self) -> np.ndarray | None:
        """Gaussian noise fields twice the image side; each image takes a window at a random offset (fast)."""
        if self._bank is None and self.size <= 256:  # <= 25 MB; larger images draw fresh noise instead
            rng = np.random.default_rng([self.seed, 104729])
            self._bank = rng.standard_normal((8, 2 * self.size, 2 * self.size, 3), dtype=np.float32) * NOISE
        return self._bank

    def render(self, index: int) -> np.ndarray:
        """Image `index` as uint8 (size, size, 3); depends only on (seed, split, index)."""
        # one draw for all per-image randomness; Python floats so float32 maths is not promoted to float64
        u = np.random.default_rng([self.seed, self.split, index]).random(17).tolist()
        label, n = int(self.targets[index]), self.size
        theta = math.pi * u[0]  # orientation is a nuisance, not the class
        freq = float(self._freq[label]) * (0.9 + 0.2 * u[1])
        phase, contrast = 2 * math.pi * u[2], 0.5 + 0.5 * u[3]
        cy, cx, by, bx = 0.3 + 0.4 * u[4], 0.3 + 0.4 * u[5], u[6], u[7]
        xx, yy = self._xx, self._yy
        wave = np.sin((2 * math.pi * freq) * (xx * math.cos(theta) + yy * math.sin(theta)) + phase)
        envelope = np.exp(((xx - cx) ** 2 + (yy - cy) ** 2) * (-1 / (2 * 0.3**2)))
        blob = np.exp(((xx - bx) ** 2 + (yy - by) ** 2) * (-1 / (2 * 0.12**2)))
        img = (0.45 * contrast) * ((0.5 + 0.5 * wave) * envelope)[..., None] * self._tint[label]
        img += blob[..., None] * np.array(
            [0.6 * v - 0.3 for v in u[8:11]], np.float32
        )  # a distractor of random colour and place
        img += np.array([0.4 + 0.2 * v for v in u[11:14]], np.float32)  # background
        bank = self._noise_bank()
        if bank is not None:
            k, oy, ox = int(u[14] * len(bank)), int(u[15] * n), int(u[16] * n)
            img += bank[k, oy : oy + n, ox : ox + n]
        else:
            img += (
                np.random.default_rng([self.seed, self.split, index, 1]).standard_normal((n, n, 3), np.float32) * NOISE
            )
        return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

    @property
    def images(self) -> np.ndarray:
        """All images as uint8 (N, size, size, 3), rendered on first access and kept (N * size^2 * 3 bytes)."""
        if self._images is None:
            out = np.empty((self.length, self.size, self.size, 3), np.uint8)
            for i in range(self.length):
                out[i] = self.render(i)
            self._images = out
        return self._images

    def __getitem__(self, index: int) -> tuple[object, int]:
        if not -self.length <= index < self.length:
            raise IndexError(index)
        index %= self.length
        pixels = self._images[index] if self._images is not None else self.render(index)
        img = Image.fromarray(pixels, "RGB")
        return (self.transform(img) if self.transform else img), int(self.targets[index])


def load_synthetic(spec: str, train_transform: Transform, eval_transform: Transform) -> Splits:
    """The splits a `synthetic[:options]` spec names; the name in their info lists the options off the defaults."""
    o = _parse_synthetic(spec)
    train = SyntheticDataset(o["size"], o["classes"], o["train"], o["seed"], 0, train_transform)
    val = SyntheticDataset(o["size"], o["classes"], o["val"], o["seed"], 1, eval_transform)
    name = "synthetic"
    if o != SYNTHETIC_DEFAULTS:
        name += ":" + ",".join(f"{k}={v}" for k, v in o.items())
    info = DatasetInfo(name, o["classes"], tuple(train.classes), o["train"], o["val"], o["size"], synthetic=True)
    return Splits(train, val, info)
