"""The CUDA path on a real GPU (issue 12). Every test here is marked `cuda` and skipped without a GPU (see
conftest.py); `pytest -m cuda` runs them, and so does scripts/gpu-check.sh.

What they check: the device data path on CUDA against the CPU pipeline (distributions and shapes, not bit-exactness),
bf16 + channels-last training steps of the first, one middle (channels-last BatchNorm) and the last model,
torch.compile without recompiles after warm-up, resume on CUDA, gradient accumulation with `--micro-batch auto`, and
DDP on two GPUs when there are two (with SyncBatchNorm on a channels-last BatchNorm step)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.cuda

DEV = torch.device("cuda", 0)
SMALL = ["--dataset", "synthetic:train=256,val=64", "--preset", "smoke", "--device", "cuda", "--quiet", "--no-report"]
STEPS = ["resnet50", "move_up_dwconv", "separate_downsampling"]  # first, middle (BatchNormLast), last


def ks(a, b) -> float:
    a, b = np.sort(np.asarray(a, float)), np.sort(np.asarray(b, float))
    grid = np.concatenate([a, b])
    cdf_a, cdf_b = np.searchsorted(a, grid, "right") / len(a), np.searchsorted(b, grid, "right") / len(b)
    return float(np.max(np.abs(cdf_a - cdf_b)))


def metrics(out: Path) -> dict[str, list[dict]]:
    return {json.loads((d / "config.json").read_text())["step"]:
            [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
            for d in sorted(out.iterdir()) if (d / "metrics.jsonl").exists()}


def test_device_path_on_cuda_matches_the_cpu_pipeline_in_distribution():
    from PIL import Image

    from roadmap.recipe import MODERN_RECIPE
    from runner.data import load_dataset
    from runner.device_data import GpuAugment, GpuEval
    from runner.fitting.timm_parts import eval_transform, train_transform

    recipe = replace(MODERN_RECIPE, mixup=0.0, cutmix=0.0)
    imgs = np.tile(load_dataset("synthetic:train=64,val=4,size=32").train.images, (16, 1, 1, 1))  # 1024 images
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous().to(DEV)
    out, labels = GpuAugment(recipe, 32, 10, DEV)(x, torch.zeros(len(x), dtype=torch.long, device=DEV),
                                                  torch.Generator(device=DEV).manual_seed(0))
    assert out.device.type == "cuda" and out.shape == (1024, 3, 32, 32) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and labels.shape == (1024,)
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    tf = train_transform(recipe, 32)
    ref = torch.stack([tf(Image.fromarray(a)) for a in imgs])
    out = out.cpu()
    assert (out.mean((0, 2, 3)) - ref.mean((0, 2, 3))).abs().max() < 0.08
    assert (out.std((0, 2, 3)) - ref.std((0, 2, 3))).abs().max() < 0.08
    crit = 1.95 * np.sqrt(2 / 1024)  # KS critical value at alpha = 0.001
    assert ks(out.mean((1, 2, 3)), ref.mean((1, 2, 3))) < crit
    assert ks(out.std((1, 2, 3)), ref.std((1, 2, 3))) < crit
    mixed = GpuAugment(MODERN_RECIPE, 32, 10, DEV)(x[:64], torch.arange(64, device=DEV) % 10,
                                                   torch.Generator(device=DEV).manual_seed(1))
    assert mixed[1].shape == (64, 10) and torch.allclose(mixed[1].sum(1), torch.ones(64, device=DEV))
    evaluated = GpuEval(recipe, 32, DEV)(x[:64]).cpu()
    expected = torch.stack([eval_transform(recipe, 32)(Image.fromarray(a)) for a in imgs[:64]])
    assert evaluated.shape == expected.shape and (evaluated - expected).abs().mean() < 1e-3


@pytest.mark.parametrize("spec", STEPS)
def test_bf16_channels_last_training_steps(spec):
    from roadmap.model import build_model
    from runner.fitting.timm_parts import optimizer
    from steps import design_for

    design = design_for(spec)
    model = build_model(design.net, num_classes=10, width_mult=0.25).to(DEV).to(memory_format=torch.channels_last)
    opt = optimizer(design.recipe, model, 1e-3)
    x = torch.randn(16, 3, 64, 64, device=DEV).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (16,), device=DEV)
    losses = []
    for _ in range(3):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(x)
            loss = torch.nn.functional.cross_entropy(out, y)
        assert out.dtype == torch.bfloat16
        opt.zero_grad(set_to_none=True)
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        opt.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]  # the same batch three times: it learns it


def test_a_run_of_three_steps_on_cuda(tmp_path, cli):
    out = tmp_path / "o"
    code, text, err = cli("run", *SMALL, "--steps", ",".join(STEPS), "--epochs", "2", "--train-batches", "3",
                          "--val-batches", "2", "--out", str(out))
    assert code == 0, err
    assert "images held on cuda" in text
    runs = metrics(out)
    assert set(runs) == set(STEPS) and all(len(rows) == 2 for rows in runs.values())
    assert all(np.isfinite(r["train_loss"]) and r["images_per_s"] > 0 for rows in runs.values() for r in rows)


def test_compile_has_no_recompiles_after_warm_up(tmp_path):
    """The first epoch (training and a full evaluation, its last batch smaller) compiles; the second must not."""
    import torch._dynamo

    from runner.data import load_dataset
    from runner.devices import choose_data_path
    from runner.fitting.feed import loaders
    from runner.fitting.job import Job
    from runner.fitting.loop import evaluate, train_epoch
    from runner.fitting.machinery import prepare
    from runner.planning.options import RunOptions, Selection, Training
    from runner.planning.runs import plan
    from runner.store import RunDir

    splits = load_dataset("synthetic:train=256,val=72")
    info = splits.info
    (r,) = plan(RunOptions(Selection(dataset="synthetic:train=256,val=72", steps=("convnext_tiny",)),
                           Training(preset="smoke", epochs=2, train_batches=4, batch_size=32)),
                "synthetic", info.native_size, info.num_classes)
    device_data = choose_data_path("device", splits, DEV, 0, lambda _: None)
    job = Job(run_dir=RunDir(tmp_path / "r"), design=r.design, budget=r.budget, seed=0, num_classes=info.num_classes,
              class_names=tuple(info.classes), train_set=splits.train, val_set=splits.val, device=DEV, compile=True,
              progress=False, log=lambda _: None, device_data=device_data)
    t = prepare(job)
    try:
        for epoch in range(3):
            if epoch == 1:
                torch._dynamo.config.error_on_recompile = True
            train_loader, val_loader = loaders(job, t.plan, epoch)
            stats, bad = train_epoch(t, train_loader, epoch, steps=4)
            assert not bad
            evaluate(t.eval_model, val_loader, info.num_classes, DEV, len(val_loader))
    finally:
        torch._dynamo.config.error_on_recompile = False


def test_resume_on_cuda(tmp_path, cli, monkeypatch):
    """Interrupted after its first epoch, a run resumes from the checkpoint and ends like an uninterrupted one
    (within bf16 / cuDNN nondeterminism; on CPU the tests ask for bit-equality)."""
    import runner.fitting.fit as train

    args = ["run", *SMALL, "--steps", "convnext_tiny", "--epochs", "2", "--train-batches", "4", "--val-batches", "2"]
    code, _, err = cli(*args, "--out", str(tmp_path / "ref"))
    assert code == 0, err
    real, calls = train.evaluate, []

    def interrupt_second_epoch(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(train, "evaluate", interrupt_second_epoch)
    code, _, _ = cli(*args, "--out", str(tmp_path / "cut"))
    assert code == 130
    monkeypatch.setattr(train, "evaluate", real)
    code, text, err = cli(*args, "--out", str(tmp_path / "cut"))
    assert code == 0, err
    assert "resuming after epoch 1/2" in text
    (a,), (b,) = metrics(tmp_path / "ref").values(), metrics(tmp_path / "cut").values()
    assert len(a) == len(b) == 2
    assert b[1]["train_loss"] == pytest.approx(a[1]["train_loss"], rel=0.05)


def test_micro_batch_auto_on_cuda(tmp_path, cli):
    out = tmp_path / "o"
    code, text, err = cli("run", *SMALL, "--steps", "convnext_tiny", "--epochs", "1", "--train-batches", "2",
                          "--val-batches", "1", "--micro-batch", "auto", "--out", str(out))
    assert code == 0, err
    assert "--micro-batch auto:" in text


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
@pytest.mark.parametrize("extra", [[], ["--steps", "move_up_dwconv", "--set", "recipe.sync_bn=true"]])
def test_ddp_on_two_gpus(tmp_path, extra):
    args = [sys.executable, "-m", "roadmap", "run", *SMALL, "--steps", "convnext_tiny", "--epochs", "1",
            "--train-batches", "3", "--val-batches", "2", "--batch-size", "32", *extra]
    two = subprocess.run([*args, "--nproc", "2", "--out", str(tmp_path / "two")], capture_output=True, text=True,
                         timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "x 2 processes" in two.stdout
    one = subprocess.run([*args, "--out", str(tmp_path / "one")], capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    (a,), (b,) = metrics(tmp_path / "one").values(), metrics(tmp_path / "two").values()
    assert b[0]["train_loss"] == pytest.approx(a[0]["train_loss"], rel=0.1)
