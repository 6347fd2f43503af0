"""`folder:PATH`, a user's own images, taken as Keras's image_dataset_from_directory and fastai take one.

    splits = load_folder(req)      # the reader the catalog's `folder` entry names (through runner.data.readers)

Three layouts, tried in this order:

- `train/` and `val/` of class folders: the two splits as they are;
- a labels file: a CSV of file id and class beside a flat folder of images (Kaggle's `labels.csv` beside
  `train/`; runner.data.labels_file), or `folder:PATH/FILE.csv`;
- class folders (`PATH/<class>/`, or `PATH/train/<class>/` without `val/`).

The last two are split here: a seeded, stratified split holding out `val_fraction` of each class (default 0.2). Its
seed is fixed (SPLIT_SEED), not the run's, so every step and seed of a roadmap sees the same split; each image's
place is decided by a hash of its path within the folder and the seed, so adding images leaves the others where they
were. Every image is checked before anything trains (runner.data.scan): one line counts the damaged ones and names
the list written to OUT, or `--skip-unreadable` leaves them out (their count is recorded). The images are read
shrunk to the run's size, decoded once into a cache (runner.data.decoded). The layout, the split and the skipped
count are part of the data set's identity (`DatasetInfo.key`), so runs on another split never mix.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torchvision.datasets.folder import IMG_EXTENSIONS

from roadmap.errors import RoadmapError
from runner.data.cache import cache_root
from runner.data.datasets import ImageFolderRGB, class_dirs, first_per_class
from runner.data.decoded import FolderImages
from runner.data.formats import probe_image
from runner.data.labels_file import find_csv, read_labels
from runner.data.scan import LIST_NAME, check_images, damaged_line, memo_file, write_list
from runner.data.splits import DatasetInfo, PathLike, Splits, Transform

DEFAULT_VAL_FRACTION = 0.2  # Keras's examples and fastai's valid_pct
SPLIT_SEED = 0  # fixed: the same split for every run; recorded with the split


@dataclass(frozen=True)
class FolderOptions:
    """How `folder:PATH` is read: the run options that concern it, and where the list of damaged files goes."""

    val_fraction: float | None = None  # None: DEFAULT_VAL_FRACTION where a split is made
    label_columns: tuple[str, str] | None = None  # (id, class) columns of a labels file; None: found
    skip_unreadable: bool = False  # train on the readable images instead of stopping
    report_dir: PathLike = None  # where the list of damaged files is written (OUT); None: beside the check's memo
    progress: bool = False


def _names(items: Iterable[str], limit: int = 5) -> str:
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def folder_pair(
    root: Path, train_transform: Transform, eval_transform: Transform, probe: bool = True
) -> tuple[ImageFolderRGB, ImageFolderRGB, int]:
    """ImageFolders for `root`/train and `root`/val, checked for the mistakes a hand-made folder has.

    Checks: both splits exist, have class folders, the same class folders, images in every training class; the
    first image of each class in both splits is decoded (unless `probe` is False: `folder:PATH` checks every image
    instead). Returns them and the median shorter side of those images (0 without `probe`).
    """
    if not root.exists():
        raise RoadmapError(f"dataset folder {str(root)!r} does not exist: pass a folder holding train/ and val/")
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise RoadmapError(
                f"dataset folder {str(root)!r} has no {split}/ subfolder: put the images in "
                f"{split}/<class>/<image> (and the other split beside it)"
            )
    classes = {}
    for split in ("train", "val"):
        classes[split] = class_dirs(root / split)
        if not classes[split]:
            raise RoadmapError(
                f"{str(root / split)!r} has no class folders: put each class's images in {split}/<class name>/"
            )
    if classes["train"] != classes["val"]:
        only_train = sorted(set(classes["train"]) - set(classes["val"]))
        only_val = sorted(set(classes["val"]) - set(classes["train"]))
        raise RoadmapError(
            f"train/ and val/ in {str(root)!r} have different class folders (only in train: {_names(only_train) or '-'}"
            f"; only in val: {_names(only_val) or '-'}): give both splits the same classes"
        )
    exts = ", ".join(IMG_EXTENSIONS[:4]) + ", ..."
    train = ImageFolderRGB(root / "train", train_transform)
    val = ImageFolderRGB(root / "val", eval_transform)
    for split, ds in (("train", train), ("val", val)):
        if len(ds) == 0:
            raise RoadmapError(f"{str(root / split)!r} holds no images ({exts}) in its class folders: add some")
    counts = np.bincount(np.asarray(train.targets), minlength=len(train.classes))
    empty = [c for c, n in zip(train.classes, counts, strict=True) if n == 0]
    if empty:
        raise RoadmapError(
            f"class folder(s) {_names(empty)} in {str(root / 'train')!r} hold no images ({exts}): add images or "
            "remove the folders from both splits"
        )
    if not probe:
        return train, val, 0
    sides = [probe_image(path) for ds in (train, val) for path in first_per_class(ds)]
    return train, val, int(np.median(sides))


def _path_of(spec: str) -> Path:
    raw = spec.split(":", 1)[1].strip()
    if not raw:
        raise RoadmapError("folder: needs a path, e.g. folder:/data/flowers (class folders, train/ and val/, or "
                           "images with a labels CSV)")
    return Path(raw).expanduser().absolute()


def _class_samples(folder: Path) -> tuple[list[tuple[str, int]], list[str]]:
    """(path, label) of the images in the class folders of `folder` (hidden ones left out), and the classes."""
    ds = ImageFolderRGB(folder)
    return list(ds.samples), list(ds.classes)


def load_folder(req) -> Splits:
    """`folder:PATH` in any of its layouts (see the module's docstring); `req` is the reader's DataRequest (its
    `folder`: the FolderOptions)."""
    opts = getattr(req, "folder", None) or FolderOptions()
    root = _path_of(req.spec)
    if not root.exists():
        raise RoadmapError(f"dataset folder {str(root)!r} does not exist: pass a folder of class folders (or of "
                           "train/ and val/, or of images with a labels CSV)")
    if root.is_dir() and (root / "train").is_dir() and (root / "val").is_dir():
        return _given_split(root, req, opts)
    csv_path = find_csv(root)
    labelled = read_labels(root, csv_path, opts.label_columns) if csv_path is not None else None
    if labelled is not None:
        classes = sorted({c for _, c in labelled.samples})
        ids = {c: i for i, c in enumerate(classes)}
        samples = [(p, ids[c]) for p, c in labelled.samples]
        layout = f"{labelled.csv.name} ({labelled.id_column},{labelled.class_column}) with " \
                 f"{os.path.relpath(labelled.images, labelled.csv.parent)}/"
        return _split_here(labelled.csv.parent, samples, classes, layout, req, opts)
    if opts.label_columns is not None:
        raise RoadmapError(f"--label-columns is for a folder with a labels CSV, and {str(root)!r} has none")
    if root.is_dir() and (root / "val").is_dir():
        raise RoadmapError(f"dataset folder {str(root)!r} has val/ but no train/ subfolder: put the training images "
                           "in train/<class>/<image> beside it")
    base = root / "train" if (root / "train").is_dir() else root
    if not root.is_dir() or not class_dirs(base):
        raise RoadmapError(f"{str(base)!r} has no class folders: put each class's images in {base}/<class name>/ "
                           "(or give the images a labels CSV)")
    samples, classes = _class_samples(base)
    layout = "class folders" if base == root else "train/ class folders"
    return _split_here(base, samples, classes, layout, req, opts)


def _given_split(root: Path, req, opts: FolderOptions) -> Splits:
    """train/ and val/ as they are, checked as before (runner.data.readers.folder_pair), then every image."""
    if opts.val_fraction is not None:
        raise RoadmapError(f"dataset folder {str(root)!r} has its own val/: --val-fraction is for a folder without "
                           "one; leave it out")
    train, val, _ = folder_pair(root, None, None, probe=False)
    parts, skipped, sizes = _checked(root, {"train": list(train.samples), "val": list(val.samples)}, opts,
                                     req.cache_dir)
    train_ds = _dataset(parts["train"], train.classes, sizes, req.train_transform)
    val_ds = _dataset(parts["val"], train.classes, sizes, req.eval_transform)
    return _splits(root, train_ds, val_ds, "train/ and val/", None, skipped, sizes)


def _split_here(base: Path, samples: list[tuple[str, int]], classes: list[str], layout: str, req,
                opts: FolderOptions) -> Splits:
    """Check every image, leave out the damaged ones if asked, and split what is left (stratified, seeded)."""
    if not samples:
        raise RoadmapError(f"{str(base)!r} holds no images (.jpg, .jpeg, .png, .ppm, ...) in its class folders: "
                           "add some")
    fraction = DEFAULT_VAL_FRACTION if opts.val_fraction is None else opts.val_fraction
    parts, skipped, sizes = _checked(base, {"all": samples}, opts, req.cache_dir)
    train, val = stratified_split(parts["all"], classes, fraction, base)
    split = {"val_fraction": fraction, "seed": SPLIT_SEED}
    return _splits(base, _dataset(train, classes, sizes, req.train_transform),
                   _dataset(val, classes, sizes, req.eval_transform), layout, split, skipped, sizes)


def _checked(root: Path, parts: dict[str, list[tuple[str, int]]], opts: FolderOptions, cache_dir: PathLike
             ) -> tuple[dict[str, list[tuple[str, int]]], int, dict[str, tuple[int, int]]]:
    """Every image of `parts` checked (runner.data.scan); the damaged ones stop the run with one line naming the
    list, or are left out with --skip-unreadable. Returns the parts left, how many were left out, and the sizes."""
    paths = [p for samples in parts.values() for p, _ in samples]
    memo_dir = cache_root(cache_dir) / "folder-checks"
    checked = check_images(root, paths, memo_dir, progress=opts.progress)
    if not checked.damaged:
        return parts, 0, checked.sizes
    where = Path(opts.report_dir) / LIST_NAME if opts.report_dir is not None else \
        memo_file(memo_dir, root).with_suffix(".unreadable.txt")
    listed = write_list(where, root, checked.damaged)
    if not opts.skip_unreadable:
        raise RoadmapError(damaged_line(root, len(paths), checked.damaged, listed))
    kept = {name: [(p, c) for p, c in samples if p in checked.sizes] for name, samples in parts.items()}
    return kept, len(checked.damaged), checked.sizes


def _hash(seed: int, rel: str) -> str:
    return hashlib.sha256(f"{seed}/{rel}".encode()).hexdigest()


def stratified_split(samples: list[tuple[str, int]], classes: list[str], fraction: float, base: Path,
                     seed: int = SPLIT_SEED) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(train, val): `fraction` of each class's images (rounded, at least one, never all) in val, chosen by a hash
    of the seed and each image's path within `base`. A class with fewer than 2 images: one line naming it."""
    if not 0 < fraction < 1:
        raise RoadmapError(f"--val-fraction must be between 0 and 1 (e.g. 0.2), got {fraction:g}")
    by_class: dict[int, list[tuple[str, int]]] = {i: [] for i in range(len(classes))}
    for s in samples:
        by_class[s[1]].append(s)
    train, val = [], []
    for label, members in by_class.items():
        if len(members) < 2:
            have = f"{len(members)} readable image" + ("" if len(members) == 1 else "s")
            raise RoadmapError(f"class {classes[label]!r} has {have}: a validation split needs at least 2 per class; "
                               "add images to it or remove it")
        n_val = min(max(1, round(len(members) * fraction)), len(members) - 1)
        ranked = sorted(members, key=lambda s: _hash(seed, os.path.relpath(s[0], base)))
        val += ranked[:n_val]
        train += ranked[n_val:]
    return sorted(train), sorted(val)


def _dataset(samples: list[tuple[str, int]], classes: list[str], sizes: dict[str, tuple[int, int]],
             transform) -> FolderImages:
    wh = np.array([sizes[p] for p, _ in samples], dtype=np.int64).reshape(len(samples), 2)
    return FolderImages(samples, list(classes), wh, transform)


def _splits(root: Path, train: FolderImages, val: FolderImages, layout: str, split: dict | None, skipped: int,
            sizes: dict[str, tuple[int, int]]) -> Splits:
    if not len(train) or not len(val):
        raise RoadmapError(f"no readable images left in {'train' if not len(train) else 'val'} of {str(root)!r}: "
                           "replace the damaged files")
    side = int(np.median([min(sizes[p]) for ds in (train, val) for p, _ in ds.samples]))
    info = DatasetInfo(f"folder:{root}", len(train.classes), tuple(train.classes), len(train), len(val), side,
                       synthetic=False, layout=layout, split=split, skipped=skipped)
    return Splits(train, val, info)
