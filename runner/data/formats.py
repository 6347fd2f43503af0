"""Readers of the file formats datasets come in: image files (decoded by PIL) and IDX arrays (the MNIST format).

A damaged file raises `RoadmapError` naming it and saying what to do, instead of a decoder's traceback.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from roadmap.errors import RoadmapError


def load_rgb(path: str) -> Image.Image:
    """Open an image file as RGB; an unreadable file raises RoadmapError naming it (the ImageFolder loader)."""
    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            return img.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise _bad_image(path, e) from None


def shrunk_size(width: int, height: int, side: int | None) -> tuple[int, int]:
    """(width, height) of an image whose shorter side is brought down to `side` (never up; None: as it is), the
    longer side as torchvision's Resize(side) computes it (truncated)."""
    short, long = min(width, height), max(width, height)
    if side is None or short <= side:
        return width, height
    long = int(side * long / short)
    return (side, long) if width <= height else (long, side)


def load_shrunk(path: str, side: int | None) -> Image.Image:
    """`load_rgb`, with the shorter side brought down to `side` (bicubic, antialiased; never enlarged). A JPEG is
    decoded at the smallest power-of-two scale that keeps twice the target size (PIL's draft, as its thumbnail
    does), so a camera photo costs a fraction of its full decode."""
    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            target = shrunk_size(*img.size, side)
            if target != img.size:
                if img.format == "JPEG":
                    img.draft(img.mode, (2 * target[0], 2 * target[1]))
                return img.convert("RGB").resize(target, Image.Resampling.BICUBIC)
            return img.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise _bad_image(path, e) from None


def _bad_image(path: str | Path, e: BaseException) -> RoadmapError:
    return RoadmapError(f"cannot read image {str(path)!r} ({type(e).__name__}): remove or replace the file")


def probe_image(path: str) -> int:
    """Decode `path` cheaply (JPEGs at reduced scale) to catch broken files early; returns its shorter side."""
    try:
        with Image.open(path) as img:
            side = min(img.size)
            img.draft("RGB", (64, 64))  # JPEG: decode at 1/2..1/8 scale; still reads the whole stream
            img.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise _bad_image(path, e) from None
    return side


_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """An array from an IDX file (the MNIST format), gzipped or not; a damaged file raises RoadmapError.

    Format: two zero bytes, a dtype code, the number of dims, each dim as a big-endian uint32, then the data.
    """
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise RoadmapError(f"cannot read {str(path)!r} ({type(e).__name__}): delete or replace the file") from None
    if len(data) < 4 or data[0] or data[1] or data[2] not in _IDX_DTYPES or len(data) < 4 + 4 * data[3]:
        raise RoadmapError(f"{str(path)!r} is not an IDX file: delete or replace it")
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=data[3], offset=4))
    body = memoryview(data)[4 + 4 * data[3] :]
    if len(body) != math.prod(dims) * dtype.itemsize:
        raise RoadmapError(f"{str(path)!r} is truncated or damaged: delete or replace it")
    return np.frombuffer(body, dtype).reshape(dims).astype(dtype.newbyteorder("="))  # a writable native copy
