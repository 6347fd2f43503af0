"""`--micro-batch auto`: the largest micro-batch whose training step fits in the GPU's free memory, measured once
when a run starts by trying it (on the CPU the whole batch: memory is not the limit there)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as torch_dist

from roadmap.recipe import Recipe
from runner.dist import Dist
from runner.planning.batching import BatchPlan, check_micro_batch
from runner.precision import Precision


def micro_batch_for(model: torch.nn.Module, plan: BatchPlan, recipe: Recipe, img_size: int, device: torch.device,
                    dist: Dist, log: Callable[[str], None], precision: Precision) -> BatchPlan:
    """The batch plan with its micro-batch decided, once: as planned (None or N, checked by the plan), or for "auto"
    the largest divisor of the per-process batch whose training step fits in the GPU's free memory (measured by
    trying it; on CPU the whole batch: memory is not the limit there)."""
    if plan.resolved:
        return plan
    per_rank = plan.per_process  # "auto" from here
    if device.type != "cuda":
        if dist.is_main:
            log(f"--micro-batch auto on {device}: the whole batch ({per_rank}) per step")
        return plan.with_micro_batch(per_rank)
    micro = _fitting_micro_batch(model, per_rank, recipe, img_size, device, precision)
    if dist.active:  # every rank must accumulate the same number of micro-batches
        t = torch.tensor(float(micro), device=device)
        torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MIN)
        micro = int(t.item())
    if dist.is_main:
        log(f"--micro-batch auto: {micro} images per forward/backward, "
            f"{per_rank // micro} accumulation step(s) per optimizer step")
    micro = min(int(micro), per_rank)  # a micro-batch as large as the batch: the whole batch at once
    check_micro_batch(micro, per_rank, recipe.mixes)
    return plan.with_micro_batch(micro)


def _fitting_micro_batch(model: torch.nn.Module, per_rank: int, recipe: Recipe, img_size: int, dev: torch.device,
                         precision: Precision, headroom: float = 0.85) -> int:
    """The largest divisor of `per_rank` (even when mixing) whose channels-last forward + backward in the run's
    precision, plus the optimizer's and EMA's state still to come, fits in `headroom` of the GPU's free memory.
    Tried on random images, largest first, each twice: the first pass lets cuDNN's autotuner try its algorithms (and
    their workspaces), the second is measured. A candidate that runs out of memory (CUDA's error, or cuDNN's or
    cuBLAS's failure to allocate, which raise a plain RuntimeError) does not fit. The model's weights, buffers and
    the RNG are restored afterwards."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    extra = params * (3 if recipe.ema else 2)  # AdamW's two moments (+ EMA weights)
    free, _ = torch.cuda.mem_get_info(dev)
    budget = headroom * free - extra
    mixes = recipe.mixes
    candidates = [m for m in range(per_rank, 0, -1) if per_rank % m == 0 and not (mixes and m % 2)]
    chosen = candidates[-1]
    model.train()
    with torch.random.fork_rng(devices=[dev]):
        for m in candidates:
            try:
                _probe(model, m, img_size, dev, precision)  # warm: the autotuner's trials are not the step's memory
                fits = _probe(model, m, img_size, dev, precision) <= budget
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


def _probe(model: torch.nn.Module, m: int, size: int, dev: torch.device, precision: Precision) -> int:
    """Bytes a channels-last forward + backward of `m` random images, in the run's precision, adds to what is
    allocated."""
    torch.cuda.synchronize(dev)
    base = torch.cuda.memory_allocated(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    x = torch.randn(m, 3, size, size, device=dev).contiguous(memory_format=torch.channels_last)
    with precision.autocast(dev):
        out = model(x)
    out.float().sum().backward()
    del x, out
    torch.cuda.synchronize(dev)
    peak = torch.cuda.max_memory_allocated(dev) - base
    model.zero_grad(set_to_none=True)
    return peak
