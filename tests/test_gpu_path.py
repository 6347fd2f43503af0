"""The CUDA path's fixes, checked on CPU (issue 12): each test fails on the code before the fix. Where binding a
process to its GPU is the point, torch.cuda is mocked; SyncBatchNorm is checked in eval mode; DDP with gloo."""

import copy
import inspect
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from runner.dist import ShardedPermutation

TINY_RUN = ["--dataset", "synthetic:train=64,val=16", "--preset", "smoke", "--epochs", "1", "--train-batches", "2",
            "--val-batches", "1", "--batch-size", "8", "--quiet", "--no-report"]


def rows(out: Path) -> list[list[dict]]:
    return [[json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
            for d in sorted(out.iterdir()) if d.is_dir()]


# -------------------------------------------------------------------------------- DDP binds each process to its GPU


class _Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))


def test_ddp_binds_each_process_to_its_gpu_before_the_group_is_created(monkeypatch):
    import runner.dist as dist

    events = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: events.append(("set_device", torch.device(d))))
    monkeypatch.setattr(dist.torch_dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist.torch_dist, "init_process_group", lambda **kw: events.append(("init", kw)))
    monkeypatch.setattr(dist.torch_dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist.torch_dist, "get_world_size", lambda: 2)
    d = dist.from_env("nccl", torch.device("cuda"))
    assert (d.rank, d.world, d.local_rank) == (1, 2, 1)
    assert events[0] == ("set_device", torch.device("cuda", 1))  # bound first: NCCL's communicator uses it
    assert events[1] == ("init", {"backend": "nccl", "device_id": torch.device("cuda", 1)})


def test_a_single_cuda_process_is_bound_to_its_own_gpu(monkeypatch):
    """A `--launcher gpus` child trains on cuda:1: it must not open a context on cuda:0."""
    import runner.dist as dist

    bound = []
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: bound.append(torch.device(d)))
    assert not dist.from_env("nccl", torch.device("cuda", 1)).active
    assert bound == [torch.device("cuda", 1)]
    dist.from_env("gloo", torch.device("cpu"))
    assert bound == [torch.device("cuda", 1)]  # nothing on CPU


def test_cuda_synchronize_always_names_the_device(monkeypatch):
    import runner.dist as dist
    import runner.fitting.checkpoint
    import runner.fitting.fit
    import runner.fitting.loop
    import runner.fitting.micro_batch
    import runner.fitting.training_run

    calls = _Recorder()
    monkeypatch.setattr(torch.cuda, "synchronize", calls)
    dist.synchronize(torch.device("cuda", 1))
    dist.synchronize(torch.device("cpu"))
    assert calls.calls == [((torch.device("cuda", 1),), {})]
    for training in (runner.fitting.fit, runner.fitting.training_run, runner.fitting.micro_batch, runner.fitting.loop,
                     runner.fitting.checkpoint):
        assert "torch.cuda.synchronize()" not in inspect.getsource(training)  # which would wait on the current device


# -------------------------------------------------------------------------------- sync_bn keeps the channels-last BN


def test_sync_batchnorm_keeps_the_channels_last_batchnorm():
    from roadmap.model import BatchNormLast, SyncBatchNormLast, build_model, convert_sync_batchnorm

    model = build_model("move_up_dwconv", num_classes=10, width_mult=0.125, depths=(1, 1, 1, 1)).eval()
    assert any(isinstance(m, BatchNormLast) for m in model.modules())
    g = torch.Generator().manual_seed(0)
    for m in model.modules():  # statistics away from (0, 1), so a wrong axis cannot pass unnoticed
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
    synced = convert_sync_batchnorm(copy.deepcopy(model)).eval()
    kinds = {type(m) for m in synced.modules()}
    assert SyncBatchNormLast in kinds and torch.nn.SyncBatchNorm in kinds and BatchNormLast not in kinds
    assert not any(type(m) in (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d) for m in synced.modules())
    assert synced.state_dict().keys() == model.state_dict().keys()  # checkpoints load either way
    with torch.no_grad():
        torch.testing.assert_close(synced(x), expected)
    plain = torch.nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(model)).eval()  # torch's own: wrong axis
    with pytest.raises(RuntimeError), torch.no_grad():
        plain(x)


# -------------------------------------------------------------------------------- device path, no augmentation, mixing


