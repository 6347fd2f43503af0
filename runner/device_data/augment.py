"""The device path's training and evaluation pipelines: `GpuAugment` (the recipe's whole training augmentation,
batched) and `GpuEval` (the evaluation preprocessing), each equal to `runner.fitting.timm_parts`' CPU pipeline.

What matches timm/PIL, stage by stage (tests/test_gpu_data.py measures each claim):

* Random-resized crop and flip (p=0.5): the crop box from `sampling.rrc_params`, PIL's resampling from `resample`
  (flip reverses the horizontal weights).
* RandAugment: see `randaugment`.
* Normalization: ToTensor + Normalize, the same float32 formula.
* Random erasing: timm's `RandomErasing(mode='pixel', max_count=1)`: per sample with probability p, 10 attempts of
  area U(0.02, 1/3) and log-uniform aspect in [0.3, 1/0.3], first box that fits strictly, per-pixel N(0, 1) fill.
* Mixup/cutmix: timm's `Mixup(mode='batch', prob=1)`: one lambda per batch ~ Beta(alpha, alpha), cutmix instead of
  mixup with probability `switch_prob` (0.5), the batch mixed with its reverse, cutmix's box from `rand_bbox` with
  lambda corrected to the box area, label-smoothed one-hot targets mixed with the same lambda.
* Eval: torchvision's Resize(shorter side = floor(size / crop_pct)) + CenterCrop(size) on PIL images, then
  normalization: bit-exact with `runner.fitting.timm_parts.eval_transform`.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import Tensor

from runner.device_data.randaugment import BatchedRandAugment, RandAugmentConfig, rand_augment_batch
from runner.device_data.resample import (
    check_interpolation,
    padded_crop,
    resample,
    resize_weights,
    resized_crop,
    resized_size,
)
from runner.device_data.sampling import beta, first_true, randint, rrc_params
from runner.device_data.storage import Device


def _fill_color(mean: Sequence[float]) -> tuple[int, ...]:
    """timm's RandAugment fill colour: img_mean = round(255 * mean), at most 255."""
    return tuple(min(255, round(255 * v)) for v in mean)


def _compile_error(e: BaseException) -> bool:
    """Whether `e` comes from compiling (dynamo, inductor, the recompile limit a new batch shape can meet), not
    from running."""
    import torch._dynamo.exc as dynamo_exc
    from torch._inductor.exc import InductorError

    return isinstance(e, (dynamo_exc.TorchDynamoException, dynamo_exc.FailOnRecompileLimitHit, InductorError))


