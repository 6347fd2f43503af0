"""The result store: one directory per run, named by what produced it, written so nothing is ever lost.

Layout and file formats: docs/records.md. Every write is atomic (temp file + rename) or an append of whole
lines; a file lock keeps two processes from training the same run.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from roadmap.errors import RoadmapError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a reader sees the old file or the new one, never a torn one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        message = f"{path} is not valid JSON ({e.msg} at line {e.lineno}); delete it to redo that run"
        raise RoadmapError(message) from None


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
        probe = out / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise RoadmapError(f"cannot write to --out {str(out)!r} ({e.strerror}); choose a writable directory") from None
    return out


class RunDir:
    """One run's directory: config.json, metrics.jsonl, checkpoint.pt, result.json, lock."""

    def __init__(self, root: Path):
        self.root = root
        self.config = root / "config.json"
        self.metrics = root / "metrics.jsonl"
        self.checkpoint = root / "checkpoint.pt"
        self.weights = root / "model.pt"
        self.result = root / "result.json"
        self.lock_path = root / "lock"

    @property
    def done(self) -> bool:
        return self.result.exists()

    def read_result(self) -> dict[str, Any]:
        return read_json(self.result)

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics.exists():
            return []
        rows = []
        for line in self.metrics.read_text().splitlines():
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:  # a line torn by a crash: the checkpoint's history is the truth
                    break
        return rows

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Replace metrics.jsonl with `rows` (on resume: the history the checkpoint holds)."""
        atomic_write_bytes(self.metrics, "".join(json.dumps(r) + "\n" for r in rows).encode())

    def append_metrics(self, row: dict[str, Any]) -> None:
        with open(self.metrics, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())

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
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def is_locked(self) -> bool:
        """Whether another process holds the lock right now."""
        if not self.lock_path.exists():
            return False
        with self.lock() as mine:
            return not mine
