"""One training run's inputs: the `Job` every training module reads, with the batch plan it carries."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

from roadmap.design import Design
from roadmap.schema import RunConfig
from runner.dist import SINGLE, Dist
from runner.fitting.timm_parts import mixes
from runner.planning.batching import BatchPlan, plan_batch
from runner.planning.budget import Budget
from runner.store import RunDir


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
    device_data: tuple[Any, Any] | None = None  # (train, val) DeviceDatasets: augment on the device (device_data)
    model_name: str | None = None  # a timm baseline: this model instead of the design's network
    batch: BatchPlan | None = None  # how an optimizer step is reached (None: the whole batch, see `batch_plan_of`)
    config: Callable[[BatchPlan], RunConfig] | None = None  # config.json, written once the plan is resolved


def batch_plan_of(job: Job) -> BatchPlan:
    """The job's batch plan: the one it carries, or (a job built without one, as benchmarks and tests do) the whole
    batch, split over the processes."""
    if job.batch is not None:
        return job.batch
    return plan_batch(job.budget.batch_size, len(job.train_set), mixes(job.design.recipe), job.dist.world)
