"""Files written so that nothing is lost, and read so that one damaged file blocks nothing (docs/records.md).

The base layer under the runner's store (which writes records) and the reports (which read them); imports no
torch. roadmap.schema says what the records hold; this module how they reach the disk. A write goes to a
temporary file `.<name>.<pid>.<random>.tmp` that is synced, size-checked and renamed over the old file, so a
reader sees the old file or the new one; the temporary files of a process that died are removed later.
A full disk or a read-only file system ends the command with one line (exit 2).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, NoReturn

from roadmap.errors import RoadmapError

_TEMP = re.compile(r"^\..+\.(\d+)\.[^.]+\.tmp$")


def fail(message: str) -> NoReturn:
    """Stop the command with `message`: one line that says what to do (the CLI prints it, exit code 2)."""
    raise RoadmapError(message)


class Unreadable(Exception):
    """A record that cannot be read: `str(e)` names the file and says why, `short` says it in a few words."""

    def __init__(self, message: str, short: str):
        super().__init__(message)
        self.short = short


def warn(message: str) -> None:
    """One warning line on stderr."""
    print(f"roadmap: warning: {message}", file=sys.stderr, flush=True)


@contextmanager
def writing(what: str, path: Path, need: int | None = None) -> Iterator[None]:
    """Turn a full disk (ENOSPC, EDQUOT) or a read-only file system (EROFS) while writing `what` to `path` into
    one line that says what, where and how much space is needed."""
    try:
        yield
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise
        if e.errno == errno.EROFS:
            fail(f"cannot write the {what} to {path}: the file system is read-only; make it writable and run the "
                 "same command again (everything written before is kept and resumes)")
        try:
            free = f", {_size(shutil.disk_usage(path.parent).free)} free"
        except OSError:
            free = ""
        size = _size(need) if need is not None else "a few MB"
        fail(f"no space left to write the {what} to {path} (needs {size}{free}); free some space and run the same "
             "command again (everything written before is kept and resumes)")


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 2**10:.1f} KB"


def atomic_write(path: Path, data: bytes | Callable[[IO[bytes]], None], what: str, keep: Path | None = None) -> None:
    """Write `data` (bytes, or a function that writes to a binary file) to `path`: a reader sees the old file or
    the new one, never a torn one. With `keep`, the old file is moved there once the new one is on disk."""
    need = len(data) if isinstance(data, bytes) else None
    with writing(what, path, need):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                if isinstance(data, bytes):
                    f.write(data)
                else:
                    data(f)
                f.flush()
                os.fsync(f.fileno())
            if need is not None and os.path.getsize(tmp) != need:
                fail(f"writing the {what} to {path} stored {os.path.getsize(tmp)} of {need} bytes; the previous "
                     "one is kept: check the disk and run the same command again")
            if keep is not None and path.exists():
                os.replace(path, keep)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def append_line(path: Path, line: str, what: str) -> None:
    """Append one line and sync it (a crash leaves at most a torn last line, which readers drop)."""
    data = (line + "\n").encode()
    with writing(what, path, len(data)), open(path, "ab") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def remove_stale_temps(folder: Path) -> None:
    """Delete the temporary files that processes which no longer run left in `folder` (killed mid-write)."""
    for p in folder.glob(".*.tmp"):
        m = _TEMP.match(p.name)
        if m and not _alive(int(m.group(1))):
            p.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load_json(path: Path) -> Any:
    """Parse one JSON file; Unreadable when it is missing, unreadable or malformed."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise Unreadable(f"{path} is missing", f"{path.name} missing") from None
    except (OSError, UnicodeDecodeError) as e:
        why = getattr(e, "strerror", None) or e
        raise Unreadable(f"cannot read {path}: {why}", f"{path.name} unreadable") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise Unreadable(f"malformed JSON in {path} (line {e.lineno}, column {e.colno})",
                         f"{path.name} is not JSON") from None


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    """The objects of an append-only JSON-lines file. A torn last line (a crash during an append) is dropped
    with a warning; a malformed line before it is Unreadable, naming the file and the line."""
    if not path.is_file():
        return []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise Unreadable(f"cannot read {path}: {e.strerror or e}", f"{path.name} unreadable") from None
    numbered = [(i, line) for i, line in enumerate(lines, 1) if line.strip()]
    rows = []
    for k, (lineno, line) in enumerate(numbered):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if k == len(numbered) - 1:
                warn(f"dropped the torn last line {lineno} of {path} (a write cut short)")
                break
            raise Unreadable(f"malformed JSON in {path} (line {lineno})", f"{path.name} line {lineno} malformed") \
                from None
        if not isinstance(row, dict):
            raise Unreadable(f"malformed record in {path} (line {lineno}): expected a JSON object per line",
                             f"{path.name} line {lineno} malformed")
        rows.append(row)
    return rows


def read_json(path: Path, what_to_do: str) -> Any:
    """Parse one JSON file; a missing or malformed one stops the command, naming the file and saying `what_to_do`."""
    try:
        return load_json(path)
    except Unreadable as e:
        fail(f"{e}: {what_to_do}")


def lock_held(path: Path) -> bool:
    """Whether a process holds the fcntl lock on `path` right now (a run's `lock`: the run is training).

    Only looks: opens the file read-only and never creates it, so it works on a copied, read-only directory."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False  # no lock file: nobody trains this run
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False  # a file system without flock: cannot tell, so do not claim the run is alive
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
