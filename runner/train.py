"""Train and evaluate one run, resumable at every epoch, with the same result as an uninterrupted run.

Determinism: every epoch re-seeds Python, NumPy and torch from (seed, epoch), and the checkpoint holds the
model, optimizer, EMA and metrics history; so a run killed at any moment and resumed from its last
checkpoint repeats the lost epoch exactly (on CPU, same thread count).
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch.utils._pytree import tree_map
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from roadmap.design import Design
from roadmap.model import build_model
from roadmap.schema import ClassScore, Diverged, EpochMetrics, RunResult
from runner import recipes
from runner.budget import Budget
from runner.dist import SINGLE, Dist, Shard, ShardedPermutation, all_reduce_sum, barrier, synchronize
from runner.store import RunDir, atomic_write_bytes


class Transformed(Dataset):
    """A dataset of (PIL image, label) with a transform applied on access."""

    def __init__(self, base: Dataset, transform: Callable):
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        img, label = self.base[i]
        return self.transform(img), label


@dataclass
class Job:
    """Everything one training run needs."""

    run_dir: RunDir
    design: Design  # recipe already scaled to the budget
    budget: Budget
    seed: int
    num_classes: int
    class_names: tuple[str, ...]
    train_set: Dataset  # untransformed: (PIL image, label)
    val_set: Dataset
    device: torch.device
    workers: int = 0
    compile: bool = False
    progress: bool = True
    log: Callable[[str], None] = print
    label: str = ""
    dist: Dist = SINGLE
    init_from: str | None = None  # weights to start from (fine-tuning)
    tracker: str | None = None  # "tensorboard" or "wandb": mirror each epoch's metrics there
    device_data: tuple[Any, Any] | None = None  # (train, val) DeviceDatasets: augment on the device (gpu_data)
    model_name: str | None = None  # a timm baseline: this model instead of the design's network
    micro_batch: int | str | None = None  # images per forward/backward on each process (gradient accumulation);
    # None: the whole per-process batch at once; "auto": the largest that fits in free GPU memory (see micro_batch_for)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 1_000_003 + epoch


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank `rank` in data-parallel training: rank 0 keeps `seed` (so one process draws exactly what it
    always drew), every other rank its own stream, so that the ranks' stochastic depth (DropPath), and any other
    draw from the global generators, differ instead of repeating rank 0's masks on other images."""
    return seed if rank == 0 else (seed * 1009 + rank) % 2**63


def configure_backends(dev: torch.device) -> None:
    """On CUDA: cuDNN autotuning (`cudnn.benchmark`: every step has the same shapes, so the fastest convolution
    algorithm is chosen once per shape) and TF32 for what runs outside bf16 autocast. Nothing on CPU."""
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def eval_batch_size(batch: int) -> int:
    """Evaluation keeps no activations for backward: twice the training batch, up to 512 images."""
    return min(2 * batch, 512)


def rank_batch(job: Job, n_train: int) -> int:
    """The training images each process takes per optimizer step: the global batch (at most the training set, even
    when mixing) over the processes."""
    return split_batch(job.budget.batch_size, n_train, recipes.mixes(job.design.recipe), job.dist.world)


def split_batch(batch: int, n_train: int, mixes: bool, world: int) -> int:
    """Images per process per optimizer step: the global batch, at most the training set, even on every rank when
    mixing (timm's batch mixup pairs images), split over `world` processes."""
    batch = min(batch, n_train)
    if mixes:
        batch -= batch % (2 * world)
    _check_split(batch, world)
    return batch // world


