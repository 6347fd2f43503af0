"""`roadmap run --jobs N --threads-per-job T`: several runs at once on the CPU, each an ordinary `roadmap run` child
(runner.launchers.children.launch_cpu), with the same run ids and, run for run, the same numbers as one run after
another at the same thread count; one progress line for the whole roadmap; one-line errors for what makes no sense.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
import torch

from reports import load_runs
from reports.elapsed import wall_time_line
from roadmap.cli import build_parser
from roadmap.cli.training import run_options
from runner.devices import cpu_cores, jobs_line, threads_per_job
from runner.launchers.children import child_argv
from runner.launchers.progress import RoadmapProgress
from runner.planning.options import Machine, RunOptions, Selection
from runner.planning.runs import plan

TINY = ["--dataset", "synthetic:train=128,val=32", "--preset", "smoke", "--steps", "resnet50,convnext_tiny",
        "--epochs", "1", "--train-batches", "3", "--val-batches", "1", "--quiet", "--no-report"]
SAME = ("status", "epochs", "val_top1", "val_top5", "train_top1", "best_val_top1", "per_class", "diverged")
"""What a run's result.json holds that does not depend on the clock: equal, run for run."""


def test_the_flags_are_run_options_and_the_default_is_one_job_but_for_the_cpu_preset(monkeypatch):
    help_ = "".join(next(a for a in build_parser()._actions if a.dest == "command").choices["run"]
                    .format_help().split())
    assert "--jobsN" in help_ and "--threads-per-jobT" in help_ and "docs/bench-cpu.md" in help_
    assert (Machine().jobs, Machine().threads_per_job) == (None, None)  # None: the preset's choice, below
    opts = run_options(build_parser().parse_args(["run", "--jobs", "2", "--threads-per-job=1"]), [])
    assert (opts.machine.jobs, opts.machine.threads_per_job) == (2, 1)

    monkeypatch.setattr("runner.devices.cpu_cores", lambda: 4)

    def jobs(*flags: str) -> int:
        return run_options(build_parser().parse_args(["run", *flags]), []).machine.jobs

    assert jobs("--preset", "cpu", "--device", "cpu") == 4  # one run per core: measured fastest, docs/bench-cpu.md
    assert jobs("--preset", "cpu", "--device", "cpu", "--jobs", "1") == 1
    assert jobs("--device", "cpu") == jobs("--preset", "smoke", "--device", "cpu") == 1  # other presets: one at a time
    assert jobs("--preset", "cpu", "--device", "cpu", "--launcher", "gpus") == 1  # other launchers have their own
    assert jobs("--preset", "cpu", "--device", "cpu", "--nproc", "2") == 1
    monkeypatch.setattr("runner.devices.resolve_device", lambda _: torch.device("cuda"))
    assert jobs("--preset", "cpu") == 1  # on a GPU: one run after another


def test_jobs_and_threads_are_not_part_of_a_run_id():
    what = Selection(steps=("resnet50", "convnext_tiny"), seeds=2)
    jobs = RunOptions(selection=what, machine=Machine(jobs=2, threads_per_job=1))
    alone = RunOptions(selection=what)
    info = ("synthetic", 32, 10, 2000)
    assert [r.run_id for r in plan(jobs, *info)] == [r.run_id for r in plan(alone, *info)]


def test_a_child_takes_one_run_and_its_thread_count_not_the_jobs():
    argv = ["run", "--dataset", "cifar10", "--jobs", "2", "--threads-per-job=1", "--seeds", "3", "--out", "x"]
    child = child_argv(argv, "gelu", 2, "cpu", ("--threads-per-job", "1"))
    assert "--threads-per-job=1" not in child and child[:5] == ["run", "--dataset", "cifar10", "--seeds", "3"]
    assert child.count("--jobs") == 1 and child[child.index("--jobs") + 1] == "1"  # one run: no children of its own
    assert child[-4:] == ["--threads-per-job", "1", "--device", "cpu"] and "--no-plan" in child


def test_an_ablation_child_is_a_run_of_one_spec_into_the_ablation_directory():
    argv = ["ablate", "--final", "gelu", "--dataset", "x", "--jobs=2"]
    assert child_argv(argv, "gelu-layer_norm", 0, "cpu", ("--out", "runs/x-ablation")) == [
        "run", "--dataset", "x", "--steps", "gelu-layer_norm", "--only-seed", "0", "--jobs", "1", "--no-report",
        "--no-plan", "--quiet", "--out", "runs/x-ablation", "--device", "cpu"]


def test_threads_default_to_the_cores_shared_out():
    assert threads_per_job(2, 3) == 3 and threads_per_job(1, None) == cpu_cores()
    assert threads_per_job(4 * cpu_cores(), None) == 1
    assert "oversubscribe" in jobs_line(cpu_cores(), 2) and "oversubscribe" not in jobs_line(1, 1)


