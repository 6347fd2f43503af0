"""The device data path (runner.device_data), continued from tests/test_gpu_data.py: images of different sizes in one
canvas (crops, evaluation and augmentation per image), decoding image files once, and the device dataset and loader
(order, epochs, shards, ranks, reproducibility, no host reads, one compiled graph)."""

from __future__ import annotations

import inspect
from dataclasses import replace

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from test_gpu_data import nchw

from roadmap.recipe import MODERN_RECIPE, Recipe
from runner.data import ArrayDataset, load_dataset
from runner.device_data import (
    DeviceDataset,
    DeviceLoader,
    GpuAugment,
    GpuEval,
    pixels,
    randaugment,
    resample,
    resized_crop,
    rrc_params,
    sampling,
)
from runner.fitting.timm_parts import eval_transform

pytestmark = pytest.mark.usefixtures("one_thread")

# ------------------------------------------------------------------------------------ images of different sizes

MIXED_SIZES = [(37, 50), (50, 37), (64, 64), (20, 80), (80, 20), (33, 34)]  # (h, w); 20x80 and 80x20: fallbacks


def mixed_canvas(seed: int = 0) -> tuple[list[np.ndarray], torch.Tensor, torch.Tensor]:
    """Random images of MIXED_SIZES (HWC) and the same in one zero-padded canvas (NCHW) with their sizes."""
    rng = np.random.default_rng(seed)
    imgs = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in MIXED_SIZES]
    canvas = torch.zeros(len(imgs), 3, 80, 80, dtype=torch.uint8)
    for i, a in enumerate(imgs):
        canvas[i, :, : a.shape[0], : a.shape[1]] = torch.from_numpy(a).permute(2, 0, 1)
    return imgs, canvas, torch.tensor(MIXED_SIZES)


def test_rrc_params_with_a_size_per_sample_equal_the_draws_for_each_size():
    """Per-sample sizes use the same random draws as one size for the whole batch: sample k of a mixed batch is
    sample k of a batch of its own size (drawn from the same seed), fallback crops included."""
    n = 600
    sizes = torch.tensor(MIXED_SIZES)[torch.arange(n) % len(MIXED_SIZES)]
    mixed = rrc_params(n, sizes[:, 0], sizes[:, 1], torch.Generator().manual_seed(5))
    for h, w in MIXED_SIZES:
        one = rrc_params(n, h, w, torch.Generator().manual_seed(5))
        rows = (sizes[:, 0] == h) & (sizes[:, 1] == w)
        for got, want in zip(mixed, one, strict=True):
            assert torch.equal(got[rows], want[rows])
    top, left, h, w = mixed
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= sizes[:, 0]).all() and (left + w <= sizes[:, 1]).all()


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_crops_inside_a_canvas_equal_crops_of_the_images(interpolation):
    """The padding of a canvas never reaches a crop: bit-exact with torchvision's resized_crop on each PIL image."""
    imgs, canvas, sizes = mixed_canvas(1)
    top, left, h, w = rrc_params(len(imgs), sizes[:, 0], sizes[:, 1], torch.Generator().manual_seed(2))
    got = resized_crop(canvas, top, left, h, w, 32, interpolation).permute(0, 2, 3, 1).numpy()
    for k, a in enumerate(imgs):
        ref = TF.resized_crop(Image.fromarray(a), int(top[k]), int(left[k]), int(h[k]), int(w[k]), [32, 32],
                              TF.InterpolationMode(interpolation))
        assert np.abs(got[k] - np.asarray(ref)).max() == 0


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
@pytest.mark.parametrize("size", [24, 32])
def test_eval_of_images_in_a_canvas_equals_the_cpu_transform(interpolation, size):
    """Portrait, landscape and square images of different sizes in one batch: bit-exact with eval_transform."""
    imgs, canvas, sizes = mixed_canvas(2)
    recipe = replace(Recipe(), eval_interpolation=interpolation)
    out = GpuEval(recipe, size, "cpu")(canvas, sizes=sizes)
    ref = torch.stack([eval_transform(recipe, size)(Image.fromarray(a)) for a in imgs])
    assert torch.allclose(out, ref, atol=1e-5)