def _loaders(job: Job, epoch: int, micro: int | None = None):
    """Training batches from a seeded permutation (sharded over ranks), evaluation in order (sharded too).

    With `micro`, the training loader yields micro-batches of `micro` images, `rank_batch / micro` of them per
    optimizer step (the same images as one batch: consecutive slices of the rank's order).
    With `device_data`, both come from the device-resident path instead (images never leave the device)."""
    recipe, b, d = job.design.recipe, job.budget, job.dist
    if job.device_data is not None:
        return _device_loaders(job, epoch, micro)
    train = Transformed(job.train_set, recipes.train_transform(recipe, b.img_size))
    val = Transformed(job.val_set, recipes.eval_transform(recipe, b.img_size))
    per_rank = micro or rank_batch(job, len(train))
    common = dict(num_workers=job.workers, pin_memory=job.device.type == "cuda", persistent_workers=False)
    sampler = ShardedPermutation(len(train), epoch_seed(job.seed, epoch), d.rank, d.world)
    train_loader = DataLoader(train, batch_size=per_rank, sampler=sampler, drop_last=True, **common)
    # per-rank evaluation batches of size B/w over shards r::w: step k covers the same images as one process
    val_batch = max(1, eval_batch_size(b.batch_size) // d.world)
    val_loader = DataLoader(val, batch_size=val_batch, sampler=Shard(len(val), d.rank, d.world), **common)
    return train_loader, val_loader


@functools.lru_cache(maxsize=2)
def _augment(recipe, img_size: int, num_classes: int, dev: torch.device):
    """One GpuAugment per run's recipe, kept across epochs, so that under --compile its graph compiles once."""
    from runner.device_data import GpuAugment

    return GpuAugment(recipe, img_size, num_classes, dev)


def _device_loaders(job: Job, epoch: int, micro: int | None = None):
    from runner.device_data import DeviceLoader, GpuEval

    recipe, b, dev, d = job.design.recipe, job.budget, job.device, job.dist
    train_data, val_data = job.device_data
    per_rank = micro or rank_batch(job, len(train_data))  # each rank mixes its own part of the batch
    augment = _augment(recipe, b.img_size, job.num_classes, dev) if recipe.train_augment else GpuEval(
        recipe, b.img_size, dev)
    common = dict(seed=job.seed, epoch=epoch, rank=d.rank, world=d.world)
    train = DeviceLoader(train_data, per_rank, augment, shuffle=True, drop_last=True, compiled=job.compile, **common)
    val = DeviceLoader(val_data, max(1, eval_batch_size(b.batch_size) // d.world), GpuEval(recipe, b.img_size, dev),
                       shuffle=False, drop_last=False, **common)
    return train, val


def _check_split(batch: int, world: int) -> None:
    if batch % world:
        from roadmap.errors import RoadmapError

        raise RoadmapError(f"--batch-size {batch} (global) does not split evenly over {world} processes")


def channels_last(dev: torch.device) -> bool:
    """Whether models and images use channels-last memory on `dev`: on CUDA (cuDNN's fastest kernels) and on CPU
    (oneDNN's; 1.0-1.5x the model's training speed of the contiguous layout, docs/bench-cpu.md)."""
    return dev.type in ("cuda", "cpu")


def to_device(x: torch.Tensor, y: torch.Tensor, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch on the device, in channels-last memory where `channels_last` says so."""
    x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
    return (x.contiguous(memory_format=torch.channels_last) if channels_last(dev) else x), y


def val_batches_at(budget: Budget, epoch: int) -> int:
    """Validation batches after `epoch` (0-based): the run's result (the last epoch) is measured on `val_batches`,
    the epochs before it, which only show progress, on `monitor_batches` when the budget sets it (a fixed subset:
    the first batches of the validation set, always the same images)."""
    last = epoch + 1 == budget.epochs
    return budget.val_batches if last or not budget.monitor_batches else budget.monitor_batches


def _limit(n: int, limit: int) -> int:
    return n if limit <= 0 else min(n, limit)


def load_pretrained(model: torch.nn.Module, path: str, log: Callable[[str], None], label: str) -> None:
    """Load converted weights strictly; only a classifier of another class count is left at its new init."""
    from roadmap.errors import RoadmapError
    from roadmap.weights import load_checkpoint

    weights = load_checkpoint(path)
    own = model.state_dict()
    fresh = [k for k in ("head.fc.weight", "head.fc.bias") if k in weights and k in own
             and weights[k].shape != own[k].shape]
    for k in fresh:
        del weights[k]
    bad = [k for k, v in weights.items() if k in own and v.shape != own[k].shape]
    if bad:
        raise RoadmapError(f"--init-from {path}: the shape of {bad[0]} differs from this step's network; fine-tune "
                           "the step (and size) the weights were trained for")
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if set(missing) - set(fresh) or unexpected:
        wrong = sorted(set(missing) - set(fresh)) + sorted(unexpected)
        raise RoadmapError(f"--init-from {path}: the weights do not fit this step's network ({len(wrong)} tensors "
                           f"differ, e.g. {wrong[0]}); fine-tune the step they were trained for")
    note = f", classifier re-initialized for {own['head.fc.weight'].shape[0]} classes" if fresh else ""
    log(f"{label}: loaded {len(weights)} tensors from {path}{note}")


class CheckpointWriter:
    """Writes each epoch's checkpoint in a background thread, so training goes on while it is serialized and
    written (a ConvNeXt-T checkpoint with AdamW state is ~330 MB: on a GPU that is as long as an epoch of a small
    data set). The state is first copied off the device and out of the tensors training keeps updating; a
    checkpoint waits for the previous one, and the write is atomic and keeps the one before (RunDir.save_checkpoint),
    so a crash or a damaged file leaves a finished one.
    The thread is not a daemon: an interrupted process still finishes the write it started."""

    def __init__(self, run_dir: RunDir) -> None:
        self.run_dir = run_dir
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def save(self, state: dict[str, Any]) -> None:
        self.wait()
        snapshot = tree_map(lambda v: v.detach().to("cpu", copy=True) if isinstance(v, torch.Tensor) else v, state)

        def write() -> None:
            try:
                buffer = io.BytesIO()
                torch.save(snapshot, buffer)
                self.run_dir.save_checkpoint(buffer.getvalue())
            except BaseException as e:  # re-raised in the training thread by wait()
                self._error = e

        self._thread = threading.Thread(target=write, name="checkpoint-writer")
        self._thread.start()

    def wait(self) -> None:
        """Block until the last checkpoint is on disk; raise what writing it raised."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


@dataclass
class Trainer:
    """The machinery one run trains with (see `prepare`)."""

    model: torch.nn.Module  # the plain module: what is saved, what EMA follows
    forward_model: torch.nn.Module  # what runs forward: the model, maybe DDP-wrapped and compiled
    opt: torch.optim.Optimizer
    sched: Any
    mix: recipes.Targets
    ema: Any
    steps_per_epoch: int
    eval_model: torch.nn.Module | None = None  # what evaluates (no DDP wrapper: no collective per batch)
    micro_batch: int | None = None  # images per forward/backward on this process; None: the whole batch


def prepare(job: Job) -> Trainer:
    """Model (channels-last on CUDA, pretrained weights, sync BN), optimizer, schedule, mixup/loss, EMA, DDP and
    torch.compile, exactly as `train` uses them (and `roadmap bench` measures them)."""
    recipe, budget, dev, main = job.design.recipe, job.budget, job.device, job.dist.is_main
    cuda = dev.type == "cuda"
    configure_backends(dev)
    if job.compile:  # every run compiles afresh: one process trains many models, and dynamo's per-code cache
        torch._dynamo.reset()  # would otherwise fill up across runs and silently fall back to eager
    seed_everything(job.seed)
    if job.model_name is not None:
        from runner.baselines import create

        model = create(job.model_name, job.num_classes, budget.img_size, job.design.net.drop_path_rate).to(dev)
    else:
        model = build_model(job.design.net, num_classes=job.num_classes).to(dev)
    if channels_last(dev):
        model = model.to(memory_format=torch.channels_last)
    if job.init_from and not job.run_dir.checkpoints():
        load_pretrained(model, job.init_from, job.log if main else (lambda _: None), job.label)
    if job.dist.active and recipe.sync_bn:  # keeps the channels-last BatchNorm of the blocks (SyncBatchNormLast)
        from roadmap.model import convert_sync_batchnorm

        model = convert_sync_batchnorm(model)
    train_loader, _ = _loaders(job, 0)
    steps_per_epoch = _limit(len(train_loader), budget.train_batches)
    if steps_per_epoch == 0:
        from roadmap.errors import RoadmapError

        raise RoadmapError(
            f"the training set ({len(job.train_set)} images) is smaller than one batch; lower --batch-size"
        )
    opt = recipes.optimizer(recipe, model, budget.lr)
    sched = recipes.scheduler(recipe, opt, steps_per_epoch)
    mix = recipes.targets(recipe, job.num_classes)
    if job.device_data is not None and recipe.train_augment:
        # GpuAugment mixes batches itself (soft targets): keep the loss that fits. Without train_augment the device
        # path only resizes (GpuEval) and its labels stay integers, so timm's Mixup mixes them here, as on the CPU
        # path, and SoftTargetCrossEntropy gets the soft targets it expects.
        mix = recipes.Targets(None, mix.loss)
    ema = recipes.ema(recipe, model)
    forward_model = eval_model = model
    if job.dist.active:
        forward_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if cuda else None)
    if job.compile:
        forward_model = torch.compile(forward_model)
        eval_model = torch.compile(model) if job.dist.active else forward_model
    micro = micro_batch_for(job, model, train_loader.batch_size)
    return Trainer(model, forward_model, opt, sched, mix, ema, steps_per_epoch, eval_model, micro)


def check_micro_batch(micro: int, per_rank: int, mixes: bool) -> None:
    """A micro-batch must split the per-process batch into equal parts (each step then sees exactly the batch's
    images), and be even when mixing (timm's batch mixup pairs each image with the reversed batch's)."""
    from roadmap.errors import RoadmapError

    if micro <= 0:
        raise RoadmapError(f"--micro-batch must be positive, got {micro}")
    if per_rank % micro:
        divisors = [d for d in range(1, per_rank + 1) if per_rank % d == 0 and d <= micro]
        raise RoadmapError(f"--micro-batch {micro} does not divide the per-process batch {per_rank}; "
                           f"e.g. --micro-batch {divisors[-1]}")
    if mixes and micro % 2:
        raise RoadmapError(f"--micro-batch {micro}: mixup/cutmix need an even micro-batch")


def micro_batch_for(job: Job, model: torch.nn.Module, per_rank: int) -> int | None:
    """Images per forward/backward on this process: None (the whole per-process batch), `job.micro_batch` checked,
    or for "auto" the largest divisor of the batch whose training step fits in the GPU's free memory (measured by
    trying it; on CPU the whole batch: memory is not the limit there)."""
    micro = job.micro_batch
    if micro is None:
        return None
    if micro == "auto":
        if job.device.type != "cuda":
            if job.dist.is_main:
                job.log(f"{job.label}: --micro-batch auto on {job.device}: the whole batch ({per_rank}) per step")
            return None
        micro = _fitting_micro_batch(job, model, per_rank)
        if job.dist.active:  # every rank must accumulate the same number of micro-batches
            t = torch.tensor(float(micro), device=job.device)
            import torch.distributed as torch_dist

            torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MIN)
            micro = int(t.item())
        if job.dist.is_main:
            job.log(f"{job.label}: --micro-batch auto: {micro} images per forward/backward, "
                    f"{per_rank // micro} accumulation step(s) per optimizer step")
    micro = min(int(micro), per_rank)  # a micro-batch as large as the batch: the whole batch at once
    check_micro_batch(micro, per_rank, recipes.mixes(job.design.recipe))
    return None if micro >= per_rank else micro


def _fitting_micro_batch(job: Job, model: torch.nn.Module, per_rank: int, headroom: float = 0.85) -> int:
    """The largest divisor of `per_rank` (even when mixing) whose bf16 channels-last forward + backward, plus the
    optimizer's and EMA's state still to come, fits in `headroom` of the GPU's free memory. Tried on random images,
    largest first; the model's weights, buffers and the RNG are restored afterwards."""
    dev, size = job.device, job.budget.img_size
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    extra = params * (3 if job.design.recipe.ema else 2)  # AdamW's two moments (+ EMA weights)
    free, _ = torch.cuda.mem_get_info(dev)
    budget = headroom * free - extra
    mixes = recipes.mixes(job.design.recipe)
    candidates = [m for m in range(per_rank, 0, -1) if per_rank % m == 0 and not (mixes and m % 2)]
    chosen = candidates[-1]
    model.train()
    with torch.random.fork_rng(devices=[dev]):
        for m in candidates:
            x = out = None
            try:
                torch.cuda.synchronize(dev)
                base = torch.cuda.memory_allocated(dev)
                torch.cuda.reset_peak_memory_stats(dev)
                x = torch.randn(m, 3, size, size, device=dev).contiguous(memory_format=torch.channels_last)
                with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                    out = model(x)
                out.float().sum().backward()
                torch.cuda.synchronize(dev)
                fits = torch.cuda.max_memory_allocated(dev) - base <= budget
            except torch.cuda.OutOfMemoryError:
                fits = False
            finally:
                del x, out
                model.zero_grad(set_to_none=True)
                torch.cuda.empty_cache()
            if fits:
                chosen = m
                break
    model.load_state_dict(state)
    return chosen


def train(job: Job) -> dict[str, Any]:
    """Train `job` to the end of its budget (resuming if a checkpoint exists); write and return result.json."""
    budget, dev, main = job.budget, job.device, job.dist.is_main
    state = load_checkpoint(job)
    t = prepare(job)
    model, forward_model, opt, sched, mix, ema = t.model, t.forward_model, t.opt, t.sched, t.mix, t.ema
    steps_per_epoch = t.steps_per_epoch
    if job.micro_batch == "auto" and main and job.run_dir.config.exists():  # record what auto chose
        config = job.run_dir.read_config()
        if config.micro_batch is not None:
            per_process = config.micro_batch["per_process"]
            chosen = t.micro_batch or per_process
            micro = dict(config.micro_batch, micro_batch=chosen, accumulation_steps=per_process // chosen)
            job.run_dir.write_config(replace(config, micro_batch=micro))

    history: list[dict[str, Any]] = []
    start_epoch, updates, wall = 0, 0, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        start_epoch, updates, history, wall = state["epoch"], state["updates"], state["history"], state["wall"]
        if main:
            job.log(f"{job.label}: resuming after epoch {start_epoch}/{budget.epochs}")
    if main:
        job.run_dir.write_metrics(history)
    sched.step_update(updates)

    tracker = None
    if main and job.tracker:
        from runner.tracking import make_tracker

        tracker = make_tracker(job.tracker, job.run_dir.root, job.run_dir.root.name, job.design.to_dict())
    diverged = None
    last_eval: dict[str, Any] = {}
    writer = CheckpointWriter(job.run_dir)
    try:
        for epoch in range(start_epoch, budget.epochs):
            t0 = time.perf_counter()
            seed_everything(rank_seed(epoch_seed(job.seed, epoch), job.dist.rank))
            train_loader, val_loader = _loaders(job, epoch, t.micro_batch)
            stats, updates, bad = _train_epoch(
                job, forward_model, model, train_loader, opt, sched, mix, ema, updates, steps_per_epoch, epoch,
                time_first_step=job.compile and epoch == start_epoch, micro=t.micro_batch,
            )
            lr = opt.param_groups[0]["lr"]
            if bad:
                diverged = {"epoch": epoch + 1, "lr": lr}
                if main:
                    job.log(f"{job.label}: loss became NaN/inf in epoch {epoch + 1} (lr {lr:.3g}); marked diverged")
                break
            eval_model = ema.module if ema is not None else t.eval_model
            first_eval = job.compile and epoch == start_epoch  # its first batch compiles the eval graph: timed apart
            last_eval = evaluate(eval_model, val_loader, job.num_classes, dev,
                                 _limit(len(val_loader), val_batches_at(budget, epoch)), job.dist,
                                 time_first_batch=first_eval)
            seconds = time.perf_counter() - t0
            wall += seconds
            row = EpochMetrics(
                epoch=epoch + 1, **stats, **{k: last_eval[k] for k in ("val_loss", "val_top1", "val_top5")}, lr=lr,
                seconds=round(seconds, 3),
                eval_compile_seconds=round(last_eval["first_batch_seconds"], 3) if first_eval else None,
            ).to_dict()
            history.append(row)
            if main:
                job.run_dir.append_metrics(row)
                if tracker is not None:
                    tracker.log_epoch(row)
                writer.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                             "ema": ema.state_dict() if ema is not None else None, "epoch": epoch + 1,
                             "updates": updates, "history": history, "wall": wall})
                if not job.progress:
                    job.log(f"{job.label}: epoch {epoch + 1}/{budget.epochs} loss {row['train_loss']:.3f} "
                            f"val top-1 {row['val_top1']:.2f} ({row['images_per_s']:.0f} img/s)")
    finally:  # an interrupted run still finishes writing the checkpoint it started, under its lock
        writer.wait()
    result = _result(job, history, last_eval, diverged, wall)
    if tracker is not None:
        tracker.close()
    if main:
        job.run_dir.write_result(result)
        if diverged is None:
            buffer = io.BytesIO()
            torch.save((ema.module if ema is not None else model).state_dict(), buffer)
            atomic_write_bytes(job.run_dir.weights, buffer.getvalue())
        job.run_dir.checkpoint.unlink(missing_ok=True)
        job.run_dir.previous.unlink(missing_ok=True)
    barrier(job.dist)
    return result.to_dict()


