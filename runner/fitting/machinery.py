"""The machinery one run trains with: the model (channels-last, pretrained weights, sync BN, DDP, torch.compile),
optimizer, schedule, mixing and loss, EMA, and the micro-batch that fits (measured on the GPU for `auto`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as torch_dist

from roadmap.errors import RoadmapError
from roadmap.model import build_model, convert_sync_batchnorm
from runner.baselines import create
from runner.devices import channels_last
from runner.fitting import timm_parts as recipes
from runner.fitting.checkpoint import load_pretrained
from runner.fitting.feed import compiles_augment, limit_batches, loaders
from runner.fitting.job import Job, batch_plan_of
from runner.fitting.seeding import seed_everything
from runner.planning.batching import BatchPlan, check_micro_batch


def configure_backends(dev: torch.device) -> None:
    """On CUDA: cuDNN autotuning (`cudnn.benchmark`: every step has the same shapes, so the fastest convolution
    algorithm is chosen once per shape) and TF32 for what runs outside bf16 autocast. Nothing on CPU."""
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


@dataclass
class Machinery:
    """What one run trains with (see `prepare`): its job and batch plan ("auto" resolved), the model in its three
    roles, optimizer, schedule and its position, mixing and loss, EMA."""

    job: Job
    plan: BatchPlan  # how an optimizer step is reached, resolved
    model: torch.nn.Module  # the plain module: what is saved, what EMA follows
    forward_model: torch.nn.Module  # what runs forward: the model, maybe DDP-wrapped and compiled
    opt: torch.optim.Optimizer
    sched: Any
    mix: recipes.Targets
    ema: Any
    steps_per_epoch: int
    eval_model: torch.nn.Module | None = None  # what evaluates (no DDP wrapper: no collective per batch)
    updates: int = 0  # optimizer steps so far: the schedule's position (restored from a checkpoint on resume)
    augment: str | None = None  # the device path's augmentation, "compiled" or "eager" (None: not recorded)


def prepare(job: Job) -> Machinery:
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
    plan = batch_plan_of(job)
    train_loader, _ = loaders(job, plan, 0)  # its length: the batches (micro-batches over accumulation steps)
    steps_per_epoch = limit_batches(len(train_loader) // (plan.accumulation_steps if plan.split else 1),
                                    budget.train_batches)
    if steps_per_epoch == 0:
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
    plan = micro_batch_for(job, model, plan)
    augment = warm_augment(job, plan)
    return Machinery(job=job, plan=plan, model=model, forward_model=forward_model, opt=opt, sched=sched, mix=mix,
                     ema=ema, steps_per_epoch=steps_per_epoch, eval_model=eval_model, augment=augment)


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


def micro_batch_for(job: Job, model: torch.nn.Module, plan: BatchPlan) -> BatchPlan:
    """The batch plan with its micro-batch decided, once: as planned (None or N, checked by the plan), or for "auto"
    the largest divisor of the per-process batch whose training step fits in the GPU's free memory (measured by
    trying it; on CPU the whole batch: memory is not the limit there)."""
    if plan.resolved:
        return plan
    per_rank = plan.per_process  # "auto" from here
    if job.device.type != "cuda":
        if job.dist.is_main:
            job.log(f"{job.label}: --micro-batch auto on {job.device}: the whole batch ({per_rank}) per step")
        return plan.with_micro_batch(per_rank)
    micro = _fitting_micro_batch(job, model, per_rank)
    if job.dist.active:  # every rank must accumulate the same number of micro-batches
        t = torch.tensor(float(micro), device=job.device)
        torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MIN)
        micro = int(t.item())
    if job.dist.is_main:
        job.log(f"{job.label}: --micro-batch auto: {micro} images per forward/backward, "
                f"{per_rank // micro} accumulation step(s) per optimizer step")
    micro = min(int(micro), per_rank)  # a micro-batch as large as the batch: the whole batch at once
    check_micro_batch(micro, per_rank, recipes.mixes(job.design.recipe))
    return plan.with_micro_batch(micro)


def _fitting_micro_batch(job: Job, model: torch.nn.Module, per_rank: int, headroom: float = 0.85) -> int:
    """The largest divisor of `per_rank` (even when mixing) whose bf16 channels-last forward + backward, plus the
    optimizer's and EMA's state still to come, fits in `headroom` of the GPU's free memory. Tried on random images,
    largest first, each twice: the first pass lets cuDNN's autotuner try its algorithms (and their workspaces), the
    second is measured. A candidate that runs out of memory (CUDA's error, or cuDNN's or cuBLAS's failure to allocate,
    which raise a plain RuntimeError) does not fit. The model's weights, buffers and the RNG are restored afterwards."""
    dev = job.device
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
            try:
                _probe(model, m, job.budget.img_size, dev)  # warm: the autotuner's trials are not the step's memory
                fits = _probe(model, m, job.budget.img_size, dev) <= budget
            except (torch.cuda.OutOfMemoryError, RuntimeError) as e:
                if not _out_of_memory(e):
                    raise
                fits = False
            finally:
                model.zero_grad(set_to_none=True)
                torch.cuda.empty_cache()
            if fits:
                chosen = m
                break
    model.load_state_dict(state)
    return chosen


OUT_OF_MEMORY = ("out of memory", "ALLOC_FAILED", "CUDNN_STATUS_INTERNAL_ERROR", "CUDNN_STATUS_NOT_SUPPORTED")
"""How CUDA, cuBLAS and cuDNN say a batch did not fit (cuDNN reports a failed workspace allocation as an internal
error, and a tensor too large for its kernels as not supported)."""


def _out_of_memory(e: BaseException) -> bool:
    return isinstance(e, torch.cuda.OutOfMemoryError) or any(s in str(e) for s in OUT_OF_MEMORY)


def _probe(model: torch.nn.Module, m: int, size: int, dev: torch.device) -> int:
    """Bytes a bf16 channels-last forward + backward of `m` random images adds to what is allocated."""
    torch.cuda.synchronize(dev)
    base = torch.cuda.memory_allocated(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    x = torch.randn(m, 3, size, size, device=dev).contiguous(memory_format=torch.channels_last)
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
        out = model(x)
    out.float().sum().backward()
    del x, out
    torch.cuda.synchronize(dev)
    peak = torch.cuda.max_memory_allocated(dev) - base
    model.zero_grad(set_to_none=True)
    return peak
