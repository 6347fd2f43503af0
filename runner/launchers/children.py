"""Steps in parallel: one `roadmap run` child per run, on the local GPUs (--launcher gpus), on the CPU (--jobs N)
or as Slurm jobs through submitit.

The parent plans (and writes plan.json), then starts a child for each run that is not finished; each child
is an ordinary `roadmap run` restricted to one step and one seed, so it takes the run's lock, resumes from
its checkpoint and writes its records like any run. Killing one child disturbs no other; running the same
command again starts only what is missing or unfinished. There is no scheduler of our own: GPUs and CPU jobs
are slots filled one run at a time (the parent shows one progress line for the whole roadmap), and Slurm does
the rest.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from roadmap.errors import RoadmapError
from runner.data import DatasetInfo, load_dataset
from runner.data.decoded import prepare_pixels
from runner.devices import jobs_line, resolve_device, threads_per_job
from runner.launchers.local import data_lines, dataset_key, default_out, folder_options, top1_text, work_of
from runner.launchers.progress import RoadmapProgress
from runner.planning.options import RunOptions
from runner.planning.run_records import write_plan
from runner.planning.runs import PlannedRun, plan
from runner.precision import Precision, choose_precision, identity_entry
from runner.store import RunDir, ensure_writable


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    account: str | None = None
    gpus_per_job: int = 1
    cpus_per_job: int = 8
    time_min: int = 24 * 60
    cluster: str | None = None  # None = submitit's choice (slurm when available); "local" runs jobs here
    wait: bool = True


def child_argv(argv: list[str], spec: str, seed: int, device: str | None = None,
               extra: tuple[str, ...] = ()) -> list[str]:
    """The parent's `roadmap run` arguments, restricted to one run and stripped of launcher options; `extra`: the
    slot's own flags (a CPU job's --threads-per-job), before the device."""
    drop_with_value = {"--launcher", "--gpus", "--per-gpu", "--steps", "--upto", "--device", "--partition",
                       "--account", "--gpus-per-job", "--cpus-per-job", "--time-min", "--cluster", "--only-seed",
                       "--nproc", "--baselines", "--order", "--jobs", "--threads-per-job", "--final"}
    drop_flags = {"--no-wait", "--no-branches", "--dry-run"}
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        key = a.split("=", 1)[0]
        if key in drop_with_value:
            skip = "=" not in a
            continue
        if a in drop_flags or a in ("run", "ablate"):  # `ablate` chose the specs: the child gets one of them
            continue
        out.append(a)
    extra_run = ["--steps", spec, "--only-seed", str(seed), "--jobs", "1", "--no-report", "--no-plan", "--quiet"]
    return ["run", *out, *extra_run, *extra, *(["--device", device] if device else [])]


def _precision_entry(opts: RunOptions, device: torch.device) -> dict[str, str]:
    """The run identity's precision entry of the children's device, as each child computes it for itself."""
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RoadmapError("--launcher gpus: CUDA is not available on this machine; use --launcher local")
    return identity_entry(choose_precision(opts.machine.precision, device), device)


def _slurm_precision_entry(opts: RunOptions) -> dict[str, str]:
    """As `_precision_entry`, for GPUs this machine cannot ask: `auto` is taken to find bf16 hardware there
    (compute capability 8.0+); on older GPUs pass --precision fp16, so that the jobs' run ids are the ones planned."""
    cuda = torch.device("cuda")
    asked = opts.machine.precision
    return identity_entry(Precision("bf16" if asked == "auto" else asked), cuda)


def pending(runs: list[PlannedRun], out: Path) -> list[PlannedRun]:
    """Runs neither finished nor being trained by some process right now."""
    return [r for r in runs if not RunDir(out / r.run_id).done and not RunDir(out / r.run_id).is_locked()]