def load_checkpoint(job: Job) -> dict[str, Any] | None:
    """The state of the newest readable checkpoint, or None (the run starts over). An unreadable one (cut short,
    empty, not a checkpoint) is moved aside with a one-line warning, and the one before it is tried."""
    for path in job.run_dir.checkpoints():
        try:
            state = torch.load(path, map_location=job.device, weights_only=False)
            if isinstance(state, dict) and {"model", "optimizer", "epoch", "history"} <= set(state):
                return state
            why = "not a training checkpoint"
        except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for a damaged file
            why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if job.dist.is_main:  # the other ranks read the same file and skip it too
            aside = job.run_dir.set_aside(path)
            then = "resuming from the one before it" if job.run_dir.checkpoints() else "starting the run over"
            job.log(f"warning: {job.label}: {path} is unreadable ({why}); moved to {aside.name}, {then}")
    return None


def _train_epoch(job, model, raw_model, loader, opt, sched, mix, ema, updates, steps, epoch,
                 time_first_step: bool = False, micro: int | None = None):
    """One epoch of `steps` optimizer steps; returns (stats, updates, diverged). Host syncs only every `check_every`
    steps on CUDA.

    `model` is what runs forward (maybe DDP-wrapped or compiled), `raw_model` the plain module EMA follows.
    With `micro` the loader yields micro-batches and each step accumulates the gradients of `accum` of them (the
    per-process batch over `micro`), each loss weighted 1 / accum, so the step's gradient is the batch's mean; under
    DDP the gradients are all-reduced once per step (`no_sync` on the others). BatchNorm sees micro-batch statistics.
    With `time_first_step` (the first epoch of a compiled model) the first step, which compiles, is timed apart:
    its seconds are `compile_seconds`, and images/s counts the steps after it."""
    recipe, dev, d = job.design.recipe, job.device, job.dist
    cuda = dev.type == "cuda"
    check_every = 25 if cuda else 1
    accum = 1 if micro is None else _accumulation(job, loader, micro)
    steps = min(steps, len(loader) // accum)  # never more steps than the loader has whole batches for
    model.train()
    loss_sum = torch.zeros((), device=dev)
    correct = torch.zeros((), device=dev, dtype=torch.long)
    seen, bad, done = 0, False, 0
    first_step, first_images = None, 0
    flag = torch.zeros((), device=dev)
    bar = tqdm(
        total=steps,
        desc=f"{job.label} epoch {epoch + 1}/{job.budget.epochs}",
        leave=False,
        disable=not (job.progress and d.is_main),
        file=sys.stderr,
        dynamic_ncols=True,
    )
    batches = iter(loader)
    t0 = time.perf_counter()
    for i in range(steps):
        opt.zero_grad(set_to_none=True)
        for j in range(accum):
            x, y = next(batches)
            x, y = to_device(x, y, dev)
            xm, ym = mix(x, y)
            sync_now = j == accum - 1 or not d.active  # DDP: all-reduce the gradients on the last micro-batch only
            with contextlib.nullcontext() if sync_now else model.no_sync():
                with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=cuda):
                    out = model(xm)
                    loss = mix.loss(out, ym)
                (loss if accum == 1 else loss / accum).backward()
            loss_sum += loss.detach().float() if accum == 1 else loss.detach().float() / accum
            hard = ym if ym.ndim == 1 else ym.argmax(1)  # mixed (soft) targets: the image's main class
            correct += (out.detach().argmax(1) == hard).sum()
            seen += y.shape[0]  # images (soft targets from the device path are (B, classes))
        if recipe.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        opt.step()
        updates += 1
        done = i + 1
        sched.step_update(updates)
        if ema is not None:
            ema.update(raw_model, step=updates)
        if time_first_step and i == 0:
            synchronize(dev)
            first_step, first_images = time.perf_counter() - t0, seen
        if (i + 1) % check_every == 0 or i + 1 == steps:
            flag.fill_(0.0 if math.isfinite(loss_sum.item()) else 1.0)
            all_reduce_sum(d, flag)  # every rank stops together when any diverges
            if flag.item() > 0:
                bad = True
                break
            mean = loss_sum.item() / (i + 1)
            bar.set_postfix(loss=f"{mean:.3f}", lr=f"{opt.param_groups[0]['lr']:.2e}", refresh=False)
        bar.update(1)
    synchronize(dev)
    seconds = time.perf_counter() - t0
    bar.close()
    n = torch.tensor(float(max(1, done) * d.world), device=dev)
    seen_t = torch.tensor(float(seen), device=dev)
    rated = seen - first_images if first_step is not None and seen > first_images else seen
    rated_t = torch.tensor(float(rated), device=dev)
    all_reduce_sum(d, loss_sum, correct, seen_t, rated_t)
    rated_seconds = seconds - first_step if rated != seen else seconds
    stats = {
        "train_loss": loss_sum.item() / n.item(),
        "train_top1": 100.0 * correct.item() / max(1.0, seen_t.item()),
        "images_per_s": rated_t.item() / max(rated_seconds, 1e-9),
    }
    if first_step is not None:
        stats["compile_seconds"] = round(first_step, 3)
    return stats, updates, bad or not math.isfinite(stats["train_loss"])


