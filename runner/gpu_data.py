"""A device-resident data path: the dataset lives on the GPU as uint8 and every augmentation runs there, batched.

Why: small datasets (Fashion-MNIST, CIFAR, Imagenette-160, Tiny-ImageNet, synthetic) fit in GPU memory many times
over, and at their image sizes a fast GPU trains far quicker than a few CPU cores can decode, augment and collate PIL
images. Here the images are uploaded once (`DeviceDataset`; image files are decoded once, each image in the corner of
a canvas of the largest size, with its own size kept), batches are gathered on the device (`DeviceLoader`) and the
training recipe's whole augmentation runs batched with per-sample random parameters (`GpuAugment`); evaluation
preprocessing is `GpuEval`. On CPU tensors it works too (tests) but is not faster than per-image PIL for the
modern recipe (docs/bench-cpu.md), so `roadmap run` takes it on CUDA only unless asked.
Nothing in the iteration path reads a value back to the host, so the GPU is never stalled by the data path.

The goal is the *same distributions* as the CPU pipeline of `runner.recipes` (timm's `create_transform` and
`Mixup`), not the same random numbers: randomness comes from a `torch.Generator` on the device, so a run is
reproducible from its seed, but it draws different samples than Python's `random`/NumPy would.

What matches timm/PIL, step by step (tests/test_gpu_data.py measures each claim):

* Random-resized crop: timm's `RandomResizedCropAndInterpolation.get_params` (10 attempts of area U(0.08, 1) and
  log-uniform aspect ratio, rounding, first crop that fits, centre-crop fallback), then PIL's resampling of the crop
  (`Image.resize`: separable bilinear/bicubic, antialiased when shrinking, a horizontal then a vertical pass, each
  rounded to uint8), as two batched matrix products with per-sample weight matrices holding PIL's own 22-bit
  fixed-point weights (float64, so every sum is exact). Flip (p=0.5) reverses the horizontal weights. Given the
  crop box, the result is bit-exact with torchvision's `resized_crop` on PIL images.
* RandAugment (`rand-mX-nN-pP-mstdS-mmaxK-incI` strings): the op set of `_RAND_INCREASING_TRANSFORMS` (or
  `_RAND_TRANSFORMS` for inc0), N ops per sample chosen uniformly with replacement, each applied with probability P,
  magnitude ~ N(X, S) clipped to [0, mmax or 10] (uniform for mstd > 100), timm's level-to-argument rules including
  the random sign of rotate/shear/translate/enhance-increasing, and the fill colour round(255 * mean) of geometric
  ops. Each op reproduces PIL's 8-bit arithmetic: point ops (AutoContrast, Equalize, Invert, Posterize, Solarize,
  SolarizeAdd, Brightness, Contrast) as per-sample 256-entry lookup tables computed like ImageOps/ImageEnhance;
  Color and Sharpness as PIL's `Image.blend` (float32, truncation) with the grey (ITU-R 601-2 fixed point) or
  SMOOTH-filtered image; Rotate/Shear/Translate as PIL's affine transform (pixel-centre convention, clamped taps,
  out-of-image -> fill, bilinear or PIL's a=-1 bicubic, in float64 like PIL's double maths since the result is
  truncated). Images hold integers between ops, as PIL's uint8 images do. Given op, magnitude and sign, every op is
  bit-exact with timm's AugmentOp on the test images.
* Normalization: ToTensor + Normalize, the same float32 formula.
* Random erasing: timm's `RandomErasing(mode='pixel', max_count=1)`: per sample with probability p, 10 attempts of
  area U(0.02, 1/3) and log-uniform aspect in [0.3, 1/0.3], first box that fits strictly, per-pixel N(0, 1) fill.
* Mixup/cutmix: timm's `Mixup(mode='batch', prob=1)`: one lambda per batch ~ Beta(alpha, alpha), cutmix instead of
  mixup with probability `switch_prob` (0.5), the batch mixed with its reverse, cutmix's box from `rand_bbox` with
  lambda corrected to the box area, label-smoothed one-hot targets mixed with the same lambda.
* Eval: torchvision's Resize(shorter side = floor(size / crop_pct)) + CenterCrop(size) on PIL images, then
  normalization: bit-exact with `runner.recipes.eval_transform`.

Deviations:

* Random streams: equal distributions, not equal samples (see above); the tests compare distributions with
  Kolmogorov-Smirnov statistics. Mixup's Beta lambda comes from two Gamma draws on the device.
* Arithmetic is PIL's up to last-bit effects that the tests never met: SMOOTH divides an exact integer sum by 13
  where PIL sums float32 coefficients, weight normalization sums in another order, rotation rounds cos/sin to 15
  decimals in binary rather than decimal. Any of these could move a pixel by one level, rarely.
* Only 'bilinear' and 'bicubic' interpolation (what `Recipe` allows); timm's 'random' is not supported, nor is
  RandAugment's 't' (transform set / weights) option: both raise ValueError.
* Cost: every sample goes through all three RandAugment passes per layer (samples whose op is elsewhere pass through
  unchanged) because choosing subsets would need host syncs; the resampling and affine passes run in float64,
  which is cheap on data-centre GPUs and slower (still memory-bound at 32 px) on consumer ones. Image files of
  mixed sizes share one canvas of the largest height by the largest width, so a set mixing landscape and portrait
  images holds (and resamples) more pixels than it has; the crops read only each image's own part.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import Tensor

Device = torch.device | str

# ------------------------------------------------------------------------------------------------------------ dataset


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
        ImageFolder), read from the file headers without decoding; None for a dataset of another kind."""
        from PIL import Image

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


# ------------------------------------------------------------------------------------------------------- resampling


def _round_u8(x: Tensor) -> Tensor:
    """Round half up and clip to 0..255, as PIL's 3x3 filters store their float result into a uint8 image."""
    return (x + 0.5).floor_().clamp_(0, 255)


