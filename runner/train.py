"""Train and evaluate one run, resumable at every epoch, with the same result as an uninterrupted run.

Determinism: every epoch re-seeds Python, NumPy and torch from (seed, epoch), and the checkpoint holds the
model, optimizer, EMA and metrics history; so a run killed at any moment and resumed from its last
checkpoint repeats the lost epoch exactly (on CPU, same thread count).
"""

from __future__ import annotations

import io
import math
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils._pytree import tree_map
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from roadmap.design import Design
from roadmap.model import build_model
from runner import recipes
from runner.budget import Budget
from runner.dist import SINGLE, Dist, Shard, ShardedPermutation, all_reduce_sum, barrier
from runner.store import RunDir, atomic_write_bytes, atomic_write_json


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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 1_000_003 + epoch


def eval_batch_size(batch: int) -> int:
    """Evaluation keeps no activations for backward: twice the training batch, up to 512 images."""
    return min(2 * batch, 512)


def _loaders(job: Job, epoch: int):
    """Training batches from a seeded permutation (sharded over ranks), evaluation in order (sharded too).

    With `device_data`, both come from the device-resident path instead (images never leave the device)."""
    recipe, b, d = job.design.recipe, job.budget, job.dist
    if job.device_data is not None:
        return _device_loaders(job, epoch)
    train = Transformed(job.train_set, recipes.train_transform(recipe, b.img_size))
    val = Transformed(job.val_set, recipes.eval_transform(recipe, b.img_size))
    batch = min(b.batch_size, len(train))
    if recipe.mixup > 0 or recipe.cutmix > 0:
        batch -= batch % (2 * d.world)  # timm's batch mixup needs an even batch on every rank
    _check_split(batch, d.world)
    common = dict(num_workers=job.workers, pin_memory=job.device.type == "cuda", persistent_workers=False)
    sampler = ShardedPermutation(len(train), epoch_seed(job.seed, epoch), d.rank, d.world)
    train_loader = DataLoader(train, batch_size=batch // d.world, sampler=sampler, drop_last=True, **common)
    # per-rank evaluation batches of size B/w over shards r::w: step k covers the same images as one process
    val_batch = max(1, eval_batch_size(b.batch_size) // d.world)
    val_loader = DataLoader(val, batch_size=val_batch, sampler=Shard(len(val), d.rank, d.world), **common)
    return train_loader, val_loader


def _device_loaders(job: Job, epoch: int):
    from runner.gpu_data import DeviceLoader, GpuAugment, GpuEval

    recipe, b, dev, d = job.design.recipe, job.budget, job.device, job.dist
    train_data, val_data = job.device_data
    batch = min(b.batch_size, len(train_data))
    if recipe.mixup > 0 or recipe.cutmix > 0:
        batch -= batch % (2 * d.world)  # each rank mixes its own part of the batch: an even number of images
    _check_split(batch, d.world)
    augment = GpuAugment(recipe, b.img_size, job.num_classes, dev) if recipe.train_augment else GpuEval(
        recipe, b.img_size, dev)
    common = dict(seed=job.seed, epoch=epoch, rank=d.rank, world=d.world)
    train = DeviceLoader(train_data, batch // d.world, augment, shuffle=True, drop_last=True, **common)
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


def prepare(job: Job) -> Trainer:
    """Model (channels-last on CUDA, pretrained weights, sync BN), optimizer, schedule, mixup/loss, EMA, DDP and
    torch.compile, exactly as `train` uses them (and `roadmap bench` measures them)."""
    recipe, budget, dev, main = job.design.recipe, job.budget, job.device, job.dist.is_main
    cuda = dev.type == "cuda"
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
    if job.dist.active and recipe.sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
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
    if job.device_data is not None:  # the device pipeline mixes batches itself; keep the loss that fits
        mix = recipes.Targets(None, mix.loss)
    ema = recipes.ema(recipe, model)
    forward_model = model
    if job.dist.active:
        forward_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if cuda else None)
    if job.compile:
        forward_model = torch.compile(forward_model)
    return Trainer(model, forward_model, opt, sched, mix, ema, steps_per_epoch)


def train(job: Job) -> dict[str, Any]:
    """Train `job` to the end of its budget (resuming if a checkpoint exists); write and return result.json."""
    budget, dev, main = job.budget, job.device, job.dist.is_main
    state = load_checkpoint(job)
    t = prepare(job)
    model, forward_model, opt, sched, mix, ema = t.model, t.forward_model, t.opt, t.sched, t.mix, t.ema
    steps_per_epoch = t.steps_per_epoch

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
            seed_everything(epoch_seed(job.seed, epoch))
            train_loader, val_loader = _loaders(job, epoch)
            stats, updates, bad = _train_epoch(
                job, forward_model, model, train_loader, opt, sched, mix, ema, updates, steps_per_epoch, epoch,
                time_first_step=job.compile and epoch == start_epoch,
            )
            lr = opt.param_groups[0]["lr"]
            if bad:
                diverged = {"epoch": epoch + 1, "lr": lr}
                if main:
                    job.log(f"{job.label}: loss became NaN/inf in epoch {epoch + 1} (lr {lr:.3g}); marked diverged")
                break
            eval_model = ema.module if ema is not None else forward_model
            last_eval = evaluate(eval_model, val_loader, job.num_classes, dev,
                                 _limit(len(val_loader), val_batches_at(budget, epoch)), job.dist)
            seconds = time.perf_counter() - t0
            wall += seconds
            row = {"epoch": epoch + 1, **stats, **{k: last_eval[k] for k in ("val_loss", "val_top1", "val_top5")},
                   "lr": lr, "seconds": round(seconds, 3)}
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
        atomic_write_json(job.run_dir.result, result)
        if diverged is None:
            buffer = io.BytesIO()
            torch.save((ema.module if ema is not None else model).state_dict(), buffer)
            atomic_write_bytes(job.run_dir.weights, buffer.getvalue())
        job.run_dir.checkpoint.unlink(missing_ok=True)
        job.run_dir.previous.unlink(missing_ok=True)
    barrier(job.dist)
    return result


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
                 time_first_step: bool = False):
    """One epoch; returns (stats, updates, diverged). Host syncs only every `check_every` steps on CUDA.

    `model` is what runs forward (maybe DDP-wrapped or compiled), `raw_model` the plain module EMA follows.
    With `time_first_step` (the first epoch of a compiled model) the first step, which compiles, is timed apart:
    its seconds are `compile_seconds`, and images/s counts the steps after it."""
    recipe, dev, d = job.design.recipe, job.device, job.dist
    cuda = dev.type == "cuda"
    check_every = 25 if cuda else 1
    model.train()
    loss_sum = torch.zeros((), device=dev)
    correct = torch.zeros((), device=dev, dtype=torch.long)
    seen, bad = 0, False
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
    t0 = time.perf_counter()
    for i, (x, y) in enumerate(loader):
        if i >= steps:
            break
        x, y = to_device(x, y, dev)
        xm, ym = mix(x, y)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=cuda):
            out = model(xm)
            loss = mix.loss(out, ym)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if recipe.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        opt.step()
        updates += 1
        sched.step_update(updates)
        if ema is not None:
            ema.update(raw_model, step=updates)
        loss_sum += loss.detach().float()
        hard = ym if ym.ndim == 1 else ym.argmax(1)  # mixed (soft) targets: the image's main class
        correct += (out.detach().argmax(1) == hard).sum()
        seen += y.shape[0]  # images (soft targets from the device path are (B, classes))
        if time_first_step and i == 0:
            if cuda:
                torch.cuda.synchronize()
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
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    bar.close()
    n = torch.tensor(float(max(1, min(steps, i + 1)) * d.world), device=dev)
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


