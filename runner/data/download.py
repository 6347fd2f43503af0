"""Download and unpack dataset archives with errors a user can act on.

    sha = download(url, cache / "imagenette2-160.tgz", sha256=None, size=99003388)
    extract(cache / "imagenette2-160.tgz", cache)

torchvision's own helpers print tracebacks on failure; these raise `RoadmapError` with one line that says what to do
(retry, or fetch the file by hand and pass --data-dir), which the CLI prints before exiting with code 2.

- A download streams into `<dest>.part` and is renamed into place only after its size and checksums match, so a
  half-written archive is never mistaken for a whole one. An interrupted http(s) download is resumed with a Range
  request on the next call; other schemes (file://) restart.
- Extraction goes into a temporary folder next to the destination, refuses members that would land outside it
  (absolute paths, `..`, links pointing out), then moves the top-level entries into place.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from http.client import HTTPException
from pathlib import Path
from typing import Any

from tqdm import tqdm

from roadmap.errors import RoadmapError

TIMEOUT_S = 60.0  # per socket operation, not per download: a stalled connection fails, a slow one does not
CHUNK = 1 << 20
USER_AGENT = "convnext-roadmap/0.1 (python-urllib)"


def _by_hand(name: str, url: str) -> str:
    return f"download it from {url} and pass --data-dir DIR (the folder holding {name} or its extracted contents)"


def _unwritable(path: Path, e: OSError) -> RoadmapError:
    where = str(path)
    return RoadmapError(f"cannot write {where!r} ({e.strerror}): pass a writable --data-dir DIR or set ROADMAP_DATA")


def file_digests(path: Path) -> dict[str, str]:
    """The sha256 and md5 hex digests of a file, computed in one pass (archives can be 1.5 GB)."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            sha.update(block)
            md5.update(block)
    return {"sha256": sha.hexdigest(), "md5": md5.hexdigest()}


def check_file(
    path: Path, *, sha256: str | None = None, md5: str | None = None, size: int | None = None
) -> tuple[str | None, str | None]:
    """(problem, sha256): how `path` differs from the expected size/checksums as a short phrase (None if it matches)
    and its sha256 hex digest (None if the size was already wrong, so the file was not read).

    Hashes the file once for both checksums; used on fresh downloads and on archives a user dropped into --data-dir.
    """
    got = path.stat().st_size
    if size is not None and got != size:
        return f"{got} bytes instead of {size}", None
    digests = file_digests(path)
    for algo, want in (("sha256", sha256), ("md5", md5)):
        if want is not None and digests[algo] != want.lower():
            return f"{algo} {digests[algo][:16]}... instead of {want[:16]}...", digests["sha256"]
    return None, digests["sha256"]


