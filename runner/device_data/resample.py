"""PIL's resampling (`Image.resize`) as batched matrix products with per-sample weights, bit-exact on uint8 images.

PIL resizes separably: a horizontal pass, rounded to uint8, then a vertical pass, rounded again; bilinear or bicubic,
antialiased when shrinking (the filter is stretched by the scale). Here each pass is a matrix product with per-sample
weight matrices holding PIL's own 22-bit fixed-point weights in float64, so every sum is exact. A crop box, a flip
(reversed horizontal weights), a resize followed by a crop, and zero padding are all folded into the weights. Given the
crop box, `resized_crop` is bit-exact with torchvision's `resized_crop` on PIL images, and `GpuEval` (Resize +
CenterCrop) with `runner.fitting.timm_parts.eval_transform`.

Deviations: only 'bilinear' and 'bicubic' (what `Recipe` allows; timm's 'random' raises ValueError); the weights are
normalized summing in another order than PIL, which could move a pixel by one level, rarely (the tests never met it).
The passes run in float64, cheap on data-centre GPUs and slower (still memory-bound at 32 px) on consumer ones.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _cubic(x: Tensor, a: float = -0.5) -> Tensor:
    """PIL's bicubic_filter (Resample.c), Keys' cubic convolution kernel, in PIL's arithmetic order."""
    x = x.abs()
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return torch.where(x < 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


_RESIZE_SUPPORT = {"bilinear": 1.0, "bicubic": 2.0}


def check_interpolation(name: str) -> str:
    """`name` if the device path resamples with it ('bilinear' or 'bicubic', what `Recipe` allows), else ValueError."""
    if name not in _RESIZE_SUPPORT:
        raise ValueError(f"interpolation {name!r} is not supported on the device path: use 'bilinear' or 'bicubic'")
    return name


_PRECISION_BITS = 22  # PIL's fixed-point resampling precision for 8-bit images (32 - 8 - 2)


def resize_weights(start: Tensor, length: Tensor, in_size: int, out_size: int, kind: str,
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


def resample(x: Tensor, wy: Tensor, wx: Tensor) -> Tensor:
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
    check_interpolation(interpolation)
    h, w = images.shape[-2:]
    wy = resize_weights(top, height, h, size, interpolation)
    wx = resize_weights(left, width, w, size, interpolation)
    if flip is not None:
        wx = torch.where(flip[:, None, None], wx.flip(1), wx)
    return resample(images.float(), wy, wx)


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
    check_interpolation(interpolation)
    zero, ar = torch.zeros_like(sizes[:, 0]), torch.arange(size, device=images.device)
    weights = []
    for axis in (0, 1):
        total, first = resized[axis], corner[axis]
        wt = resize_weights(zero, sizes[:, axis], images.shape[-2 + axis], size, interpolation, first, total)
        inside = (first[:, None] + ar >= 0) & (first[:, None] + ar < total[:, None])
        weights.append(wt * inside[:, :, None])
    wy, wx = weights
    if flip is not None:
        wx = torch.where(flip[:, None, None], wx.flip(1), wx)
    return resample(images.float(), wy, wx)
