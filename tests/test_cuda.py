"""The CUDA path on a real GPU (issue 12). Every test here is marked `cuda` and skipped without a GPU (see
conftest.py); `pytest -m cuda` runs them, and so does scripts/gpu-check.sh.

What they check: the device data path on CUDA against the CPU pipeline (distributions and shapes, not bit-exactness),
bf16 + channels-last training steps of the first, one middle (channels-last BatchNorm) and the last model,
torch.compile without recompiles after warm-up, no host sync in the training and evaluation loops, resume on CUDA,
gradient accumulation with `--micro-batch auto`, and DDP on two GPUs when there are two (with SyncBatchNorm on a
channels-last BatchNorm step).

Each test's body takes the device, or its arguments are built for one, so tests/test_cuda_on_cpu.py runs the same
arguments on CPU and asserts what the CUDA test asserts (issue 20: a test that can never pass is found before the one
GPU run). scripts/gpu-check.sh runs the compile test in its compile part, after the others."""

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


def on(device: str, args: list[str]) -> list[str]:
    """`args` with `--device cuda` replaced by `device` (tests/test_cuda_on_cpu.py runs every test's arguments on
    CPU and asserts what the CUDA test asserts)."""
    return [device if i and args[i - 1] == "--device" else a for i, a in enumerate(args)]


def epochs(out: Path, step: str) -> int:
    """The epochs `step`'s run in `out` trains, from its own config.json (the original recipe trains 90:300 of
    `--epochs`)."""
    (config,) = [json.loads((d / "config.json").read_text()) for d in out.iterdir()
                 if (d / "config.json").exists() and json.loads((d / "config.json").read_text())["step"] == step]
    return config["budget"]["epochs"]


def metrics(out: Path) -> dict[str, list[dict]]:
    return {json.loads((d / "config.json").read_text())["step"]:
            [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
            for d in sorted(out.iterdir()) if (d / "metrics.jsonl").exists()}


def device_path_matches_the_cpu_pipeline(dev: torch.device) -> None:
    """The device path on `dev` against the CPU pipeline: distributions and shapes (also run on CPU:
    tests/test_cuda_on_cpu.py)."""
    from PIL import Image

    from roadmap.recipe import MODERN_RECIPE
    from runner.data import load_dataset
    from runner.device_data import GpuAugment, GpuEval
    from runner.fitting.timm_parts import eval_transform, train_transform

    recipe = replace(MODERN_RECIPE, mixup=0.0, cutmix=0.0)
    imgs = np.tile(load_dataset("synthetic:train=64,val=4,size=32").train.images, (16, 1, 1, 1))  # 1024 images
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous().to(dev)
    out, labels = GpuAugment(recipe, 32, 10, dev)(x, torch.zeros(len(x), dtype=torch.long, device=dev),
                                                  torch.Generator(device=dev).manual_seed(0))
    assert out.device.type == dev.type and out.shape == (1024, 3, 32, 32) and out.dtype == torch.float32
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
    mixed = GpuAugment(MODERN_RECIPE, 32, 10, dev)(x[:64], torch.arange(64, device=dev) % 10,
                                                   torch.Generator(device=dev).manual_seed(1))
    assert mixed[1].shape == (64, 10) and torch.allclose(mixed[1].sum(1), torch.ones(64, device=dev))
    evaluated = GpuEval(recipe, 32, dev)(x[:64]).cpu()
    expected = torch.stack([eval_transform(recipe, 32)(Image.fromarray(a)) for a in imgs[:64]])
    assert evaluated.shape == expected.shape and (evaluated - expected).abs().mean() < 1e-3


def test_device_path_on_cuda_matches_the_cpu_pipeline_in_distribution():
    device_path_matches_the_cpu_pipeline(DEV)


def bf16_channels_last_steps(spec: str, dev: torch.device, precision: str = "bf16", size: int = 64) -> None:
    """Three bf16 (or fp16, through the loss scaler) + channels-last training steps of `spec` on one batch: finite
    gradients, the loss goes down. In fp16 the scaler skips the steps whose gradients overflow (it starts at 2**16 and
    halves the scale at each), so the steps are counted from the ones it took: three of them, within 20."""
    from roadmap.model import build_model
    from runner.fitting.timm_parts import optimizer
    from runner.precision import Precision
    from steps import design_for

    chosen = Precision(precision)
    scaler = chosen.grad_scaler(dev)
    design = design_for(spec)
    torch.manual_seed(0)
    model = build_model(design.net, num_classes=10, width_mult=0.25).to(dev).to(memory_format=torch.channels_last)
    opt = optimizer(design.recipe, model, 1e-3)
    x = torch.randn(16, 3, size, size, device=dev).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (16,), device=dev)
    losses, taken = [], 0
    for _ in range(20):
        with chosen.autocast(dev):
            out = model(x)
            loss = torch.nn.functional.cross_entropy(out, y)
        assert out.dtype == chosen.dtype
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        finite = all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        assert finite or chosen.scales_loss  # (fp16: an overflowed step, which the scaler skips)
        scaler.step(opt)
        scaler.update()
        if finite:
            losses.append(loss.item())
            taken += 1
        if taken == 3:
            break
    assert taken == 3 and all(np.isfinite(losses)) and losses[-1] < losses[0]  # the same batch: it learns it


