"""Epoch times on a folder of camera photos, before and after decoding once (docs/your-own-images.md, issue #31).

    python scripts/folder_decode_bench.py --old /tmp/wt-folder-old --new . --work /tmp/bench-folder

Generates a folder of camera-sized JPEGs (1600x1200, smooth colour gradients plus noise, quality 85: about as large
and as slow to decode as photos; train/ and val/ of 4 classes, so the old code reads it too), then trains the `cpu`
preset's ResNet-50 for 2 epochs (--same-epochs) on it with each checkout, interleaved (old, new with an empty cache,
old, new again), so the noise of a shared machine hits both. Prints each command's wall time and the seconds of each
epoch (metrics.jsonl), and their ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = 4


_NOISE: np.ndarray | None = None


def photo(seed: int, size: tuple[int, int] = (1600, 1200)) -> Image.Image:
    """A photo-like image: smooth colour gradients (drawn small, enlarged bicubic) plus sensor-like noise (a shared
    tile of Gaussian noise, rolled by a random offset: random noise of its own per image would take longer to make
    than the image)."""
    global _NOISE
    rng = np.random.default_rng(seed)
    w, h = size
    if _NOISE is None or _NOISE.shape[:2] != (h, w):
        _NOISE = np.random.default_rng(0).normal(0, 6, (h, w, 3)).astype(np.int16)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)  # a few colour patches, smoothly blended
    base = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC), dtype=np.int16)
    noise = np.roll(_NOISE, (int(rng.integers(h)), int(rng.integers(w))), axis=(0, 1))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def _write(job: tuple[str, int]) -> int:
    path, seed = job
    photo(seed).save(path, quality=85)
    return os.path.getsize(path)


def make_folder(root: Path, n_train: int, n_val: int) -> int:
    """train/ and val/ of CLASSES classes; returns the folder's bytes (kept when already there)."""
    jobs = []
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            folder = root / split / f"class{i % CLASSES}"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{split}{i:05d}.jpg"
            if not path.exists():
                jobs.append((str(path), i + (0 if split == "train" else 10**6)))
    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(_write, jobs, chunksize=16))
    return sum(p.stat().st_size for p in root.rglob("*.jpg"))


def train(checkout: Path, folder: Path, out: Path, cache: Path, epochs: int) -> dict:
    """One `roadmap run` of the cpu preset's ResNet-50 on `folder` with `checkout`'s code: wall time and epochs."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "roadmap", "run", "--dataset", f"folder:{folder}", "--preset", "cpu", "--steps",
           "resnet50", "--seeds", "1", "--epochs", str(epochs), "--same-epochs", "--jobs", "1", "--quiet",
           "--no-report", "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=checkout, env={**os.environ, "ROADMAP_DATA": str(cache)}, capture_output=True,
                          text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{checkout}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    metrics = [json.loads(line) for line in next(out.glob("*/metrics.jsonl")).read_text().splitlines()]
    return {"wall": round(wall, 1), "epochs": [round(m["seconds"], 1) for m in metrics],
            "log": [line for line in proc.stdout.splitlines() if line.startswith("data")]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", type=Path, required=True, help="a checkout of the code before (git worktree add)")
    ap.add_argument("--new", type=Path, default=Path("."), help="a checkout of the code after")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-folder"))
    ap.add_argument("--train", type=int, default=1600)
    ap.add_argument("--val", type=int, default=400)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    folder = args.work / "photos"
    t0 = time.perf_counter()
    size = make_folder(folder, args.train, args.val)
    print(f"folder: {args.train} + {args.val} JPEGs of 1600x1200, {size / 1e6:.0f} MB, made in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    cache = args.work / "cache"
    shutil.rmtree(cache, ignore_errors=True)  # the first new run starts with an empty cache
    rows = []
    for round_ in (1, 2):
        for name, checkout in (("before", args.old), ("after", args.new)):
            r = train(checkout.resolve(), folder, args.work / f"out-{name}-{round_}", cache, args.epochs)
            rows.append({"code": name, "round": round_, **r})
            print(json.dumps(rows[-1]), flush=True)
    for round_ in (1, 2):
        before, after = (next(r for r in rows if r["code"] == c and r["round"] == round_) for c in ("before", "after"))
        ratios = [f"{b / a:.1f}x" for b, a in zip(before["epochs"], after["epochs"], strict=True)]
        print(f"round {round_}: wall {before['wall']} s -> {after['wall']} s ({before['wall'] / after['wall']:.1f}x); "
              f"epochs {before['epochs']} -> {after['epochs']} s ({', '.join(ratios)})")


if __name__ == "__main__":
    main()
