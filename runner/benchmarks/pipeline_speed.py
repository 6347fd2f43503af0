"""`roadmap bench`: the whole training pipeline of each step, beside a plain timm-style loop on the same model.

Ours is what `roadmap run` trains with (`runner.fitting.training_run.prepare` and `runner.fitting.loop.train_epoch`):
images held on the device and augmented there in batches (the data path `roadmap run` would choose), the run's
precision (`--precision`: bf16 autocast on CUDA with bf16 hardware, fp16 with loss scaling below it), channels-last
on CUDA, fused AdamW, optional torch.compile, no host syncs in the step loop, evaluation at twice
the training batch.
The reference is the loop timm-style scripts run: a DataLoader with worker processes decoding and augmenting
PIL images (timm's transforms), timm's Mixup and AdamW (not fused), the same precision and channels-last.
Both train the same model, with the same recipe, batch and data, measured one after the other in one process,
so their ratio is what the data path and the fast-path choices buy.

The projection multiplies each step's measured time per image by its epochs (`--epochs`, 90:300 for the
original recipe) and the data set's sizes, plus the one-time compile and warm-up; on the default data set (a
synthetic one with Imagenette-160's image count and size) it is the full roadmap's wall time on Imagenette-160.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.utils.data import DataLoader

from roadmap.complexity import count
from roadmap.model import build_model
from runner.benchmarks.model_speed import mfu_percent, peak_tflops
from runner.data import load_dataset
from runner.devices import choose_data_path, default_workers, to_device
from runner.dist import synchronize
from runner.fitting import timm_parts
from runner.fitting.loop import evaluate, train_epoch
from runner.fitting.seeding import seed_everything
from runner.fitting.training_run import Job, Transformed, eval_batch_size, loaders, prepare
from runner.planning.budget import IMAGENETTE_SHAPED
from runner.planning.options import RunOptions, Selection, Training
from runner.planning.runs import plan
from runner.precision import Precision, choose_precision, device_default
from runner.store import RunDir


@dataclass
class Measured:
    train_ips: float  # training images/s, data pipeline included
    eval_ips: float  # evaluation images/s, data pipeline included
    memory_gib: float  # peak GPU memory of training (NaN on CPU), our resident images included
    warmup_s: float  # the warm-up steps' wall time: compilation, cuDNN autotuning, worker start-up
    warmup_steps: int
    batch: int
    augment_ms: float | None = None  # the device path's augmentation alone, per training batch (None: DataLoader)
    eval_pass: Callable[[], int] | None = None  # one full evaluation pass, run once untimed (`time_evaluation`)
    augment_eager_ms: float | None = None  # the same, eager, where the run compiles it (CUDA, --compile)


def augment_ms_per_batch(loader, dev: torch.device, batches: int = 5) -> float:
    """Milliseconds per batch of the device path's training batches alone (index, crop, RandAugment, erasing,
    mixing: everything `DeviceLoader` does), measured apart from the model: the first batch warms up, the next
    `batches` are timed."""
    it = iter(loader)
    next(it)
    synchronize(dev)
    t0 = time.perf_counter()
    n = 0
    for _ in range(min(batches, len(loader) - 1)):
        next(it)
        n += 1
    synchronize(dev)
    return 1000 * (time.perf_counter() - t0) / max(n, 1)


def _reset_memory(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)


def _peak_memory(dev: torch.device) -> float:
    return torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else float("nan")


def _timed_eval(evaluate: Callable[[], int], dev: torch.device) -> float:
    """Images/s of one full evaluation pass (`evaluate` returns how many images it saw)."""
    synchronize(dev)
    t0 = time.perf_counter()
    seen = evaluate()
    synchronize(dev)
    return seen / (time.perf_counter() - t0)


def measure_ours(job, warmup: int, iters: int) -> Measured:
    """`roadmap run`'s own training step loop and evaluation on `job` (see runner.fitting.fit)."""
    dev = job.device
    t0 = time.perf_counter()
    t = prepare(job)  # (a run's one-time work: the model, and on CUDA or with --compile the augmentation's compile)
    train_loader, val_loader = loaders(job, t.batch_plan, 0)
    synchronize(dev)
    train_epoch(t, train_loader, 0, steps=min(warmup, len(train_loader)))
    synchronize(dev)
    warm = time.perf_counter() - t0
    train_loader, val_loader = loaders(job, t.batch_plan, 1)
    _reset_memory(dev)
    stats, _ = train_epoch(t, train_loader, 1, steps=iters)
    memory = _peak_memory(dev)
    eval_model = t.ema.module if t.ema is not None else t.forward_model
    n_val = len(val_loader.data) if hasattr(val_loader, "data") else len(val_loader.dataset)

    def full_pass() -> int:
        evaluate(eval_model, val_loader, job.num_classes, dev, len(val_loader), job.dist, precision=job.precision)
        return n_val

    full_pass()  # warm: every batch shape (the last batch is smaller), eval-mode graphs, cuDNN autotuning
    batch = train_loader.batch_size
    augment = eager = None
    if job.device_data is not None and len(train_loader) > 1:
        augment_loader = loaders(job, t.batch_plan, 2)[0]
        augment = augment_ms_per_batch(augment_loader, dev)
        if augment_loader.compiled and getattr(augment_loader.transform, "compile_failed", "") is None:
            augment_loader.compiled = False  # the eager augmentation, for comparison: what compiling it buys
            eager = augment_ms_per_batch(augment_loader, dev)
    return Measured(stats["images_per_s"], float("nan"), memory, warm, min(warmup, len(train_loader)), batch,
                    augment, full_pass, eager)


