"""Train and evaluate one run, resumable at every epoch, with the same result as an uninterrupted run.

Determinism: every epoch re-seeds Python, NumPy and torch from (seed, epoch) (runner.fitting.seeding), and the
checkpoint holds the model, optimizer, EMA and metrics history (runner.fitting.checkpoint); so a run killed at any
moment and resumed from its last checkpoint repeats the lost epoch exactly (on CPU, same thread count).

The parts: runner.fitting.training_run (the run's inputs, `Job`, and its state, `TrainingRun`: model, optimizer,
schedule, EMA, batch plan, and each epoch's batches), runner.fitting.loop (one epoch, evaluation); this module runs
the epochs and writes the records.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from roadmap.errors import RoadmapError
from roadmap.schema import ClassScore, Diverged, EpochMetrics, RunResult
from runner.dist import barrier
from runner.fitting.checkpoint import CheckpointWriter, load_checkpoint
from runner.fitting.loop import Evaluation, evaluate, per_class, train_epoch
from runner.fitting.seeding import epoch_seed, rank_seed, seed_everything
from runner.fitting.tracking import Tracker, make_tracker
from runner.fitting.training_run import Job, TrainingRun, limit_batches, loaders, prepare, val_batches_at
from runner.planning.batching import BatchPlan
from runner.planning.provenance import now
from runner.store import atomic_write_bytes


@dataclass
class Progress:
    """Where a run stands: fresh, or restored from its checkpoint, then updated epoch by epoch."""

    start_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)  # one metrics row per finished epoch
    wall: float = 0.0  # seconds of training and evaluation so far
    diverged: dict[str, Any] | None = None
    last_eval: Evaluation | None = None


def train(job: Job) -> dict[str, Any]:
    """Train `job` to the end of its budget (resuming if a checkpoint exists); write and return result.json."""
    main = job.dist.is_main
    state = load_checkpoint(job.run_dir, job.device, job.log if main else None, job.label)
    job = _recorded_batch(job)
    t = prepare(job)  # decides the batch plan ("auto": measured once) and the augmentation (compiled or eager)
    if main and job.config is not None and not job.run_dir.config.exists():
        job.run_dir.write_config(replace(job.config(t.batch_plan), augment=t.augment))  # once, with both decided
    p = _resume(job, t, state)
    tracker = make_tracker(job.tracker, job.run_dir.root, job.run_dir.root.name, job.design.to_dict()) \
        if main and job.tracker else None
    writer = CheckpointWriter(job.run_dir)
    try:
        for epoch in range(p.start_epoch, job.budget.epochs):
            if not _epoch(job, t, p, epoch, writer, tracker):
                break
    finally:  # an interrupted run still finishes writing the checkpoint it started, under its lock
        writer.wait()
    result = _result(job, p.history, p.last_eval, p.diverged, p.wall)
    if tracker is not None:
        tracker.close()
    if main:
        _write_result(job, t, result, p.diverged is None)
    barrier(job.dist)
    return result.to_dict()


def _recorded_batch(job: Job) -> Job:
    """A resumed run keeps the batch plan its config.json records ("auto" as measured when it started), so the
    resumed epochs are computed as the first ones were."""
    planned = job.batch_plan
    if planned is None or planned.resolved or not job.run_dir.config.exists():
        return job
    try:
        record = job.run_dir.read_config().micro_batch
    except RoadmapError:
        return job
    if not record or record.get("micro_batch") is None:
        return job
    recorded = BatchPlan.from_record(record)
    same = (recorded.per_process, recorded.processes) == (planned.per_process, planned.processes)
    return replace(job, batch_plan=recorded) if same else job


def _resume(job: Job, t: TrainingRun, state: dict[str, Any] | None) -> Progress:
    """The progress a checkpoint's `state` holds (loaded into the model, optimizer and EMA), or a fresh start;
    metrics.jsonl is rewritten to match it, and the schedule moved to its step."""
    p = Progress()
    if state is not None:
        t.model.load_state_dict(state["model"])
        t.opt.load_state_dict(state["optimizer"])
        if t.ema is not None and state.get("ema") is not None:
            t.ema.load_state_dict(state["ema"])
        if state.get("scaler"):  # fp16: the loss scale and its growth tracker, so the resumed steps scale as before
            t.scaler.load_state_dict(state["scaler"])
        p = Progress(state["epoch"], state["history"], state["wall"])
        t.updates = state["updates"]
        if job.dist.is_main:
            job.log(f"{job.label}: resuming after epoch {p.start_epoch}/{job.budget.epochs}")
    if job.dist.is_main:
        job.run_dir.write_metrics(p.history)
    t.sched.step_update(t.updates)
    return p


def _epoch(job: Job, t: TrainingRun, p: Progress, epoch: int, writer: CheckpointWriter, tracker: Tracker | None
           ) -> bool:
    """Train and evaluate one epoch and record it; False when the loss diverged (the run stops there)."""
    budget, main = job.budget, job.dist.is_main
    t0 = time.perf_counter()
    seed_everything(rank_seed(epoch_seed(job.seed, epoch), job.dist.rank))
    train_loader, val_loader = loaders(job, t.batch_plan, epoch)
    stats, bad = train_epoch(t, train_loader, epoch, time_first_step=job.compile and epoch == p.start_epoch)
    lr = t.opt.param_groups[0]["lr"]
    if bad:
        p.diverged = {"epoch": epoch + 1, "lr": lr}
        if main:
            job.log(f"{job.label}: loss became NaN/inf in epoch {epoch + 1} (lr {lr:.3g}); marked diverged")
        return False
    eval_model = t.ema.module if t.ema is not None else t.eval_model
    first_eval = job.compile and epoch == p.start_epoch  # its first batch compiles the eval graph: timed apart
    p.last_eval = evaluate(eval_model, val_loader, job.num_classes, job.device,
                           limit_batches(len(val_loader), val_batches_at(budget, epoch)), job.dist,
                           time_first_batch=first_eval, precision=job.precision)
    seconds = time.perf_counter() - t0
    p.wall += seconds
    row = EpochMetrics(
        epoch=epoch + 1, **stats, val_loss=p.last_eval.val_loss, val_top1=p.last_eval.val_top1,
        val_top5=p.last_eval.val_top5, lr=lr, seconds=round(seconds, 3),
        eval_compile_seconds=round(p.last_eval.first_batch_seconds, 3) if first_eval else None,
    ).to_dict()
    p.history.append(row)
    if main:
        _record_epoch(job, t, p, row, writer, tracker)
    return True


def _record_epoch(job: Job, t: TrainingRun, p: Progress, row: dict[str, Any], writer: CheckpointWriter,
                  tracker: Tracker | None) -> None:
    """An epoch's metrics line (and tracker entry), its checkpoint, and a line of log without progress bars."""
    job.run_dir.append_metrics(row)
    if tracker is not None:
        tracker.log_epoch(row)
    writer.save({"model": t.model.state_dict(), "optimizer": t.opt.state_dict(),
                 "ema": t.ema.state_dict() if t.ema is not None else None, "epoch": row["epoch"],
                 "updates": t.updates, "history": p.history, "wall": p.wall,
                 **({"scaler": t.scaler.state_dict()} if t.scaler.is_enabled() else {})})
    if not job.progress:
        job.log(f"{job.label}: epoch {row['epoch']}/{job.budget.epochs} loss {row['train_loss']:.3f} "
                f"val top-1 {row['val_top1']:.2f} ({row['images_per_s']:.0f} img/s)")


def _write_result(job: Job, t: TrainingRun, result: RunResult, finished: bool) -> None:
    """result.json, the final weights (EMA's when the recipe keeps one; none for a diverged run), and the
    checkpoints removed."""
    job.run_dir.write_result(result)
    if finished:
        buffer = io.BytesIO()
        torch.save((t.ema.module if t.ema is not None else t.model).state_dict(), buffer)
        atomic_write_bytes(job.run_dir.weights, buffer.getvalue())
    job.run_dir.checkpoint.unlink(missing_ok=True)
    job.run_dir.previous.unlink(missing_ok=True)


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
        finished=now(),
        images_per_s=round(sum(r["images_per_s"] for r in history) / len(history), 2) if history else None,
        compile_seconds=round(sum(r.get("compile_seconds") or 0.0 for r in history), 3) if job.compile else None,
        eval_compile_seconds=round(sum(r.get("eval_compile_seconds") or 0.0 for r in history), 3)
        if job.compile else None,
        diverged=Diverged(**diverged) if diverged else None,
        per_class=[ClassScore.from_dict(c) for c in per_class(last_eval.confusion, job.class_names)]
        if last_eval is not None else [],
    )

