"""The loaders of the stored datasets, one per way they are published, and `load_dataset`, the one entry point.

    splits = load_dataset("imagenette", train_transform=t_train, eval_transform=t_eval)

Image folders (`folder:PATH`, the fast.ai Imagenette/Imagewoof archives, Tiny ImageNet) are checked for the mistakes a
hand-made or damaged copy has, and the first image of each class is decoded; CIFAR is read by torchvision, which
checks every batch file; Fashion-MNIST's IDX files are read into memory (`ArrayDataset`). Every mistake a user can
cause raises `RoadmapError` with one line that says what to do.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torchvision.datasets as tvd
from torchvision.datasets.folder import IMG_EXTENSIONS

from roadmap.errors import RoadmapError, unknown
from runner.data.cache import archive_url, cache_root, fetch_archive
from runner.data.catalog import ALIASES, ARCHIVES, DATASETS, FASHION_MNIST_CLASSES, FASHION_URL, FASTAI_SETS, WNID_NAMES
from runner.data.datasets import ArrayDataset, FileListDataset, ImageFolderRGB, class_dirs
from runner.data.download import download
from runner.data.formats import probe_image, read_idx
from runner.data.splits import DatasetInfo, PathLike, Splits, Transform
from runner.data.synthetic import load_synthetic

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # Debian's offline copy (package fashion-mnist)

# --------------------------------------------------------------------------------------------------------- folders


def _names(items: Iterable[str], limit: int = 5) -> str:
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _folder_pair(
    root: Path, train_transform: Transform, eval_transform: Transform
) -> tuple[ImageFolderRGB, ImageFolderRGB, int]:
    """ImageFolders for `root`/train and `root`/val, checked for the mistakes a hand-made folder has.

    Checks: both splits exist, have class folders, the same class folders, images in every training class; the
    first image of each class in both splits is decoded. Returns them and the median shorter side of those images.
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
    sides = [probe_image(path) for ds in (train, val) for path in _first_per_class(ds)]
    return train, val, int(np.median(sides))


def _first_per_class(ds: tvd.ImageFolder | FileListDataset) -> list[str]:
    """The path of the first sample of each class present (samples are sorted by class in ImageFolder)."""
    seen: dict[int, str] = {}
    for path, label in ds.samples:
        seen.setdefault(label, path)
    return list(seen.values())


def _load_folder(spec: str, train_transform: Transform, eval_transform: Transform) -> Splits:
    raw = spec.split(":", 1)[1].strip()
    if not raw:
        raise RoadmapError("folder: needs a path, e.g. folder:/data/flowers (a folder holding train/ and val/)")
    root = Path(raw).expanduser()
    train, val, side = _folder_pair(root, train_transform, eval_transform)
    info = DatasetInfo(
        f"folder:{root}", len(train.classes), tuple(train.classes), len(train), len(val), side, synthetic=False
    )
    return Splits(train, val, info)


def _load_fastai(
    name: str,
    data_dir: PathLike,
    cache_dir: PathLike,
    download_ok: bool,
    train_transform: Transform,
    eval_transform: Transform,
) -> Splits:
    folder, side = FASTAI_SETS[name]
    root = fetch_archive(
        name,
        f"{folder}.tgz",
        folder,
        lambda p: (p / "train").is_dir() and (p / "val").is_dir(),
        data_dir,
        cache_dir,
        download_ok,
    )
    train, val, _ = _folder_pair(root, train_transform, eval_transform)
    classes = tuple(WNID_NAMES.get(w, w) for w in train.classes)
    return Splits(train, val, DatasetInfo(name, len(classes), classes, len(train), len(val), side, synthetic=False))


# --------------------------------------------------------------------------------------------------- tiny-imagenet


def _tiny_complete(p: Path) -> bool:
    return (p / "train").is_dir() and (p / "val" / "images").is_dir() and (p / "val" / "val_annotations.txt").is_file()


