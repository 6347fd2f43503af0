"""How a run's budget shapes its recipe: the lr schedules against their closed forms, the crop rule for small
images, the regularization strength of short budgets, the evaluation subset and the CPU preset's defaults."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from PIL import Image

from roadmap.design import RESNET50
from roadmap.enums import Crop
from roadmap.recipe import MODERN_RECIPE, Recipe
from runner.fitting import timm_parts
from runner.fitting.training_run import val_batches_at
from runner.planning.budget import PRESETS, Budget, apply_budget, get_preset, make_budget, scale_regularization
from runner.planning.options import RunOptions, Selection, Training
from runner.planning.runs import plan, seeds_of
from steps import ROADMAP, design_at


def lrs(recipe: Recipe, steps_per_epoch: int, lr: float) -> list[float]:
    """The lr of every update index 0..total (the runner calls step_update(t) after update t)."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = timm_parts.scheduler(recipe, opt, steps_per_epoch)
    out = []
    for t in range(recipe.epochs * steps_per_epoch + 1):
        sched.step_update(t)
        out.append(opt.param_groups[0]["lr"])
    return out


@pytest.mark.parametrize("epochs, warmup, steps", [(6, 0.4, 250), (300, 20, 3), (2, 0.0, 50)])
def test_cosine_follows_its_closed_form_and_ends_at_min_lr(epochs, warmup, steps):
    recipe = dataclasses.replace(MODERN_RECIPE, epochs=epochs, warmup_epochs=warmup, min_lr=1e-6)
    peak, low, init = 4e-3, recipe.min_lr, timm_parts.WARMUP_LR_INIT
    total, w = epochs * steps, round(warmup * steps)
    got = lrs(recipe, steps, peak)
    for t in range(total + 1):
        if t < w:
            want = init + t * (peak - init) / w
        else:
            want = low + 0.5 * (peak - low) * (1 + math.cos(math.pi * (t - w) / (total - w)))
        assert got[t] == pytest.approx(want, rel=1e-9, abs=1e-12), t
    assert got[w] == pytest.approx(peak)
    assert got[-1] == pytest.approx(low)  # the old schedule stopped near 1.1 % of the peak


@pytest.mark.parametrize("epochs", [1, 2, 3, 30])
def test_step_decay_at_a_third_and_two_thirds_of_any_budget(epochs):
    base = RESNET50.recipe  # x0.1 every 30 of 90 epochs
    budget = make_budget(base, get_preset("quick"), 32, epochs=epochs, same_epochs=True)
    recipe = apply_budget(RESNET50, budget).recipe
    steps = 150
    got = lrs(recipe, steps, 0.1)
    total = epochs * steps
    for t in range(total):
        drops = int(3 * t / total + 1e-9)  # 0 in the first third, 1 in the second, 2 in the last
        assert got[t] == pytest.approx(0.1 * 0.1 ** drops), (t, total)


def test_pad_crop_is_a_shifted_window_of_the_zero_padded_image():
    recipe = dataclasses.replace(Recipe(), crop=Crop.PAD)
    assert timm_parts.pad_pixels(recipe, 28) == 4 and timm_parts.pad_pixels(recipe, 32) == 4
    rng = np.random.default_rng(0)
    img = rng.integers(1, 255, (28, 28, 3), dtype=np.uint8)  # no zero pixel: padding is recognizable
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    padded = np.pad(img, ((4, 4), (4, 4), (0, 0)))
    windows = {(dy, dx): padded[dy:dy + 28, dx:dx + 28] for dy in range(9) for dx in range(9)}
    transform = timm_parts.train_transform(recipe, 28)
    seen = set()
    torch.manual_seed(0)
    for _ in range(60):
        out = transform(Image.fromarray(img))
        pixels = np.rint(((out * std + mean) * 255).permute(1, 2, 0).numpy()).astype(int)
        match = [k for k, w in windows.items() if np.array_equal(pixels, w) or np.array_equal(pixels, w[:, ::-1])]
        assert match, "not a window of the padded image (or its mirror)"
        seen.add(match[0])
    assert len(seen) > 20  # offsets spread over the 9 x 9 positions


