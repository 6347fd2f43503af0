"""Fault injection: damage the records at a chosen moment, then check that the next command completes, that every
finished result is unchanged, and that the message is one clear line (issue 14; docs/records.md, "Results are never
lost").

Training faults use real runs of the smoke preset on synthetic data (a few seconds each); kills happen in a child
process (SIGKILL at a patched write); report faults use the 17-step fixture of test_reports.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_reports import run_dir_name, write_fixture

from reports import build_report

RUN = ["run", "--dataset", "synthetic:train=256,val=64", "--preset", "smoke", "--quiet", "--no-report",
       "--train-batches", "2", "--val-batches", "1"]
ENV = dict(os.environ, PYTHONUNBUFFERED="1")


def child(*argv: str, inject: str = "") -> subprocess.CompletedProcess:
    """`roadmap ARGV` in a child process, after running `inject` there (a patch that kills it at some write)."""
    code = f"{inject}\nfrom roadmap.cli import main\nraise SystemExit(main({list(argv)!r}))\n"
    return subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=600)


def kill_at(name: str, nth: int) -> str:
    """Patch: SIGKILL this process at the `nth` rename onto a file called `name` (the file is written, not in place)."""
    return f"""
import os, signal
_replace, _seen = os.replace, [0]
def _kill(src, dst):
    if os.path.basename(dst) == {name!r}:
        _seen[0] += 1
        if _seen[0] == {nth}:
            os.kill(os.getpid(), signal.SIGKILL)
    return _replace(src, dst)
os.replace = _kill
"""


def run_dirs(out: Path) -> dict[str, Path]:
    """step -> run directory, from plan.json."""
    return {r["step"]: out / r["dir"] for r in json.loads((out / "plan.json").read_text())["runs"]}


def load_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob(".*.tmp"))


def error_line(err: str) -> str:
    """The one `roadmap: error:` line of stderr (and no traceback)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("roadmap: error:")]
    assert len(lines) == 1, err
    return lines[0]


def interrupt_after(monkeypatch, saves: int) -> None:
    """Stop training (Ctrl-C) once `saves` checkpoints are on disk."""
    from runner.fitting.checkpoint import CheckpointWriter

    real, done = CheckpointWriter.save, []

    def save(self, state):
        real(self, state)
        done.append(1)
        if len(done) == saves:
            self.wait()
            raise KeyboardInterrupt

    monkeypatch.setattr(CheckpointWriter, "save", save)


def fail_fsync(monkeypatch, match, nth: int, code: int = errno.ENOSPC) -> None:
    """The `nth` fsync of a file whose path `match`es fails with `code` (a full disk or a read-only file system)."""
    real, seen = os.fsync, []

    def fsync(fd):
        if match(os.readlink(f"/proc/self/fd/{fd}")):
            seen.append(1)
            if len(seen) == nth:
                raise OSError(code, os.strerror(code))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.fixture
def fixture_dir(tmp_path) -> Path:
    return write_fixture(tmp_path / "fashion-mnist")


def summary(cli, out: Path) -> dict[str, dict]:
    code, text, err = cli("results", str(out), "--format", "json")
    assert code == 0, err
    return {row["step"]: row for row in json.loads(text)}


def others(rows: dict[str, dict], step: str) -> dict[str, tuple]:
    """Each step's own results but `step`'s (the Δ of the step after it depends on it)."""
    own = ("n", "seeds", "top1_mean", "top1_std", "train_top1", "images_per_s", "wall_seconds", "status")
    return {s: tuple(r[k] for k in own) for s, r in rows.items() if s != step}


# ------------------------------------------------------------------------------------------------ kills