@pytest.mark.parametrize("spec", STEPS)
def test_bf16_channels_last_training_steps(spec):
    bf16_channels_last_steps(spec, DEV)


@pytest.mark.parametrize("spec", STEPS)
def test_fp16_channels_last_training_steps(spec):
    """What a GPU without bf16 hardware trains in (--precision auto below compute capability 8.0)."""
    bf16_channels_last_steps(spec, DEV, "fp16")


def three_steps_args(device: str, out: Path) -> list[str]:
    return ["run", *on(device, SMALL), "--steps", ",".join(STEPS), "--epochs", "2", "--train-batches", "3",
            "--val-batches", "2", "--out", str(out)]


def check_three_steps(out: Path, text: str, device: str) -> None:
    """Every step's rows, as many as its own config.json's epochs (the original recipe, resnet50's, trains 90:300
    of them: 1 of `--epochs 2`)."""
    assert f"images held on {device}" in text
    runs = metrics(out)
    assert set(runs) == set(STEPS)
    assert all(len(rows) == epochs(out, step) for step, rows in runs.items())
    assert all(np.isfinite(r["train_loss"]) and r["images_per_s"] > 0 for rows in runs.values() for r in rows)


def test_a_run_of_three_steps_on_cuda(tmp_path, cli):
    out = tmp_path / "o"
    code, text, err = cli(*three_steps_args("cuda", out))
    assert code == 0, err
    check_three_steps(out, text, "cuda")


def compile_without_recompiles(dev: torch.device, tmp_path: Path) -> None:
    """The first epoch (training and a full evaluation, its last batch smaller) compiles; the second must not."""
    import torch._dynamo

    from runner.data import load_dataset
    from runner.devices import choose_data_path
    from runner.fitting.loop import evaluate, train_epoch
    from runner.fitting.training_run import Job, loaders, prepare
    from runner.planning.options import RunOptions, Selection, Training
    from runner.planning.runs import plan
    from runner.store import RunDir

    splits = load_dataset("synthetic:train=256,val=72")
    info = splits.info
    (r,) = plan(RunOptions(Selection(dataset="synthetic:train=256,val=72", steps=("convnext_tiny",)),
                           Training(preset="smoke", epochs=2, train_batches=4, batch_size=32)),
                "synthetic", info.native_size, info.num_classes, info.train_size)
    device_data = choose_data_path("device", splits, dev, 0, lambda _: None)
    job = Job(run_dir=RunDir(tmp_path / "r"), design=r.design, budget=r.budget, seed=0, num_classes=info.num_classes,
              class_names=tuple(info.classes), train_set=splits.train, val_set=splits.val, device=dev, compile=True,
              progress=False, log=lambda _: None, device_data=device_data)
    t = prepare(job)
    try:
        for epoch in range(3):
            if epoch == 1:
                torch._dynamo.config.error_on_recompile = True
            train_loader, val_loader = loaders(job, t.batch_plan, epoch)
            stats, bad = train_epoch(t, train_loader, epoch, steps=4)
            assert not bad
            evaluate(t.eval_model, val_loader, info.num_classes, dev, len(val_loader))
    finally:
        torch._dynamo.config.error_on_recompile = False


def test_compile_has_no_recompiles_after_warm_up(tmp_path):
    compile_without_recompiles(DEV, tmp_path)


