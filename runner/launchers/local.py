"""`roadmap run`: plan the runs (steps x seeds), skip what is done, train the rest (the CLI then reports).

The plan is a list of runs, each keyed by what produced it (see runner.store.run_id). Finished runs are
reused, unfinished ones resume from their last checkpoint, and runs another process holds are skipped
(that process finishes them; run the same command again to collect them).

The modules this one orchestrates: runner.planning.options (what was asked), runner.planning.selection and
runner.planning.overrides (which specs, which field changes), runner.planning.runs (each run's design, budget and
identity), runner.devices (device and data path), runner.planning.run_records (config.json, plan.json),
runner.planning.dry_run (the plan as a table) and runner.fitting.fit (one run).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from roadmap.durations import duration
from roadmap.errors import RoadmapError
from runner.data import DatasetInfo, load_dataset, plan_info
from runner.data.catalog import lookup
from runner.data.decoded import prepare_pixels
from runner.data.folders import FolderOptions
from runner.data.scan import LIST_NAME
from runner.devices import (
    choose_data_path,
    default_workers,
    jobs_line,
    resolve_device,
    set_threads,
    threads_per_job,
)
from runner.dist import Dist, barrier, broadcast, finish, from_env
from runner.fitting.fit import train
from runner.fitting.training_run import Job
from runner.launchers.progress import eta_seconds, run_work
from runner.planning.batching import BatchPlan
from runner.planning.budget import get_preset
from runner.planning.dry_run import print_plan
from runner.planning.options import RunOptions
from runner.planning.run_records import config_for, write_plan
from runner.planning.runs import PlannedRun, complexity_of, init_note, plan, seeds_of
from runner.precision import Precision, choose_precision, identity_entry
from runner.store import RunDir, ensure_writable
from steps import get_regime


@dataclass(frozen=True)
class Session:
    """What every run of one `roadmap run` shares: the data, the device and process group, where results go."""

    opts: RunOptions
    splits: Any  # runner.data's splits: train, val, info
    device: Any  # torch.device
    dist: Dist
    precision: Precision
    out: Path
    progress: bool
    log: Callable[[str], None]


def default_out(dataset: str) -> Path:
    """runs/<dataset>, the data set's name made safe for a path."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset)
    return Path("runs") / safe


def run(opts: RunOptions, log: Callable[[str], None] = print) -> Path | None:
    """Plan, skip what is done, train the rest; returns the output directory, or None on the processes that do not
    own it (ranks other than 0). The report is the CLI's to write (`runner` never imports `reports`).

    Under torchrun every process runs this; rank 0 alone plans on disk and writes."""
    what = opts.selection
    device = resolve_device(opts.machine.device)
    if not opts.output.dry_run:
        set_threads(opts.machine.threads_per_job)  # a --jobs child's share of the cores, or as asked
    dist = from_env("nccl" if device.type == "cuda" else "gloo", device)  # binds this process to its GPU
    if dist.active and device.type == "cuda":
        device = resolve_device(f"cuda:{dist.local_rank}")
    if not dist.is_main:
        log = _silent
    out = Path(opts.output.out) if opts.output.out else default_out(what.dataset)
    progress = opts.output.shows_progress()
    folder = folder_options(opts, out, progress and dist.is_main)
    if opts.output.dry_run:  # never downloads: a data set not here yet is planned from the catalog
        splits, (info, missing) = None, plan_info(what.dataset, opts.machine.data_dir, folder)
    else:
        splits, missing = load_dataset(what.dataset, opts.machine.data_dir, folder=folder), None
        info = splits.info
    precision = choose_precision(opts.machine.precision, device)
    runs = plan(opts, dataset_key(info, what.dataset), info.native_size, info.num_classes, info.train_size,
                identity_entry(precision, device))
    precision_line = f"precision: {precision.name} ({precision.reason})"
    preset = get_preset(opts.training.preset)
    procs = f" x {dist.world} processes" if dist.active else ""
    header = (f"{len(runs)} runs ({len({r.spec for r in runs})} steps x {seeds_of(opts)} seed(s)) on {what.dataset} "
              f"({info.train_size} train / {info.val_size} val, {info.num_classes} classes), "
              f"{runs[0].budget.img_size} px, preset {preset.name}: {preset.note}, device {device}{procs}")
    # each run's batch plan, once (a micro-batch that cannot split a step's batch fails now, not after hours)
    batches = [BatchPlan.decide(r.budget.batch_size, info.train_size, r.design.recipe.mixes, dist.world,
                                opts.training.micro_batch) for r in runs]
    if opts.output.dry_run:
        print_plan(runs, batches, out, info, header, get_regime(what.regime), log, device,
                   notes=[n for n in (init_note(opts, runs), missing, _jobs_note(opts), precision_line) if n])
        finish(dist)
        return out
    if dist.is_main:
        ensure_writable(out)
        if opts.output.write_plan:
            write_plan(out, runs, opts)
    log(header)
    log(precision_line)
    for line in data_lines(info, out):
        log(line)
    if opts.training.init_from:
        log(init_note(opts, runs))
    if preset.name == "smoke" or info.synthetic:
        log("note: this is a pipeline check (smoke preset or synthetic data); its accuracies mean nothing")
    if dist.is_main:  # a folder's images, decoded once at the run's size (the other processes then reuse them)
        prepare_pixels(splits, runs[0].budget.img_size, log=log, progress=progress)
    barrier(dist)
    if not dist.is_main:
        prepare_pixels(splits, runs[0].budget.img_size, log=log)
    held = _train_all(Session(opts, splits, device, dist, precision, out, progress, log), runs, batches)
    finish(dist)  # DDP: every process leaves the group (after an error, the process exits and torchrun ends the rest)
    if held:
        log(f"{len(held)} run(s) are being trained by another process: {', '.join(held)}; "
            "run the same command again later to collect them")
    return out if dist.is_main else None