def _plan_and_write(opts: RunOptions, log: Callable[[str], None], device: torch.device | None
                    ) -> tuple[list[PlannedRun], Path, DatasetInfo]:
    """Load the data (a folder's images checked), plan (with the precision the children's `device` trains in; None:
    Slurm's GPUs, which this machine cannot ask), write plan.json, and decode a folder's images once, so that the
    children find them decoded."""
    out = Path(opts.output.out) if opts.output.out else default_out(opts.selection.dataset)
    progress = opts.output.shows_progress()
    splits = load_dataset(opts.selection.dataset, opts.machine.data_dir, folder=folder_options(opts, out, progress))
    info = splits.info
    precision = _slurm_precision_entry(opts) if device is None else _precision_entry(opts, device)
    runs = plan(opts, dataset_key(info, opts.selection.dataset), info.native_size, info.num_classes, info.train_size,
                precision)
    out = ensure_writable(out)
    write_plan(out, runs, opts)
    for line in data_lines(info, out):
        log(line)
    prepare_pixels(splits, runs[0].budget.img_size, log=log, progress=progress)
    return runs, out, info


@dataclass(frozen=True)
class Slot:
    """A place where one child runs at a time: its name in the log, its device, its own flags and environment."""

    name: str
    device: str
    extra: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


def launch_gpus(opts: RunOptions, argv: list[str], gpus: list[int], per_gpu: int,
                log: Callable[[str], None] = print) -> Path:
    """One child per run, `per_gpu` at a time on each of `gpus` (several small runs may share a GPU); returns the
    output directory (the CLI then reports)."""
    if not gpus or per_gpu < 1:
        raise RoadmapError("--launcher gpus needs --gpus 0,1,... and --per-gpu >= 1")
    runs, out, info = _plan_and_write(opts, log, torch.device("cuda", gpus[0]))
    slots = [Slot(f"cuda:{g}", f"cuda:{g}") for g in gpus for _ in range(per_gpu)]
    log(f"{len(pending(runs, out))} of {len(runs)} runs to train on GPUs {gpus}, {per_gpu} at a time per GPU")
    return _finish(out, _run_children(opts, argv, runs, out, info, slots, log), log)


def launch_cpu(opts: RunOptions, argv: list[str], log: Callable[[str], None] = print) -> Path:
    """`--jobs N`: one child per run, N at a time on the CPU, each with its share of the cores as torch threads
    (--threads-per-job; OMP_NUM_THREADS and MKL_NUM_THREADS likewise); returns the output directory (the CLI then
    reports). A run's numbers are those it has trained alone with as many threads."""
    jobs = opts.machine.jobs
    if resolve_device(opts.machine.device).type != "cpu":
        raise RoadmapError(f"--jobs {jobs} trains several runs at once on the CPU, and --device "
                           f"{opts.machine.device} is a GPU here: add --device cpu, or train on GPUs with "
                           f"--launcher gpus --gpus 0,... --per-gpu {jobs}")
    threads = threads_per_job(jobs, opts.machine.threads_per_job)
    runs, out, info = _plan_and_write(opts, log, torch.device("cpu"))
    env = tuple((k, str(threads)) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"))
    slots = [Slot(f"cpu job {k + 1}", "cpu", ("--threads-per-job", str(threads)), env) for k in range(jobs)]
    log(jobs_line(jobs, threads))
    log(f"{len(pending(runs, out))} of {len(runs)} runs to train, {jobs} at a time")
    return _finish(out, _run_children(opts, argv, runs, out, info, slots, log), log)


def _run_children(opts: RunOptions, argv: list[str], runs: list[PlannedRun], out: Path, info: DatasetInfo,
                  slots: list[Slot], log: Callable[[str], None]) -> list[PlannedRun]:
    """Fill `slots` with one child per pending run until every run has ended, with one progress line for the
    whole roadmap; returns the runs that failed."""
    todo = pending(runs, out)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    live = opts.output.shows_progress()
    progress = RoadmapProgress(len(runs), work_of(opts, todo, info), len(slots), log, live)
    busy: dict[int, tuple[subprocess.Popen, PlannedRun] | None] = dict.fromkeys(range(len(slots)))
    failed = []
    try:
        while todo or any(busy.values()):
            for i, slot in enumerate(slots):
                job = busy[i]
                if job is not None and job[0].poll() is not None:
                    ok, message = _ended(job[0], job[1], slot, out, logs)
                    progress.ended(job[1].run_id, ok, message)
                    failed += [] if ok else [job[1]]
                    busy[i] = None
                if busy[i] is None and todo:
                    r = todo.pop(0)
                    busy[i] = (_start(argv, r, slot, out), r)
                    progress.started(r.run_id)
            progress.show()
            time.sleep(0.5)
    finally:
        progress.close()
    return failed


def _start(argv: list[str], r: PlannedRun, slot: Slot, out: Path) -> subprocess.Popen:
    """A child `roadmap run` of run `r` in `slot`, writing to `out` (also where `ablate` chose it), its output
    appended to OUT/logs/<run id>.log."""
    extra = (*slot.extra, "--out", str(out))
    cmd = [sys.executable, "-m", "roadmap", *child_argv(argv, r.spec, r.seed, slot.device, extra)]
    with open(out / "logs" / f"{r.run_id}.log", "a") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, **dict(slot.env)})