def test_the_device_path_without_augmentation_still_mixes(tmp_path, cli):
    """train_augment=false on the device path: GpuEval's integer labels are mixed (timm's Mixup) into the soft
    targets SoftTargetCrossEntropy expects, as on the CPU path."""
    out = tmp_path / "o"
    code, _, err = cli("run", *TINY_RUN, "--steps", "convnext_tiny", "--data-path", "device",
                       "--set", "train_augment=false", "--out", str(out))
    assert code == 0, err
    ((row,),) = rows(out)
    assert math.isfinite(row["train_loss"]) and row["train_loss"] > 0


# -------------------------------------------------------------------------------- evaluation: no host sync per batch


def test_evaluation_reads_back_once_not_per_batch(monkeypatch):
    from runner.fitting.loop import evaluate

    reads = {"n": 0}
    for name in ("item", "tolist", "cpu"):
        original = getattr(torch.Tensor, name)

        def counted(self, *a, _original=original, **k):
            reads["n"] += 1
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counted)

    def no_bincount(*a, **k):  # its output size depends on the data: a host sync on CUDA
        raise AssertionError("torch.bincount in the evaluation loop")

    monkeypatch.setattr(torch, "bincount", no_bincount)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5))
    batches = [(torch.randn(4, 3, 2, 2), torch.randint(0, 5, (4,))) for _ in range(6)]
    counts = []
    for n in (2, 6):
        reads["n"] = 0
        result = evaluate(model, batches, 5, torch.device("cpu"), n)
        counts.append(reads["n"])
        assert sum(map(sum, result.confusion)) == 4 * n
    assert counts[0] == counts[1] == 1  # one read-back whatever the number of batches
    with torch.no_grad():  # and the numbers are right
        out = torch.cat([model(x) for x, _ in batches])
        y = torch.cat([y for _, y in batches])
    result = evaluate(model, batches, 5, torch.device("cpu"), 6)
    assert result.val_top1 == pytest.approx(100 * (out.argmax(1) == y).float().mean().item())
    assert result.confusion[1][2] == int(((y == 1) & (out.argmax(1) == 2)).sum())


# -------------------------------------------------------------------------------- bench: each model's own memory


def test_bench_memory_is_each_models_own(monkeypatch):
    """Peak memory per model, with a fake allocator that counts the parameters on the device: a model's number
    must not include the models measured before (or after) it."""
    import runner.benchmarks.model_speed as bench

    on_device = {}
    monkeypatch.setattr(bench, "_place", lambda m, dev: on_device.setdefault(id(m), m))
    allocated = lambda dev: sum(p.numel() * 4 for m in on_device.values() for p in m.parameters())  # noqa: E731
    monkeypatch.setattr(bench, "_allocated", allocated)
    monkeypatch.setattr(bench, "_peak", allocated)
    monkeypatch.setattr(bench, "_reset_peak", lambda dev: None)
    df = bench.bench(["resnet50", "convnext_tiny"], 32, 2, torch.device("cpu"), iters=1, warmup=1, rounds=1,
                     references=False, log=lambda _: None)
    from roadmap.model import build_model, count_params

    for name, spec in (("resnet50", "resnet50"), ("separate_downsampling", "convnext_tiny")):
        own = count_params(build_model(spec)) * 4 / 2**30
        assert df.set_index("model").loc[name, "GPU GiB"] == pytest.approx(own, abs=0.006)


# -------------------------------------------------------------------------------- cudnn.benchmark


def test_cudnn_autotuning_is_on_for_cuda(monkeypatch):
    from runner.fitting.training_run import configure_backends

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    configure_backends(torch.device("cpu"))
    assert torch.backends.cudnn.benchmark is False
    configure_backends(torch.device("cuda", 0))
    assert torch.backends.cudnn.benchmark is True


# ------------------------------------------------------------------------ torch.compile: per-run state, eval time


def test_compile_state_is_reset_per_run_and_eval_compile_time_recorded(tmp_path, cli, monkeypatch):
    """Many runs share one process: dynamo's caches are reset for each, so no run meets the recompile limit that
    earlier runs filled (and silently falls back to eager); the first evaluation's compile time is recorded."""
    resets, compiled = [], []
    monkeypatch.setattr(torch._dynamo, "reset", lambda: resets.append(1))
    monkeypatch.setattr(torch, "compile", lambda m, **kw: compiled.append(m) or m)  # eager stands in for inductor
    out = tmp_path / "o"
    code, _, err = cli("run", *TINY_RUN, "--steps", "resnet50,convnext_tiny", "--compile", "--out", str(out))
    assert code == 0, err
    assert len(resets) == 2 and compiled
    for run in rows(out):
        assert run[0]["eval_compile_seconds"] >= 0 and run[0]["compile_seconds"] >= 0
    for d in out.iterdir():
        if d.is_dir():
            assert json.loads((d / "result.json").read_text())["eval_compile_seconds"] >= 0


