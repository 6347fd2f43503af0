"""The device data path (runner.device_data) against the CPU pipeline it replaces (timm + PIL,
runner.fitting.timm_parts).

Everything runs on CPU tensors: the package is device-agnostic. Three kinds of checks:

* exactness, where the device path reproduces PIL's arithmetic: every RandAugment op at fixed magnitudes and signs,
  the crop resampling, and the eval transform are compared pixel by pixel with PIL/timm on the same images;
* distributions, where only the random streams differ: random-resized-crop parameters, flips, RandAugment as a
  whole, random erasing, mixup/cutmix lambdas, and the full training pipeline are compared with timm's own
  samplers by two-sample Kolmogorov-Smirnov statistics and moments. Seeds are fixed, so the tests are
  deterministic; thresholds sit near the KS critical value at alpha = 0.001 for the sample sizes used, and the
  comments give the values measured when they were written;
* the loader's mechanics: reproducibility, epochs, drop_last, and no host synchronization while iterating.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from timm.data import Mixup
from timm.data.auto_augment import AugmentOp, rand_augment_transform
from timm.data.mixup import mixup_target
from timm.data.random_erasing import RandomErasing
from timm.data.transforms import RandomResizedCropAndInterpolation

from roadmap.recipe import MODERN_RECIPE, Recipe
from runner.data import load_dataset
from runner.device_data import (
    RAND_AUGMENT_OPS,
    GpuAugment,
    GpuEval,
    RandAugmentConfig,
    apply_rand_augment_op,
    resized_crop,
    rrc_params,
)
from runner.fitting.timm_parts import eval_transform, train_transform

pytestmark = pytest.mark.usefixtures("one_thread")

FILL = (124, 116, 104)  # timm's RandAugment img_mean for the ImageNet mean
NO_MIX = replace(MODERN_RECIPE, mixup=0.0, cutmix=0.0)  # the paper's recipe without the batch-level step


def ks(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic."""
    a, b = np.sort(np.asarray(a, float)), np.sort(np.asarray(b, float))
    grid = np.concatenate([a, b])
    cdf_a, cdf_b = np.searchsorted(a, grid, "right") / len(a), np.searchsorted(b, grid, "right") / len(b)
    return float(np.max(np.abs(cdf_a - cdf_b)))


def ks_critical(n: int, m: int, alpha: float = 0.001) -> float:
    """The asymptotic two-sample KS critical value."""
    return math.sqrt(-0.5 * math.log(alpha / 2)) * math.sqrt((n + m) / (n * m))


@pytest.fixture(scope="module")
def synthetic32() -> np.ndarray:
    """64 synthetic 32 px images (N, 32, 32, 3): gratings, blobs, noise; realistic histograms."""
    return load_dataset("synthetic:train=64,val=4,size=32").train.images