@pytest.mark.parametrize("argv, message", [
    (["--jobs", "0"], "must be positive"),
    (["--threads-per-job", "0"], "must be positive"),
    (["--jobs", "2", "--nproc", "2"], "do not combine"),
    (["--jobs", "2", "--device", "cuda"], "--launcher gpus --gpus 0,... --per-gpu 2"),
    (["--jobs", "2", "--launcher", "gpus", "--gpus", "0"], "goes with --launcher local"),
])
def test_bad_jobs_are_one_line_and_exit_2(tmp_path, cli, argv, message):
    code, _, err = cli("run", *TINY, "--out", str(tmp_path / "o"), *argv)
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_the_dry_run_says_what_jobs_would_do(tmp_path, cli):
    code, text, _ = cli("run", *TINY, "--dry-run", "--out", str(tmp_path / "o"), "--jobs", "2")
    assert code == 0 and "jobs: 2 runs at a time on the CPU (--jobs 2)" in text
    code, text, _ = cli("run", *TINY, "--dry-run", "--out", str(tmp_path / "o"))
    assert code == 0 and "jobs:" not in text  # one job: the plan as before


def test_the_cpu_preset_trains_one_run_per_core_and_says_so(tmp_path, cli, monkeypatch):
    monkeypatch.setattr("runner.devices.cpu_cores", lambda: 2)
    plan_of = ["run", "--dataset", "synthetic:train=128,val=32", "--preset", "cpu", "--steps", "resnet50",
               "--device", "cpu", "--dry-run", "--out", str(tmp_path / "o")]
    code, text, _ = cli(*plan_of)
    assert code == 0 and "jobs: 2 runs at a time on the CPU (--jobs 2), 1 torch thread(s) each" in text
    assert "--jobs 1 trains one run at a time" in text
    code, text, _ = cli(*plan_of, "--jobs", "1")
    assert code == 0 and "jobs:" not in text


def test_one_progress_line_for_the_whole_roadmap():
    now = [0.0]
    lines: list[str] = []
    p = RoadmapProgress(total=5, work={"a": 1.0, "b": 1.0, "c": 3.0, "d": 3.0}, jobs=2, log=lines.append,
                        clock=lambda: now[0])
    p.started("a")
    p.started("b")
    assert p.line() == "roadmap: 1/5 runs done, 2 running, ETA after the first run"
    now[0] = 60.0
    p.ended("a", True, "a: done")
    # a unit of work a minute per job: c and d, 3 units each, side by side (b's unit is done at that pace)
    assert lines == ["a: done", "roadmap: 2/5 runs done, 1 running, ETA 3m 00s"]
    p.ended("b", False, "b: FAILED")  # no pace from a failed run
    assert lines[-1] == "roadmap: 2/5 runs done, 0 running, 1 failed, ETA 3m 00s"
    screen = io.StringIO()  # on a terminal: one line redrawn in place, the launcher's lines above it
    live = RoadmapProgress(total=2, work={"a": 1.0, "b": 1.0}, log=lambda m: screen.write(m + "\n"), live=True,
                           stream=screen, clock=lambda: now[0])
    live.started("a")
    now[0] = 90.0
    live.ended("a", True, "a: done")
    live.close()
    assert screen.getvalue() == ("\rroadmap: 0/2 runs done, 1 running, ETA after the first run\033[K\r\033[K"
                                 "a: done\n\rroadmap: 1/2 runs done, 0 running, ETA 30 s\033[K\n")


@pytest.mark.slow
def test_two_jobs_give_the_numbers_of_one_run_after_another(tmp_path):
    """Two smoke runs, side by side with one thread each and one after another with one thread: the same run
    directories and, run for run, the same result.json numbers and per-epoch losses, bit for bit."""
    base = [sys.executable, "-m", "roadmap", "run", *TINY, "--threads-per-job", "1"]
    side = subprocess.run([*base, "--jobs", "2", "--out", str(tmp_path / "side")], capture_output=True, text=True)
    assert side.returncode == 0, side.stderr[-2000:]
    one = subprocess.run([*base, "--out", str(tmp_path / "one")], capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-2000:]
    assert "jobs: 2 runs at a time on the CPU (--jobs 2), 1 torch thread(s) each" in side.stdout
    assert "roadmap: 2/2 runs done, 0 running, all ended" in side.stdout
    dirs = sorted(d.name for d in (tmp_path / "one").iterdir() if d.is_dir())
    assert len(dirs) == 2 and dirs == sorted(d.name for d in (tmp_path / "side").iterdir() if d.is_dir() and
                                             d.name != "logs")
    for name in dirs:
        a, b = (json.loads((tmp_path / w / name / "result.json").read_text()) for w in ("side", "one"))
        assert {k: a[k] for k in SAME} == {k: b[k] for k in SAME}, name
        assert a["schema_version"] == 2 and a["finished"] >= json.loads(
            (tmp_path / "side" / name / "config.json").read_text())["created"]
        losses = [[(r["train_loss"], r["val_loss"]) for r in map(json.loads, (tmp_path / w / name / "metrics.jsonl")
                                                                  .read_text().splitlines())] for w in ("side", "one")]
        assert losses[0] == losses[1], name
        assert (tmp_path / "side" / "logs" / f"{name}.log").is_file()
    assert wall_time_line(load_runs(tmp_path / "side")) is not None  # the report's elapsed wall time
    again = subprocess.run([*base, "--jobs", "2", "--out", str(tmp_path / "side")], capture_output=True, text=True)
    assert again.returncode == 0 and "0 of 2 runs to train, 2 at a time" in again.stdout  # nothing trained twice