def time_evaluation(measured: list[Measured | None], dev: torch.device) -> None:
    """Each side's evaluation images/s, timed only after every side has run a full pass untimed: the first pass to
    meet a batch shape (the last, smaller batch) pays cuDNN's autotuning, and its algorithm cache is shared, so
    timing one side before the other had warmed up would bias the ratio."""
    for m in measured:
        if m is not None and m.eval_pass is not None:
            m.eval_ips = _timed_eval(m.eval_pass, dev)
            m.eval_pass = None  # and the model it holds goes: the next step's memory is its own


def measure_reference(design, budget, splits, num_classes: int, dev: torch.device, workers: int, warmup: int,
                      iters: int, precision: Precision | None = None) -> Measured:
    """A plain timm-style loop: DataLoader workers run timm's transforms on PIL images, the batch is copied to the
    device, mixed by timm's Mixup there, and trained in the same precision as ours (default: the device's own, bf16
    on CUDA; fp16 through a loss scaler) with timm's AdamW (not fused). What was on the device before (our images,
    our model) is left out of its memory."""
    precision = precision or device_default(dev)
    recipe, cuda = design.recipe, dev.type == "cuda"
    before = torch.cuda.memory_allocated(dev) if cuda else 0
    seed_everything(0)
    model = build_model(design.net, num_classes=num_classes).to(dev)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    opt = timm_parts.optimizer(recipe, model, budget.lr, fused=False)
    mix = timm_parts.targets(recipe, num_classes)
    batch = min(budget.batch_size, len(splits.train))
    batch -= batch % 2 if mix.mixup is not None else 0
    common = dict(num_workers=workers, pin_memory=cuda, persistent_workers=workers > 0)
    train = DataLoader(Transformed(splits.train, timm_parts.train_transform(recipe, budget.img_size)), batch_size=batch,
                       shuffle=True, drop_last=True, **common)
    val = DataLoader(Transformed(splits.val, timm_parts.eval_transform(recipe, budget.img_size)),
                     batch_size=eval_batch_size(budget.batch_size), **common)

    steps = _reference_steps(model, opt, mix, train, dev, precision)
    model.train()
    synchronize(dev)
    t0 = time.perf_counter()
    steps(warmup)  # worker start-up, cuDNN autotuning
    synchronize(dev)
    warm = time.perf_counter() - t0
    _reset_memory(dev)
    t0 = time.perf_counter()
    steps(iters)
    synchronize(dev)
    train_ips = iters * batch / (time.perf_counter() - t0)
    memory = _peak_memory(dev) - before / 2**30
    full_pass = _reference_eval(model, val, dev, precision)
    full_pass()  # warm: every batch shape, the workers of the evaluation loader
    return Measured(train_ips, float("nan"), memory, warm, warmup, batch, eval_pass=full_pass)