@pytest.fixture(scope="module")
def op_images(synthetic32: np.ndarray) -> list[np.ndarray]:
    """Image sets for the op-by-op comparison: synthetic images plus uniform noise (full histograms, for
    AutoContrast/Equalize edge cases), and Fashion-MNIST-like 28 px grey images as RGB (784 pixels: Contrast's
    mean is not a power-of-two division)."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    grey = (rng.random((6, 28, 28)) ** 3 * 255).astype(np.uint8)
    return [np.concatenate([synthetic32[:24], noise]), np.repeat(grey[..., None], 3, axis=-1)]


def nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


# ------------------------------------------------------------------------------------------- RandAugment, op by op

GEOMETRIC = {"Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"}
SIGNED = GEOMETRIC | {"ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing"}
OP_CASES = [(op, "bicubic") for op in RAND_AUGMENT_OPS] + [(op, "bilinear") for op in sorted(GEOMETRIC)]


@pytest.mark.parametrize(("name", "interpolation"), OP_CASES)
def test_each_rand_augment_op_matches_pil(name, interpolation, op_images, monkeypatch):
    """Every op, at magnitudes 9 (the recipe's), 4.7 (off-grid) and 10 (the clip), each sign of timm's random
    negation, equals timm's AugmentOp on PIL images. Measured when written: bit-exact, all cases."""
    pil_interp = Image.BICUBIC if interpolation == "bicubic" else Image.BILINEAR
    hparams = {"translate_const": 14, "img_mean": FILL, "interpolation": pil_interp}
    for images in op_images:
        x = nchw(images)
        for magnitude in (9.0, 4.7, 10.0):
            for negate in (False, True) if name in SIGNED else (False,):
                op = AugmentOp(name, prob=1.0, magnitude=magnitude, hparams=hparams)
                # timm's _randomly_negate negates when random.random() > 0.5
                monkeypatch.setattr(random, "random", (lambda: 1.0) if negate else (lambda: 0.0))
                ref = np.stack([np.asarray(op(Image.fromarray(a))) for a in images]).astype(np.float64)
                out = apply_rand_augment_op(x, name, magnitude, negate, interpolation, FILL)
                diff = np.abs(out.permute(0, 2, 3, 1).numpy() - ref)
                # allow one level on 0.1% of pixels for platform rounding (libm cos/sin); measured: 0 everywhere
                assert diff.max() <= 1 and (diff > 0).mean() <= 1e-3, (name, magnitude, negate, diff.max())


def test_rand_augment_config_parsing():
    cfg = RandAugmentConfig.parse("rand-m9-mstd0.5-inc1")
    assert (cfg.magnitude, cfg.magnitude_std, cfg.num_layers, cfg.prob, cfg.increasing) == (9, 0.5, 2, 0.5, True)
    assert cfg.ops == tuple(rand_augment_transform("rand-m9-mstd0.5-inc1", {}).ops[i].name for i in range(15))
    assert RandAugmentConfig.parse("rand-m7-n3-p0.7-mstd101").magnitude_std == math.inf
    assert RandAugmentConfig.parse("rand-m9").ops == tuple(op.name for op in rand_augment_transform("rand-m9", {}).ops)
    with pytest.raises(ValueError, match="transform set"):
        RandAugmentConfig.parse("rand-m9-tweights")


def test_rand_augment_distribution_matches_timm(synthetic32):
    """The whole RandAugment stage (op choice, prob 0.5, magnitude noise, signs) on the same 64 images x 32:
    distribution of the per-image mean absolute change and of the image mean, and the rate of untouched images.
    Measured: KS 0.026 / 0.042 against a critical value of 0.061, untouched rates within 0.02 (P = 0.25 plus ops
    that change nothing). A wrong magnitude (m7) gives KS ~0.09, a wrong prob (p0.4) ~0.12."""
    imgs = np.tile(synthetic32, (32, 1, 1, 1))
    x = nchw(imgs).float()
    aug = GpuAugment(NO_MIX, 32, 10, "cpu")
    g = torch.Generator().manual_seed(0)
    out = torch.cat([aug.rand_augment_batch(chunk, g) for chunk in x.split(1024)])
    random.seed(0)
    np.random.seed(0)
    ra = rand_augment_transform(
        "rand-m9-mstd0.5-inc1", {"translate_const": 14, "img_mean": FILL, "interpolation": Image.BICUBIC}
    )
    ref = nchw(np.stack([np.asarray(ra(Image.fromarray(a))) for a in imgs])).float()
    change, change_ref = (out - x).abs().mean((1, 2, 3)).numpy(), (ref - x).abs().mean((1, 2, 3)).numpy()
    crit = ks_critical(len(out), len(ref))  # 0.061
    assert ks(change, change_ref) < crit
    assert ks(out.mean((1, 2, 3)).numpy(), ref.mean((1, 2, 3)).numpy()) < crit
    assert abs(np.mean(change == 0) - np.mean(change_ref == 0)) < 0.04
    assert out.min() >= 0 and out.max() <= 255 and torch.equal(out, out.round())


# ------------------------------------------------------------------------------------- random-resized crop + flip


@pytest.mark.parametrize(("height", "width"), [(32, 32), (20, 48)])
def test_rrc_params_match_timm(height, width):
    """Crop area fraction, aspect ratio and position against timm's get_params (4000 draws each; 20x48 exercises
    the centre-crop fallback). Measured KS <= 0.019 against a critical value of 0.044."""
    n = 4000
    top, left, h, w = (t.numpy() for t in rrc_params(n, height, width, torch.Generator().manual_seed(0)))
    random.seed(0)
    img = Image.new("RGB", (width, height))
    ref = np.array([RandomResizedCropAndInterpolation.get_params(img, (0.08, 1.0), (3 / 4, 4 / 3)) for _ in range(n)])
    rt, rl, rh, rw = ref.T
    assert (h >= 1).all() and (top + h <= height).all() and (left + w <= width).all() and (top >= 0).all()
    crit = ks_critical(n, n)
    assert ks(h * w / (height * width), rh * rw / (height * width)) < crit
    assert ks(np.log(w / h), np.log(rw / rh)) < crit
    assert ks(top + h / 2, rt + rh / 2) < crit
    assert ks(left + w / 2, rl + rw / 2) < crit
    area = h * w / (height * width)
    assert abs(area.mean() - (rh * rw / (height * width)).mean()) < 0.02


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
@pytest.mark.parametrize(("size", "out"), [(32, 32), (28, 40), (96, 32)])
def test_resized_crop_equals_pil(interpolation, size, out):
    """Crop + resize (+ flip) equals torchvision's resized_crop on PIL images, upsampling and antialiased
    downsampling. Measured: bit-exact."""
    imgs = np.random.default_rng(1).integers(0, 256, (12, size, size, 3), dtype=np.uint8)
    top, left, h, w = rrc_params(12, size, size, torch.Generator().manual_seed(1))
    flip = torch.arange(12) % 2 == 0
    got = resized_crop(nchw(imgs), top, left, h, w, out, interpolation, flip).permute(0, 2, 3, 1).numpy()
    mode = TF.InterpolationMode(interpolation)
    for k in range(12):
        img = TF.resized_crop(
            Image.fromarray(imgs[k]), int(top[k]), int(left[k]), int(h[k]), int(w[k]), [out, out], mode
        )
        ref = np.asarray(TF.hflip(img) if flip[k] else img)
        assert np.abs(got[k] - ref).max() == 0


def test_flip_rate():
    """On a horizontal ramp every crop increases left to right, unless flipped: the flip rate is 0.5."""
    ramp = torch.arange(32, dtype=torch.uint8).mul(8).expand(1, 3, 32, 32).repeat(2000, 1, 1, 1)
    aug = GpuAugment(Recipe(), 32, 10, "cpu")
    out = aug.crop_flip(ramp, torch.Generator().manual_seed(0))
    slope = (out[..., -1] - out[..., 0]).mean((1, 2))
    assert (slope != 0).all()
    assert abs((slope < 0).float().mean().item() - 0.5) < 0.035  # 3 standard errors; measured 0.49


# ------------------------------------------------------------------------------------------------- random erasing


def test_random_erasing_matches_timm():
    """Fraction of erased images ~ p, erased area and box aspect distributed like timm's, N(0, 1) pixel fill.
    Measured: rate 0.240 vs timm's 0.254, KS 0.029 / 0.036 against a critical value of ~0.078 (~1000 boxes each)."""
    n, p = 4000, 0.25
    aug = GpuAugment(replace(Recipe(), random_erasing=p), 32, 10, "cpu")
    out = aug.erase(torch.zeros(n, 3, 32, 32), torch.Generator().manual_seed(0))
    mask = (out != 0).any(1)
    erased = mask.flatten(1).any(1).numpy()
    rows, cols = mask.any(2).sum(1).numpy()[erased], mask.any(1).sum(1).numpy()[erased]
    assert (mask.flatten(1).sum(1).numpy()[erased] == rows * cols).all()  # one rectangle per image
    random.seed(0)
    timm_erase = RandomErasing(p, mode="pixel", device="cpu")
    ref = torch.stack([timm_erase(torch.zeros(3, 32, 32)) for _ in range(n)])
    ref_mask = (ref != 0).any(1)
    ref_erased = ref_mask.flatten(1).any(1).numpy()
    ref_rows, ref_cols = ref_mask.any(2).sum(1).numpy()[ref_erased], ref_mask.any(1).sum(1).numpy()[ref_erased]
    assert abs(erased.mean() - p) < 0.025 and abs(erased.mean() - ref_erased.mean()) < 0.03
    crit = ks_critical(len(rows), len(ref_rows))
    assert ks(rows * cols, ref_rows * ref_cols) < crit
    assert ks(np.log(rows / cols), np.log(ref_rows / ref_cols)) < crit
    values = out[mask[:, None].expand_as(out)]
    assert abs(values.mean().item()) < 0.02 and abs(values.std().item() - 1) < 0.02


# ----------------------------------------------------------------------------------------------- mixup and cutmix


def _mix_samples(mixer, n: int, batch: int = 8, classes: int = 10):
    """(lam of sample 0, is_cutmix, targets (n, batch, classes)) over n calls on a batch whose image i is the
    constant i: mixup makes sample 0 a constant (1 - lam) (batch - 1), cutmix a box of batch - 1 on 0. A cutmix box
    clipped to nothing counts as mixup with lam 1, on both sides alike."""
    x0 = torch.arange(batch, dtype=torch.float32).view(batch, 1, 1, 1).expand(batch, 3, 16, 16).contiguous()
    labels = torch.arange(batch) % classes
    lams, cut, rows = [], [], []
    for _ in range(n):
        x, y = mixer(x0.clone(), labels)
        first = x[0]
        is_cut = bool(((first == 0) | (first == batch - 1)).all()) and bool((first == batch - 1).any())
        taken = (first == batch - 1).float().mean().item()
        lams.append((1 - taken) if is_cut else 1 - first.mean().item() / (batch - 1))
        cut.append(is_cut)
        rows.append(y)
    return np.array(lams), np.array(cut), torch.stack(rows)


def test_mixup_cutmix_match_timm():
    """Batch-mode mixup/cutmix: soft targets sum to 1 and carry label smoothing, lambda is the same for targets
    and pixels (box-area corrected for cutmix), cutmix is chosen half the time, and both lambda distributions
    match timm's Mixup. Measured: cutmix rate 0.500 vs 0.513, KS 0.036 / 0.020 against critical values ~0.1."""
    n, classes, smoothing = 1500, 10, 0.1
    recipe = replace(MODERN_RECIPE, label_smoothing=smoothing)
    aug = GpuAugment(recipe, 16, classes, "cpu")
    g = torch.Generator().manual_seed(0)
    lam, cut, y = _mix_samples(lambda x, t: aug.mix(x, t, g), n)
    np.random.seed(0)
    timm_mix = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5, label_smoothing=smoothing, num_classes=10)
    ref_lam, ref_cut, ref_y = _mix_samples(timm_mix, n)

    off, on = smoothing / classes, 1 - smoothing + smoothing / classes
    assert torch.allclose(y.sum(-1), torch.ones(n, 8))
    assert torch.allclose(y.amin(-1), torch.full((n, 8), off))  # label smoothing's floor
    # the targets' lambda (from sample 0: label 0 mixed with label 7) equals the pixels' lambda
    assert np.allclose((y[:, 0, 0].numpy() - off) / (on - off), lam, atol=1e-5)
    labels = torch.arange(8)
    assert torch.allclose(aug.soft_targets(labels, 0.3), mixup_target(labels, classes, 0.3, smoothing))
    assert torch.allclose(ref_y.sum(-1), y.sum(-1)) and torch.allclose(ref_y.amin(-1), y.amin(-1))
    assert abs(cut.mean() - 0.5) < 0.05 and abs(cut.mean() - ref_cut.mean()) < 0.06
    mix_lam, ref_mix_lam = lam[~cut], ref_lam[~ref_cut]
    cut_lam, ref_cut_lam = lam[cut], ref_lam[ref_cut]
    assert ks(mix_lam, ref_mix_lam) < ks_critical(len(mix_lam), len(ref_mix_lam))
    assert ks(cut_lam, ref_cut_lam) < ks_critical(len(cut_lam), len(ref_cut_lam))
    # Beta(0.8, 0.8): mean 1/2, variance 1 / (4 (2 alpha + 1)) = 0.0962
    assert abs(mix_lam.mean() - 0.5) < 0.03 and abs(mix_lam.var() - 0.0962) < 0.01