def no_host_sync_in_the_loops(dev: torch.device, tmp_path: Path, monkeypatch, precision: str | None = None) -> None:
    """A few loader + training steps (past two lagged divergence checks) and an evaluation under
    `torch.cuda.set_sync_debug_mode("error")`: any host sync raises. The epoch's end reads back once
    (`loop._to_host`) and synchronizes to time it: the test lets those two through. In fp16 the loss scaler's step
    does not read back either with convnext_tiny's fused AdamW (which takes the scale and the overflow flag itself;
    torch's GradScaler reads the flag back for other optimizers, such as the original recipe's SGD)."""
    from test_gpu_first_run import tiny_job

    import runner.fitting.loop as loop
    from runner.fitting.training_run import loaders, prepare
    from runner.precision import Precision

    # SMALL's images and batch (64 px, 32): the augmentation's graph of the other tests, not one more to compile
    job = tiny_job(tmp_path, "convnext_tiny", "synthetic:train=1792,val=40", device=dev, batch_size=32,
                   **({"precision": Precision(precision)} if precision else {}))
    t = prepare(job)
    steps = 2 * loop.CUDA_CHECK_EVERY + 5  # the second check reads the first one's pinned copy
    train_loader, val_loader = loaders(job, t.batch_plan, 0)
    real_read, real_sync = loop._to_host, loop.synchronize

    def allowed(fn):
        def call(*a):
            torch.cuda.set_sync_debug_mode(0)
            try:
                return fn(*a)
            finally:
                torch.cuda.set_sync_debug_mode("error")
        return call

    monkeypatch.setattr(loop, "_to_host", allowed(real_read))
    monkeypatch.setattr(loop, "synchronize", allowed(real_sync))
    torch.cuda.synchronize(dev)
    torch.cuda.set_sync_debug_mode("error")
    try:
        stats, bad = loop.train_epoch(t, train_loader, 0, steps=steps)
        loop.evaluate(t.eval_model, val_loader, job.num_classes, dev, len(val_loader), precision=job.precision)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert t.updates == steps and not bad


def test_no_host_sync_in_the_training_and_evaluation_loops(tmp_path, monkeypatch):
    no_host_sync_in_the_loops(DEV, tmp_path, monkeypatch)


def test_no_host_sync_in_the_loops_in_fp16(tmp_path, monkeypatch):
    no_host_sync_in_the_loops(DEV, tmp_path, monkeypatch, "fp16")


def resume_args(device: str, out: Path, *extra: str) -> list[str]:
    return ["run", *on(device, SMALL), "--steps", "convnext_tiny", "--epochs", "2", "--train-batches", "4",
            "--val-batches", "2", "--out", str(out), *extra]


def resume_after_an_interrupt(device: str, tmp_path: Path, cli, monkeypatch, *extra: str) -> None:
    """Interrupted after its first epoch, a run resumes from the checkpoint and ends like an uninterrupted one
    (within bf16 / cuDNN nondeterminism; on CPU the tests ask for bit-equality elsewhere)."""
    import runner.fitting.fit as train

    code, _, err = cli(*resume_args(device, tmp_path / "ref", *extra))
    assert code == 0, err
    real, calls = train.evaluate, []

    def interrupt_second_epoch(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(train, "evaluate", interrupt_second_epoch)
    code, _, _ = cli(*resume_args(device, tmp_path / "cut", *extra))
    assert code == 130
    monkeypatch.setattr(train, "evaluate", real)
    code, text, err = cli(*resume_args(device, tmp_path / "cut", *extra))
    assert code == 0, err
    assert "resuming after epoch 1/2" in text
    ((step, a),), (b,) = metrics(tmp_path / "ref").items(), metrics(tmp_path / "cut").values()
    assert len(a) == len(b) == epochs(tmp_path / "ref", step) == 2
    assert b[1]["train_loss"] == pytest.approx(a[1]["train_loss"], rel=0.05)


def test_resume_on_cuda(tmp_path, cli, monkeypatch):
    resume_after_an_interrupt("cuda", tmp_path, cli, monkeypatch)


def test_resume_on_cuda_in_fp16(tmp_path, cli, monkeypatch):
    resume_after_an_interrupt("cuda", tmp_path, cli, monkeypatch, "--precision", "fp16")


def micro_batch_auto_args(device: str, out: Path) -> list[str]:
    return ["run", *on(device, SMALL), "--steps", "convnext_tiny", "--epochs", "1", "--train-batches", "2",
            "--val-batches", "1", "--micro-batch", "auto", "--out", str(out)]


def test_micro_batch_auto_on_cuda(tmp_path, cli):
    out = tmp_path / "o"
    code, text, err = cli(*micro_batch_auto_args("cuda", out))
    assert code == 0, err
    assert "--micro-batch auto:" in text


def ddp_args(device: str, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "roadmap", "run", *on(device, SMALL), "--steps", "convnext_tiny", "--epochs", "1",
            "--train-batches", "3", "--val-batches", "2", "--batch-size", "32", *extra]


DDP_EXTRAS = [[], ["--steps", "move_up_dwconv", "--set", "recipe.sync_bn=true"]]  # (the last --steps counts)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
@pytest.mark.parametrize("extra", DDP_EXTRAS)
def test_ddp_on_two_gpus(tmp_path, extra):
    args = ddp_args("cuda", extra)
    two = subprocess.run([*args, "--nproc", "2", "--out", str(tmp_path / "two")], capture_output=True, text=True,
                         timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "x 2 processes" in two.stdout
    one = subprocess.run([*args, "--out", str(tmp_path / "one")], capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    (a,), (b,) = metrics(tmp_path / "one").values(), metrics(tmp_path / "two").values()
    assert b[0]["train_loss"] == pytest.approx(a[0]["train_loss"], rel=0.1)
