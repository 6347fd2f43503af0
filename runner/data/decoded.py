"""A user's folder of images, decoded once: every image shrunk to the run's size and kept, so epochs read pixels.

    ds = FolderImages(samples, classes, sizes)       # what `folder:PATH` gives (runner.data.folders)
    prepare_pixels(splits, img_size, log=print)      # once the run's size is known: build or reuse the cache
    ds[i]                                            # (RGB PIL image, label): from the cache, or decoded now

An image is read with its shorter side brought down to `side_for(img_size)`, the size the recipes' evaluation
resizes to (img_size / 0.875, as timm's crop_pct; images already smaller stay as they are), so evaluation sees the
same pixels as from the file and training crops from an image of about the size it trains at. Decoding a camera
photo costs far more than training on it at the `cpu` preset's size (docs/your-own-images.md), so the shrunk
images are decoded once into the data cache (`decoded/<key>.pixels`, raw uint8 RGB, and `decoded/<key>.index.npy`,
each image's offset, height and width), both written atomically; the key is the files' paths, sizes and
modification times and the side, so every step and seed of a roadmap, and every later command on the unchanged
folder, reads the same cache. Where it would not fit the disk or RAM, a line says so and every epoch decodes the
files again, into the same pixels.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from roadmap.errors import RoadmapError
from roadmap.record_files import atomic_write
from runner.data.cache import cache_root
from runner.data.datasets import FileListDataset
from runner.data.formats import load_shrunk, shrunk_size
from runner.data.splits import PathLike, Transform

CACHE_VERSION = 1
EVAL_CROP_PCT = 0.875  # the recipes' evaluation crop (roadmap.recipe's eval_crop_pct): resize to size / 0.875
RAM_SHARE = 0.5  # the cache may take at most this share of the available RAM (it is read through the page cache)
DISK_SPARE = 2**30  # and must leave this much of the disk free


def side_for(img_size: int) -> int:
    """The shorter side images are kept at for a run at `img_size`: what its evaluation resizes to."""
    return math.floor(img_size / EVAL_CROP_PCT)


class FolderImages(FileListDataset):
    """Image files listed as (path, label), each read as RGB with its shorter side at most `side` (None: as it
    is), from the decoded cache once `use_cache` gave it one. `file_sizes`: (N, 2) width, height from the headers.
    """

    def __init__(self, samples: list[tuple[str, int]], classes: list[str], file_sizes: np.ndarray,
                 transform: Transform = None):
        super().__init__(samples, classes, transform)
        self.file_sizes = np.asarray(file_sizes, dtype=np.int64).reshape(len(samples), 2)
        self.side: int | None = None
        self.cache: Path | None = None  # the .pixels file
        self._index: np.ndarray | None = None  # (N, 3) offset, height, width
        self._pixels: np.ndarray | None = None  # the memory map, opened in each process on first use

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_pixels"] = None  # DataLoader workers map the file themselves, instead of receiving a copy
        return state

    def image_sizes(self) -> np.ndarray:
        """(N, 2) height, width of the images as this dataset yields them (the device path's canvas sizes)."""
        return np.array([shrunk_size(int(w), int(h), self.side)[::-1] for w, h in self.file_sizes], dtype=np.int64)

    def pixels(self, index: int) -> np.ndarray:
        """Image `index` as (H, W, 3) uint8, from the cache or decoded now."""
        if self._index is None:
            return np.asarray(load_shrunk(self.samples[index][0], self.side))
        if self._pixels is None:
            self._pixels = np.memmap(self.cache, dtype=np.uint8, mode="r")
        offset, h, w = (int(v) for v in self._index[index])
        return self._pixels[offset : offset + h * w * 3].reshape(h, w, 3)

    def __getitem__(self, index: int) -> tuple[object, int]:
        label = self.samples[index][1]
        if self._index is None:
            img = load_shrunk(self.samples[index][0], self.side)
        else:
            img = Image.fromarray(np.array(self.pixels(index)))
        return (self.transform(img) if self.transform else img), label

    def use_cache(self, pixels: Path, index: np.ndarray) -> None:
        self.cache, self._index, self._pixels = pixels, index, None

    def nbytes(self) -> int:
        """The bytes of its images as kept (RGB uint8 at `side`)."""
        return int(sum(3 * int(h) * int(w) for h, w in self.image_sizes()))

    def key(self) -> str:
        """What the cache of this dataset is named by: its files (path, size, mtime) and the side."""
        h = hashlib.sha256(json.dumps([CACHE_VERSION, self.side]).encode())
        for path, _ in self.samples:
            st = os.stat(path)
            h.update(f"\0{path}\0{st.st_size}\0{st.st_mtime_ns}".encode())
        return h.hexdigest()[:32]


def available_ram() -> int | None:
    """MemAvailable in bytes (Linux; page cache counts as free), None elsewhere: what may still be held in RAM."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def no_room(need: int, where: Path, ram: int | None = None, free: int | None = None) -> str | None:
    """Why a cache of `need` bytes cannot be kept in `where` (the disk, or the RAM it is read through), or None."""
    if free is None:
        try:
            free = shutil.disk_usage(where).free
        except OSError:
            free = None
    if free is not None and need + DISK_SPARE > free:
        return f"it would take {_gb(need)} and {str(where)!r} has {_gb(free)} free"
    ram = available_ram() if ram is None else ram
    if ram is not None and need > RAM_SHARE * ram:
        return f"it would take {_gb(need)}, over half the {_gb(ram)} of available RAM"
    return None


def _build(ds: FolderImages, pixels: Path, index_path: Path, progress: bool, threads: int) -> np.ndarray:
    """Decode every image of `ds` once into `pixels`, then write its index (last: its presence marks the cache
    complete); returns the index."""
    index = np.zeros((len(ds), 3), dtype=np.int64)

    def write(f) -> None:
        offset = 0
        with ThreadPoolExecutor(threads) as pool:
            arrays = pool.map(ds.pixels, range(len(ds)), chunksize=8)
            for i, a in enumerate(tqdm(arrays, total=len(ds), desc="decoding images once", unit="img",
                                       disable=not progress, leave=False)):
                index[i] = offset, a.shape[0], a.shape[1]
                f.write(np.ascontiguousarray(a, dtype=np.uint8).tobytes())
                offset += a.size

    atomic_write(pixels, write, "decoded-image cache")
    atomic_write(index_path, lambda f: np.save(f, index), "decoded-image cache's index")
    return index


def _open(pixels: Path, index_path: Path, n: int) -> np.ndarray | None:
    """The index of a complete cache of `n` images, or None."""
    try:
        index = np.load(index_path)
        size = pixels.stat().st_size
    except (OSError, ValueError):
        return None
    if index.shape != (n, 3) or (n and int(index[-1, 0] + 3 * index[-1, 1] * index[-1, 2]) != size):
        return None
    return index


def prepare_pixels(splits, img_size: int, cache_dir: PathLike = None, log: Callable[[str], None] = print,
                   progress: bool = False) -> None:
    """Set the side a run at `img_size` reads a folder's images at, and give them the decoded cache (built once,
    or reused); nothing for data sets of another kind."""
    parts = [ds for ds in (splits.train, splits.val) if isinstance(ds, FolderImages)]
    if not parts:
        return
    side = side_for(img_size)
    for ds in parts:
        ds.side = side
    root = cache_root(cache_dir) / "decoded"
    need = sum(ds.nbytes() for ds in parts)
    n = sum(len(ds) for ds in parts)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        log(f"data: no decoded-image cache ({str(root)!r} cannot be made: {type(e).__name__}): every epoch decodes "
            f"the {n:,} image files again")
        return
    built = 0
    for ds in parts:
        key = ds.key()
        pixels, index_path = root / f"{key}.pixels", root / f"{key}.index.npy"
        index = _open(pixels, index_path, len(ds))
        if index is None:
            why = no_room(need, root)
            if why:
                log(f"data: no decoded-image cache ({why}): every epoch decodes the {n:,} image files again")
                return
            try:
                index = _build(ds, pixels, index_path, progress, min(8, os.cpu_count() or 1))
            except RoadmapError as e:  # the disk filled up while writing: decode per epoch instead
                log(f"data: no decoded-image cache ({e})")
                return
            built += len(ds)
        ds.use_cache(pixels, index)
    how = f"decoded once ({built:,} now)" if built else "decoded earlier"
    log(f"data: {n:,} images {how} at {side} px on the shorter side, {_gb(need)} in {str(root)!r}; every epoch "
        "reads them there")
