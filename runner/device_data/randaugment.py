"""RandAugment on the device: timm's `rand_augment_transform`, batched, with one op, magnitude and sign per sample.

Configs are timm's `rand-mX-nN-pP-mstdS-mmaxK-incI` strings: the op set of `_RAND_INCREASING_TRANSFORMS` (or
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

Deviations: RandAugment's 't' (transform set / weights) option is not supported (ValueError); rotation rounds
cos/sin to 15 decimals in binary rather than decimal, which could move a pixel by one level, rarely. Cost: every
sample goes through all three passes of a layer (samples whose op is elsewhere pass through unchanged), because
choosing subsets would need host syncs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

import runner.device_data.pixels as pixels
from runner.device_data.resample import check_interpolation
from runner.device_data.storage import Device

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


class BatchedRandAugment:
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
        self.interpolation = check_interpolation(interpolation)
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
                    grey = pixels.grey(x).to(torch.float64).flatten(1)
                    count = torch.full_like(grey[:, 0], grey.shape[1])  # true division, as ImageStat's
                    mean = (grey.sum(1) / count + 0.5).floor()  # int(ImageStat mean + 0.5)
                    degenerate = mean.to(torch.float32)[:, None, None]
                table = pixels.blend(degenerate, values, factor).long()
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
                grey = pixels.grey(x).expand_as(x) if grey is None else grey
                degenerate = torch.where(sel[:, None, None, None], grey, degenerate)
            else:
                smooth = pixels.smooth(x) if smooth is None else smooth
                degenerate = torch.where(sel[:, None, None, None], smooth, degenerate)
            factor = torch.where(sel, self._enhance_factor(name, level, negate), factor)
        return pixels.blend(degenerate, x, factor[:, None, None, None])

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
            rows.append(pixels.pil_interpolate(taps, dx))
        out = pixels.pil_interpolate(rows, dy)
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
    ra = BatchedRandAugment((name,), interpolation, fill)
    b = x.shape[0]
    dev = x.device
    op = torch.zeros(b, device=dev, dtype=torch.long)
    mag = torch.full((b,), float(magnitude), device=dev, dtype=torch.float64)
    neg = torch.full((b,), bool(negate), device=dev)
    return ra.layer(x.float(), op, mag, neg, torch.ones(b, device=dev, dtype=torch.bool))


def rand_augment_batch(
    x: Tensor, cfg: RandAugmentConfig, ra: BatchedRandAugment, generator: torch.Generator | None = None
) -> Tensor:
    """RandAugment on float images holding integers 0..255 (per-sample ops, magnitudes, signs): `cfg.num_layers`
    layers, each drawing every sample's op, whether it applies, its magnitude and its sign as timm does."""
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