def _ended(proc: subprocess.Popen, r: PlannedRun, slot: Slot, out: Path, logs: Path) -> tuple[bool, str]:
    """Whether run `r` ended well (its child exited 0 and its result is written), and what to say of it."""
    rd, log = RunDir(out / r.run_id), logs / f"{r.run_id}.log"
    if proc.returncode != 0 or not rd.done:
        return False, f"{r.spec} (seed {r.seed}) on {slot.name}: FAILED (exit {proc.returncode}; log: {log})"
    try:
        result = rd.read_result()
        what = f"{result.status}, val top-1 {top1_text(result.val_top1)}, {result.wall_seconds:.1f} s"
    except (RoadmapError, TypeError, ValueError):
        what = "finished"
    return True, f"{r.spec} (seed {r.seed}) on {slot.name}: {what} (log: {log})"


def launch_slurm(opts: RunOptions, argv: list[str], slurm: SlurmOptions,
                 log: Callable[[str], None] = print) -> Path | None:
    """One submitit job per run that is missing or unfinished; wait for them unless told not to. Returns the output
    directory once the jobs are done (the CLI then reports), None when it did not wait."""
    try:
        import submitit
    except ImportError:
        raise RoadmapError("--launcher slurm needs submitit: pip install 'convnext-roadmap[slurm]'") from None
    runs, out, _ = _plan_and_write(opts, log, None)
    todo = pending(runs, out)
    executor = submitit.AutoExecutor(folder=out / "submitit", cluster=slurm.cluster)
    params = dict(timeout_min=slurm.time_min, cpus_per_task=slurm.cpus_per_job, name="roadmap")
    if executor.cluster == "slurm":
        params.update(slurm_partition=slurm.partition, slurm_account=slurm.account,
                      gpus_per_node=slurm.gpus_per_job, tasks_per_node=1)
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    jobs = [(executor.submit(run_child, child_argv(argv, r.spec, r.seed, extra=("--out", str(out)))), r)
            for r in todo]
    log(f"submitted {len(jobs)} of {len(runs)} runs to {executor.cluster} "
        f"({len(runs) - len(todo)} finished or running already)")
    if not slurm.wait:
        log("not waiting: run the same command again to collect finished jobs and resubmit the missing ones")
        return None
    failed = []
    for job, r in jobs:
        try:
            job.result()
            log(f"{r.spec} (seed {r.seed}): finished (job {job.job_id})")
        except Exception as e:  # a failed job: its log is in the submitit folder
            failed.append(r)
            log(f"{r.spec} (seed {r.seed}): FAILED (job {job.job_id}: {type(e).__name__}); see {out / 'submitit'}")
    return _finish(out, failed, log)


def run_child(argv: list[str]) -> int:
    """What a submitit job runs: `python -m roadmap <argv>` (a process of its own, as on local GPUs; the runner
    never imports the CLI)."""
    code = subprocess.call([sys.executable, "-m", "roadmap", *argv])
    if code != 0:
        raise RuntimeError(f"roadmap {' '.join(argv)} exited with {code}")
    return code


def _finish(out: Path, failed: list[PlannedRun], log: Callable[[str], None]) -> Path:
    if failed:
        log(f"{len(failed)} run(s) failed; run the same command again to retry them")
    return out