def test_mix_needs_even_batch():
    aug = GpuAugment(MODERN_RECIPE, 16, 10, "cpu")
    with pytest.raises(ValueError, match="even"):
        aug.mix(torch.zeros(3, 3, 16, 16), torch.zeros(3, dtype=torch.long))


# ---------------------------------------------------------------------------------------------- the full pipeline


def test_full_train_pipeline_statistics(synthetic32):
    """RRC + flip + RandAugment + normalize + erasing on 64 images x 32 against timm's create_transform:
    per-channel mean and std of the normalized outputs within 0.06 (measured <= 0.038 over five seeds; the
    sampling noise of this size), and per-image mean/std distributions by KS (measured 0.030 / 0.014 here, at most
    0.047 over five seeds; critical value 0.061).
    """
    imgs = np.tile(synthetic32, (32, 1, 1, 1))
    x = nchw(imgs)
    aug = GpuAugment(NO_MIX, 32, 10, "cpu")
    g = torch.Generator().manual_seed(0)
    out = torch.cat([aug(chunk, torch.zeros(len(chunk), dtype=torch.long), g)[0] for chunk in x.split(1024)])
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    tf = train_transform(NO_MIX, 32)
    ref = torch.stack([tf(Image.fromarray(a)) for a in imgs])
    assert out.shape == ref.shape and out.dtype == ref.dtype
    assert (out.mean((0, 2, 3)) - ref.mean((0, 2, 3))).abs().max() < 0.06
    assert (out.std((0, 2, 3)) - ref.std((0, 2, 3))).abs().max() < 0.06
    crit = ks_critical(len(out), len(ref))
    assert ks(out.mean((1, 2, 3)).numpy(), ref.mean((1, 2, 3)).numpy()) < crit
    assert ks(out.std((1, 2, 3)).numpy(), ref.std((1, 2, 3)).numpy()) < crit