def work_of(opts: RunOptions, runs: list[PlannedRun], info: DatasetInfo) -> dict[str, float]:
    """Each run's work (runner.launchers.progress.run_work), by run id: what the ETA is projected from."""
    regime = get_regime(opts.selection.regime)
    return {r.run_id: run_work(complexity_of(r, info.num_classes, regime).gflops_run, r.budget, info.train_size)
            for r in runs}


def folder_options(opts: RunOptions, out: Path, progress: bool) -> FolderOptions:
    """How a `folder:PATH` data set is read: the run's folder options, and OUT for the list of damaged files. The
    options are an error with any other data set."""
    what = opts.selection
    given = [flag for flag, value in (("--val-fraction", what.val_fraction), ("--label-columns", what.label_columns),
                                      ("--skip-unreadable", what.skip_unreadable or None)) if value is not None]
    if given and lookup(what.dataset).name != "folder":
        raise RoadmapError(f"{given[0]} is for a folder:PATH data set, and --dataset {what.dataset} is not one: "
                           "leave it out")
    return FolderOptions(what.val_fraction, what.label_columns, what.skip_unreadable, out, progress)


def dataset_key(info, spec: str):
    """The data set in a run's identity: the catalog's name (a synthetic set: its spec, options included), or for
    a user's folder its name and how it was read (runner.data.splits.DatasetInfo.key)."""
    return spec if info.synthetic else info.key()


def data_lines(info, out: Path) -> list[str]:
    """What a run says of a folder's split and of the files it left out."""
    lines = []
    if info.split:
        lines.append(f"data: {info.layout} in {info.name.removeprefix('folder:')}, no val/: "
                     f"{info.split['val_fraction']:g} of each class held out for validation (a fixed split, seed "
                     f"{info.split['seed']}; --val-fraction to change it)")
    if info.skipped:
        lines.append(f"data: {info.skipped} unreadable image file(s) left out (--skip-unreadable); the list is in "
                     f"{str(out / LIST_NAME)!r}")
    return lines


def _jobs_note(opts: RunOptions) -> str | None:
    """The dry run's line on --jobs N (None for one job: the plan as before)."""
    jobs = opts.machine.jobs or 1
    return jobs_line(jobs, threads_per_job(jobs, opts.machine.threads_per_job)) if jobs > 1 else None


def _silent(_: str) -> None:
    """The log of ranks other than 0."""