def download(
    url: str, dest: str | Path, sha256: str | None = None, size: int | None = None, *, md5: str | None = None
) -> str:
    """Fetch `url` into `dest` and return the file's sha256 hex digest.

    Streams into `<dest>.part` and renames it to `dest` only after the byte count and the given checksums match. On a
    mismatch the file is deleted (retrying cannot help with a corrupt partial file). On a dropped connection the
    `.part` file is kept and the next call resumes it with an HTTP Range request when the server honours one.
    Offline or unreachable hosts give a RoadmapError that tells the user to fetch the file by hand.
    """
    dest = Path(dest)
    name = dest.name
    part = dest.with_name(name + ".part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _unwritable(dest.parent, e) from None

    resumable = urllib.parse.urlsplit(url).scheme in ("http", "https")
    start = part.stat().st_size if part.exists() and resumable else 0
    if size is not None and start > size:  # cannot be a prefix of the right file
        start = 0
    if not (size is not None and start == size):  # a complete .part from an earlier run only needs checking
        _stream(url, part, name, start)

    problem, digest = check_file(part, sha256=sha256, md5=md5, size=size)
    if problem or digest is None:
        part.unlink(missing_ok=True)
        raise RoadmapError(f"downloaded {name} is corrupt ({problem}; deleted it): retry, or {_by_hand(name, url)}")
    os.replace(part, dest)
    return digest


def _stream(url: str, part: Path, name: str, start: int) -> None:
    """Write the body of `url` into `part`, appending from byte `start` when the server agrees to a Range request."""
    response = _open(url, name, start)
    if response is None:  # our .part is not a prefix of what the server has: start over
        part.unlink(missing_ok=True)
        return _stream(url, part, name, 0)
    with response:
        status = getattr(response, "status", None)
        append = bool(start) and status == 206
        if append and not str(response.headers.get("Content-Range", "")).startswith(f"bytes {start}-"):
            response.close()  # the server answered another range than asked: start over
            part.unlink(missing_ok=True)
            return _stream(url, part, name, 0)
        length = response.headers.get("Content-Length")
        total = int(length) + (start if append else 0) if length and length.isdigit() else None
        _copy(response, part, name, url, total, start if append else 0)
    got = part.stat().st_size
    if total is not None and got < total:
        raise RoadmapError(
            f"download of {name} stopped at {got} of {total} bytes: rerun to resume, or {_by_hand(name, url)}"
        )


def _open(url: str, name: str, start: int) -> Any:
    """The server's response to a GET of `url` (from byte `start` when nonzero), or None when it refuses that range
    (HTTP 416). Every other failure is a RoadmapError telling the user to fetch the file by hand."""
    headers = {"User-Agent": USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        # looked up at call time so tests can monkeypatch urllib.request.urlopen to simulate being offline
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:
            return None
        raise RoadmapError(f"cannot download {name} (HTTP {e.code} {e.reason}): {_by_hand(name, url)}") from None
    except (urllib.error.URLError, OSError, HTTPException, ValueError) as e:
        reason = getattr(e, "reason", None) or type(e).__name__
        raise RoadmapError(f"cannot download {name} (offline? {reason}): {_by_hand(name, url)}") from None


def _copy(response: Any, part: Path, name: str, url: str, total: int | None, offset: int) -> None:
    """Copy `response`'s body into `part`, appended after its first `offset` bytes (0: from scratch), with a progress
    bar on a terminal; a dropped connection or a full disk is a RoadmapError (the .part file stays, to resume)."""
    try:
        f = open(part, "ab" if offset else "wb")
    except OSError as e:
        raise _unwritable(part, e) from None
    bar = tqdm(
        total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
        disable=not sys.stderr.isatty(),
    )
    with f, bar:
        while True:
            try:
                chunk = response.read(CHUNK)
            except (OSError, HTTPException) as e:
                raise RoadmapError(
                    f"download of {name} was interrupted ({type(e).__name__}): rerun to resume, or "
                    f"{_by_hand(name, url)}"
                ) from None
            if not chunk:
                break
            try:
                f.write(chunk)
            except OSError as e:
                raise RoadmapError(
                    f"cannot write {str(part)!r} ({e.strerror}): free some disk space or pass --data-dir DIR"
                ) from None
            bar.update(len(chunk))


def _inside(root: Path, member: str) -> bool:
    """Whether archive member path `member` stays inside `root` once joined and normalised."""
    if member.startswith(("/", "\\")) or (len(member) > 1 and member[1] == ":"):
        return False
    target = os.path.normpath(os.path.join(root, member))
    return target == str(root) or target.startswith(str(root) + os.sep)


def _unsafe(archive: Path, member: str) -> RoadmapError:
    return RoadmapError(
        f"archive {str(archive)!r} holds an unsafe member {member!r} (outside the extraction folder): refusing to "
        "extract it; delete the file and download it again from the official URL"
    )


def _extract_into(archive: Path, tmp: Path) -> None:
    """Unpack `archive` into the empty folder `tmp`, refusing members (or link targets) that leave it."""
    lower = archive.name.lower()
    if lower.endswith((".tgz", ".tar.gz", ".tar", ".tar.bz2", ".tar.xz")):
        with tarfile.open(archive) as tf:
            members = tf.getmembers()  # reads every header, so a truncated archive fails here, before writing
            for m in members:
                if not _inside(tmp, m.name):
                    raise _unsafe(archive, m.name)
                if m.issym() and not _inside(tmp, os.path.join(os.path.dirname(m.name), m.linkname)):
                    raise _unsafe(archive, f"{m.name} -> {m.linkname}")
                if m.islnk() and not _inside(tmp, m.linkname):
                    raise _unsafe(archive, f"{m.name} -> {m.linkname}")
            tf.extractall(tmp, members=members, filter="data")  # the stdlib's own guard as a second line
    elif lower.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            for n in names:
                if not _inside(tmp, n):
                    raise _unsafe(archive, n)
            zf.extractall(tmp)  # reading each member checks its CRC, so corrupt data raises BadZipFile
    else:
        raise RoadmapError(f"cannot unpack {archive.name}: expected a .tgz, .tar.gz or .zip archive")


def extract(archive: str | Path, dest: str | Path) -> list[Path]:
    """Unpack a .tgz/.tar.gz/.zip `archive` into `dest` and return the top-level paths it created there.

    The archive is first unpacked into a hidden temporary folder inside `dest` and its top-level entries are then
    moved into place (replacing stale ones from an earlier, interrupted extraction), so an extraction that fails
    halfway leaves nothing that looks complete. A corrupt archive or a member escaping `dest` raises RoadmapError.
    """
    archive, dest = Path(archive), Path(dest)
    tmp = dest / f".{archive.name}.extracting-{os.getpid()}"
    try:
        dest.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    except OSError as e:
        raise _unwritable(dest, e) from None
    tmp = tmp.resolve()
    try:
        try:
            _extract_into(archive, tmp)
        except RoadmapError:  # a ValueError too: keep it from being reported as corruption
            raise
        except tarfile.FilterError as e:
            raise _unsafe(archive, e.tarinfo.name) from None
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, gzip.BadGzipFile, ValueError) as e:
            raise RoadmapError(
                f"archive {str(archive)!r} is corrupt ({type(e).__name__}): delete it and retry, or pass --data-dir "
                "DIR holding the extracted data"
            ) from None
        except OSError as e:
            raise RoadmapError(
                f"cannot extract {archive.name} into {str(dest)!r} ({e.strerror}): free some disk space or pass "
                "--data-dir DIR"
            ) from None
        created = []
        for entry in sorted(tmp.iterdir()):
            target = dest / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            os.replace(entry, target)
            created.append(target)
        return created
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