def test_the_train_augmentation_of_a_canvas_uses_each_images_own_size():
    imgs, canvas, sizes = mixed_canvas(3)
    aug = GpuAugment(replace(MODERN_RECIPE, random_erasing=0.0, mixup=0.0, cutmix=0.0, rand_augment=None), 16, 10,
                     "cpu")
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    x, _ = aug(canvas, torch.zeros(len(imgs), dtype=torch.long), g1, sizes=sizes)
    top, left, h, w = rrc_params(len(imgs), sizes[:, 0], sizes[:, 1], g2)
    flip = torch.rand(len(imgs), generator=g2) < 0.5
    want = resized_crop(canvas, top, left, h, w, 16, MODERN_RECIPE.train_interpolation, flip)
    assert torch.allclose(x, (want / 255 - aug.mean) / aug.std)


def test_image_files_are_decoded_once_into_a_canvas(tmp_path):
    from runner.data import ImageFolderRGB

    imgs, _, _ = mixed_canvas(4)
    for k, a in enumerate(imgs):
        (tmp_path / f"c{k % 2}").mkdir(exist_ok=True)
        Image.fromarray(a).save(tmp_path / f"c{k % 2}" / f"{k}.png")
    ds = ImageFolderRGB(tmp_path)
    data = DeviceDataset.from_files(ds, "cpu")
    assert data.images.shape == (len(imgs), 3, 80, 80) and data.sizes.tolist() == [
        list(np.asarray(ds[i][0]).shape[:2]) for i in range(len(ds))]
    for i in range(len(ds)):
        h, w = data.sizes[i].tolist()
        assert np.array_equal(data.images[i, :, :h, :w].permute(1, 2, 0).numpy(), np.asarray(ds[i][0]))
        assert data.images[i, :, h:, :].sum() == 0 and data.images[i, :, :, w:].sum() == 0
        assert data.targets[i] == ds.targets[i]
    loader = DeviceLoader(data, 4, GpuEval(MODERN_RECIPE, 24, "cpu"), shuffle=False, drop_last=False, seed=0)
    x = torch.cat([b for b, _ in loader])
    ref = torch.stack([eval_transform(MODERN_RECIPE, 24)(ds[i][0]) for i in range(len(ds))])
    assert torch.allclose(x, ref, atol=1e-5)
    assert DeviceDataset.from_files(load_dataset("synthetic:train=8,val=4").train, "cpu") is None


# ------------------------------------------------------------------------------------------------ dataset + loader


def test_device_dataset_from_synthetic_and_grey():
    splits = load_dataset("synthetic:train=64,val=16")
    data = DeviceDataset.from_dataset(splits.train, "cpu")
    assert data is not None and len(data) == 64 and data.images.shape == (64, 3, 32, 32)
    assert torch.equal(data.images, nchw(splits.train.images)) and torch.equal(data.targets, torch.arange(64) % 10)
    assert data.nbytes() == 64 * 3 * 32 * 32 + 64 * 8

    grey = np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    fashion_like = ArrayDataset(grey, np.arange(20) % 10, [str(i) for i in range(10)])
    data = DeviceDataset.from_dataset(fashion_like, "cpu")
    assert data is not None and data.images.shape == (20, 3, 28, 28)
    pil_rgb = np.asarray(fashion_like[3][0])  # what the CPU path sees: PIL's convert("RGB")
    assert np.array_equal(data.images[3].permute(1, 2, 0).numpy(), pil_rgb)

    subset = DeviceDataset.from_dataset(torch.utils.data.Subset(fashion_like, [5, 2]), "cpu")
    assert subset is not None and torch.equal(subset.images, data.images[[5, 2]])
    assert subset.targets.tolist() == [5, 2]

    class CifarLike:  # torchvision's CIFAR: .data (N, 32, 32, 3) and a list of targets
        data = np.zeros((4, 32, 32, 3), np.uint8)
        targets = [0, 1, 2, 3]

    assert DeviceDataset.from_dataset(CifarLike(), "cpu").images.shape == (4, 3, 32, 32)
    assert DeviceDataset.from_dataset(torch.utils.data.TensorDataset(torch.zeros(3)), "cpu") is None
    chw = DeviceDataset.from_arrays(np.zeros((2, 3, 8, 8), np.uint8), [0, 1], "cpu")
    assert chw.images.shape == (2, 3, 8, 8)
    with pytest.raises(ValueError):
        DeviceDataset.from_arrays(np.zeros((2, 8, 8), np.float32), [0, 1], "cpu")


