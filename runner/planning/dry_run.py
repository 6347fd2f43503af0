"""`roadmap run --dry-run`: the plan as a table (params, GFLOPs, budget in epochs and optimizer steps, training
compute, status of each run) and how each step's batch is reached, without training anything."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from roadmap.errors import RoadmapError
from roadmap.schema import Budget
from runner.planning.batching import BatchPlan, batch_line
from runner.planning.runs import PlannedRun, complexity_of
from runner.store import RunDir
from steps import Roadmap


def status_of(rd: RunDir) -> str:
    """A run's state on disk: its result's status, partial (epochs done), held by another process, or to do."""
    if rd.done:
        try:
            return rd.read_result().status
        except RoadmapError:
            return "unreadable result.json"
    if rd.checkpoints():
        epochs = len(rd.read_metrics())
        return "held by another process" if rd.is_locked() else f"partial ({epochs} epochs)"
    return "held by another process" if rd.is_locked() else "to do"


def _micro_columns(plan: BatchPlan) -> dict[str, int | str]:
    """The dry run's micro-batch columns of one step ("auto" until the run measures the GPU)."""
    return {"micro-batch": plan.micro_batch or "auto", "accum steps": plan.accumulation_steps or "auto"}


def print_plan(runs: list[PlannedRun], batches: list[BatchPlan], out: Path, info, header: str, regime: Roadmap,
               log, device, notes: Sequence[str] = ()) -> None:
    """Log the plan: one row per run (`batches`: each one's batch plan), then the budget rules and the batch lines
    of the steps, then `notes` (what else the plan rests on: data not here yet, the checkpoint a fine-tuning run
    starts from)."""
    rows = []
    for r, b in zip(runs, batches, strict=True):
        c = complexity_of(r, info.num_classes, regime)
        images = r.budget.epochs * (min(info.train_size, r.budget.train_batches * r.budget.batch_size)
                                    if r.budget.train_batches else info.train_size)
        rows.append({
            "step": r.spec, "seed": r.seed, "GFLOPs@224 (full size)": round(c.gflops_224, 3),
            "params (M, as trained)": round(c.params / 1e6, 3),
            f"GFLOPs@{r.budget.img_size} (as trained)": round(c.gflops_run, 4),
            "epochs": r.budget.epochs, "steps": "?" if r.budget.steps is None else r.budget.steps,
            "batch": r.budget.batch_size,
            **(_micro_columns(b) if b.requested is not None else {}),
            "lr": f"{r.budget.lr:.3g}",
            "train PFLOPs": round(3 * c.gflops_run * images / 1e6, 3),  # forward + backward ~ 3x forward
            "status": status_of(RunDir(out / r.run_id)),
        })
    log(header)
    log(pd.DataFrame(rows).to_string(index=False))
    total = sum(row["train PFLOPs"] for row in rows)
    log(f"estimated training compute: {total:.3f} PFLOPs (3 x forward GFLOPs x images x epochs); out: {out}")
    for rule in dict.fromkeys(r.budget.epochs_rule for r in runs):
        log(f"budget: {rule}")
    for line in dict.fromkeys(steps_line(r.budget) for r in runs):
        log(line)
    for line in dict.fromkeys(batch_line(b, device) for b in batches):
        log(line)
    for note in notes:
        log(note)



def steps_line(budget: Budget) -> str:
    """The dry run's line on how a budget counts: optimizer steps (the preset's epochs of its batches, kept on a
    smaller training set by more epochs; at least that many where the preset has no cap, as `quick`) or epochs."""
    head = "steps: optimizer steps = epochs x batches an epoch; the budget is"
    n = budget.budget_batches
    if n:
        capped = 0 < budget.train_batches <= n
        cap = f"each epoch at most {budget.train_batches}" if capped else "no cap: a larger set trains more"
        return (f"{head} {'' if capped else 'at least '}the preset's epochs of {n} batches ({cap}; a training set "
                "of fewer batches an epoch trains more epochs to those steps, the warm-up and decay following the "
                "steps)")
    return (f"{head} in epochs (--epochs, --train-batches 0 or the paper preset): a smaller training set trains "
            "fewer steps")
