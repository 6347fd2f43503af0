"""Per-sample random parameters drawn on the device, batched, with no host sync: crop boxes, integers, Beta lambdas.

The goal is the *same distributions* as timm's CPU transforms, not the same random numbers: randomness comes from a
`torch.Generator` on the device, so a run is reproducible from its seed but draws different samples than Python's
`random`/NumPy would (the tests compare distributions with Kolmogorov-Smirnov statistics).

Random-resized crop boxes follow timm's `RandomResizedCropAndInterpolation.get_params`: 10 attempts of area
U(0.08, 1) and log-uniform aspect ratio, rounding, the first crop that fits, the centre-crop fallback. Mixup's Beta
lambda comes from two Gamma draws on the device.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from runner.device_data.storage import Device


def randint(high: Tensor, generator: torch.Generator | None) -> Tensor:
    """Uniform integers in [0, high] (inclusive, per element), like Python's random.randint(0, high)."""
    u = torch.rand(high.shape, generator=generator, device=high.device, dtype=torch.float64)
    return torch.minimum((u * (high + 1)).floor(), high.to(torch.float64)).long()


def first_true(ok: Tensor) -> tuple[Tensor, Tensor]:
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
    idx, found = first_true((w <= wf[:, None]) & (h <= hf[:, None]))
    w = w.gather(1, idx[:, None])[:, 0]
    h = h.gather(1, idx[:, None])[:, 0]
    # timm's fallback: the whole image, narrowed to the ratio range (f64 maths and rounding, as Python's)
    in_ratio = wf / hf
    fw = torch.where(in_ratio > max(ratio), (hf * max(ratio)).round().long(), width)
    fh = torch.where(in_ratio < min(ratio), (wf / min(ratio)).round().long(), height)
    w = torch.where(found, w, fw.to(f64)).long()
    h = torch.where(found, h, fh.to(f64)).long()
    top = torch.where(found, randint(height - h, generator), (height - fh) // 2)
    left = torch.where(found, randint(width - w, generator), (width - fw) // 2)
    return top, left, h, w



def beta(alpha: float, shape: tuple[int, ...], generator: torch.Generator | None, device: Device) -> Tensor:
    """Beta(alpha, alpha) samples from two Gamma(alpha) draws, on the device with `generator`."""
    conc = torch.full((2, *shape), float(alpha), device=device, dtype=torch.float32)
    g = torch._standard_gamma(conc, generator=generator)
    return g[0] / (g[0] + g[1]).clamp(min=torch.finfo(torch.float32).tiny)

