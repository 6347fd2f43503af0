"""Every image of a user's folder checked once, before the first run: all damaged files found in one pass.

    checked = check_images(root, paths, memo_dir, progress=True)
    checked.sizes[path]      # (width, height) of every readable image, from its header
    checked.damaged          # [(path, why)] of those that cannot be read, in path order

Each file's header is read (which finds a zero-byte file, a text file named .png, an unknown format), then the part
a header cannot tell is checked as cheaply as it can be: a JPEG is decoded at 1/8 scale (which still reads the
whole stream, so a truncated one fails), a PNG's chunks and checksums are verified without inflating its pixels,
and any other format (GIF, WebP, BMP, TIFF...) is decoded. Files are checked in threads (PIL decodes without the
GIL).

The result is remembered per folder in the data cache (`folder-checks/`, one JSON file per folder, written
atomically), file by file under its size and modification time: a later command on an unchanged folder checks
nothing again, and one on a changed folder checks only the files that changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

from roadmap.errors import RoadmapError
from roadmap.record_files import atomic_write

MEMO_VERSION = 1
LIST_NAME = "unreadable-images.txt"  # the full list of damaged files, in OUT (or beside the memo)


@dataclass(frozen=True)
class Checked:
    """What the check found: the header size of every readable image, and the damaged files with the reason."""

    sizes: dict[str, tuple[int, int]]  # path -> (width, height)
    damaged: list[tuple[str, str]]  # (path, why), sorted by path
    checked_now: int  # files checked by this call (the rest were remembered)


def check_image(path: str) -> tuple[int, int] | str:
    """(width, height) of a readable image, or why it cannot be read ("empty file", "not an image", "truncated",
    or the decoder's error)."""
    try:
        with Image.open(path) as img:
            size = img.size
            if img.format == "JPEG":
                img.draft(img.mode, (64, 64))  # decode at 1/8 scale: fast, and still reads the whole stream
                img.load()
            elif img.format == "PNG":
                img.verify()  # every chunk and its CRC, without inflating the pixels
            else:
                img.load()
    except Exception as e:  # noqa: BLE001 -- any failure of any decoder means "cannot be read"
        return _why(path, e)
    if min(size) <= 0:
        return "empty image (0 pixels)"
    return size


def _why(path: str, e: Exception) -> str:
    """A damaged file's reason in a few words."""
    text = str(e).splitlines()[0][:80] if str(e) else ""
    if isinstance(e, Image.UnidentifiedImageError):
        return "empty file" if os.path.getsize(path) == 0 else "not an image"
    if "truncated" in text.lower():
        return f"truncated: {text}"
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _stamp(path: str) -> tuple[int, int] | None:
    """(size, mtime in ns) of a file, None when it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def memo_file(memo_dir: Path, root: Path) -> Path:
    """Where the checks of the files under `root` are remembered."""
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:20]
    return memo_dir / f"{digest}.json"


def _read_memo(path: Path, root: Path) -> dict[str, list]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != MEMO_VERSION or data.get("root") != str(root):
        return {}
    files = data.get("files")
    return files if isinstance(files, dict) else {}


def check_images(root: Path, paths: list[str], memo_dir: Path | None, progress: bool = False,
                 threads: int | None = None) -> Checked:
    """Check every file of `paths` (under `root`) as `check_image` does, the remembered ones excepted; remember
    the results in `memo_dir` (None: nothing remembered)."""
    memo_path = memo_file(memo_dir, root) if memo_dir is not None else None
    memo = _read_memo(memo_path, root) if memo_path is not None else {}
    rel = {p: os.path.relpath(p, root) for p in paths}
    stamps = {p: _stamp(p) for p in paths}
    results: dict[str, tuple[int, int] | str] = {}
    todo = []
    for p in paths:
        old = memo.get(rel[p])
        if stamps[p] is not None and isinstance(old, list) and len(old) == 3 and tuple(old[:2]) == stamps[p]:
            results[p] = tuple(old[2]) if isinstance(old[2], list) else str(old[2])
        elif stamps[p] is None:
            results[p] = "cannot be opened"
        else:
            todo.append(p)
    if todo:
        workers = threads or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(workers) as pool:
            found = pool.map(check_image, todo, chunksize=16)
            for p, r in tqdm(zip(todo, found, strict=True), total=len(todo), desc="checking images", unit="img",
                             disable=not progress, leave=False):
                results[p] = r
    new_memo = {rel[p]: [*stamps[p], list(r) if isinstance(r, tuple) else r]
                for p, r in results.items() if stamps[p] is not None}
    if memo_path is not None and (todo or new_memo != memo):
        _write_memo(memo_path, root, new_memo)
    sizes = {p: r for p, r in results.items() if isinstance(r, tuple)}
    damaged = sorted((p, r) for p, r in results.items() if isinstance(r, str))
    return Checked(sizes, damaged, len(todo))


def _write_memo(path: Path, root: Path, files: dict[str, list]) -> None:
    """Best effort: a cache that cannot be written only means the next command checks again."""
    text = json.dumps({"version": MEMO_VERSION, "root": str(root), "files": files}, separators=(",", ":"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, text.encode(), "image check")
    except (OSError, RoadmapError):
        pass


def write_list(path: Path, root: Path, damaged: list[tuple[str, str]]) -> Path:
    """The full list of damaged files (path, a tab, why; one a line), written atomically; returns `path`."""
    lines = [f"# {len(damaged)} unreadable image file(s) under {root}: path<TAB>why"]
    lines += [f"{p}\t{why}" for p, why in damaged]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, ("\n".join(lines) + "\n").encode(), "list of unreadable images")
    return path


def damaged_line(root: Path, total: int, damaged: list[tuple[str, str]], listed: Path, limit: int = 3) -> str:
    """The one line that says how many files are damaged, names the first few and where the whole list is."""
    names = [f"{os.path.relpath(p, root)} ({why.split(':')[0]})" for p, why in damaged[:limit]]
    more = f" and {len(damaged) - limit} more" if len(damaged) > limit else ""
    return (f"cannot read image files: {len(damaged)} of {total} in {str(root)!r} are damaged ({', '.join(names)}"
            f"{more}); the full list is in {str(listed)!r}: remove or replace them, or pass --skip-unreadable to "
            "train on the rest")