def test_device_pad_crop_matches_the_cpu_crop_in_kind():
    from runner.device_data import GpuAugment

    recipe = dataclasses.replace(Recipe(), crop=Crop.PAD)
    aug = GpuAugment(recipe, 28, 10, "cpu")
    rng = np.random.default_rng(1)
    img = torch.from_numpy(rng.integers(1, 255, (3, 28, 28), dtype=np.uint8))
    batch = img.expand(400, 3, 28, 28).contiguous()
    out = aug.crop_flip(batch, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(img.float(), (4, 4, 4, 4))
    offsets = []
    for x in out:
        found = [(dy, dx) for dy in range(9) for dx in range(9)
                 if torch.equal(x, padded[:, dy:dy + 28, dx:dx + 28])
                 or torch.equal(x, padded[:, dy:dy + 28, dx:dx + 28].flip(-1))]
        assert found
        offsets.append(found[0])
    dy = np.array([o[0] for o in offsets])
    assert set(dy) == set(range(9)) and abs(dy.mean() - 4) < 0.4  # uniform on 0..8, like RandomCrop


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_device_pad_crop_of_images_in_a_canvas_is_exactly_the_loaders(interpolation):
    """Images of mixed sizes in one canvas (an image folder on the device path): the resize of the shorter side,
    the zero padding and the window are PIL's and torchvision's, pixel for pixel, at corners inside and past
    the edges."""
    from torchvision.transforms import functional as F

    from runner.device_data import padded_crop, resized_size

    rng = np.random.default_rng(2)
    shapes, s, pad = [(30, 45), (41, 33), (28, 28), (60, 31)], 28, 4
    canvas = torch.zeros(len(shapes), 3, 60, 45, dtype=torch.uint8)
    pils = []
    for i, (h, w) in enumerate(shapes):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        canvas[i, :, :h, :w] = torch.from_numpy(img).permute(2, 0, 1)
        pils.append(Image.fromarray(img))
    sizes = torch.tensor(shapes)
    new_h, new_w = resized_size(sizes[:, 0], sizes[:, 1], s)
    mode = F.InterpolationMode(interpolation)
    for corner in [(-pad, -pad), (0, 0), (pad, -1), (-3, 2)]:
        top = torch.tensor([min(corner[0], int(nh) + pad - s) for nh in new_h])
        left = torch.tensor([min(corner[1], int(nw) + pad - s) for nw in new_w])
        flip = torch.tensor([False, True, False, True])
        out = padded_crop(canvas, sizes, (new_h, new_w), (top, left), s, interpolation, flip)
        for i, pil in enumerate(pils):
            want = F.pad(F.resize(pil, s, interpolation=mode), pad)
            want = F.crop(want, int(top[i]) + pad, int(left[i]) + pad, s, s)
            want = torch.from_numpy(np.array(F.hflip(want) if flip[i] else want)).permute(2, 0, 1).float()
            assert (int(new_h[i]), int(new_w[i])) == F.resize(pil, s).size[::-1]
            assert torch.equal(out[i], want), (shapes[i], corner)


def test_small_images_get_the_pad_crop_and_whole_image_evaluation():
    info = ("fashion-mnist", 28, 10, 60000)
    small = plan(RunOptions(Selection(steps=("resnet50", "convnext_tiny"), seeds=1), Training(preset="cpu")), *info)
    assert all(r.design.recipe.crop is Crop.PAD and r.design.recipe.eval_crop_pct == 1.0 for r in small)
    large = plan(RunOptions(Selection(steps=("convnext_tiny",), seeds=1), Training(preset="quick", img_size=64)), *info)
    assert large[0].design.recipe.crop is Crop.RANDOM_RESIZED and large[0].design.recipe.eval_crop_pct == 0.875
    undone = plan(RunOptions(Selection(steps=("convnext_tiny",), seeds=1),
                             Training(preset="cpu", sets=("recipe.crop=random_resized",))), *info)
    assert undone[0].design.recipe.crop is Crop.RANDOM_RESIZED


def test_regularization_strength_scales_every_regularizer_and_keeps_the_components():
    convnext = design_at("convnext_tiny")
    half = scale_regularization(convnext, 0.5)
    r = half.recipe
    assert r.rand_augment == "rand-m4-mstd0.5-inc1-p0.25"  # magnitude round(4.5) = 4, each op's probability 0.5 x 0.5
    assert (r.mixup, r.cutmix, r.random_erasing) == pytest.approx((0.4, 0.5, 0.125))
    assert r.crop_padding == pytest.approx(0.0625) and tuple(r.crop_scale) == pytest.approx((0.54, 1.0))
    assert half.net.drop_path_rate == pytest.approx(0.05)
    assert r.label_smoothing == convnext.recipe.label_smoothing and r.optimizer == convnext.recipe.optimizer
    assert scale_regularization(convnext, 1.0) == convnext
    resnet = scale_regularization(design_at("resnet50"), 0.5)  # crop and flip only: only the crop is weaker
    assert resnet.net == design_at("resnet50").net and resnet.recipe.crop_padding == pytest.approx(0.0625)
    assert (resnet.recipe.rand_augment, resnet.recipe.mixup, resnet.recipe.random_erasing) == (None, 0.0, 0.0)
    none = scale_regularization(convnext, 0.0).recipe
    assert (none.mixup, none.cutmix, none.random_erasing, none.crop_padding) == (0.0, 0.0, 0.0, 0.0)


def test_the_last_epoch_is_evaluated_in_full_the_others_on_a_fixed_subset():
    budget = Budget("cpu", 4, 64, 4e-3, 0.2, 28, 0, 0, "", monitor_batches=16)
    assert [val_batches_at(budget, e) for e in range(4)] == [16, 16, 16, 0]
    assert [val_batches_at(dataclasses.replace(budget, monitor_batches=0), e) for e in range(4)] == [0, 0, 0, 0]


def test_the_cpu_preset_trains_three_seeds_by_default():
    assert seeds_of(RunOptions(training=Training(preset="cpu"))) >= 3
    assert seeds_of(RunOptions(training=Training(preset="quick"))) == 1
    assert seeds_of(RunOptions(Selection(seeds=1), Training(preset="cpu"))) == 1
    runs = plan(RunOptions(Selection(steps=("convnext_tiny",)), Training(preset="cpu")), "fashion-mnist", 28, 10, 60000)
    assert sorted(r.seed for r in runs) == list(range(PRESETS["cpu"].seeds))
    assert len([s for s in ROADMAP if s.in_paper]) == 17  # Figure 2's models