def test_sigkill_during_a_checkpoint_write(tmp_path, cli):
    out = tmp_path / "out"
    args = [*RUN, "--steps", "gelu", "--epochs", "3", "--out", str(out)]
    killed = child(*args, inject=kill_at("checkpoint.pt", 2))  # epoch 2's checkpoint written, not yet in place
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run = run_dirs(out)["gelu"]
    assert temps(run)  # the half-done write
    code, text, err = cli(*args)
    assert code == 0, err
    assert "resuming after epoch 1/3" in text
    assert json.loads((run / "result.json").read_text())["epochs"] == 3
    assert [r["epoch"] for r in load_jsonl(run / "metrics.jsonl")] == [1, 2, 3]
    assert temps(run) == [] and not list(run.glob("checkpoint*"))


def test_sigkill_during_a_metrics_append(tmp_path, cli):
    out = tmp_path / "out"
    args = [*RUN, "--steps", "gelu", "--epochs", "3", "--out", str(out)]
    inject = """
import json, os, signal
from runner.store import RunDir
_real, _seen = RunDir.append_metrics, [0]
def _append(self, row):
    _seen[0] += 1
    if _seen[0] == 2:  # epoch 2's line, cut short
        with open(self.metrics, "a") as f:
            f.write(json.dumps(row)[:20])
        os.kill(os.getpid(), signal.SIGKILL)
    _real(self, row)
RunDir.append_metrics = _append
"""
    killed = child(*args, inject=inject)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run = run_dirs(out)["gelu"]
    code, text, err = cli("results", str(out))
    assert code == 0 and "interrupted after epoch 1/3" in text, err
    assert f"dropped the torn last line 2 of {run / 'metrics.jsonl'}" in err and len(err.splitlines()) == 1, err
    code, text, err = cli(*args)
    assert code == 0 and "resuming after epoch 1/3" in text, err
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]  # the torn line is gone


def test_sigkill_during_the_report(fixture_dir, cli):
    build_report(fixture_dir)
    killed = child("report", str(fixture_dir), inject=kill_at("report.md", 1))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert temps(fixture_dir)  # report.md written beside, never renamed
    code, text, err = cli("report", str(fixture_dir))
    assert code == 0, err
    assert "## Results per step" in (fixture_dir / "report.md").read_text()
    assert temps(fixture_dir) == []
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in fixture_dir.glob("*.png"))


# ------------------------------------------------------------------------------------------------ checkpoints


@pytest.mark.parametrize("damage", ["truncated", "zero-byte"])
def test_a_damaged_checkpoint_is_set_aside(tmp_path, cli, monkeypatch, damage):
    """training_recipe finishes; gelu stops after 2 of 3 epochs; then its checkpoint is damaged. The next run
    says so in one line, moves the file aside, resumes from the checkpoint before it (or starts gelu over when
    that one is damaged too) and never retrains training_recipe."""
    out = tmp_path / "out"
    args = [*RUN, "--steps", "training_recipe,gelu", "--epochs", "3", "--out", str(out)]
    interrupt_after(monkeypatch, 5)
    code, _, _ = cli(*args)
    monkeypatch.undo()
    assert code == 130
    finished, run = run_dirs(out)["training_recipe"], run_dirs(out)["gelu"]
    before = (finished / "result.json").read_bytes(), (finished / "result.json").stat().st_mtime_ns
    checkpoint = run / "checkpoint.pt"
    if damage == "truncated":
        checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    else:
        for p in run.glob("checkpoint*.pt"):
            p.write_bytes(b"")
    code, text, err = cli(*args)
    assert code == 0, err
    warnings = [line for line in text.splitlines() if "is unreadable" in line]
    assert warnings and f"{checkpoint} is unreadable" in warnings[0], text
    assert list(run.glob("checkpoint.pt.corrupt-*"))
    if damage == "truncated":
        assert "resuming after epoch 1/3" in text and "moved to checkpoint.pt.corrupt-" in warnings[0]
    else:
        assert "resuming after" not in text and "starting the run over" in warnings[-1]
    assert json.loads((run / "result.json").read_text())["epochs"] == 3
    assert [r["epoch"] for r in load_jsonl(run / "metrics.jsonl")] == [1, 2, 3]
    assert "training_recipe (seed 0): done earlier, reused" in text
    assert ((finished / "result.json").read_bytes(), (finished / "result.json").stat().st_mtime_ns) == before


