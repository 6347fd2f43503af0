"""The reader functions of the data set registry (`runner.data.catalog`), one per way data sets are published, and
`load_dataset`, the one entry point, which dispatches to them from the catalog.

    splits = load_dataset("imagenette", train_transform=t_train, eval_transform=t_eval)
    info, missing = plan_info("imagenette", data_dir=None)   # a dry run: the catalog's shape when not on disk

Every reader takes a `DataRequest` and returns `Splits`; a catalog entry names its reader (`DatasetEntry.reader`).
`folder:PATH` is read by runner.data.folders (every image checked, a split made where there is none); the
fast.ai Imagenette/Imagewoof archives and Tiny ImageNet are checked for the mistakes a damaged copy has, and the
first image of each class is decoded; CIFAR is read by torchvision, which
checks every batch file; Fashion-MNIST's IDX files are read into memory (`ArrayDataset`). Every mistake a user can
cause raises `RoadmapError` with one line that says what to do.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torchvision.datasets as tvd

from roadmap.errors import RoadmapError
from runner.data.cache import DataMissing, archive_url, cache_root, fetch_archive
from runner.data.catalog import (
    ARCHIVES,
    FASHION_FILES,
    FASHION_MNIST_CLASSES,
    FASHION_URL,
    WNID_NAMES,
    DatasetEntry,
    files_text,
    lookup,
    size_text,
)
from runner.data.datasets import ArrayDataset, FileListDataset, ImageFolderRGB, first_per_class
from runner.data.download import download
from runner.data.folders import FolderOptions, folder_pair
from runner.data.folders import load_folder as load_folder  # the `folder` entry's reader, named by the catalog
from runner.data.formats import probe_image, read_idx
from runner.data.splits import DatasetInfo, PathLike, Splits, Transform
from runner.data.synthetic import load_synthetic as _synthetic


@dataclass(frozen=True)
class DataRequest:
    """What a reader is asked: the entry and the spec as typed, where the data may be, and the transforms."""

    entry: DatasetEntry
    spec: str  # as typed, e.g. "folder:~/dogs", "synthetic:size=64"
    data_dir: PathLike = None  # the user's --data-dir: the extracted folder, its parent, or the archive's folder
    cache_dir: PathLike = None  # None: default_cache_dir()
    download: bool = True  # False: missing data raises DataMissing
    train_transform: Transform = None
    eval_transform: Transform = None
    folder: FolderOptions = FolderOptions()  # how `folder:PATH` is read (split, labels, damaged files)


DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # Debian's offline copy (package fashion-mnist)

# ------------------------------------------------------------------------------- folders (folder:PATH: .folders)


def has_splits(p: Path) -> bool:
    """Whether `p` holds train/ and val/ folders (an extracted archive of class folders is complete)."""
    return (p / "train").is_dir() and (p / "val").is_dir()


def load_fastai(req: DataRequest) -> Splits:
    """A fast.ai Imagenette/Imagewoof archive: train/ and val/ folders named by WordNet id."""
    e = req.entry
    root = fetch_archive(e.name, e.archives[0].file, e.folder, has_splits, req.data_dir, req.cache_dir, req.download)
    train, val, _ = folder_pair(root, req.train_transform, req.eval_transform)
    classes = tuple(WNID_NAMES.get(w, w) for w in train.classes)
    return Splits(train, val, DatasetInfo(e.name, len(classes), classes, len(train), len(val), e.native_size,
                                          synthetic=False))


# --------------------------------------------------------------------------------------------------- tiny-imagenet


def _tiny_complete(p: Path) -> bool:
    return (p / "train").is_dir() and (p / "val" / "images").is_dir() and (p / "val" / "val_annotations.txt").is_file()


def load_tiny(req: DataRequest) -> Splits:
    """Tiny ImageNet: train/<wnid>/images/, and one val/images/ folder whose labels are in val_annotations.txt."""
    e = req.entry
    root = fetch_archive(e.name, e.archives[0].file, e.folder, _tiny_complete, req.data_dir, req.cache_dir,
                         req.download)
    train = ImageFolderRGB(root / "train", req.train_transform)  # train/<wnid>/images/*.JPEG: ImageFolder recurses
    if len(train) == 0:
        raise RoadmapError(f"{str(root / 'train')!r} holds no images: delete {str(root)!r} and rerun to fetch it again")
    index = train.class_to_idx
    samples = []
    annotations = root / "val" / "val_annotations.txt"
    for line_no, line in enumerate(annotations.read_text().splitlines(), 1):
        fields = line.split("\t")
        if len(fields) < 2 or not fields[0]:
            continue
        if fields[1] not in index:
            raise RoadmapError(
                f"{str(annotations)!r} line {line_no} names class {fields[1]!r}, which train/ lacks: the copy is "
                f"damaged; delete {str(root)!r} and rerun"
            )
        samples.append((str(root / "val" / "images" / fields[0]), index[fields[1]]))
    if not samples:
        raise RoadmapError(f"{str(annotations)!r} lists no images: delete {str(root)!r} and rerun")
    val = FileListDataset(samples, train.classes, req.eval_transform)
    for path in first_per_class(train) + [samples[0][0]]:
        probe_image(path)
    names = _tiny_names(root / "words.txt", train.classes)
    return Splits(
        train, val, DatasetInfo(e.name, len(names), names, len(train), len(val), e.native_size, synthetic=False)
    )


def _tiny_names(words: Path, wnids: list[str]) -> tuple[str, ...]:
    """Readable names from words.txt ("wnid<TAB>name, synonym, ..."), first synonym; the wnid where missing."""
    found: dict[str, str] = {}
    if words.is_file():
        wanted = set(wnids)
        for line in words.read_text(errors="replace").splitlines():
            wnid, _, text = line.partition("\t")
            if wnid in wanted and text.strip():
                found[wnid] = text.split(",")[0].strip()
    return tuple(found.get(w, w) for w in wnids)


# ---------------------------------------------------------------------------------------------------------- CIFAR


def load_cifar(req: DataRequest) -> Splits:
    """CIFAR-10 or -100 (by the entry's name), read by torchvision from the python archive."""
    name = req.entry.name
    cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
    files = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    folder = fetch_archive(name, cls.filename, cls.base_folder,
                           lambda p: p.name == cls.base_folder and all((p / f).is_file() for f in files),
                           req.data_dir, req.cache_dir, req.download)
    train_transform, eval_transform = req.train_transform, req.eval_transform
    try:  # torchvision checks every batch file's md5 here
        train = cls(str(folder.parent), train=True, transform=train_transform, download=False)
        val = cls(str(folder.parent), train=False, transform=eval_transform, download=False)
    except (RuntimeError, OSError, EOFError, ValueError) as e:
        raise RoadmapError(
            f"the {name} files in {str(folder)!r} are damaged ({type(e).__name__}): delete that folder and rerun"
        ) from None
    classes = tuple(train.classes)
    return Splits(train, val, DatasetInfo(name, len(classes), classes, len(train), len(val), req.entry.native_size,
                                          synthetic=False))


# -------------------------------------------------------------------------------------------------- fashion-mnist

_FASHION_SPLITS = {"train": FASHION_FILES[:2], "val": FASHION_FILES[2:]}


def _idx_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _fashion_folder(data_dir: PathLike, cache: Path, download_ok: bool) -> Path:
    """The first folder holding all four Fashion-MNIST files; downloads them into the cache when none does."""
    stems = [s for pair in _FASHION_SPLITS.values() for s in pair]
    candidates = []
    if data_dir is not None:
        d = Path(data_dir).expanduser()
        candidates += [d, d / "fashion-mnist", d / "FashionMNIST" / "raw"]
    candidates += [DEBIAN_FASHION_MNIST, cache]
    for folder in candidates:
        if all(_idx_file(folder, s) for s in stems):
            return folder
    if not download_ok:
        raise DataMissing(
            f"fashion-mnist files ({stems[0]}.gz, ...) not found and downloading is off: fetch them from {FASHION_URL} "
            "and pass --data-dir DIR (or install Debian's fashion-mnist package)", cache
        )
    for stem in stems:
        if _idx_file(cache, stem) is None:
            entry = ARCHIVES[f"{stem}.gz"]
            download(archive_url(f"{stem}.gz"), cache / f"{stem}.gz", entry.sha256, entry.size, md5=entry.md5)
    return cache


def load_fashion(req: DataRequest) -> Splits:
    """Fashion-MNIST's four IDX files, from --data-dir, Debian's copy or the cache, read into memory."""
    cache = cache_root(req.cache_dir) / req.entry.folder
    folder = _fashion_folder(req.data_dir, cache, req.download)
    parts = {}
    for split, (img_stem, label_stem) in _FASHION_SPLITS.items():
        img_path, label_path = _idx_file(folder, img_stem), _idx_file(folder, label_stem)
        images, labels = read_idx(img_path), read_idx(label_path)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels) or images.dtype != np.uint8:
            raise RoadmapError(
                f"{str(img_path)!r} and {str(label_path)!r} do not form an image set ({images.shape} images, "
                f"{labels.shape} labels): replace them"
            )
        if len(labels) and (labels.min() < 0 or labels.max() >= len(FASHION_MNIST_CLASSES)):
            raise RoadmapError(f"{str(label_path)!r} holds labels outside 0..9: replace it")
        transform = req.train_transform if split == "train" else req.eval_transform
        parts[split] = ArrayDataset(images, labels.astype(np.int64), FASHION_MNIST_CLASSES, transform)
    train, val = parts["train"], parts["val"]
    info = DatasetInfo(
        "fashion-mnist", 10, FASHION_MNIST_CLASSES, len(train), len(val), int(train.images.shape[1]), synthetic=False
    )
    return Splits(train, val, info)