def _reference_steps(model, opt, mix, train: DataLoader, dev: torch.device, precision: Precision | None = None
                     ) -> Callable[[int], None]:
    """The reference loop's training: `n` steps over the DataLoader, each batch copied to the device, mixed there,
    trained in `precision` (default: the device's own). Successive calls go on with the same pass (a new one only
    when it ends), so the timed steps find the workers' prefetch queue full, as a training loop does, not
    restarting."""
    precision = precision or device_default(dev)
    scaler = precision.grad_scaler(dev)  # (fp16; passes through otherwise)
    batches: Any = iter(())

    def next_batch():
        nonlocal batches
        try:
            return next(batches)
        except StopIteration:
            batches = iter(train)
            return next(batches)

    def steps(n: int) -> None:
        for _ in range(n):
            x, y = to_device(*next_batch(), dev)
            x, y = mix(x, y)
            with precision.autocast(dev):
                loss = mix.loss(model(x), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()

    return steps


def _reference_eval(model, val: DataLoader, dev: torch.device, precision: Precision | None = None
                    ) -> Callable[..., int]:
    """The reference loop's evaluation pass (at most `limit` batches) in `precision` (default: the device's own);
    returns how many images it saw."""
    precision = precision or device_default(dev)

    @torch.no_grad()
    def full_pass(limit: int | None = None) -> int:
        model.eval()
        correct, seen = torch.zeros((), device=dev, dtype=torch.long), 0
        for i, (x, y) in enumerate(val):
            if limit is not None and i >= limit:
                break
            x, y = to_device(x, y, dev)
            with precision.autocast(dev):
                correct += (model(x).argmax(1) == y).sum()
            seen += len(y)
        correct.item()
        return seen

    return full_pass


def pipeline_bench(specs: list[str], device: torch.device, dataset: str = IMAGENETTE_SHAPED, preset: str = "quick",
                   epochs: int = 100, batch_size: int | None = None, img_size: int | None = None, warmup: int = 5,
                   iters: int = 25, compile: bool = False, workers: int | None = None, reference: bool = True,
                   data_path: str = "auto", log: Callable[[str], None] = print,
                   on_row: Callable[[dict[str, Any]], None] | None = None, precisions: Sequence[str] = ("auto",)
                   ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per step: ours and the reference loop's training and evaluation images/s, peak GPU memory, MFU, warm-up
    (compile) time and the projected wall time of `epochs` epochs on `dataset`. Returns (table, totals).

    Ours takes the data path and worker count `roadmap run` would (`data_path`, `workers`); the reference loop
    always uses a DataLoader with `workers` processes (default: min(8, CPUs)). `on_row` gets each step's row as
    soon as it is measured. With several `precisions` (`--precision bf16,fp16`), each step is measured in each, one
    after the other, and the rows say which; the projection counts the first."""
    chosen = [choose_precision(p, device) for p in precisions]
    splits = load_dataset(dataset)
    info = splits.info
    opts = RunOptions(Selection(dataset=dataset, steps=tuple(specs), seeds=1),
                      Training(preset=preset, epochs=epochs, batch_size=batch_size, img_size=img_size))
    runs = plan(opts, dataset, info.native_size, info.num_classes, info.train_size)
    ours_workers = workers if workers is not None else default_workers(device)
    ref_workers = workers if workers is not None else min(8, os.cpu_count() or 1)
    paths: list[str] = []
    device_data = choose_data_path(data_path, splits, device, ours_workers, paths.append)
    log(paths[0])
    peak = peak_tflops(device)
    rows = []
    totals = {"ours_min": 0.0, "reference_min": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        for r, precision in ((r, p) for r in runs for p in chosen):
            gflops = count(r.design.net, r.budget.img_size, info.num_classes).gflops
            job = Job(run_dir=RunDir(Path(tmp) / r.run_id), design=r.design, budget=r.budget, seed=0,
                      num_classes=info.num_classes, class_names=tuple(info.classes), train_set=splits.train,
                      val_set=splits.val, device=device, workers=ours_workers, compile=compile, progress=False,
                      log=lambda _: None, label=r.spec, device_data=device_data, precision=precision)
            ours = measure_ours(job, warmup, iters)
            ref = measure_reference(r.design, r.budget, splits, info.num_classes, device, ref_workers, warmup,
                                    iters, precision) if reference else None
            time_evaluation([ours, ref], device)
            row = _row(r, gflops, ours, ref, device, peak, compile)
            if len(chosen) > 1:
                row = {"step": row.pop("step"), "precision": precision.name, **row}
            counted = precision is chosen[0]  # the projection: the first precision asked for
            minutes = _minutes(ours, r.budget, info)
            totals["ours_min"] += minutes if counted else 0.0
            row["projected min"] = round(minutes, 2)
            if ref is not None:
                ref_minutes = _minutes(ref, r.budget, info)
                totals["reference_min"] += ref_minutes if counted else 0.0
                row["ref projected min"] = round(ref_minutes, 2)
            rows.append(row)
            if on_row is not None:
                on_row(row)
            log(f"{r.spec} ({precision.name}): ours {ours.train_ips:.0f} img/s"
                + (f", reference {ref.train_ips:.0f} img/s" if ref is not None else ""))
    totals.update(steps=len(runs), dataset=dataset, train_size=info.train_size, val_size=info.val_size,
                  data_path=paths[0].removeprefix("data path: "), workers=ref_workers, precision=chosen[0].name)
    return pd.DataFrame(rows), totals


def _row(r, gflops: float, ours: Measured, ref: Measured | None, device: torch.device, peak: float | None,
         compile: bool) -> dict[str, Any]:
    """One step's row: ours (and the reference's) images/s, the augmentation's share, GPU memory, MFU, warm-up."""
    row = {"step": r.spec, f"GFLOPs@{r.budget.img_size}": round(gflops, 3), "batch": ours.batch,
           "epochs": r.budget.epochs, "train img/s": round(ours.train_ips, 1), "eval img/s": round(ours.eval_ips, 1)}
    if ours.augment_ms is not None:  # the batched augmentation's share of a training step (device path)
        step_ms = 1000 * ours.batch / ours.train_ips
        row.update({"augment ms/batch": round(ours.augment_ms, 2), "step ms": round(step_ms, 2),
                    "augment % of step": round(100 * ours.augment_ms / step_ms, 1)})
        if ours.augment_eager_ms is not None:  # the run compiles it (CUDA, --compile): eager beside it
            row["eager augment ms/batch"] = round(ours.augment_eager_ms, 2)
    if ref is not None:
        row.update({"ref train img/s": round(ref.train_ips, 1), "ref eval img/s": round(ref.eval_ips, 1),
                    "train vs ref": round(ours.train_ips / ref.train_ips, 2),
                    "eval vs ref": round(ours.eval_ips / ref.eval_ips, 2)})
    if device.type == "cuda":
        row["GPU GiB"] = round(ours.memory_gib, 2)
        if ref is not None:
            row["ref GPU GiB"] = round(ref.memory_gib, 2)
        if peak:
            row["MFU %"] = round(mfu_percent(ours.train_ips, gflops, peak), 1)
    row[f"warm-up s ({ours.warmup_steps} steps{', compile' if compile else ''})"] = round(ours.warmup_s, 1)
    return row


def _minutes(m: Measured, budget, info) -> float:
    """Wall time of the budget's epochs (training + one evaluation each) at the measured rates, plus the warm-up;
    an epoch trains its whole batches (at most `train_batches`) and evaluates at most `val_batches` batches."""
    train = info.train_size // m.batch * m.batch
    if budget.train_batches:
        train = min(train, budget.train_batches * m.batch)
    val = info.val_size
    if budget.val_batches:
        val = min(val, budget.val_batches * eval_batch_size(budget.batch_size))
    return (budget.epochs * (train / m.train_ips + val / m.eval_ips) + m.warmup_s) / 60