def canvas_sizes(b: int, h: int, w: int, dev: torch.device) -> Tensor:
    """(b, 2) long tensor of one (h, w) per sample, filled on the device: `torch.tensor([[h, w]], device=cuda)`
    would copy from pageable host memory, a host sync every batch."""
    return torch.stack([torch.full((b,), h, device=dev), torch.full((b,), w, device=dev)], 1)


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
    """Batched training augmentation on the device, equal in distribution to `runner.fitting.timm_parts`' CPU pipeline.

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
        self.interpolation = check_interpolation(recipe.train_interpolation)
        self._set_normalization(mean, std)
        self.scale, self.ratio, self.hflip = tuple(recipe.crop_scale), (3 / 4, 4 / 3), 0.5
        self.pad = int(recipe.crop_padding * self.img_size + 0.5) if recipe.crop == "pad" else None
        self.rand_augment: RandAugmentConfig | None = None
        self._ra: BatchedRandAugment | None = None
        if recipe.rand_augment:
            self.rand_augment = RandAugmentConfig.parse(recipe.rand_augment)
            self._ra = BatchedRandAugment(self.rand_augment.ops, self.interpolation, _fill_color(mean), self.device)
        self.erase_prob = float(recipe.random_erasing)
        self.mixup_alpha, self.cutmix_alpha = float(recipe.mixup), float(recipe.cutmix)
        self.switch_prob = 0.5
        self.label_smoothing = float(recipe.label_smoothing)
        self._compiled: Callable[..., tuple[Tensor, Tensor]] | None = None
        self.compile_failed: str | None = None  # why compiling failed (then `run` augments eagerly), else None
        self._compiled_ran = False

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

    def run(self, images: Tensor, labels: Tensor, generator: torch.Generator | None = None, compiled: bool = False,
            sizes: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The augmentation of one batch: the compiled graph when `compiled` (its draws from the global RNG), else
        eager (drawing from `generator`). When compiling fails (no C compiler, no Triton, a graph dynamo cannot
        trace), this instance augments eagerly from then on, and says so in one line on stderr."""
        if compiled and self.compile_failed is None:
            try:
                out = self.compiled()(images, labels, sizes=sizes)
                self._compiled_ran = True
                return out
            except torch.cuda.OutOfMemoryError:
                raise
            except Exception as e:  # noqa: BLE001  (inductor's and dynamo's errors have no common base)
                if self._compiled_ran and not _compile_error(e):  # it ran before: a real error, not compiling's
                    raise
                self.compile_failed = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
                print(f"warning: the compiled augmentation failed ({self.compile_failed[:200]}); augmenting eagerly",
                      file=sys.stderr, flush=True)
        return self(images, labels, generator, sizes)

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
            sizes = canvas_sizes(b, h, w, dev)
        new_h, new_w = resized_size(sizes[:, 0], sizes[:, 1], s)
        oy, ox = randint(torch.stack([new_h, new_w]) + 2 * p - s, generator)
        flip = torch.rand(b, generator=generator, device=dev) < self.hflip
        return padded_crop(images, sizes, (new_h, new_w), (oy - p, ox - p), s, self.interpolation, flip)

    def rand_augment_batch(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """RandAugment on float images holding integers 0..255 (per-sample ops, magnitudes, signs)."""
        cfg, ra = self.rand_augment, self._ra
        assert cfg is not None and ra is not None
        return rand_augment_batch(x, cfg, ra, generator)

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
        idx, found = first_true((ew < w) & (eh < h))
        eh = eh.gather(1, idx[:, None])[:, 0].long()
        ew = ew.gather(1, idx[:, None])[:, 0].long()
        erase = (torch.rand(b, generator=generator, device=dev, dtype=torch.float64) <= self.erase_prob) & found
        top = randint((h - eh).clamp(min=0), generator)
        left = randint((w - ew).clamp(min=0), generator)
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
                beta(self.cutmix_alpha, (), generator, dev),
                beta(self.mixup_alpha, (), generator, dev),
            )
        elif self.mixup_alpha > 0:
            use_cutmix = torch.zeros((), device=dev, dtype=torch.bool)
            lam = beta(self.mixup_alpha, (), generator, dev)
        else:
            use_cutmix = torch.ones((), device=dev, dtype=torch.bool)
            lam = beta(self.cutmix_alpha, (), generator, dev)
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
    with antialiasing), centre-crop img_size, normalize. Bit-exact with `runner.fitting.timm_parts.eval_transform`."""

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
        self.interpolation = check_interpolation(recipe.eval_interpolation)
        self.device = torch.device(device)
        self._set_normalization(mean, std)
        self._weights: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}

    def _weights_for(self, h: int, w: int) -> tuple[Tensor, Tensor]:
        """Resize + centre-crop weights for a batch of h x w images, computed once per size."""
        if (h, w) not in self._weights:
            self._weights[(h, w)] = self._weights_per_sample(canvas_sizes(1, h, w, self.device), h, w)
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
        wy = resize_weights(zero, h, in_h, s, self.interpolation, offset=top, total=new_h)
        wx = resize_weights(zero, w, in_w, s, self.interpolation, offset=left, total=new_w)
        return wy, wx

    def __call__(self, images_uint8: Tensor, sizes: Tensor | None = None) -> Tensor:
        """uint8 (B, 3, H, W) -> normalized float (B, 3, S, S); `sizes` (B, 2): each image's own height and width
        inside a larger canvas (see DeviceDataset)."""
        if sizes is None:
            wy, wx = self._weights_for(*images_uint8.shape[-2:])
        else:
            wy, wx = self._weights_per_sample(sizes, *images_uint8.shape[-2:])
        x = resample(images_uint8.float(), wy, wx)
        return self.normalize(x)