def _accumulation(job, loader, micro: int) -> int:
    """Micro-batches per optimizer step: the per-process batch over the loader's micro-batch."""
    n = len(loader.data) if hasattr(loader, "data") else len(loader.dataset)
    return rank_batch(job, n) // micro


@torch.no_grad()
def evaluate(model, loader, num_classes: int, dev: torch.device, max_batches: int,
             dist: Dist = SINGLE, time_first_batch: bool = False) -> dict[str, Any]:
    """Loss, top-1, top-5 and the confusion matrix on (at most `max_batches` of) the validation set,
    summed over the ranks' shards.

    Everything is counted on the device (the confusion matrix with `index_add_`, whose output size does not depend
    on the data, unlike `bincount`), and read back once at the end: no host sync per batch.
    With `time_first_batch` the first batch is synchronized and timed (`first_batch_seconds`: a compiled model's
    eval graph is compiled there)."""
    model.eval()
    cuda = dev.type == "cuda"
    loss_sum = torch.zeros((), device=dev)
    top1 = torch.zeros((), device=dev, dtype=torch.long)
    top5 = torch.zeros((), device=dev, dtype=torch.long)
    confusion = torch.zeros(num_classes * num_classes, device=dev, dtype=torch.long)
    seen = 0
    first = None
    k = min(5, num_classes)
    t0 = time.perf_counter()
    for i, (x, y) in enumerate(loader):
        if i >= max_batches:
            break
        x, y = to_device(x, y, dev)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=cuda):
            out = model(x)
        out = out.float()
        loss_sum += torch.nn.functional.cross_entropy(out, y, reduction="sum")
        pred = out.topk(k, dim=1).indices
        top1 += (pred[:, 0] == y).sum()
        top5 += (pred == y[:, None]).any(1).sum()
        cells = y * num_classes + pred[:, 0]
        confusion.index_add_(0, cells, torch.ones_like(cells))
        seen += y.shape[0]
        if time_first_batch and i == 0:
            synchronize(dev)
            first = time.perf_counter() - t0
    seen_t = torch.tensor(float(seen), device=dev)
    all_reduce_sum(dist, loss_sum, top1, top5, confusion, seen_t)
    # one read-back for everything: the sums (as float64: exact for counts below 2**53) and the matrix
    values = torch.cat([torch.stack([loss_sum.double(), top1.double(), top5.double(), seen_t.double()]),
                        confusion.double()]).tolist()
    loss_total, top1_n, top5_n, seen = values[0], values[1], values[2], max(values[3], 1.0)
    matrix = [[int(v) for v in values[4 + r * num_classes: 4 + (r + 1) * num_classes]] for r in range(num_classes)]
    result = {
        "val_loss": loss_total / seen,
        "val_top1": 100.0 * top1_n / seen,
        "val_top5": 100.0 * top5_n / seen,
        "confusion": matrix,
    }
    if time_first_batch:
        result["first_batch_seconds"] = first or 0.0
    return result


