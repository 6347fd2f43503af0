"""The result store: one directory per run, named by what produced it, written so nothing is ever lost.

Layout: docs/records.md; what the files hold: roadmap.schema. Every write is atomic (temp file + rename,
roadmap.record_files) or an append of whole lines; a file lock keeps two processes from training the same run.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from roadmap import schema
from roadmap.errors import RoadmapError
from roadmap.record_files import Unreadable, append_line, atomic_write, lock_held, remove_stale_temps
from roadmap.schema import CONFIG, METRICS, RESULT, EpochMetrics, Plan, Record, RunConfig, RunResult


def atomic_write_bytes(path: Path, data: bytes, what: str = "file", keep: Path | None = None) -> None:
    """Write `data` to `path` so that a reader sees the old file or the new one, never a torn one (see
    roadmap.record_files.atomic_write: synced, size-checked, a full disk is one line)."""
    atomic_write(path, data, what, keep)


def write_record(path: Path, record: Record) -> None:
    """Write a record (config.json, result.json, plan.json) atomically, as roadmap.schema formats it."""
    atomic_write_bytes(path, record.to_json().encode(), path.name)


def write_plan(out: Path, plan: Plan) -> None:
    """Write `out/plan.json`: what this run of the command means to produce."""
    write_record(out / schema.PLAN, plan)


def run_id(spec: str, seed: int, identity: dict[str, Any]) -> str:
    """`<spec>-s<seed>-<10 hex of sha256(identity)>`: readable, and unique to what produced the run."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
    safe = re.sub(r"[^A-Za-z0-9_+\-]", "_", spec)
    if len(safe) > 120:  # a long reordered spec: keep the name well under file-system limits (the hash is unique)
        safe = safe[:120]
    return f"{safe}-s{seed}-{digest}"


def ensure_writable(out: Path) -> Path:
    """Create `out` if needed and check that we can write there (a clear error otherwise)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()  # a unique name: two commands may start on one --out
    except OSError as e:
        raise RoadmapError(f"cannot write to --out {str(out)!r} ({e.strerror}); choose a writable directory") from None
    return out


class RunDir:
    """One run's directory: config.json, metrics.jsonl, checkpoint.pt, result.json, lock."""

    def __init__(self, root: Path):
        self.root = root
        self.config = root / CONFIG
        self.metrics = root / METRICS
        self.checkpoint = root / "checkpoint.pt"
        self.previous = root / "checkpoint.prev.pt"
        self.weights = root / "model.pt"
        self.result = root / RESULT
        self.lock_path = root / "lock"

    @property
    def done(self) -> bool:
        return self.result.exists()

    def read_config(self) -> RunConfig:
        try:
            return schema.read_config(self.config)
        except Unreadable as e:
            raise RoadmapError(f"{e}: delete it to write it again") from None

    def write_config(self, config: RunConfig) -> None:
        write_record(self.config, config)

    def read_result(self) -> RunResult:
        try:
            return schema.read_result(self.result)
        except Unreadable as e:
            raise RoadmapError(f"{e}: delete it to train that run again") from None

    def write_result(self, result: RunResult) -> None:
        write_record(self.result, result)

    def read_metrics(self) -> list[EpochMetrics]:
        """The finished epochs (a torn last line dropped with a warning)."""
        try:
            return schema.read_metrics(self.metrics)
        except Unreadable as e:
            raise RoadmapError(f"{e}: delete that line or the file to redo the run") from None

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Replace metrics.jsonl with `rows` (on resume: the history the checkpoint holds, which also drops a
        line torn by a crash); each row as a roadmap.schema.EpochMetrics."""
        lines = "".join(EpochMetrics(**r).to_line() + "\n" for r in rows)
        atomic_write_bytes(self.metrics, lines.encode(), "metrics")

    def append_metrics(self, row: dict[str, Any]) -> None:
        """Append one finished epoch (a roadmap.schema.EpochMetrics as a dict) to metrics.jsonl."""
        append_line(self.metrics, EpochMetrics(**row).to_line(), "metrics line")

    def save_checkpoint(self, data: bytes) -> None:
        """Write checkpoint.pt; the one it replaces stays as checkpoint.prev.pt until the next is on disk."""
        atomic_write_bytes(self.checkpoint, data, "checkpoint", keep=self.previous)

    def checkpoints(self) -> list[Path]:
        """The checkpoints to resume from, newest first."""
        return [p for p in (self.checkpoint, self.previous) if p.exists()]

    def set_aside(self, path: Path) -> Path:
        """Move an unreadable file out of the way (`<name>.corrupt-<time>`), kept for inspection."""
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(path, aside)
        return aside

    @contextmanager
    def lock(self) -> Iterator[bool]:
        """Yield True when this process holds the run's lock, False when another process trains it.

        The lock is an fcntl lock on `lock`: the OS releases it when its holder dies, even by SIGKILL.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    yield False
                    return
                raise
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            remove_stale_temps(self.root)  # left by a holder killed mid-write
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def is_locked(self) -> bool:
        """Whether another process holds the lock right now."""
        return lock_held(self.lock_path)
