"""Where dataset archives live on disk, and how one becomes an extracted, checked folder there.

Where data comes from, in order: `data_dir` if given (the extracted folder, its parent, or the archive in it), then the
cache (`default_cache_dir()`, i.e. $ROADMAP_DATA or ~/.cache/convnext-roadmap), then a download into `data_dir` or the
cache (unless downloading is off). Archives are checked against their published size and every checksum we know for
sure; where no published sha256 exists, the sha256 of the first good download is recorded next to the archive
(`<archive>.sha256`) and later copies are checked against it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from roadmap.errors import RoadmapError
from runner.data.catalog import ARCHIVES
from runner.data.download import check_file, download, extract
from runner.data.splits import PathLike

CACHE_ENV = "ROADMAP_DATA"
MIRROR_ENV = "ROADMAP_MIRROR"  # base URL of a local mirror holding the archives under their usual file names


class DataMissing(RoadmapError):
    """A data set is not on disk and downloading is off: a dry run then plans it from the catalog instead.

    `where` is the folder a download would go to (--data-dir, or the cache)."""

    def __init__(self, message: str, where: Path) -> None:
        super().__init__(message)
        self.where = where


def default_cache_dir() -> Path:
    """Where downloads and extracted datasets live: $ROADMAP_DATA, else ~/.cache/convnext-roadmap."""
    env = os.environ.get(CACHE_ENV, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "convnext-roadmap"


def cache_root(cache_dir: PathLike) -> Path:
    """`cache_dir` when given (a user's override), else `default_cache_dir()`."""
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def archive_url(archive: str) -> str:
    """Where to download `archive` (a key of ARCHIVES) from: $ROADMAP_MIRROR when set, else its publisher."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    return f"{mirror.rstrip('/')}/{archive}" if mirror else ARCHIVES[archive].url


def _recorded_sha256(root: Path, archive: str) -> str | None:
    """The sha256 recorded after the first good download of `archive` into `root`, if any."""
    try:
        text = (root / f"{archive}.sha256").read_text().split()
    except OSError:
        return None
    return text[0].lower() if text and len(text[0]) == 64 else None


def _record_sha256(root: Path, archive: str, digest: str) -> None:
    """Best effort: a read-only --data-dir simply gets no record."""
    try:
        (root / f"{archive}.sha256").write_text(f"{digest}  {archive}\n")
    except OSError:
        pass


def fetch_archive(
    dataset: str,
    archive: str,
    folder: str,
    complete: Callable[[Path], bool],
    data_dir: PathLike,
    cache_dir: PathLike,
    download_ok: bool,
) -> Path:
    """The extracted `folder` of `archive` (a path for which `complete` holds), downloading/extracting as needed.

    `data_dir` may be the extracted folder itself or a folder holding it or the archive; without it the cache is
    used. A download goes into `data_dir` when given, else into the cache.
    """
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            raise RoadmapError(
                f"--data-dir {str(root)!r} does not exist: pass the folder holding {archive} or its extracted {folder}/"
            )
        if complete(root):
            return root
    else:
        root = cache_root(cache_dir)
    target = root / folder
    if complete(target):
        return target

    recorded = _recorded_sha256(root, archive)
    path, digest, fresh = _archive_file(dataset, archive, root, recorded, download_ok)
    try:
        extract(path, root)
    except RoadmapError:
        if fresh:
            path.unlink(missing_ok=True)
        raise
    if not complete(target):
        raise RoadmapError(f"{archive} did not unpack into a complete {str(target)!r}: is it the right archive?")
    if recorded is None:
        _record_sha256(root, archive, digest)
    return target


def _archive_file(
    dataset: str, archive: str, root: Path, recorded: str | None, download_ok: bool
) -> tuple[Path, str | None, bool]:
    """`archive` in `root`, checked, or downloaded there: (its path, its sha256, whether it was just downloaded).

    `recorded` is the sha256 of an earlier good download, checked when no published one exists.
    """
    entry, url, path = ARCHIVES[archive], archive_url(archive), root / archive
    sha256 = entry.sha256 or recorded
    if path.is_file():
        problem, digest = check_file(path, sha256=sha256, md5=entry.md5, size=entry.size)
        if problem:
            raise RoadmapError(f"{str(path)!r} is not the published {archive} ({problem}): delete it and rerun")
        return path, digest, False
    if not download_ok:
        raise DataMissing(
            f"{dataset} is not in {str(root)!r} and downloading is off: download {url}, then pass --data-dir DIR "
            "(the folder holding the archive or its extracted contents)", root
        )
    try:
        digest = download(url, path, sha256, entry.size, md5=entry.md5)
    except RoadmapError as e:
        if recorded and not entry.sha256 and "is corrupt" in str(e):
            record = str(root / f"{archive}.sha256")
            raise RoadmapError(f"{e} (checked against {record!r}; delete it if the archive changed upstream)") from None
        raise
    return path, digest, True