def _train_all(s: Session, runs: list[PlannedRun], batches: list[BatchPlan]) -> list[str]:
    """Train each run not finished and not held by another process; returns the labels of the held ones."""
    opts, dist = s.opts, s.dist
    workers = opts.machine.workers if opts.machine.workers is not None else default_workers(s.device)
    device_data = choose_data_path(opts.machine.data_path, s.splits, s.device, workers, s.log, dist, s.progress)
    held = []
    left = work_of(opts, [r for r in runs if not RunDir(s.out / r.run_id).done], s.splits.info)  # runs to train
    finished: list[tuple[float, float]] = []  # the ETA's pace: (work, seconds) of each run trained here
    bar = tqdm(runs, desc="roadmap", unit="run", disable=not (s.progress and dist.is_main), file=sys.stderr,
               dynamic_ncols=True, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")
    for r, batch in zip(bar, batches, strict=True):
        rd = RunDir(s.out / r.run_id)
        label = f"{r.spec} (seed {r.seed})"
        eta = eta_seconds(list(left.values()), [], finished)
        bar.set_postfix_str(label if eta is None else f"{label}, ETA {duration(eta, decimals=0)}", refresh=True)
        work = left.pop(r.run_id, 0.0)
        with ExitStack() as stack:
            decision = broadcast(dist, _decide(s, r, rd, stack) if dist.is_main else "train")
            if decision == "done":
                if dist.is_main and not rd.config.exists():  # lost; the same (the directory is its hash)
                    _write_config(s, r, rd, batch)  # "auto" unresolved: the run that measured it is gone
                    s.log(f"{label}: config.json was missing; written again")
                s.log(_reused(rd, label))
                continue
            if decision == "held":
                held.append(label)
                s.log(f"{label}: another process is training it; skipped")
                continue
            barrier(dist)
            began = time.monotonic()
            result = train(_job(s, r, rd, label, workers, device_data, batch))
            finished.append((work, time.monotonic() - began))
            status = result["status"] if result["status"] != "diverged" else \
                f"diverged at epoch {result['diverged']['epoch']}"
            s.log(f"{label}: {status}, val top-1 {top1_text(result['val_top1'])}, {result['wall_seconds']:.1f} s")
    return held


def _decide(s: Session, r: PlannedRun, rd: RunDir, stack: ExitStack) -> str:
    """Rank 0's decision for one run, under the run's lock (held in `stack`): done, held (by another process) or
    train (its config.json is written by `train` once the batch plan is resolved); every rank follows it."""
    if rd.done:
        return "done"
    if not stack.enter_context(rd.lock()):
        return "held"
    if rd.done:  # finished by another process between our check and the lock
        return "done"
    return "train"


def _write_config(s: Session, r: PlannedRun, rd: RunDir, batch: BatchPlan) -> None:
    rd.write_config(config_for(r, s.splits.info, str(s.device), s.opts, batch, s.precision.name))


def _job(s: Session, r: PlannedRun, rd: RunDir, label: str, workers: int, device_data, batch: BatchPlan) -> Job:
    """The job of one run; it writes `config` (with its batch plan, "auto" resolved) before its first epoch."""
    info, how = s.splits.info, s.opts.training
    return Job(run_dir=rd, design=r.design, budget=r.budget, seed=r.seed, num_classes=info.num_classes,
               class_names=tuple(info.classes), train_set=s.splits.train, val_set=s.splits.val, device=s.device,
               workers=workers, compile=how.compile, progress=s.progress, log=s.log, label=label, dist=s.dist,
               init_from=how.init_from, tracker=s.opts.output.tracker, device_data=device_data, model_name=r.model,
               batch_plan=batch, precision=s.precision,
               config=lambda plan: config_for(r, info, str(s.device), s.opts, plan, s.precision.name))


def top1_text(value) -> str:
    """A top-1 as the report's tables print it (two decimals); what is no number, as it is."""
    return f"{value:.2f}" if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


def _reused(rd: RunDir, label: str) -> str:
    """What to say of a finished run, which is never trained again (not even when its result.json is damaged:
    that is left for the user to look at)."""
    try:
        return f"{label}: done earlier, reused ({top1_text(rd.read_result().val_top1)} top-1)"
    except RoadmapError as e:
        return f"warning: {label}: {e}; kept as it is, not retrained"