def test_train_outputs_and_reproducibility():
    x = torch.randint(0, 256, (8, 3, 40, 40), dtype=torch.uint8)
    labels = torch.arange(8)
    modern = GpuAugment(MODERN_RECIPE, 32, 10, "cpu")
    a = modern(x, labels, torch.Generator().manual_seed(3))
    b = modern(x, labels, torch.Generator().manual_seed(3))
    assert a[0].shape == (8, 3, 32, 32) and a[0].dtype == torch.float32 and a[1].shape == (8, 10)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    plain = GpuAugment(Recipe(), 32, 10, "cpu")  # the ResNet recipe: crop and flip only, hard labels
    xp, yp = plain(x, labels, torch.Generator().manual_seed(3))
    assert xp.shape == (8, 3, 32, 32) and torch.equal(yp, labels)
    random_interp = SimpleNamespace(eval_crop_pct=0.875, eval_interpolation="random")  # timm's, not supported
    with pytest.raises(ValueError, match="interpolation"):
        GpuEval(random_interp, 32, "cpu")


# ----------------------------------------------------------------------------------------------------------- eval


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
@pytest.mark.parametrize("size", [32, 48, 64])
def test_eval_equals_cpu_transform(interpolation, size):
    """Equal to runner.fitting.timm_parts.eval_transform on PIL images (measured: bit-exact), and within resampling
    tolerance of torchvision's tensor resize + centre crop (measured: mean <= 0.02 levels, max 2 levels)."""
    imgs = load_dataset("synthetic:train=16,val=4,size=64").train.images
    recipe = replace(Recipe(), eval_interpolation=interpolation)
    out = GpuEval(recipe, size, "cpu")(nchw(imgs))
    ref = torch.stack([eval_transform(recipe, size)(Image.fromarray(a)) for a in imgs])
    assert out.shape == (16, 3, size, size)
    assert torch.allclose(out, ref, atol=1e-5)
    resized = TF.resize(nchw(imgs), [math.floor(size / 0.875)], TF.InterpolationMode(interpolation), antialias=True)
    tv = TF.normalize(TF.center_crop(resized, [size, size]).float() / 255, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    levels = (out - tv).abs() * torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
    assert levels.mean() < 0.05 and levels.max() < 2.01
