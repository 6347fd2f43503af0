"""One training run's state, in one object: `TrainingRun`, built by `prepare(job)` from the run's inputs (`Job`).

It holds the job, the batch plan ("auto" resolved), the model in its three roles, optimizer, schedule and its
position, mixing and loss, and EMA; `loaders(job, batch_plan, epoch)` gives an epoch's batches (the CPU DataLoader,
or the device-resident path). runner.fitting.fit runs the epochs on it, runner.fitting.loop the steps.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from roadmap.design import Design
from roadmap.errors import RoadmapError
from roadmap.model import build_model, convert_sync_batchnorm
from roadmap.schema import RunConfig
from runner.baselines import create
from runner.device_data import DeviceLoader, GpuAugment, GpuEval
from runner.devices import channels_last
from runner.dist import SINGLE, Dist, Shard, ShardedPermutation
from runner.fitting import timm_parts
from runner.fitting.checkpoint import load_pretrained
from runner.fitting.micro_batch import micro_batch_for
from runner.fitting.seeding import epoch_seed, seed_everything
from runner.planning.batching import BatchPlan
from runner.planning.budget import Budget
from runner.precision import Precision, device_default
from runner.store import RunDir


@dataclass
class Job:
    """Everything one training run is given (the launcher builds it from a planned run)."""

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
    device_data: tuple[Any, Any] | None = None  # (train, val) DeviceDatasets: augment on the device (device_data)
    model_name: str | None = None  # a timm baseline: this model instead of the design's network
    batch_plan: BatchPlan | None = None  # how an optimizer step is reached (None: the whole batch, over the processes)
    config: Callable[[BatchPlan], RunConfig] | None = None  # config.json, written once the plan is resolved
    precision: Precision | None = None  # the number format (None: the device's own, bf16 on CUDA, else fp32)

    def __post_init__(self) -> None:
        if self.batch_plan is None:  # a job built without a plan (benchmarks, tests): the whole batch
            self.batch_plan = BatchPlan.decide(self.budget.batch_size, len(self.train_set), self.design.recipe.mixes,
                                               self.dist.world)
        if self.precision is None:
            self.precision = device_default(self.device)


@dataclass
class TrainingRun:
    """What one run trains with, and where it stands (see `prepare`): its job and batch plan ("auto" resolved), the
    model in its three roles, optimizer, schedule and its position, mixing and loss, EMA, and the loss scaler (fp16;
    disabled, it passes everything through)."""

    job: Job
    batch_plan: BatchPlan  # how an optimizer step is reached, resolved
    model: torch.nn.Module  # the plain module: what is saved, what EMA follows
    forward_model: torch.nn.Module  # what runs forward: the model, maybe DDP-wrapped and compiled
    opt: torch.optim.Optimizer
    sched: Any
    mix: timm_parts.Targets
    ema: Any
    steps_per_epoch: int
    scaler: torch.amp.GradScaler
    eval_model: torch.nn.Module | None = None  # what evaluates (no DDP wrapper: no collective per batch)
    updates: int = 0  # optimizer steps so far: the schedule's position (restored from a checkpoint on resume)
    augment: str | None = None  # the device path's augmentation, "compiled" or "eager" (None: not recorded)


def configure_backends(dev: torch.device) -> None:
    """On CUDA: cuDNN autotuning (`cudnn.benchmark`: every step has the same shapes, so the fastest convolution
    algorithm is chosen once per shape) and TF32 for what runs outside bf16 autocast. Nothing on CPU."""
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def prepare(job: Job) -> TrainingRun:
    """Model (channels-last on CUDA, pretrained weights, sync BN), optimizer, schedule, mixup/loss, EMA, DDP and
    torch.compile, exactly as `train` uses them (and `roadmap bench` measures them)."""
    recipe, budget, dev, main = job.design.recipe, job.budget, job.device, job.dist.is_main
    cuda = dev.type == "cuda"
    configure_backends(dev)
    if job.compile:  # every run compiles afresh: one process trains many models, and dynamo's per-code cache
        torch._dynamo.reset()  # would otherwise fill up across runs and silently fall back to eager
    seed_everything(job.seed)
    if job.model_name is not None:
        model = create(job.model_name, job.num_classes, budget.img_size, job.design.net.drop_path_rate).to(dev)
    else:
        model = build_model(job.design.net, num_classes=job.num_classes).to(dev)
    if channels_last(dev):
        model = model.to(memory_format=torch.channels_last)
    if job.init_from and not job.run_dir.checkpoints():
        load_pretrained(model, job.init_from, job.log if main else (lambda _: None), job.label)
    if job.dist.active and recipe.sync_bn:  # keeps the channels-last BatchNorm of the blocks (SyncBatchNormLast)
        model = convert_sync_batchnorm(model)
    plan = job.batch_plan
    train_loader, _ = loaders(job, plan, 0)  # its length: the batches (micro-batches over accumulation steps)
    steps_per_epoch = limit_batches(len(train_loader) // (plan.accumulation_steps if plan.split else 1),
                                    budget.train_batches)
    if steps_per_epoch == 0:
        raise RoadmapError(
            f"the training set ({len(job.train_set)} images) is smaller than one batch; lower --batch-size"
        )
    opt = timm_parts.optimizer(recipe, model, budget.lr)
    sched = timm_parts.scheduler(recipe, opt, steps_per_epoch)
    mix = timm_parts.targets(recipe, job.num_classes)
    if job.device_data is not None and recipe.train_augment:
        # GpuAugment mixes batches itself (soft targets): keep the loss that fits. Without train_augment the device
        # path only resizes (GpuEval) and its labels stay integers, so timm's Mixup mixes them here, as on the CPU
        # path, and SoftTargetCrossEntropy gets the soft targets it expects.
        mix = timm_parts.Targets(None, mix.loss)
    ema = timm_parts.ema(recipe, model)
    forward_model = eval_model = model
    if job.dist.active:
        forward_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if cuda else None)
    if job.compile:
        forward_model = torch.compile(forward_model)
        eval_model = torch.compile(model) if job.dist.active else forward_model
    plan = micro_batch_for(model, plan, recipe, budget.img_size, dev, job.dist,
                           lambda line: job.log(f"{job.label}: {line}"), job.precision)
    augment = warm_augment(job, plan)
    return TrainingRun(job=job, batch_plan=plan, model=model, forward_model=forward_model, opt=opt, sched=sched,
                       mix=mix, ema=ema, steps_per_epoch=steps_per_epoch, scaler=job.precision.grad_scaler(dev),
                       eval_model=eval_model, augment=augment)


def warm_augment(job: Job, plan: BatchPlan) -> str | None:
    """Compile the device path's augmentation now, on one batch of the run's shape (falling back to eager, with a
    warning line, where it cannot compile), and say which one the run uses: "compiled", "eager", or None where
    there is nothing to record (no device path, no augmentation, or eager on CPU as before)."""
    if job.device_data is None or not job.design.recipe.train_augment or not compiles_augment(job):
        return None
    train_loader, _ = loaders(job, plan, 0)
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[job.device] if job.device.type == "cuda" else []):
        next(iter(train_loader))  # (the draws of the epochs are seeded apart: this batch changes none of them)
    failed = train_loader.transform.compile_failed
    if job.dist.is_main and not failed:
        job.log(f"{job.label}: augmentation compiled ({time.perf_counter() - t0:.1f} s, one graph per batch shape)")
    return "eager" if failed else "compiled"


# ------------------------------------------------------------------------------------------ an epoch's batches


class Transformed(Dataset):
    """A dataset of (PIL image, label) with a transform applied on access."""

    def __init__(self, base: Dataset, transform: Callable):
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        img, label = self.base[i]
        return self.transform(img), label


def eval_batch_size(batch: int) -> int:
    """Evaluation keeps no activations for backward: twice the training batch, up to 512 images."""
    return min(2 * batch, 512)


def loaders(job: Job, plan: BatchPlan, epoch: int):
    """An epoch's batches: training batches from a seeded permutation (sharded over ranks), evaluation in order
    (sharded too); both seeded from (seed, epoch), so that a resumed epoch repeats exactly.

    The training loader yields the plan's micro-batches: `plan.per_process / plan.micro_batch` of them per optimizer
    step when the micro-batch splits the batch (the same images as one batch: consecutive slices of the rank's
    order), else whole per-process batches. On the CPU path these are timm/torchvision transforms on PIL images, in
    worker processes; with `device_data`, both come from the device-resident path instead (images never leave the
    device)."""
    recipe, b, d = job.design.recipe, job.budget, job.dist
    if job.device_data is not None:
        return _device_loaders(job, plan, epoch)
    train = Transformed(job.train_set, timm_parts.train_transform(recipe, b.img_size))
    val = Transformed(job.val_set, timm_parts.eval_transform(recipe, b.img_size))
    per_rank = plan.split or plan.per_process
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
    return GpuAugment(recipe, img_size, num_classes, dev)


def compiles_augment(job: Job) -> bool:
    """Whether the device path's augmentation runs as one compiled graph: on CUDA always (eager, it dispatches some
    1,500 small kernels per batch, as long as a ConvNeXt-T step on a large GPU: the loop would wait on the host), on
    CPU with --compile. It falls back to eager, with a warning, where it cannot compile."""
    return job.compile or job.device.type == "cuda"


def _device_loaders(job: Job, plan: BatchPlan, epoch: int):
    """The device-resident path's loaders (see `loaders`)."""
    recipe, b, dev, d = job.design.recipe, job.budget, job.device, job.dist
    train_data, val_data = job.device_data
    per_rank = plan.split or plan.per_process  # each rank mixes its own part of the batch
    augment = _augment(recipe, b.img_size, job.num_classes, dev) if recipe.train_augment else GpuEval(
        recipe, b.img_size, dev)
    common = dict(seed=job.seed, epoch=epoch, rank=d.rank, world=d.world)
    train = DeviceLoader(train_data, per_rank, augment, shuffle=True, drop_last=True, compiled=compiles_augment(job),
                         **common)
    val = DeviceLoader(val_data, max(1, eval_batch_size(b.batch_size) // d.world), GpuEval(recipe, b.img_size, dev),
                       shuffle=False, drop_last=False, **common)
    return train, val


def val_batches_at(budget: Budget, epoch: int) -> int:
    """Validation batches after `epoch` (0-based): the run's result (the last epoch) is measured on `val_batches`,
    the epochs before it, which only show progress, on `monitor_batches` when the budget sets it (a fixed subset:
    the first batches of the validation set, always the same images)."""
    last = epoch + 1 == budget.epochs
    return budget.val_batches if last or not budget.monitor_batches else budget.monitor_batches


def limit_batches(n: int, limit: int) -> int:
    """At most `limit` of `n` batches (0: all of them)."""
    return n if limit <= 0 else min(n, limit)