class _RunsCode:
    """A pickled callable: unpickling it calls `os.system`, as a checkpoint made to attack a shared folder would."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_carrying_code_is_refused(tmp_path):
    """checkpoint.pt carries a pickled callable beside a valid-looking state: it is not unpickled (no code runs), it
    is refused in one line and moved aside like a damaged one, and the run resumes from the checkpoint before it,
    whose real training state (AdamW, EMA, GradScaler, history) reads back with weights_only=True."""
    import torch

    from runner.fitting.checkpoint import load_checkpoint
    from runner.store import RunDir

    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999))
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    good = {"model": model.state_dict(), "optimizer": opt.state_dict(), "ema": model.state_dict(), "epoch": 1,
            "updates": 1, "history": [{"epoch": 1, "train_loss": 0.5, "val_top1": 12.5}], "wall": 1.5,
            "scaler": scaler.state_dict()}
    torch.save(good, run.previous)
    marker = tmp_path / "code-ran"
    torch.save({**good, "epoch": 2, "history": [*good["history"], _RunsCode(marker)]}, run.checkpoint)
    logged: list[str] = []
    state = load_checkpoint(run, torch.device("cpu"), logged.append, "gelu (seed 0)")
    assert not marker.exists()
    assert state is not None and state["epoch"] == 1 and state["history"] == good["history"]
    assert state["scaler"]["scale"] == 1024.0 and state["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert len(logged) == 1 and "\n" not in logged[0], logged
    assert f"{run.checkpoint} is unreadable (it holds objects other than tensors and plain values" in logged[0]
    assert "resuming from the one before it" in logged[0]
    assert not run.checkpoint.exists() and list(run.root.glob("checkpoint.pt.corrupt-*"))


# ------------------------------------------------------------------------------------------------ damaged records


def test_a_torn_metrics_line_blocks_nothing(fixture_dir, cli):
    before = summary(cli, fixture_dir)
    torn = fixture_dir / run_dir_name("gelu", 0, "smoke") / "metrics.jsonl"
    torn.write_text(torn.read_text() + '{"epoch": 11, "val_to')
    for command in ("results", "report"):
        code, _, err = cli(command, str(fixture_dir))
        assert code == 0 and err.count("torn last line") == 1 and str(torn) in err, err
    assert summary(cli, fixture_dir) == before  # gelu seed 0 finished: the torn line changes nothing

    broken = fixture_dir / run_dir_name("gelu", 1, "smoke") / "metrics.jsonl"
    lines = broken.read_text().splitlines()
    broken.write_text("\n".join([lines[0], lines[1][:10], *lines[2:]]) + "\n")  # not the last line: an error
    code, text, _ = cli("results", str(fixture_dir))
    assert code == 0 and "unreadable (metrics.jsonl line 2 malformed)" in text
    assert f"malformed JSON in {broken} (line 2)" in text  # the footnote
    after = summary(cli, fixture_dir)
    assert others(after, "gelu") == others(before, "gelu")


def test_a_garbage_result_json(fixture_dir, cli):
    before = summary(cli, fixture_dir)
    garbage = fixture_dir / run_dir_name("gelu", 1, "smoke") / "result.json"
    garbage.write_bytes(b"\x00\x13garbage{")
    code, text, err = cli("results", str(fixture_dir))
    assert code == 0, err
    assert "unreadable (result.json is not JSON)" in text and f"malformed JSON in {garbage}" in text
    code, _, err = cli("report", str(fixture_dir))
    assert code == 0, err
    assert f"malformed JSON in {garbage}" in (fixture_dir / "report.md").read_text()
    after = summary(cli, fixture_dir)
    assert others(after, "gelu") == others(before, "gelu")
    assert after["gelu"]["n"] == 1 and "unreadable" in after["gelu"]["status"]


def test_a_missing_config_json(fixture_dir, cli):
    lost = fixture_dir / run_dir_name("gelu", 0, "smoke") / "config.json"
    lost.unlink()
    code, text, err = cli("results", str(fixture_dir))
    assert code == 0, err
    assert "unreadable (config.json missing)" in text and f"{lost} is missing" in text


def test_nothing_readable_is_one_error(fixture_dir, cli):
    for config in fixture_dir.glob("*/config.json"):
        config.write_text("{")
    code, _, err = cli("results", str(fixture_dir))
    assert code == 2 and "no run record" in error_line(err)


def test_the_runner_skips_a_garbage_result_and_restores_a_lost_config(tmp_path, cli):
    out = tmp_path / "out"
    args = [*RUN, "--steps", "training_recipe,gelu", "--epochs", "1", "--out", str(out)]
    assert cli(*args)[0] == 0
    dirs = run_dirs(out)
    garbage = dirs["training_recipe"] / "result.json"
    garbage.write_text("not json")
    config = json.loads((dirs["gelu"] / "config.json").read_text())
    (dirs["gelu"] / "config.json").unlink()
    gelu_result = (dirs["gelu"] / "result.json").read_bytes()
    code, text, err = cli(*args)
    assert code == 0, err
    assert f"malformed JSON in {garbage}" in text and "not retrained" in text
    assert garbage.read_text() == "not json" and not (dirs["training_recipe"] / "checkpoint.pt").exists()
    assert "gelu (seed 0): config.json was missing; written again" in text
    restored = json.loads((dirs["gelu"] / "config.json").read_text())
    assert {k: v for k, v in restored.items() if k != "created"} == {k: v for k, v in config.items() if k != "created"}
    assert (dirs["gelu"] / "result.json").read_bytes() == gelu_result
    code, text, _ = cli("results", str(out))
    assert code == 0 and "unreadable (result.json is not JSON)" in text


# ------------------------------------------------------------------------------------------------ locks


def test_a_stale_lock_from_a_dead_process(tmp_path, cli):
    """A process that held a run's lock and was killed mid-write: its lock and its half-written file are left.
    The run counts as interrupted, not running; the next run takes it over and cleans up."""
    out = tmp_path / "out"
    args = [*RUN, "--steps", "gelu", "--epochs", "1", "--out", str(out)]
    from runner.planning.options import RunOptions, Selection, Training
    from runner.planning.runs import plan

    opts = RunOptions(Selection(dataset="synthetic:train=256,val=64", steps=("gelu",)),
                      Training(preset="smoke", epochs=1, train_batches=2, val_batches=1))
    run = out / plan(opts, "synthetic:train=256,val=64", 32, 10, 256)[0].run_id
    run.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", f"""
