"""The inner loops: one training epoch (gradient accumulation, DDP, divergence checks with few host syncs) and
evaluation (loss, top-1/5 and the confusion matrix, counted on the device), and per-class scores."""

from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from runner.devices import to_device
from runner.dist import SINGLE, Dist, all_reduce_sum, synchronize
from runner.fitting.training_run import TrainingRun
from runner.precision import MIN_LOSS_SCALE, Precision, device_default


def train_epoch(m: TrainingRun, loader, epoch: int, *, steps: int | None = None, time_first_step: bool = False
                ) -> tuple[dict[str, Any], bool]:
    """One epoch of `steps` optimizer steps (default: the run's steps per epoch); returns (stats, diverged)
    and moves `m.updates` on. Host syncs only every `check_every` steps on CUDA.

    `m.forward_model` is what runs forward (maybe DDP-wrapped or compiled), `m.model` the plain module EMA follows.
    When the batch plan's micro-batch splits the batch, the loader yields micro-batches and each step accumulates
    the gradients of the plan's accumulation steps of them, each loss weighted 1 / accum, so the step's gradient is
    the batch's mean; under DDP the gradients are all-reduced once per step (`no_sync` on the others). BatchNorm
    sees micro-batch statistics. With `time_first_step` (the first epoch of a compiled model) the first step, which
    compiles, is timed apart: its seconds are `compile_seconds`, and images/s counts the steps after it.

    In fp16 (the run's `scaler` enabled) the loss is scaled before backward, the gradients unscaled before clipping,
    and a step whose gradients overflowed is skipped by the scaler, which halves the scale: counted as
    `skipped_steps`, not a divergence. An fp16 run diverged when its scale falls below `MIN_LOSS_SCALE`."""
    job, model, opt = m.job, m.forward_model, m.opt
    recipe, dev, d = job.design.recipe, job.device, job.dist
    check_every = CUDA_CHECK_EVERY if dev.type == "cuda" else 1
    accum = m.batch_plan.accumulation_steps if m.batch_plan.split else 1
    steps = m.steps_per_epoch if steps is None else steps
    steps = min(steps, len(loader) // accum)  # never more steps than the loader has whole batches for
    model.train()
    scaler = m.scaler
    sums = _Sums(dev, scaler if scaler.is_enabled() else None)
    bad, done = False, 0
    first_step, first_images = None, 0
    bar = tqdm(total=steps, desc=f"{job.label} epoch {epoch + 1}/{job.budget.epochs}", leave=False,
               disable=not (job.progress and d.is_main), file=sys.stderr, dynamic_ncols=True)
    batches = iter(loader)
    t0 = time.perf_counter()
    for i in range(steps):
        opt.zero_grad(set_to_none=True)
        _accumulate(model, m.mix, batches, accum, dev, d, sums, job.precision, scaler)
        if recipe.grad_clip:
            scaler.unscale_(opt)  # (fp16: clip the true gradients; a no-op otherwise)
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        if sums.scaler is not None:
            sums.scaled_step(opt)
        else:
            opt.step()
        m.updates += 1
        done = i + 1
        m.sched.step_update(m.updates)
        if m.ema is not None:
            m.ema.update(m.model, step=m.updates)
        if time_first_step and i == 0:
            synchronize(dev)
            first_step, first_images = time.perf_counter() - t0, sums.seen
        if (i + 1) % check_every == 0 or i + 1 == steps:
            if sums.diverged(d, done, final=i + 1 == steps):  # every rank stops together when any diverges
                bad = True
                break
            bar.set_postfix(loss=f"{sums.mean_loss:.3f}", lr=f"{opt.param_groups[0]['lr']:.2e}", refresh=False)
        bar.update(1)
    synchronize(dev)
    seconds = time.perf_counter() - t0
    bar.close()
    stats = sums.stats(d, done, seconds, first_step, first_images)
    return stats, bad or not math.isfinite(stats["train_loss"])


CUDA_CHECK_EVERY = 25
"""Steps between divergence checks on CUDA (every step on CPU, where reading a value back costs nothing)."""


def _to_host(t: torch.Tensor) -> list[float]:
    """The values of `t` on the host, as float64: the one way the loops read back (tests count the calls)."""
    return t.detach().double().flatten().tolist()  # (tolist copies from the device itself)


class _Sums:
    """An epoch's running loss, correct predictions and images, kept on the device (no host sync per step); in fp16
    also the steps the loss scaler skipped, and the share of steps whose loss was finite (the mean loss is theirs)."""

    def __init__(self, dev: torch.device, scaler: torch.amp.GradScaler | None = None) -> None:
        self.dev = dev
        self.scaler = scaler  # fp16's loss scaler (None in bf16 and fp32)
        self.loss = torch.zeros((), device=dev)
        self.correct = torch.zeros((), device=dev, dtype=torch.long)
        self.skipped = torch.zeros((), device=dev, dtype=torch.long)
        self.finite = torch.zeros((), device=dev)  # fp16: steps (in 1 / accumulation parts) whose loss was finite
        self.seen = 0
        self.pending: tuple[Any, torch.Tensor, int] | None = None  # CUDA: the last check's (event, host copy, steps)
        self.mean_loss = float("nan")  # the mean loss at the last check read (for the progress bar)

    def add_loss(self, loss: torch.Tensor, accum: int) -> None:
        """One micro-batch's loss. In fp16 a non-finite loss is an overflow the scaler skips, left out of the mean."""
        part = loss.detach().float() if accum == 1 else loss.detach().float() / accum
        if self.scaler is None:
            self.loss += part
            return
        finite = torch.isfinite(part)
        self.loss += torch.where(finite, part, torch.zeros_like(part))
        self.finite += finite.float() / accum

    def scaled_step(self, opt: torch.optim.Optimizer) -> None:
        """fp16's optimizer step through the scaler: skipped where the gradients overflowed (the scale then falls,
        which is how a skip is counted, on the device)."""
        before = self._scale().clone()
        self.scaler.step(opt)
        self.scaler.update()
        self.skipped += (self._scale() < before).long()

    def _scale(self) -> torch.Tensor:
        """The loss scale as a tensor on the device (GradScaler's own; `get_scale()` would read it to the host)."""
        return self.scaler._scale

    def diverged(self, d: Dist, done: int, final: bool = False) -> bool:
        """Whether the loss is NaN/inf on any rank (one all-reduce under DDP; every rank decides at the same step).

        On CUDA no host sync: this check's flag and loss are copied to pinned host memory without blocking, and the
        previous check's copy, `CUDA_CHECK_EVERY` steps old and long done, is read instead (a divergence stops the
        epoch one check later). The epoch's last check (`final`) reads its own values: the loop synchronizes there
        anyway."""
        if self.scaler is None:
            packed = torch.stack([(~torch.isfinite(self.loss)).float(), self.loss.float()])
        else:  # fp16: overflowed steps are skipped; only a scale that keeps falling is a divergence
            packed = torch.stack([(self._scale() < MIN_LOSS_SCALE).float(), self.loss.float(), self.finite.float()])
        all_reduce_sum(d, packed)  # (the loss as summed over ranks: the bar shows the mean over them)
        if self.dev.type != "cuda" or final:
            return self._decide(_to_host(packed), done * d.world)
        host = torch.empty(len(packed), dtype=packed.dtype, pin_memory=True)
        host.copy_(packed, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        previous, self.pending = self.pending, (event, host, done * d.world)
        if previous is None:
            return False
        previous[0].synchronize()  # an event, not the stream: it completed steps ago
        return self._decide(_to_host(previous[1]), previous[2])

    def _decide(self, values: list[float], steps: int) -> bool:
        """(flag, loss[, fp16: the steps whose loss was finite]) summed over the ranks, and the steps so far: whether
        to stop, and the bar's mean loss."""
        self.mean_loss = values[1] / max(1, values[2] if len(values) > 2 else steps)
        return values[0] > 0

    def stats(self, d: Dist, done: int, seconds: float, first_step: float | None, first_images: int
              ) -> dict[str, Any]:
        """Mean loss, top-1 and images/s over all ranks; a timed-apart first (compiling) step is left out of the
        images/s and reported as `compile_seconds`. One read-back for all of it."""
        dev = self.dev
        rated = self.seen - first_images if first_step is not None and self.seen > first_images else self.seen
        count = lambda n: torch.full((), float(n), device=dev, dtype=torch.float64)  # noqa: E731  (no host copy)
        packed = torch.stack([self.loss.double(), self.correct.double(), count(self.seen), count(rated),
                              self.skipped.double(), self.finite.double()])
        all_reduce_sum(d, packed)
        loss, correct, seen, rated_n, skipped, finite = _to_host(packed)
        rated_seconds = seconds - first_step if rated != self.seen else seconds
        steps = float(max(1, done) * d.world) if self.scaler is None else max(finite, 1.0)
        stats = {
            "train_loss": loss / steps if self.scaler is None or finite else float("nan"),
            "train_top1": 100.0 * correct / max(1.0, seen),
            "images_per_s": rated_n / max(rated_seconds, 1e-9),
        }
        if first_step is not None:
            stats["compile_seconds"] = round(first_step, 3)
        if self.scaler is not None:
            stats["skipped_steps"] = round(skipped / d.world)  # (every rank skips the same steps)
        return stats


def _accumulate(model, mix, batches, accum: int, dev: torch.device, d: Dist, sums: _Sums, precision: Precision,
                scaler: torch.amp.GradScaler) -> None:
    """Forward and backward `accum` micro-batches of one optimizer step (the loss of each weighted 1 / accum, and
    scaled up in fp16); under DDP the gradients are all-reduced on the last one only."""
    for j in range(accum):
        x, y = next(batches)
        x, y = to_device(x, y, dev)
        xm, ym = mix(x, y)
        sync_now = j == accum - 1 or not d.active  # DDP: all-reduce the gradients on the last micro-batch only
        with contextlib.nullcontext() if sync_now else model.no_sync():
            with precision.autocast(dev):
                out = model(xm)
                loss = mix.loss(out, ym)
            scaler.scale(loss if accum == 1 else loss / accum).backward()
        sums.add_loss(loss, accum)
        hard = ym if ym.ndim == 1 else ym.argmax(1)  # mixed (soft) targets: the image's main class
        sums.correct += (out.detach().argmax(1) == hard).sum()
        sums.seen += y.shape[0]  # images (soft targets from the device path are (B, classes))


@dataclass(frozen=True)
class Evaluation:
    """What `evaluate` measured: loss, top-1 and top-5 (percent), the confusion matrix (rows: truth, columns:
    prediction), and with `time_first_batch` the first batch's seconds (a compiled eval graph compiles there)."""

    val_loss: float
    val_top1: float
    val_top5: float
    confusion: list[list[int]]
    first_batch_seconds: float | None = None


@torch.no_grad()
def evaluate(model, loader, num_classes: int, dev: torch.device, max_batches: int,
             dist: Dist = SINGLE, time_first_batch: bool = False, precision: Precision | None = None) -> Evaluation:
    """Loss, top-1, top-5 and the confusion matrix on (at most `max_batches` of) the validation set,
    summed over the ranks' shards.

    A compiled model sees the last, smaller batch padded with zeros to the size of the others and its outputs cut
    back (evaluation is per image), so it compiles one graph, not a second (dynamic) one.
    Everything is counted on the device (the confusion matrix with `index_add_`, whose output size does not depend
    on the data, unlike `bincount`), and read back once at the end: no host sync per batch.
    With `time_first_batch` the first batch is synchronized and timed (`first_batch_seconds`: a compiled model's
    eval graph is compiled there). `precision`: the run's (default: the device's own, bf16 on CUDA, else fp32)."""
    model.eval()
    precision = precision or device_default(dev)
    loss_sum = torch.zeros((), device=dev)
    top1 = torch.zeros((), device=dev, dtype=torch.long)
    top5 = torch.zeros((), device=dev, dtype=torch.long)
    confusion = torch.zeros(num_classes * num_classes, device=dev, dtype=torch.long)
    seen = 0
    first = None
    k = min(5, num_classes)
    full = getattr(loader, "batch_size", None) if isinstance(model, torch._dynamo.eval_frame.OptimizedModule) else None
    t0 = time.perf_counter()
    for i, (x, y) in enumerate(loader):
        if i >= max_batches:
            break
        x, y = to_device(x, y, dev)
        n = y.shape[0]
        if full and n < full:  # a compiled model: the last, smaller batch padded to the others' shape (one graph)
            x, _ = to_device(torch.nn.functional.pad(x, (0, 0, 0, 0, 0, 0, 0, full - n)), y, dev)
        with precision.autocast(dev):
            out = model(x)
        out = out[:n].float()
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
    seen_t = torch.full((), float(seen), device=dev)  # filled on the device: no copy from host memory
    all_reduce_sum(dist, loss_sum, top1, top5, confusion, seen_t)
    # one read-back for everything: the sums (as float64: exact for counts below 2**53) and the matrix
    values = _to_host(torch.cat([torch.stack([loss_sum.double(), top1.double(), top5.double(), seen_t.double()]),
                                 confusion.double()]))
    loss_total, top1_n, top5_n, seen = values[0], values[1], values[2], max(values[3], 1.0)
    matrix = [[int(v) for v in values[4 + r * num_classes: 4 + (r + 1) * num_classes]] for r in range(num_classes)]
    return Evaluation(val_loss=loss_total / seen, val_top1=100.0 * top1_n / seen, val_top5=100.0 * top5_n / seen,
                      confusion=matrix, first_batch_seconds=(first or 0.0) if time_first_batch else None)


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

