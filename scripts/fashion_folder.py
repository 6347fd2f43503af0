"""A small real image folder from Fashion-MNIST, for `--dataset folder:PATH` (docs/step-budget.md's measurement).

Takes the first `--train` // 10 images of every class from Fashion-MNIST's training split and the first `--val` // 10
of every class from its test split (stratified, deterministic: the files' order), and writes them as PNGs under
OUT/train/<class>/ and OUT/val/<class>/. Reads Debian's offline copy, or the cache, as `--dataset fashion-mnist` does.

    python scripts/fashion_folder.py /tmp/fm1500 [--train 1500] [--val 500]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from runner.data import load_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--train", type=int, default=1500, help="training images, a multiple of 10 (default 1500)")
    ap.add_argument("--val", type=int, default=500, help="validation images, a multiple of 10 (default 500)")
    args = ap.parse_args()
    if args.out.exists():
        raise SystemExit(f"{args.out} exists: choose a new folder")
    splits = load_dataset("fashion-mnist")
    classes = splits.info.classes
    for split, data, total in (("train", splits.train, args.train), ("val", splits.val, args.val)):
        per_class, taken = total // len(classes), {c: 0 for c in range(len(classes))}
        images, labels = data.images, data.targets  # uint8 (N, 28, 28) and labels, in the files' order
        for i in range(len(labels)):
            c = int(labels[i])
            if taken[c] < per_class:
                folder = args.out / split / classes[c].replace("/", "-")
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(images[i]).save(folder / f"{i:05d}.png")
                taken[c] += 1
            if all(n == per_class for n in taken.values()):
                break
        print(f"{split}: {sum(taken.values())} images, {per_class} per class")


if __name__ == "__main__":
    main()
