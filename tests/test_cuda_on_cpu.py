"""Every test of tests/test_cuda.py with its arguments run on CPU, asserting what the CUDA test asserts (issue 20):
a CUDA test that cannot pass (`test_a_run_of_three_steps_on_cuda` expected 2 epochs of resnet50, which trains 1 of
`--epochs 2`) is found here, before the one GPU run. What needs the GPU itself (bf16 kernels, cuDNN, NCCL, the
sync-debug mode) stays in test_cuda.py."""

from __future__ import annotations

import dataclasses
import subprocess

import pytest
import test_cuda as on_gpu
import torch
from test_gpu_first_run import tiny_job

CPU = torch.device("cpu")


@pytest.mark.slow
def test_device_path_matches_the_cpu_pipeline_on_cpu():
    on_gpu.device_path_matches_the_cpu_pipeline(CPU)


@pytest.mark.parametrize("spec", on_gpu.STEPS)
def test_bf16_channels_last_steps_on_cpu(spec):
    on_gpu.bf16_channels_last_steps(spec, CPU)


def test_fp16_channels_last_steps_on_cpu():
    """The fp16 variant's steps on CPU tensors (fp16 kernels are slow on a CPU: the middle step only, at 32 px)."""
    on_gpu.bf16_channels_last_steps("move_up_dwconv", CPU, "fp16", size=32)


def test_the_three_step_run_on_cpu(tmp_path, cli):
    out = tmp_path / "o"
    code, text, err = cli(*on_gpu.three_steps_args("cpu", out), "--data-path", "device")  # (auto on CUDA: device)
    assert code == 0, err
    on_gpu.check_three_steps(out, text, "cpu")
    assert on_gpu.epochs(out, "resnet50") == 1 and on_gpu.epochs(out, "move_up_dwconv") == 2  # what the test missed


@pytest.mark.slow
def test_compile_without_recompiles_on_cpu(tmp_path, monkeypatch):
    """Dynamo with its eager backend: the same graphs, guards and recompiles as inductor, without compiling code."""
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model=None, **kw: real(model, **{**kw, "backend": "eager"}))
    on_gpu.compile_without_recompiles(CPU, tmp_path)


@pytest.mark.slow
def test_the_sync_debug_test_on_cpu(tmp_path, monkeypatch):
    """Its data set, batch and steps (past two lagged divergence checks) on CPU; the sync-debug mode needs CUDA."""
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", lambda mode: None)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda dev=None: None)
    on_gpu.no_host_sync_in_the_loops(CPU, tmp_path, monkeypatch)


@pytest.mark.slow
def test_resume_on_cpu(tmp_path, cli, monkeypatch):
    on_gpu.resume_after_an_interrupt("cpu", tmp_path, cli, monkeypatch)


def test_micro_batch_auto_on_cpu(tmp_path, cli, monkeypatch):
    code, text, err = cli(*on_gpu.micro_batch_auto_args("cpu", tmp_path / "o"))
    assert code == 0, err
    assert "--micro-batch auto on cpu: the whole batch" in text
    import runner.fitting.micro_batch as micro_batch  # and on CUDA the line the test looks for

    logged = []
    monkeypatch.setattr(micro_batch, "_fitting_micro_batch", lambda model, per_rank, *_: 16)
    from runner.planning.batching import BatchPlan

    job = dataclasses.replace(tiny_job(tmp_path, "convnext_tiny", log=logged.append), device=torch.device("cuda", 0))
    plan = BatchPlan.decide(32, 64, mixes=True, requested="auto")
    assert micro_batch.micro_batch_for(torch.nn.Linear(1, 1), plan, job.design.recipe, job.budget.img_size, job.device,
                                       job.dist, job.log, job.precision).micro_batch == 16
    assert "--micro-batch auto:" in logged[0] and "2 accumulation step(s)" in logged[0]


@pytest.mark.slow
@pytest.mark.parametrize("extra", on_gpu.DDP_EXTRAS)
def test_the_ddp_arguments_on_two_cpu_processes(tmp_path, extra):
    """Both DDP runs' arguments, planned by two gloo processes (a dry run: the training is test_distributed's)."""
    two = subprocess.run([*on_gpu.ddp_args("cpu", extra), "--nproc", "2", "--dry-run", "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "x 2 processes" in two.stdout