def _batches(loader: DeviceLoader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in loader]


def test_device_loader_order_epochs_drop_last():
    images = torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1).expand(50, 3, 4, 4)
    data = DeviceDataset(images.contiguous(), torch.arange(50))
    loader = DeviceLoader(data, 8, None, shuffle=True, drop_last=True, seed=1)
    assert len(loader) == 6
    first = _batches(loader)
    second = _batches(loader)  # iterating again advances the epoch
    assert len(first) == 6 and all(len(y) == 8 for _, y in first)
    seen = torch.cat([y for _, y in first])
    assert len(set(seen.tolist())) == 48  # a permutation, two samples dropped
    assert all(torch.equal(x[:, 0, 0, 0].long(), y) for x, y in first)  # images and labels stay paired
    assert not torch.equal(seen, torch.cat([y for _, y in second]))
    again = DeviceLoader(data, 8, None, shuffle=True, drop_last=True, seed=1)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(first, _batches(again), strict=True))
    pinned = DeviceLoader(data, 8, None, shuffle=True, drop_last=True, seed=1, epoch=1)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(second, _batches(pinned), strict=True))
    other_seed = DeviceLoader(data, 8, None, shuffle=True, drop_last=True, seed=2)
    assert not torch.equal(seen, torch.cat([y for _, y in other_seed]))
    keep_last = DeviceLoader(data, 8, None, shuffle=False, drop_last=False, seed=1)
    batches = _batches(keep_last)
    assert len(keep_last) == len(batches) == 7 and len(batches[-1][1]) == 2
    assert torch.equal(torch.cat([y for _, y in batches]), torch.arange(50))


def test_device_loader_shards_like_one_process_at_the_global_batch():
    """Under DDP, rank r's step k is the r::world part of one process's step k at the global batch; every rank
    runs the same number of training steps; evaluation shards cover the set exactly once."""
    images = torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1).expand(50, 3, 4, 4).contiguous()
    data = DeviceDataset(images, torch.arange(50))
    one = _batches(DeviceLoader(data, 12, None, shuffle=True, drop_last=True, seed=3))
    for world in (2, 3):
        ranks = [DeviceLoader(data, 12 // world, None, shuffle=True, drop_last=True, seed=3, rank=r, world=world)
                 for r in range(world)]
        assert len({len(r) for r in ranks}) == 1  # no rank waits for a step another never takes
        per_rank = [_batches(r) for r in ranks]
        for k, (_, y) in enumerate(one[: len(ranks[0])]):
            for r in range(world):
                assert torch.equal(per_rank[r][k][1], y[r::world])
        evals = [_batches(DeviceLoader(data, 8, None, shuffle=False, drop_last=False, seed=0, rank=r, world=world))
                 for r in range(world)]
        assert sorted(torch.cat([y for e in evals for _, y in e]).tolist()) == list(range(50))
    with pytest.raises(ValueError, match="rank"):
        DeviceLoader(data, 4, None, shuffle=True, drop_last=True, seed=0, rank=2, world=2)


def test_device_loader_ranks_draw_their_own_augmentation():
    data = DeviceDataset.from_dataset(load_dataset("synthetic:train=64,val=16").train, "cpu")
    aug = GpuAugment(MODERN_RECIPE, 32, 10, "cpu")
    single = _batches(DeviceLoader(data, 16, aug, shuffle=True, drop_last=True, seed=7))
    rank0, rank1 = (_batches(DeviceLoader(data, 8, aug, shuffle=True, drop_last=True, seed=7, rank=r, world=2))
                    for r in range(2))
    assert len(rank0) == len(rank1) == len(single)
    assert not torch.equal(rank0[0][0], rank1[0][0])  # different images, different random draws
    again = _batches(DeviceLoader(data, 8, aug, shuffle=True, drop_last=True, seed=7, rank=1, world=2))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(rank1, again, strict=True))