def _load_tiny(
    data_dir: PathLike, cache_dir: PathLike, download_ok: bool, train_transform: Transform, eval_transform: Transform
) -> Splits:
    root = fetch_archive(
        "tiny-imagenet",
        "tiny-imagenet-200.zip",
        "tiny-imagenet-200",
        _tiny_complete,
        data_dir,
        cache_dir,
        download_ok,
    )
    train = ImageFolderRGB(root / "train", train_transform)  # train/<wnid>/images/*.JPEG: ImageFolder recurses
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
    val = FileListDataset(samples, train.classes, eval_transform)
    for path in _first_per_class(train) + [samples[0][0]]:
        probe_image(path)
    names = _tiny_names(root / "words.txt", train.classes)
    return Splits(
        train, val, DatasetInfo("tiny-imagenet", len(names), names, len(train), len(val), 64, synthetic=False)
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


def _load_cifar(
    name: str,
    data_dir: PathLike,
    cache_dir: PathLike,
    download_ok: bool,
    train_transform: Transform,
    eval_transform: Transform,
) -> Splits:
    cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
    files = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    folder = fetch_archive(
        name,
        cls.filename,
        cls.base_folder,
        lambda p: p.name == cls.base_folder and all((p / f).is_file() for f in files),
        data_dir,
        cache_dir,
        download_ok,
    )
    try:  # torchvision checks every batch file's md5 here
        train = cls(str(folder.parent), train=True, transform=train_transform, download=False)
        val = cls(str(folder.parent), train=False, transform=eval_transform, download=False)
    except (RuntimeError, OSError, EOFError, ValueError) as e:
        raise RoadmapError(
            f"the {name} files in {str(folder)!r} are damaged ({type(e).__name__}): delete that folder and rerun"
        ) from None
    classes = tuple(train.classes)
    return Splits(train, val, DatasetInfo(name, len(classes), classes, len(train), len(val), 32, synthetic=False))


# -------------------------------------------------------------------------------------------------- fashion-mnist

_FASHION_SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


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
        raise RoadmapError(
            f"fashion-mnist files ({stems[0]}.gz, ...) not found and downloading is off: fetch them from {FASHION_URL} "
            "and pass --data-dir DIR (or install Debian's fashion-mnist package)"
        )
    for stem in stems:
        if _idx_file(cache, stem) is None:
            entry = ARCHIVES[f"{stem}.gz"]
            download(archive_url(f"{stem}.gz"), cache / f"{stem}.gz", entry.sha256, entry.size, md5=entry.md5)
    return cache


def _load_fashion(
    data_dir: PathLike, cache_dir: PathLike, download_ok: bool, train_transform: Transform, eval_transform: Transform
) -> Splits:
    cache = cache_root(cache_dir) / "fashion-mnist"
    folder = _fashion_folder(data_dir, cache, download_ok)
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
        transform = train_transform if split == "train" else eval_transform
        parts[split] = ArrayDataset(images, labels.astype(np.int64), FASHION_MNIST_CLASSES, transform)
    train, val = parts["train"], parts["val"]
    info = DatasetInfo(
        "fashion-mnist", 10, FASHION_MNIST_CLASSES, len(train), len(val), int(train.images.shape[1]), synthetic=False
    )
    return Splits(train, val, info)


# ----------------------------------------------------------------------------------------------------------- entry


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    train_transform: Transform = None,
    eval_transform: Transform = None,
    download: bool = True,
    cache_dir: str | Path | None = None,
) -> Splits:
    """The train/val splits of dataset `name` (one of DATASETS), fetched into the cache on first use.

    `data_dir` points at data the user already has (extracted folder, its parent, or the archive's folder); downloads
    then go there too. `cache_dir` overrides `default_cache_dir()`. With `download=False` missing data is an error
    instead of a download. Every mistake a user can cause raises RoadmapError with a one-line message.
    """
    spec = str(name).strip()
    head = spec.split(":", 1)[0].strip().lower()
    if head == "folder" and ":" in spec:
        return _load_folder(spec, train_transform, eval_transform)
    if head == "synthetic":
        return load_synthetic(spec, train_transform, eval_transform)
    key = spec.lower().replace("_", "-")
    key = ALIASES.get(key, key)
    if key in FASTAI_SETS:
        return _load_fastai(key, data_dir, cache_dir, download, train_transform, eval_transform)
    if key in ("cifar10", "cifar100"):
        return _load_cifar(key, data_dir, cache_dir, download, train_transform, eval_transform)
    if key == "tiny-imagenet":
        return _load_tiny(data_dir, cache_dir, download, train_transform, eval_transform)
    if key == "fashion-mnist":
        return _load_fashion(data_dir, cache_dir, download, train_transform, eval_transform)
    raise unknown("dataset", spec, DATASETS)