# ----------------------------------------------------------------------------------------------------------- entry


def load_synthetic(req: DataRequest) -> Splits:
    """`synthetic[:options]`: generated images (runner.data.synthetic)."""
    return _synthetic(req.spec, req.train_transform, req.eval_transform)


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    train_transform: Transform = None,
    eval_transform: Transform = None,
    download: bool = True,
    cache_dir: str | Path | None = None,
    folder: FolderOptions | None = None,
) -> Splits:
    """The train/val splits of dataset `name` (an entry of the catalog, or an alias), fetched into the cache on first
    use, by the reader function its catalog entry names.

    `data_dir` points at data the user already has (extracted folder, its parent, or the archive's folder); downloads
    then go there too. `cache_dir` overrides `default_cache_dir()`. With `download=False` missing data raises
    DataMissing instead of downloading. `folder`: how a `folder:PATH` is read (runner.data.folders). Every mistake a
    user can cause raises RoadmapError with a one-line message.
    """
    spec = str(name).strip()
    entry = lookup(spec)
    reader = getattr(sys.modules[__name__], entry.reader, None)
    if not callable(reader):
        raise RoadmapError(f"dataset {entry.name}'s reader {entry.reader!r} is not a function of {__name__}")
    return reader(DataRequest(entry, spec, data_dir, cache_dir, download, train_transform, eval_transform,
                              folder or FolderOptions()))


def plan_info(name: str, data_dir: str | Path | None = None, folder: FolderOptions | None = None
              ) -> tuple[DatasetInfo, str | None]:
    """What a dry run plans with, never downloading: the data set's info when it is on disk (loaded, as a run would),
    else the catalog's, with one line saying that the data is not here yet, its size and where it will go."""
    try:
        return load_dataset(name, data_dir, download=False, folder=folder).info, None
    except DataMissing as e:
        entry, where = lookup(name), e.where
        if not entry.plannable:
            raise
    size = f"{size_text(entry.download_size)} ({files_text(entry)})" if entry.download_size else files_text(entry)
    hint = "pass --data-dir DIR if you have it elsewhere" if data_dir is None else \
        f"--data-dir {str(data_dir)!r} does not hold it yet"
    return entry.info(), (
        f"data: {entry.name} is not here yet: {size} will be downloaded to {str(where)!r} when the run starts "
        f"({hint}); planned from the catalog: {entry.train_size:,} / {entry.val_size:,} images, "
        f"{entry.num_classes} classes, {entry.native_size} px")
