"""PIL's 8-bit pixel arithmetic on float tensors holding integers 0..255: rounding, grey, SMOOTH, blend, taps.

The RandAugment ops are built from these. Images hold integers between ops, as PIL's uint8 images do. Where PIL's
arithmetic differs in the last bit (SMOOTH divides an exact integer sum by 13 where PIL sums float32 coefficients),
a pixel could move by one level, rarely; the tests never met it.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _round_u8(x: Tensor) -> Tensor:
    """Round half up and clip to 0..255, as PIL's 3x3 filters store their float result into a uint8 image."""
    return (x + 0.5).floor_().clamp_(0, 255)


def grey(x: Tensor) -> Tensor:
    """PIL's RGB -> L: (19595 R + 38470 G + 7471 B + 0x8000) >> 16, exact in float32 (sums stay below 2**24)."""
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return torch.floor((19595 * r + 38470 * g + 7471 * b + 32768) / 65536)


def smooth(x: Tensor) -> Tensor:
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


def pil_interpolate(taps: list[Tensor], d: Tensor) -> Tensor:
    """PIL's BILINEAR / BICUBIC macros (Geometry.c), in their arithmetic order: 2 taps linear, 4 taps a=-1 cubic."""
    if len(taps) == 2:
        v1, v2 = taps
        return v1 + (v2 - v1) * d
    v1, v2, v3, v4 = taps
    p2 = -v1 + v3
    p3 = 2 * (v1 - v2) + v3 - v4
    p4 = -v1 + v2 - v3 + v4
    return v2 + d * (p2 + d * (p3 + d * p4))


def blend(degenerate: Tensor, image: Tensor, factor: Tensor) -> Tensor:
    """PIL's Image.blend(degenerate, image, factor) on 8-bit images: float32 maths, clip, truncate."""
    out = degenerate + factor * (image - degenerate)
    return out.clamp_(0, 255).trunc_()