def _cubic(x: Tensor, a: float = -0.5) -> Tensor:
    """PIL's bicubic_filter (Resample.c), Keys' cubic convolution kernel, in PIL's arithmetic order."""
    x = x.abs()
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return torch.where(x < 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


_RESIZE_SUPPORT = {"bilinear": 1.0, "bicubic": 2.0}


def _check_interpolation(name: str) -> str:
    if name not in _RESIZE_SUPPORT:
        raise ValueError(f"interpolation {name!r} is not supported on the device path: use 'bilinear' or 'bicubic'")
    return name


_PRECISION_BITS = 22  # PIL's fixed-point resampling precision for 8-bit images (32 - 8 - 2)


def _resize_weights(start: Tensor, length: Tensor, in_size: int, out_size: int, kind: str,
                    offset: Tensor | None = None, total: Tensor | None = None) -> Tensor:
    """(B, out_size, in_size) weights of PIL's resize of the crop [start, start + length) to `out_size` pixels, in
    PIL's fixed point (integers, 1.0 = 2**22) as float64. With `offset` and `total` (per sample), the rows are
    output pixels offset .. offset + out_size of a resize to `total` pixels: a resize, then a crop.

    PIL (Resample.c, precompute_coeffs): output pixel i samples around centre start + (i + 0.5) * scale with the
    filter stretched by max(scale, 1) (antialiasing when shrinking), taps limited to the crop, normalized to sum 1,
    then rounded to 22-bit fixed point (normalize_coeffs_8bpc). Exact ties (x.5 levels) are common when upsampling,
    so the rounding of the weights decides many pixels; using PIL's integer weights makes the result bit-exact.
    """
    dev, f64 = start.device, torch.float64
    start = start.to(f64)[:, None, None]
    length = length.to(f64)[:, None, None]
    if total is None:
        scale = length / torch.full_like(length, out_size)
        first = torch.zeros_like(length)
    else:
        scale = length / total.to(f64)[:, None, None]
        first = offset.to(f64)[:, None, None]
    inv_stretch = 1.0 / scale.clamp(min=1.0)  # PIL multiplies by ss = 1 / filterscale
    centre = (first + torch.arange(out_size, device=dev, dtype=f64)[None, :, None] + 0.5) * scale  # crop coords
    j = torch.arange(in_size, device=dev, dtype=f64)[None, None, :] - start  # input pixel index within the crop
    t = (j - centre + 0.5) * inv_stretch
    w = (1 - t.abs()).clamp(min=0) if kind == "bilinear" else _cubic(t)
    w = w * ((j >= 0) & (j < length))
    total = w.sum(-1, keepdim=True)
    w = w / torch.where(total == 0, torch.ones_like(total), total)
    w = w * (1 << _PRECISION_BITS)
    return torch.where(w < 0, w - 0.5, w + 0.5).trunc()


def _fixed_to_u8(x: Tensor) -> Tensor:
    """PIL's clip8((sum + 2**21) >> 22): round half up out of fixed point, clip to 0..255 (exact in float64)."""
    return ((x + (1 << (_PRECISION_BITS - 1))) / (1 << _PRECISION_BITS)).floor_().clamp_(0, 255)


def _resample(x: Tensor, wy: Tensor, wx: Tensor) -> Tensor:
    """x (B, C, H, W) holding integers 0..255 -> float32 (B, C, S, T): PIL's horizontal pass with wx (B|1, T, W),
    rounded to uint8, then its vertical pass with wy (B|1, S, H), rounded again. float64 keeps every sum exact."""
    x = x.to(torch.float64)
    tmp = _fixed_to_u8(torch.matmul(x, wx.transpose(1, 2).unsqueeze(1)))
    return _fixed_to_u8(torch.matmul(wy.unsqueeze(1), tmp)).float()


def resized_crop(
    images: Tensor,
    top: Tensor,
    left: Tensor,
    height: Tensor,
    width: Tensor,
    size: int,
    interpolation: str = "bilinear",
    flip: Tensor | None = None,
) -> Tensor:
    """Per-sample crop boxes resized to size x size like PIL's `img.crop(box).resize(...)` (what torchvision's
    resized_crop does on PIL images), then flipped horizontally where `flip`: float (B, C, size, size), integers."""
    _check_interpolation(interpolation)
    h, w = images.shape[-2:]
    wy = _resize_weights(top, height, h, size, interpolation)
    wx = _resize_weights(left, width, w, size, interpolation)
    if flip is not None:
        wx = torch.where(flip[:, None, None], wx.flip(1), wx)
    return _resample(images.float(), wy, wx)


def resized_size(h: Tensor, w: Tensor, short: int) -> tuple[Tensor, Tensor]:
    """torchvision's Resize(short) output size per sample: the shorter side becomes `short`, the longer
    int(short * long / short_side)."""
    f64, tall = torch.float64, w <= h
    long_side = lambda a, b: (short * a.to(f64) / b.to(f64)).trunc().long()  # noqa: E731  int(short * a / b)
    new_h = torch.where(tall, long_side(h, w), torch.full_like(h, short))
    new_w = torch.where(tall, torch.full_like(w, short), long_side(w, h))
    return new_h, new_w


def padded_crop(images: Tensor, sizes: Tensor, resized: tuple[Tensor, Tensor], corner: tuple[Tensor, Tensor],
                size: int, interpolation: str = "bilinear", flip: Tensor | None = None) -> Tensor:
    """Each image (its own (h, w) in `sizes`) resized to `resized` (new_h, new_w), then the size x size window
    whose top-left corner is at `corner` (top, left; negative or past the edge reads zeros: the padding), then
    flipped where `flip`. Exactly PIL's resize, zero padding and crop (float (B, C, size, size), integers)."""
    _check_interpolation(interpolation)
    zero, ar = torch.zeros_like(sizes[:, 0]), torch.arange(size, device=images.device)
    weights = []
    for axis in (0, 1):
        total, first = resized[axis], corner[axis]
        wt = _resize_weights(zero, sizes[:, axis], images.shape[-2 + axis], size, interpolation, first, total)
        inside = (first[:, None] + ar >= 0) & (first[:, None] + ar < total[:, None])
        weights.append(wt * inside[:, :, None])
    wy, wx = weights
    if flip is not None:
        wx = torch.where(flip[:, None, None], wx.flip(1), wx)
    return _resample(images.float(), wy, wx)


def _randint(high: Tensor, generator: torch.Generator | None) -> Tensor:
    """Uniform integers in [0, high] (inclusive, per element), like Python's random.randint(0, high)."""
    u = torch.rand(high.shape, generator=generator, device=high.device, dtype=torch.float64)
    return torch.minimum((u * (high + 1)).floor(), high.to(torch.float64)).long()


def _first_true(ok: Tensor) -> tuple[Tensor, Tensor]:
    """Index of the first True along dim 1 and whether there is one (no host sync)."""
    return ok.to(torch.uint8).argmax(1), ok.any(1)


def rrc_params(
    batch: int,
    height: int | Tensor,
    width: int | Tensor,
    generator: torch.Generator | None = None,
    device: Device = "cpu",
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-sample (top, left, h, w) of timm's RandomResizedCropAndInterpolation.get_params, batched.

    Ten attempts per sample, the first whose rounded size fits is used; none fitting -> timm's centre crop.
    `height` and `width` are one image size or per-sample (B,) tensors; the random draws do not depend on them.
    """
    f64 = torch.float64
    if not torch.is_tensor(height):
        height = torch.full((batch,), height, device=device)
        width = torch.full((batch,), width, device=device)
    height, width = height.to(device=device, dtype=torch.long), width.to(device=device, dtype=torch.long)
    hf, wf = height.to(f64), width.to(f64)
    shape = (batch, 10)  # ten attempts per sample
    u_area = torch.rand(shape, generator=generator, device=device, dtype=f64)
    u_ratio = torch.rand(shape, generator=generator, device=device, dtype=f64)
    target_area = (scale[0] + (scale[1] - scale[0]) * u_area) * (hf * wf)[:, None]
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(lo + (hi - lo) * u_ratio)
    w = torch.sqrt(target_area * aspect).round()  # torch.round and Python's round both round half to even
    h = torch.sqrt(target_area / aspect).round()
    idx, found = _first_true((w <= wf[:, None]) & (h <= hf[:, None]))
    w = w.gather(1, idx[:, None])[:, 0]
    h = h.gather(1, idx[:, None])[:, 0]
    # timm's fallback: the whole image, narrowed to the ratio range (f64 maths and rounding, as Python's)
    in_ratio = wf / hf
    fw = torch.where(in_ratio > max(ratio), (hf * max(ratio)).round().long(), width)
    fh = torch.where(in_ratio < min(ratio), (wf / min(ratio)).round().long(), height)
    w = torch.where(found, w, fw.to(f64)).long()
    h = torch.where(found, h, fh.to(f64)).long()
    top = torch.where(found, _randint(height - h, generator), (height - fh) // 2)
    left = torch.where(found, _randint(width - w, generator), (width - fw) // 2)
    return top, left, h, w


# ------------------------------------------------------------------------------------------------------ RandAugment

_LEVEL_DENOM = 10.0
_INCREASING_OPS = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "PosterizeIncreasing",
    "SolarizeIncreasing",
    "SolarizeAdd",
    "ColorIncreasing",
    "ContrastIncreasing",
    "BrightnessIncreasing",
    "SharpnessIncreasing",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
)
_PLAIN_OPS = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "Posterize",
    "Solarize",
    "SolarizeAdd",
    "Color",
    "Contrast",
    "Brightness",
    "Sharpness",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
)
RAND_AUGMENT_OPS: tuple[str, ...] = tuple(dict.fromkeys(_INCREASING_OPS + _PLAIN_OPS))
"""Every op the device path implements (timm names); `_RAND_INCREASING_TRANSFORMS` and `_RAND_TRANSFORMS`."""

_LUT_OPS = {
    "AutoContrast",
    "Equalize",
    "Invert",
    "Posterize",
    "PosterizeIncreasing",
    "Solarize",
    "SolarizeIncreasing",
    "SolarizeAdd",
    "Brightness",
    "BrightnessIncreasing",
    "Contrast",
    "ContrastIncreasing",
}
_BLEND_OPS = {"Color", "ColorIncreasing", "Sharpness", "SharpnessIncreasing"}
_AFFINE_OPS = {"Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"}
_TRANSLATE_PCT = 0.45  # timm's default hparams['translate_pct'] for RandAugment


@dataclass(frozen=True)
class RandAugmentConfig:
    """A timm RandAugment string, parsed: 'rand-m9-mstd0.5-inc1' -> magnitude 9, std 0.5, increasing ops."""

    magnitude: float = _LEVEL_DENOM
    num_layers: int = 2
    prob: float = 0.5
    magnitude_std: float = 0.0
    magnitude_max: float | None = None
    increasing: bool = False

    @classmethod
    def parse(cls, config: str) -> RandAugmentConfig:
        """Same grammar and defaults as timm's `rand_augment_transform` (without the 't' transform-set option)."""
        parts = config.split("-")
        if parts[0] != "rand":
            raise ValueError(f"not a RandAugment config: {config!r}")
        opts: dict[str, Any] = {}
        for part in parts[1:]:
            if part.startswith("t"):
                raise ValueError(f"RandAugment option {part!r} (transform set) is not supported on the device path")
            pieces = re.split(r"(\d.*)", part)
            if len(pieces) < 2:
                continue
            key, val = pieces[:2]
            if key == "mstd":
                std = float(val)
                opts["magnitude_std"] = math.inf if std > 100 else std
            elif key == "mmax":
                opts["magnitude_max"] = int(val)
            elif key == "inc":
                opts["increasing"] = bool(int(val))
            elif key == "m":
                opts["magnitude"] = int(val)
            elif key == "n":
                opts["num_layers"] = int(val)
            elif key == "p":
                opts["prob"] = float(val)
            else:
                raise ValueError(f"unknown RandAugment option {part!r} in {config!r}")
        return cls(**opts)

    @property
    def ops(self) -> tuple[str, ...]:
        return _INCREASING_OPS if self.increasing else _PLAIN_OPS


def _grey(x: Tensor) -> Tensor:
    """PIL's RGB -> L: (19595 R + 38470 G + 7471 B + 0x8000) >> 16, exact in float32 (sums stay below 2**24)."""
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return torch.floor((19595 * r + 38470 * g + 7471 * b + 32768) / 65536)


def _smooth(x: Tensor) -> Tensor:
    """PIL's ImageFilter.SMOOTH (3x3 kernel 1 1 1 / 1 5 1 / 1 1 1, divided by 13); border pixels are kept.

    The integer sum is built from shifted slices (exact in float32, unlike a convolution that TF32 or autocast
    could run at lower precision), then divided and rounded as PIL's filter does.
    """
    h, w = x.shape[-2:]
    total = 4 * x[..., 1 : h - 1, 1 : w - 1]
    for dy in range(3):
        for dx in range(3):
            total = total + x[..., dy : h - 2 + dy, dx : w - 2 + dx]
    inner = _round_u8(total / 13)
    out = x.clone()
    out[:, :, 1:-1, 1:-1] = inner
    return out


def _pil_interpolate(taps: list[Tensor], d: Tensor) -> Tensor:
    """PIL's BILINEAR / BICUBIC macros (Geometry.c), in their arithmetic order: 2 taps linear, 4 taps a=-1 cubic."""
    if len(taps) == 2:
        v1, v2 = taps
        return v1 + (v2 - v1) * d
    v1, v2, v3, v4 = taps
    p2 = -v1 + v3
    p3 = 2 * (v1 - v2) + v3 - v4
    p4 = -v1 + v2 - v3 + v4
    return v2 + d * (p2 + d * (p3 + d * p4))


def _blend(degenerate: Tensor, image: Tensor, factor: Tensor) -> Tensor:
    """PIL's Image.blend(degenerate, image, factor) on 8-bit images: float32 maths, clip, truncate."""
    out = degenerate + factor * (image - degenerate)
    return out.clamp_(0, 255).trunc_()


class _BatchedRandAugment:
    """One RandAugment layer at a time, for a batch with one (op, magnitude, sign) per sample.

    Each layer is three batched passes whatever the op mix: a per-sample lookup table (point ops), a blend with a
    per-sample degenerate image (Color, Sharpness) and a per-sample affine resampling (geometric ops); samples whose
    op belongs to another pass go through it unchanged (identity table, factor 1, identity matrix).
    """

    def __init__(self, ops: Sequence[str], interpolation: str, fill: Sequence[int], device: Device | None = None):
        unknown = [op for op in ops if op not in RAND_AUGMENT_OPS]
        if unknown:
            raise ValueError(f"RandAugment ops {unknown} are not implemented on the device path")
        self.ops = tuple(ops)
        self.interpolation = _check_interpolation(interpolation)
        self.fill = tuple(int(v) for v in fill)
        self._fills: dict[tuple[torch.device, torch.dtype], Tensor] = {}
        if device is not None:
            self._fill_tensor(torch.empty(0, device=device))

    # -- arguments, as timm's LEVEL_TO_ARG computes them (in float64, like Python)

    @staticmethod
    def _signed(value: Tensor, negate: Tensor) -> Tensor:
        return torch.where(negate, -value, value)

    @staticmethod
    def _level(m: Tensor) -> Tensor:
        """m / 10 as a true float64 division (tensor / Python scalar may multiply by the reciprocal on CUDA)."""
        return m / torch.full_like(m, _LEVEL_DENOM)

    def _lut(self, x: Tensor, op: Tensor, m: Tensor, negate: Tensor) -> Tensor:
        """(B, 3, 256) int64 lookup tables: the point op of each sample, identity for the others."""
        b, c = x.shape[:2]
        dev = x.device
        i = torch.arange(256, device=dev, dtype=torch.int64).expand(b, c, 256)
        lut = i.clone()
        level = self._level(m)  # (B,) float64
        flat = x.reshape(b, c, -1)
        for k, name in enumerate(self.ops):
            if name not in _LUT_OPS:
                continue
            sel = (op == k)[:, None, None]
            if name == "AutoContrast":
                lo = flat.amin(-1, keepdim=True).to(torch.float64)
                hi = flat.amax(-1, keepdim=True).to(torch.float64)
                span = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
                scale = torch.full_like(span, 255.0) / span  # a true division, like Python's (not 255 * (1/span))
                offset = -lo * scale
                table = (i.to(torch.float64) * scale + offset).trunc().clamp(0, 255).long()
                table = torch.where(hi > lo, table, i)
            elif name == "Equalize":
                table = self._equalize_lut(flat)
            elif name == "Invert":
                table = 255 - i
            elif name in ("Posterize", "PosterizeIncreasing"):
                bits = (level * 4).floor().long()
                if name == "PosterizeIncreasing":
                    bits = 4 - bits
                shift = (8 - bits).clamp(0, 8)[:, None, None]
                table = (i >> shift) << shift
            elif name in ("Solarize", "SolarizeIncreasing"):
                thresh = (level * 256).floor().clamp(max=256).long()
                if name == "SolarizeIncreasing":
                    thresh = 256 - thresh
                table = torch.where(i < thresh[:, None, None], i, 255 - i)
            elif name == "SolarizeAdd":
                add = (level * 110).floor().clamp(max=128).long()[:, None, None]
                table = torch.where(i < 128, (i + add).clamp(max=255), i)
            else:  # Brightness / Contrast: blends with a constant image are lookup tables too
                factor = self._enhance_factor(name, level, negate)[:, None, None]
                values = i.to(torch.float32)
                if name.startswith("Brightness"):
                    degenerate = torch.zeros_like(values[:, :, :1])
                else:
                    grey = _grey(x).to(torch.float64).flatten(1)
                    count = torch.full_like(grey[:, 0], grey.shape[1])  # true division, as ImageStat's
                    mean = (grey.sum(1) / count + 0.5).floor()  # int(ImageStat mean + 0.5)
                    degenerate = mean.to(torch.float32)[:, None, None]
                table = _blend(degenerate, values, factor).long()
            lut = torch.where(sel, table, lut)
        return lut

    @staticmethod
    def _equalize_lut(flat: Tensor) -> Tensor:
        """ImageOps.equalize per channel: step = (n - count of the last used level) // 255, lut = cumulative / step."""
        b, c, n = flat.shape
        hist = torch.zeros(b * c, 256, device=flat.device, dtype=torch.int64)
        hist.scatter_add_(1, flat.reshape(b * c, n).long(), torch.ones(b * c, n, device=flat.device, dtype=torch.int64))
        used = hist > 0
        last = 255 - used.flip(1).to(torch.uint8).argmax(1, keepdim=True)
        step = (n - hist.gather(1, last)) // 255
        cum = hist.cumsum(1) - hist
        safe = step.clamp(min=1)
        table = torch.div(step // 2 + cum, safe, rounding_mode="floor").clamp(max=255)
        ident = torch.arange(256, device=flat.device, dtype=torch.int64).expand(b * c, 256)
        keep = (used.sum(1, keepdim=True) <= 1) | (step == 0)
        return torch.where(keep, ident, table).view(b, c, 256)

    @staticmethod
    def _enhance_factor(name: str, level: Tensor, negate: Tensor) -> Tensor:
        """timm's _enhance_level_to_arg / _enhance_increasing_level_to_arg, as PIL's float32 blend factor."""
        if name.endswith("Increasing"):
            delta = torch.where(negate, -(level * 0.9), level * 0.9)
            factor = (1.0 + delta).clamp(min=0.1)
        else:
            factor = level * 1.8 + 0.1
        return factor.to(torch.float32)

    def _blend_pass(self, x: Tensor, op: Tensor, m: Tensor, negate: Tensor) -> Tensor:
        names = [(k, n) for k, n in enumerate(self.ops) if n in _BLEND_OPS]
        if not names:
            return x
        level = self._level(m)
        degenerate = x
        factor = torch.ones(x.shape[0], device=x.device, dtype=torch.float32)
        grey = smooth = None
        for k, name in names:
            sel = op == k
            if name.startswith("Color"):
                grey = _grey(x).expand_as(x) if grey is None else grey
                degenerate = torch.where(sel[:, None, None, None], grey, degenerate)
            else:
                smooth = _smooth(x) if smooth is None else smooth
                degenerate = torch.where(sel[:, None, None, None], smooth, degenerate)
            factor = torch.where(sel, self._enhance_factor(name, level, negate), factor)
        return _blend(degenerate, x, factor[:, None, None, None])

    def _matrices(self, op: Tensor, m: Tensor, negate: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
        """(B, 6) PIL affine data (a, b, c, d, e, f): input = (a u + b v + c, d u + e v + f) at output pixel centre
        (u, v); and whether the sample has a geometric op."""
        b = op.shape[0]
        level = self._level(m)
        mat = torch.zeros(b, 6, device=op.device, dtype=torch.float64)  # identity; no host->device copy
        mat[:, 0] = 1.0
        mat[:, 4] = 1.0
        geometric = torch.zeros(b, device=op.device, dtype=torch.bool)
        for k, name in enumerate(self.ops):
            if name not in _AFFINE_OPS:
                continue
            sel = op == k
            one, zero = torch.ones_like(level), torch.zeros_like(level)
            if name == "Rotate":
                degrees = self._signed(level * 30.0, negate)
                angle = -torch.deg2rad(degrees)
                # PIL's Image.rotate: rounded cos/sin, rotation about the centre (w / 2, h / 2)
                cos = torch.round(torch.cos(angle) * 1e15) / 1e15
                sin = torch.round(torch.sin(angle) * 1e15) / 1e15
                cx, cy = width / 2.0, height / 2.0
                c = cos * -cx + sin * -cy + cx
                f = -sin * -cx + cos * -cy + cy
                new = torch.stack([cos, sin, c, -sin, cos, f], 1)
            elif name in ("ShearX", "ShearY"):
                s = self._signed(level * 0.3, negate)
                if name == "ShearX":
                    new = torch.stack([one, s, zero, zero, one, zero], 1)
                else:
                    new = torch.stack([one, zero, zero, s, one, zero], 1)
            else:
                pct = self._signed(level * _TRANSLATE_PCT, negate)
                if name == "TranslateXRel":
                    new = torch.stack([one, zero, pct * width, zero, one, zero], 1)
                else:
                    new = torch.stack([one, zero, zero, zero, one, pct * height], 1)
            mat = torch.where(sel[:, None], new, mat)
            geometric = geometric | sel
        return mat, geometric

    def _affine(self, x: Tensor, mat: Tensor) -> Tensor:
        """PIL's Image.transform(AFFINE) with bilinear or (a=-1) bicubic filtering and the fill colour outside.

        Computed in float64 like PIL: the result is truncated, so float32 coordinates (14.4 px shifts...) would land
        a level below PIL on a few percent of the pixels.
        """
        b, c, h, w = x.shape
        dev, f64 = x.device, torch.float64
        mat = mat.to(f64)[:, :, None, None]
        u = (torch.arange(w, device=dev, dtype=f64) + 0.5)[None, None, :]
        v = (torch.arange(h, device=dev, dtype=f64) + 0.5)[None, :, None]
        xin = mat[:, 0] * u + mat[:, 1] * v + mat[:, 2]  # (B, H, W)
        yin = mat[:, 3] * u + mat[:, 4] * v + mat[:, 5]
        inside = (xin >= 0) & (xin < w) & (yin >= 0) & (yin < h)
        xs, ys = xin - 0.5, yin - 0.5
        x0, y0 = xs.floor(), ys.floor()
        dx, dy = xs - x0, ys - y0
        offsets = (0, 1) if self.interpolation == "bilinear" else (-1, 0, 1, 2)
        flat = x.reshape(b, c, h * w).to(f64)
        cols = [(x0 + o).clamp(0, w - 1).long().view(b, 1, h * w) for o in offsets]
        dx, dy = dx.view(b, 1, h * w), dy.view(b, 1, h * w)
        rows = []
        for oy in offsets:
            row_index = (y0 + oy).clamp(0, h - 1).long().view(b, 1, h * w) * w
            taps = [flat.gather(2, (row_index + col).expand(b, c, h * w)) for col in cols]
            rows.append(_pil_interpolate(taps, dx))
        out = _pil_interpolate(rows, dy)
        out = out.view(b, c, h, w).clamp_(0, 255).trunc_().to(x.dtype)
        return torch.where(inside[:, None], out, self._fill_tensor(x))

    def _fill_tensor(self, like: Tensor) -> Tensor:
        """The fill colour as (1, 3, 1, 1) on `like`'s device, built once per device (no copy in the loop)."""
        key = (like.device, like.dtype)
        if key not in self._fills:
            self._fills[key] = torch.tensor(self.fill, device=like.device, dtype=like.dtype).view(1, -1, 1, 1)
        return self._fills[key]

    def layer(self, x: Tensor, op: Tensor, magnitude: Tensor, negate: Tensor, apply: Tensor) -> Tensor:
        """Apply op `self.ops[op[i]]` at `magnitude[i]` (random sign flips where `negate[i]`) to the samples with
        `apply[i]`; x is float (B, 3, H, W) holding integers 0..255, and so is the result."""
        op = torch.where(apply, op, torch.full_like(op, -1))  # -1: no op, every pass is the identity
        magnitude = magnitude.to(torch.float64)
        lut = self._lut(x, op, magnitude, negate)
        b, c, h, w = x.shape
        x = lut.gather(2, x.reshape(b, c, h * w).long()).view(b, c, h, w).to(x.dtype)
        x = self._blend_pass(x, op, magnitude, negate)
        mat, geometric = self._matrices(op, magnitude, negate, h, w)
        if any(name in _AFFINE_OPS for name in self.ops):
            x = torch.where(geometric[:, None, None, None], self._affine(x, mat), x)
        return x


def apply_rand_augment_op(
    x: Tensor,
    name: str,
    magnitude: float,
    negate: bool = False,
    interpolation: str = "bilinear",
    fill: Sequence[int] = (128, 128, 128),
) -> Tensor:
    """One RandAugment op (timm `name`, e.g. 'ShearX') at a fixed magnitude on every image of x (uint8 or float
    0..255, (B, 3, H, W)); `negate` is the outcome of timm's random sign. Returns float 0..255. For tests."""
    ra = _BatchedRandAugment((name,), interpolation, fill)
    b = x.shape[0]
    dev = x.device
    op = torch.zeros(b, device=dev, dtype=torch.long)
    mag = torch.full((b,), float(magnitude), device=dev, dtype=torch.float64)
    neg = torch.full((b,), bool(negate), device=dev)
    return ra.layer(x.float(), op, mag, neg, torch.ones(b, device=dev, dtype=torch.bool))


# ---------------------------------------------------------------------------------------------------- augmentations


def _fill_color(mean: Sequence[float]) -> tuple[int, ...]:
    """timm's RandAugment fill colour: img_mean = round(255 * mean), at most 255."""
    return tuple(min(255, round(255 * v)) for v in mean)


def _beta(alpha: float, shape: tuple[int, ...], generator: torch.Generator | None, device: Device) -> Tensor:
    """Beta(alpha, alpha) samples from two Gamma(alpha) draws, on the device with `generator`."""
    conc = torch.full((2, *shape), float(alpha), device=device, dtype=torch.float32)
    g = torch._standard_gamma(conc, generator=generator)
    return g[0] / (g[0] + g[1]).clamp(min=torch.finfo(torch.float32).tiny)


class _Normalizing:
    """ToTensor + Normalize of images holding integers 0..255, shared by training and evaluation."""

    device: torch.device

    def _set_normalization(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = torch.tensor(mean, device=self.device, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=self.device, dtype=torch.float32).view(1, 3, 1, 1)
        self._255 = torch.tensor(255.0, device=self.device)  # a device divisor: true division, like ToTensor's

    def normalize(self, x: Tensor) -> Tensor:
        """The CPU pipeline's float32 formula: x / 255, minus mean, over std."""
        return (x / self._255 - self.mean) / self.std


class GpuAugment(_Normalizing):
    """Batched training augmentation on the device, equal in distribution to `runner.recipes`' CPU pipeline.

    Random-resized crop + flip (PIL resampling as per-sample matrices), RandAugment when the recipe has it,
    normalization, random erasing (pixel mode) when the recipe has it, then mixup/cutmix (timm's batch mode)
    with label smoothing when the recipe has them. See the module docstring for what is exact and what is not.
    """

    def __init__(
        self,
        recipe: Any,
        img_size: int,
        num_classes: int,
        device: Device,
        mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
        std: Sequence[float] = IMAGENET_DEFAULT_STD,
    ):
        self.img_size = int(img_size)
        self.num_classes = int(num_classes)
        self.device = torch.device(device)
        self.interpolation = _check_interpolation(recipe.train_interpolation)
        self._set_normalization(mean, std)
        self.scale, self.ratio, self.hflip = tuple(recipe.crop_scale), (3 / 4, 4 / 3), 0.5
        self.pad = int(recipe.crop_padding * self.img_size + 0.5) if recipe.crop == "pad" else None
        self.rand_augment: RandAugmentConfig | None = None
        self._ra: _BatchedRandAugment | None = None
        if recipe.rand_augment:
            self.rand_augment = RandAugmentConfig.parse(recipe.rand_augment)
            self._ra = _BatchedRandAugment(self.rand_augment.ops, self.interpolation, _fill_color(mean), self.device)
        self.erase_prob = float(recipe.random_erasing)
        self.mixup_alpha, self.cutmix_alpha = float(recipe.mixup), float(recipe.cutmix)
        self.switch_prob = 0.5
        self.label_smoothing = float(recipe.label_smoothing)
        self._compiled: Callable[..., tuple[Tensor, Tensor]] | None = None

    @property
    def mixes(self) -> bool:
        """True when targets come out soft (mixup or cutmix on)."""
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def compiled(self) -> Callable[..., tuple[Tensor, Tensor]]:
        """This augmentation as one `torch.compile` graph (`fullgraph`: no graph break, so no host sync; static
        shapes), compiled once per instance. It takes no generator: dynamo cannot trace a `torch.Generator`, so
        its draws come from the device's global RNG, which the training loop seeds per (seed, epoch, rank)."""
        if self._compiled is None:
            self._compiled = torch.compile(self.__call__, fullgraph=True, dynamic=False)
        return self._compiled

    def __call__(
        self, images_uint8: Tensor, labels: Tensor, generator: torch.Generator | None = None,
        sizes: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """uint8 (B, 3, H, W) images and int labels -> float (B, 3, S, S) normalized images and targets:
        (B, num_classes) soft targets when mixup/cutmix is on, else the int labels. `sizes` (B, 2): each image's
        own height and width inside a larger canvas (see DeviceDataset)."""
        g = generator
        x = self.crop_flip(images_uint8, g, sizes)
        if self._ra is not None:
            x = self.rand_augment_batch(x, g)
        x = self.normalize(x)
        if self.erase_prob > 0:
            x = self.erase(x, g)
        if self.mixes:
            return self.mix(x, labels, g)
        return x, labels

    # -- the stages, public so that tests can measure each one

    def crop_flip(self, images: Tensor, generator: torch.Generator | None = None,
                  sizes: Tensor | None = None) -> Tensor:
        """Random-resized crop (or pad-and-crop) to img_size and horizontal flip: float (B, 3, S, S) holding
        integers 0..255."""
        b, _, h, w = images.shape
        if self.pad is not None:
            return self.pad_crop_flip(images, generator, sizes)
        if sizes is not None:
            h, w = sizes[:, 0], sizes[:, 1]
        top, left, ch, cw = rrc_params(b, h, w, generator, images.device, self.scale, self.ratio)
        flip = torch.rand(b, generator=generator, device=images.device) < self.hflip
        return resized_crop(images, top, left, ch, cw, self.img_size, self.interpolation, flip)

    def pad_crop_flip(self, images: Tensor, generator: torch.Generator | None = None,
                      sizes: Tensor | None = None) -> Tensor:
        """The 'pad' crop, as the loader's Resize(img_size) + RandomCrop(img_size, padding) + flip: the shorter side
        resized to img_size (none at the native size), `pad` zero pixels on each side, a random img_size window
        (offsets uniform in [0, resized + 2 pad - img_size]) and a flip. `sizes`: each image's own (h, w) in a
        canvas."""
        b, _, h, w = images.shape
        dev, s, p = images.device, self.img_size, self.pad
        if sizes is None:
            sizes = torch.tensor([[h, w]], device=dev).expand(b, 2)
        new_h, new_w = resized_size(sizes[:, 0], sizes[:, 1], s)
        oy, ox = _randint(torch.stack([new_h, new_w]) + 2 * p - s, generator)
        flip = torch.rand(b, generator=generator, device=dev) < self.hflip
        return padded_crop(images, sizes, (new_h, new_w), (oy - p, ox - p), s, self.interpolation, flip)

    def rand_augment_batch(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """RandAugment on float images holding integers 0..255 (per-sample ops, magnitudes, signs)."""
        cfg, ra = self.rand_augment, self._ra
        assert cfg is not None and ra is not None
        b, dev = x.shape[0], x.device
        n_ops = len(cfg.ops)
        upper = cfg.magnitude_max or _LEVEL_DENOM
        for _ in range(cfg.num_layers):
            u = torch.rand((4, b), generator=generator, device=dev, dtype=torch.float64)
            op = (u[0] * n_ops).floor().long().clamp(max=n_ops - 1)
            apply = u[1] <= cfg.prob  # timm skips when random() > prob
            if cfg.magnitude_std == math.inf:
                mag = u[2] * cfg.magnitude
            elif cfg.magnitude_std > 0:
                noise = torch.randn(b, generator=generator, device=dev, dtype=torch.float64)
                mag = cfg.magnitude + cfg.magnitude_std * noise
            else:
                mag = torch.full((b,), float(cfg.magnitude), device=dev, dtype=torch.float64)
            mag = mag.clamp(0.0, upper)
            negate = u[3] > 0.5  # timm's _randomly_negate
            x = ra.layer(x, op, mag, negate, apply)
        return x

    def erase(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """timm's RandomErasing(p, mode='pixel', count 1) on normalized images, per sample."""
        b, c, h, w = x.shape
        dev = x.device
        attempts = 10
        u = torch.rand((3, b, attempts), generator=generator, device=dev, dtype=torch.float64)
        area = h * w
        target = (0.02 + (1 / 3 - 0.02) * u[0]) * area
        lo, hi = math.log(0.3), math.log(1 / 0.3)
        aspect = torch.exp(lo + (hi - lo) * u[1])
        eh = torch.sqrt(target * aspect).round()
        ew = torch.sqrt(target / aspect).round()
        idx, found = _first_true((ew < w) & (eh < h))
        eh = eh.gather(1, idx[:, None])[:, 0].long()
        ew = ew.gather(1, idx[:, None])[:, 0].long()
        erase = (torch.rand(b, generator=generator, device=dev, dtype=torch.float64) <= self.erase_prob) & found
        top = _randint((h - eh).clamp(min=0), generator)
        left = _randint((w - ew).clamp(min=0), generator)
        rows = torch.arange(h, device=dev)[None, :, None]
        cols = torch.arange(w, device=dev)[None, None, :]
        box = (
            (rows >= top[:, None, None])
            & (rows < (top + eh)[:, None, None])
            & (cols >= left[:, None, None])
            & (cols < (left + ew)[:, None, None])
            & erase[:, None, None]
        )
        noise = torch.randn(x.shape, generator=generator, device=dev, dtype=x.dtype)
        return torch.where(box[:, None], noise, x)

    def mix(self, x: Tensor, labels: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """timm's Mixup(mode='batch', prob=1): one lambda for the batch, mixup or cutmix with the reversed batch."""
        b, _, h, w = x.shape
        if b % 2:
            raise ValueError(f"mixup/cutmix needs an even batch size (as timm's), got {b}")
        dev = x.device
        u = torch.rand(3, generator=generator, device=dev, dtype=torch.float64)
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            use_cutmix = u[0] < self.switch_prob
            lam = torch.where(
                use_cutmix,
                _beta(self.cutmix_alpha, (), generator, dev),
                _beta(self.mixup_alpha, (), generator, dev),
            )
        elif self.mixup_alpha > 0:
            use_cutmix = torch.zeros((), device=dev, dtype=torch.bool)
            lam = _beta(self.mixup_alpha, (), generator, dev)
        else:
            use_cutmix = torch.ones((), device=dev, dtype=torch.bool)
            lam = _beta(self.cutmix_alpha, (), generator, dev)
        lam = lam.to(torch.float64)
        # timm's rand_bbox: a box of side sqrt(1 - lam) * size around a uniform centre, clipped to the image
        ratio = torch.sqrt(1 - lam)
        cut_h, cut_w = (h * ratio).floor(), (w * ratio).floor()
        cy, cx = (u[1] * h).floor(), (u[2] * w).floor()
        yl = (cy - torch.div(cut_h, 2, rounding_mode="floor")).clamp(0, h)
        yh = (cy + torch.div(cut_h + 1, 2, rounding_mode="floor")).clamp(0, h)
        xl = (cx - torch.div(cut_w, 2, rounding_mode="floor")).clamp(0, w)
        xh = (cx + torch.div(cut_w + 1, 2, rounding_mode="floor")).clamp(0, w)
        box_lam = 1 - (yh - yl) * (xh - xl) / (h * w)
        rows = torch.arange(h, device=dev, dtype=torch.float64)[:, None]
        cols = torch.arange(w, device=dev, dtype=torch.float64)[None, :]
        inside = (rows >= yl) & (rows < yh) & (cols >= xl) & (cols < xh)
        keep = torch.where(use_cutmix, (~inside).to(x.dtype), lam.to(x.dtype).expand(h, w))
        x = x * keep + x.flip(0) * (1 - keep)
        lam = torch.where(use_cutmix, box_lam, lam).to(torch.float32)
        return x, self.soft_targets(labels, lam)

    def soft_targets(self, labels: Tensor, lam: Tensor | float) -> Tensor:
        """timm's mixup_target: label-smoothed one-hot, mixed with the reversed batch's by lam."""
        off = self.label_smoothing / self.num_classes
        on = 1.0 - self.label_smoothing + off
        y1 = torch.full((labels.shape[0], self.num_classes), off, device=labels.device, dtype=torch.float32)
        y1.scatter_(1, labels.long().view(-1, 1), on)
        return y1 * lam + y1.flip(0) * (1 - lam)


class GpuEval(_Normalizing):
    """Evaluation preprocessing, batched: resize the shorter side to floor(img_size / crop_pct) (PIL resampling
    with antialiasing), centre-crop img_size, normalize. Bit-exact with `runner.recipes.eval_transform`."""

    def __init__(
        self,
        recipe: Any,
        img_size: int,
        device: Device,
        mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
        std: Sequence[float] = IMAGENET_DEFAULT_STD,
    ):
        self.img_size = int(img_size)
        self.crop_pct = float(recipe.eval_crop_pct)
        self.interpolation = _check_interpolation(recipe.eval_interpolation)
        self.device = torch.device(device)
        self._set_normalization(mean, std)
        self._weights: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}

    def _weights_for(self, h: int, w: int) -> tuple[Tensor, Tensor]:
        """Resize + centre-crop weights for a batch of h x w images, computed once per size."""
        if (h, w) not in self._weights:
            self._weights[(h, w)] = self._weights_per_sample(torch.tensor([[h, w]], device=self.device), h, w)
        return self._weights[(h, w)]

    def _weights_per_sample(self, sizes: Tensor, in_h: int, in_w: int) -> tuple[Tensor, Tensor]:
        """(B, S, in_h) and (B, S, in_w) weights of torchvision's Resize(int) + CenterCrop arithmetic for each
        sample's own (h, w) inside an in_h x in_w canvas: the rows of the full resize that the crop keeps."""
        f64, s = torch.float64, self.img_size
        h, w = sizes[:, 0], sizes[:, 1]
        new_h, new_w = resized_size(h, w, math.floor(self.img_size / self.crop_pct))
        top = ((new_h - s).to(f64) / 2.0).round().long()  # Python's round(): half to even, as torch's
        left = ((new_w - s).to(f64) / 2.0).round().long()
        zero = torch.zeros_like(h)
        wy = _resize_weights(zero, h, in_h, s, self.interpolation, offset=top, total=new_h)
        wx = _resize_weights(zero, w, in_w, s, self.interpolation, offset=left, total=new_w)
        return wy, wx

    def __call__(self, images_uint8: Tensor, sizes: Tensor | None = None) -> Tensor:
        """uint8 (B, 3, H, W) -> normalized float (B, 3, S, S); `sizes` (B, 2): each image's own height and width
        inside a larger canvas (see DeviceDataset)."""
        if sizes is None:
            wy, wx = self._weights_for(*images_uint8.shape[-2:])
        else:
            wy, wx = self._weights_per_sample(sizes, *images_uint8.shape[-2:])
        x = _resample(images_uint8.float(), wy, wx)
        return self.normalize(x)


# ------------------------------------------------------------------------------------------------------------ loader


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
    (`GpuAugment.compiled`) drawing from the global RNG instead of the generator.
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
            if isinstance(self.transform, GpuAugment) and self.compiled:
                x, y = self.transform.compiled()(x, y, **sizes)
            elif isinstance(self.transform, GpuAugment):
                x, y = self.transform(x, y, generator=g, **sizes)
            elif self.transform is not None:
                x = self.transform(x, **sizes)
            yield x, y
