"""Scale-out on CPU: DDP with gloo equals one process at the same global batch; submitit's local executor runs
one job per step into the same result store and report."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runner.launchers.children import child_argv

# deterministic training inputs (no augmentation, no mixup, no stochastic depth) on a LayerNorm model, so one
# process and two must agree up to float summation order
EXACT = ["--dataset", "synthetic:train=256,val=64", "--preset", "smoke", "--steps", "convnext_tiny", "--epochs", "2",
         "--train-batches", "4", "--val-batches", "2", "--batch-size", "16", "--set", "train_augment=false",
         "--set", "mixup=0", "--set", "cutmix=0", "--set", "random_erasing=0", "--set", "drop_path_rate=0",
         "--quiet", "--no-report"]


def metrics(out: Path) -> list[dict]:
    (run,) = [d for d in out.iterdir() if d.is_dir()]
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_ddp_gloo_two_processes_equals_one_process(tmp_path):
    roadmap = [sys.executable, "-m", "roadmap", "run"]
    subprocess.run([*roadmap, *EXACT, "--out", str(tmp_path / "one")], check=True, capture_output=True)
    two = subprocess.run([*roadmap, *EXACT, "--nproc", "2", "--out", str(tmp_path / "two")], capture_output=True,
                         text=True)
    assert two.returncode == 0, two.stderr[-2000:]
    assert "x 2 processes" in two.stdout
    a, b = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    assert len(a) == len(b) == 2  # rank 0 alone wrote the records
    for x, y in zip(a, b, strict=True):
        # stated tolerance: 1e-5 relative on losses (gradient all-reduce changes the summation order)
        assert y["train_loss"] == pytest.approx(x["train_loss"], rel=1e-5)
        assert y["val_loss"] == pytest.approx(x["val_loss"], rel=1e-4)
        assert (y["train_top1"], y["val_top1"], y["val_top5"]) == (x["train_top1"], x["val_top1"], x["val_top5"])


@pytest.mark.slow
def test_ddp_in_fp16_equals_one_process(tmp_path):
    """fp16 under DDP: the gradients are all-reduced before the scaler unscales them, so every rank finds the same
    overflows and skips the same steps; two processes train as one (within fp16's rounding)."""
    roadmap = [sys.executable, "-m", "roadmap", "run", *EXACT, "--epochs", "1", "--train-batches", "2",
               "--precision", "fp16"]
    one = subprocess.run([*roadmap, "--out", str(tmp_path / "one")], capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([*roadmap, "--nproc", "2", "--out", str(tmp_path / "two")], capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-2000:]
    assert "x 2 processes" in two.stdout and "precision: fp16" in two.stdout
    (x,), (y,) = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    assert y["skipped_steps"] == x["skipped_steps"]
    assert y["train_loss"] == pytest.approx(x["train_loss"], rel=1e-3)
    assert y["val_loss"] == pytest.approx(x["val_loss"], rel=1e-3)


@pytest.mark.slow
def test_ddp_with_the_device_data_path_equals_one_process(tmp_path):
    """The device-resident path under DDP: each process holds the images and takes its share of each batch."""
    roadmap = [sys.executable, "-m", "roadmap", "run", *EXACT, "--data-path", "device"]
    one = subprocess.run([*roadmap, "--out", str(tmp_path / "one")], capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([*roadmap, "--nproc", "2", "--out", str(tmp_path / "two")], capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-2000:]
    assert "images held on cpu" in two.stdout and "x 2 processes" in two.stdout
    for x, y in zip(metrics(tmp_path / "one"), metrics(tmp_path / "two"), strict=True):
        assert y["train_loss"] == pytest.approx(x["train_loss"], rel=1e-5)
        assert y["val_loss"] == pytest.approx(x["val_loss"], rel=1e-4)
        assert (y["train_top1"], y["val_top1"], y["val_top5"]) == (x["train_top1"], x["val_top1"], x["val_top5"])


@pytest.mark.slow
def test_submitit_local_executor_end_to_end(tmp_path):
    out = tmp_path / "out"
    args = [sys.executable, "-m", "roadmap", "run", "--dataset", "synthetic:train=256,val=64", "--preset", "smoke",
            "--steps", "resnet50,convnext_tiny", "--epochs", "1", "--train-batches", "3", "--val-batches", "1",
            "--launcher", "slurm", "--cluster", "local", "--out", str(out)]
    first = subprocess.run(args, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "submitted 2 of 2 runs" in first.stdout
    results = [json.loads(p.read_text()) for p in out.glob("*/result.json")]
    assert len(results) == 2 and all(r["status"] == "done" for r in results)
    report = (out / "report.md").read_text()
    assert "resnet50" in report and "separate_downsampling" in report
    again = subprocess.run(args, capture_output=True, text=True)
    assert again.returncode == 0 and "submitted 0 of 2 runs" in again.stdout  # nothing is trained twice


def test_child_commands_are_restricted_to_one_run():
    argv = ["run", "--dataset", "cifar10", "--upto", "gelu", "--launcher", "gpus", "--gpus", "0,1", "--per-gpu=2",
            "--seeds", "3", "--out", "runs/x"]
    child = child_argv(argv, "gelu", 2, "cuda:1")
    assert child[:5] == ["run", "--dataset", "cifar10", "--seeds", "3"]
    assert "--launcher" not in child and "--upto" not in child and "--gpus" not in child and "--per-gpu=2" not in child
    assert child[child.index("--steps") + 1] == "gelu" and child[child.index("--only-seed") + 1] == "2"
    assert child[-2:] == ["--device", "cuda:1"] and "--no-plan" in child