import fcntl, os, sys, time
fd = os.open({str(run / "lock")!r}, os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, f"{{os.getpid()}}\\n".encode())
with open(os.path.join({str(run)!r}, f".checkpoint.pt.{{os.getpid()}}.abc123.tmp"), "wb") as f:
    f.write(b"half a checkpoint")
print("held", flush=True)
time.sleep(600)
"""], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    (run / "config.json").write_text(json.dumps({"step": "gelu", "seed": 0}))
    code, text, _ = cli("results", str(out))
    assert code == 0 and "interrupted" in text and "running" not in text
    code, text, err = cli(*args)
    assert code == 0 and "another process" not in text, err
    assert json.loads((run / "result.json").read_text())["status"] == "done"
    assert temps(run) == []


def test_two_concurrent_runs_on_one_directory(tmp_path):
    """Two real `roadmap run` processes on one --out: every run is trained once, by one of them; the second skips
    what the first holds and trains what is left; no record is damaged."""
    out = tmp_path / "out"
    steps = ["training_recipe", "gelu", "layer_norm"]
    argv = [*RUN, "--steps", ",".join(steps), "--epochs", "3", "--out", str(out)]
    slow = """
import time
from runner.fitting.checkpoint import CheckpointWriter
_real = CheckpointWriter.save
def _save(self, state):
    time.sleep(4)  # the first process's epochs take longer, so that the second starts while it trains
    _real(self, state)