def test_device_loader_with_transforms_is_reproducible():
    data = DeviceDataset.from_dataset(load_dataset("synthetic:train=64,val=16").train, "cpu")
    aug = GpuAugment(MODERN_RECIPE, 32, 10, "cpu")
    runs = [_batches(DeviceLoader(data, 16, aug, shuffle=True, drop_last=True, seed=7)) for _ in range(2)]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(*runs, strict=True))
    assert runs[0][0][0].shape == (16, 3, 32, 32) and runs[0][0][1].shape == (16, 10)
    val = _batches(DeviceLoader(data, 16, GpuEval(MODERN_RECIPE, 28, "cpu"), shuffle=False, drop_last=False, seed=0))
    assert val[0][0].shape == (16, 3, 28, 28) and torch.equal(val[0][1], data.targets[:16])


_HOST_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__", "nonzero")


def test_device_loader_never_reads_back_to_host(monkeypatch):
    """Iterating (with the full training augmentation, and with eval) calls no tensor -> host conversion:
    every one of them is made to raise for the duration of the iteration."""
    data = DeviceDataset.from_dataset(load_dataset("synthetic:train=32,val=16").train, "cpu")
    aug = GpuAugment(replace(MODERN_RECIPE, rand_augment="rand-m9-n4-mstd0.5-inc1"), 32, 10, "cpu")
    train = DeviceLoader(data, 16, aug, shuffle=True, drop_last=True, seed=0)
    val = DeviceLoader(data, 16, GpuEval(MODERN_RECIPE, 32, "cpu"), shuffle=False, drop_last=False, seed=0)

    def forbidden(*args, **kwargs):
        raise AssertionError("host sync in the device data path")

    for name in _HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, forbidden)
    batches = [b for b in train] + [b for b in val]
    monkeypatch.undo()
    assert len(batches) == 4


def test_iteration_code_has_no_host_reads():
    """By inspection: the per-batch code (not the one-off upload in from_dataset) names no host read-back."""
    parts = [GpuAugment, GpuEval, DeviceLoader, randaugment.BatchedRandAugment, randaugment.rand_augment_batch]
    parts += [rrc_params, resized_crop, resample.resample, resample.resize_weights, sampling.beta, sampling.randint]
    parts += [pixels.smooth]
    for part in parts:
        source = inspect.getsource(part)
        for word in (".item(", ".tolist(", ".cpu(", ".numpy(", "nonzero", "bincount", "unique", ".any()", ".all()"):
            assert word not in source, (part, word)


@pytest.mark.parametrize("crop", ["random_resized", "pad"])
def test_the_device_augmentation_traces_to_one_graph_without_host_syncs(crop):
    """Every stage (crop, flip, RandAugment, erasing, mixing), on a canvas of mixed sizes too: one graph, no
    break (a host sync such as .item() or data-dependent control flow would break it)."""
    recipe = replace(MODERN_RECIPE, crop=crop)
    aug = GpuAugment(recipe, 32, 10, "cpu")
    x = torch.randint(0, 256, (8, 3, 40, 44), dtype=torch.uint8)
    sizes = torch.tensor([[40, 44], [33, 40], [40, 30], [36, 36]] * 2)
    explained = torch._dynamo.explain(aug)(x, torch.arange(8) % 10, sizes=sizes)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons


@pytest.mark.slow
def test_the_compiled_augmentation_is_the_eager_one_under_inductor():
    """`GpuAugment.compiled` (inductor, static shapes) gives the eager augmentation's output for the same global
    RNG state (inductor drawing with torch's own generator), and the loader's compiled path yields its batches."""
    import torch._inductor.config as inductor_config

    torch._dynamo.reset()
    aug = GpuAugment(MODERN_RECIPE, 32, 10, "cpu")
    x, y = torch.randint(0, 256, (8, 3, 40, 40), dtype=torch.uint8), torch.arange(8) % 10
    with inductor_config.patch(fallback_random=True):
        torch.manual_seed(3)
        got = aug.compiled()(x, y)
        torch.manual_seed(3)
        want = aug(x, y)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        data = DeviceDataset(torch.randint(0, 256, (20, 3, 40, 40), dtype=torch.uint8), torch.arange(20) % 10)
        loader = DeviceLoader(data, 8, aug, shuffle=True, drop_last=True, seed=0, compiled=True)
        batches = list(loader)
    assert len(batches) == 2 and all(b[0].shape == (8, 3, 32, 32) and b[1].shape == (8, 10) for b in batches)