def per_class(confusion: list[list[int]], names: tuple[str, ...]) -> list[dict[str, Any]]:
    """Precision, recall and F1 (percent) per class from a confusion matrix (rows: truth, columns: prediction)."""
    m = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(m)
    predicted, actual = m.sum(0), m.sum(1)
    rows = []
    for c, name in enumerate(names):
        p = tp[c] / predicted[c] if predicted[c] else 0.0
        r = tp[c] / actual[c] if actual[c] else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        rows.append(
            {
                "class": name,
                "precision": round(100 * p, 2),
                "recall": round(100 * r, 2),
                "f1": round(100 * f1, 2),
                "support": int(actual[c]),
            }
        )
    return rows


def _result(job: Job, history, last_eval, diverged, wall) -> RunResult:
    last = history[-1] if history else {}
    return RunResult(
        status="diverged" if diverged else "done",
        epochs=len(history),
        val_top1=last.get("val_top1"),
        val_top5=last.get("val_top5"),
        train_top1=last.get("train_top1"),
        best_val_top1=max((r["val_top1"] for r in history), default=None),
        wall_seconds=round(wall, 3),
        images_per_s=round(sum(r["images_per_s"] for r in history) / len(history), 2) if history else None,
        compile_seconds=round(sum(r.get("compile_seconds") or 0.0 for r in history), 3) if job.compile else None,
        eval_compile_seconds=round(sum(r.get("eval_compile_seconds") or 0.0 for r in history), 3)
        if job.compile else None,
        diverged=Diverged(**diverged) if diverged else None,
        per_class=[ClassScore.from_dict(c) for c in per_class(last_eval["confusion"], job.class_names)]
        if last_eval else [],
    )