CheckpointWriter.save = _save
"""
    code = f"{slow}\nfrom roadmap.cli import main\nraise SystemExit(main({argv!r}))\n"
    first = subprocess.Popen([sys.executable, "-c", code], env=ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    seen = [first.stdout.readline()]
    while "epoch 1/3" not in seen[-1]:  # the first process holds training_recipe's lock now
        assert seen[-1], "".join(seen)
        seen.append(first.stdout.readline())
    second = child(*argv)
    rest, _ = first.communicate(timeout=600)
    texts = ["".join(seen) + rest, second.stdout]
    assert first.returncode == 0 and second.returncode == 0, texts + [second.stderr]
    assert "training_recipe (seed 0): another process is training it; skipped" in texts[1]
    for step in steps:
        trained = sum(t.count(f"{step} (seed 0): epoch 1/3") for t in texts)
        assert trained == 1, (step, texts)
    dirs = run_dirs(out)
    for step in steps:
        assert json.loads((dirs[step] / "result.json").read_text())["status"] == "done"
        assert [r["epoch"] for r in load_jsonl(dirs[step] / "metrics.jsonl")] == [1, 2, 3]
        assert temps(dirs[step]) == []
    assert any(f"{s} (seed 0): done, val top-1" in texts[1] for s in steps[1:])  # the second one did work too


# ------------------------------------------------------------------------------------------------ full disk


@pytest.mark.parametrize("kind, code", [("checkpoint", errno.ENOSPC), ("metrics", errno.ENOSPC),
                                        ("metrics", errno.EROFS)])
def test_a_full_disk_while_training(tmp_path, cli, monkeypatch, kind, code):
    """The second epoch's checkpoint or metrics line cannot be written: one line, exit 2; the first epoch is kept
    and the run resumes from it once there is space."""
    out = tmp_path / "out"
    args = [*RUN, "--steps", "gelu", "--epochs", "3", "--out", str(out)]
    name = "/.checkpoint.pt." if kind == "checkpoint" else "/metrics.jsonl"
    fail_fsync(monkeypatch, lambda path: name in path if kind == "checkpoint" else path.endswith(name), 2, code)
    status, _, err = cli(*args)
    monkeypatch.undo()
    line = error_line(err)
    assert status == 2, err
    run = run_dirs(out)["gelu"]
    target = run / ("checkpoint.pt" if kind == "checkpoint" else "metrics.jsonl")
    assert str(target) in line and "run the same command again" in line, line
    assert ("read-only" in line) if code == errno.EROFS else ("no space left" in line and "needs" in line), line
    assert temps(run) == []
    status, text, err = cli(*args)
    assert status == 0 and "resuming after epoch 1/3" in text, err
    assert [r["epoch"] for r in load_jsonl(run / "metrics.jsonl")] == [1, 2, 3]


def test_a_full_disk_while_writing_the_report(fixture_dir, cli, monkeypatch):
    build_report(fixture_dir)
    before = (fixture_dir / "report.md").read_bytes()
    fail_fsync(monkeypatch, lambda path: "/.report.md." in path, 1)
    code, _, err = cli("report", str(fixture_dir))
    monkeypatch.undo()
    assert code == 2 and "no space left" in error_line(err) and str(fixture_dir / "report.md") in err, err
    assert (fixture_dir / "report.md").read_bytes() == before and temps(fixture_dir) == []
    assert cli("report", str(fixture_dir))[0] == 0