def test_records_without_compile_keep_their_format(tmp_path, cli):
    out = tmp_path / "o"
    code, _, err = cli("run", *TINY_RUN, "--steps", "convnext_tiny", "--out", str(out))
    assert code == 0, err
    ((row,),) = rows(out)
    assert set(row) == {"epoch", "train_loss", "train_top1", "images_per_s", "val_loss", "val_top1", "val_top5",
                        "lr", "seconds"}
    (result,) = [json.loads((d / "result.json").read_text()) for d in out.iterdir() if d.is_dir()]
    assert "eval_compile_seconds" not in result and result["compile_seconds"] is None


# -------------------------------------------------------------------------------- per-rank DropPath masks


def test_every_rank_draws_its_own_droppath_masks_and_rank_0_keeps_its_stream():
    from timm.layers import DropPath

    from runner.fitting.seeding import epoch_seed, rank_seed, seed_everything

    drop = DropPath(0.5).train()
    x = torch.ones(64, 1, 1, 1)

    def masks(rank: int) -> torch.Tensor:
        seed_everything(rank_seed(epoch_seed(3, 1), rank))
        return drop(x).flatten()

    assert rank_seed(epoch_seed(3, 1), 0) == epoch_seed(3, 1)  # one process: the same numbers as before
    assert not torch.equal(masks(0), masks(1))
    assert torch.equal(masks(1), masks(1))  # and still seeded (resume repeats an epoch exactly)
    assert "rank_seed(epoch_seed(job.seed, epoch), job.dist.rank)" in inspect.getsource(  # the epoch loop's seed
        __import__("runner.fitting.fit", fromlist=["train"]))


# -------------------------------------------------------------------------------- equal shards on the CPU loader


def test_every_rank_gets_the_same_number_of_samples():
    n, world = 11, 2
    shards = [list(ShardedPermutation(n, 5, r, world)) for r in range(world)]
    assert [len(s) for s in shards] == [len(ShardedPermutation(n, 5, r, world)) for r in range(world)] == [5, 5]
    order = list(ShardedPermutation(n, 5))  # one process: the whole permutation, as before
    assert len(order) == n
    assert sorted(shards[0] + shards[1]) == sorted(order[:10])  # the first 10 of the same order


@pytest.mark.slow
def test_uneven_shards_give_every_gloo_rank_the_same_steps(tmp_path):
    """11 images, batch 6 over two processes (3 each): before, rank 0 had 6 images (two steps) and rank 1 five
    (one step), and rank 0 waited forever in its second gradient all-reduce."""
    args = [sys.executable, "-m", "roadmap", "run", "--dataset", "synthetic:train=11,val=8", "--preset", "smoke",
            "--steps", "convnext_tiny", "--epochs", "1", "--batch-size", "6", "--train-batches", "0",
            "--val-batches", "0", "--set", "mixup=0", "--set", "cutmix=0", "--set", "drop_path_rate=0",
            "--set", "train_augment=false", "--set", "random_erasing=0", "--quiet", "--no-report"]
    proc = subprocess.Popen([*args, "--nproc", "2", "--out", str(tmp_path / "two")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both ranks
        proc.communicate()
        pytest.fail("the two processes hung in a collective")
    assert proc.returncode == 0, stderr[-2000:]
    one = subprocess.run([*args, "--out", str(tmp_path / "one")], capture_output=True, text=True, timeout=240)
    assert one.returncode == 0, one.stderr[-2000:]
    ((a,),), ((b,),) = rows(tmp_path / "one"), rows(tmp_path / "two")
    assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)  # the same one step of the same 6 images


# -------------------------------------------------------------------------------- the augmentation's cost, measured


def test_bench_reports_the_device_augmentation_beside_the_model_step(cli):
    code, out, err = cli("bench", "--device", "cpu", "--dataset", "synthetic:train=96,val=32", "--preset", "smoke",
                         "--batch-size", "16", "--warmup", "1", "--iters", "2", "--workers", "0", "--steps",
                         "convnext_tiny", "--no-reference", "--data-path", "device", "--format", "json")
    assert code == 0, err
    (row,) = json.loads(out[out.index("["):])
    assert 0 < row["augment ms/batch"] and 0 < row["step ms"]
    assert row["augment % of step"] == pytest.approx(100 * row["augment ms/batch"] / row["step ms"], abs=0.1)