@torch.no_grad()
def evaluate(model, loader, num_classes: int, dev: torch.device, max_batches: int,
             dist: Dist = SINGLE) -> dict[str, Any]:
    """Loss, top-1, top-5 and the confusion matrix on (at most `max_batches` of) the validation set,
    summed over the ranks' shards."""
    model.eval()
    cuda = dev.type == "cuda"
    loss_sum = torch.zeros((), device=dev)
    top1 = torch.zeros((), device=dev, dtype=torch.long)
    top5 = torch.zeros((), device=dev, dtype=torch.long)
    confusion = torch.zeros(num_classes * num_classes, device=dev, dtype=torch.long)
    seen = 0
    k = min(5, num_classes)
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
        confusion += torch.bincount(y * num_classes + pred[:, 0], minlength=num_classes * num_classes)
        seen += y.shape[0]
    seen_t = torch.tensor(float(seen), device=dev)
    all_reduce_sum(dist, loss_sum, top1, top5, confusion, seen_t)
    seen = max(seen_t.item(), 1.0)
    return {
        "val_loss": loss_sum.item() / seen,
        "val_top1": 100.0 * top1.item() / seen,
        "val_top5": 100.0 * top5.item() / seen,
        "confusion": confusion.view(num_classes, num_classes).cpu().tolist(),
    }


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


def _result(job: Job, history, last_eval, diverged, wall) -> dict[str, Any]:
    last = history[-1] if history else {}
    return {
        "status": "diverged" if diverged else "done",
        "epochs": len(history),
        "val_top1": last.get("val_top1"),
        "val_top5": last.get("val_top5"),
        "train_top1": last.get("train_top1"),
        "best_val_top1": max((r["val_top1"] for r in history), default=None),
        "wall_seconds": round(wall, 3),
        "images_per_s": round(sum(r["images_per_s"] for r in history) / len(history), 2) if history else None,
        "compile_seconds": round(sum(r.get("compile_seconds", 0.0) for r in history), 3) if job.compile else None,
        "diverged": diverged,
        "per_class": per_class(last_eval["confusion"], job.class_names) if last_eval else [],
    }
