"""The datasets the roadmap trains on, found locally or downloaded once into a cache.

    splits = load_dataset("imagenette", train_transform=t_train, eval_transform=t_eval)
    splits.train[0]       # (PIL.Image in RGB mode, int label), transform applied
    splits.info           # DatasetInfo: name, classes, sizes, typical image side

Every dataset yields RGB PIL images (grey ones are converted) and int labels, so one transform pipeline fits all.
Names (see DATASETS): the fast.ai Imagenette/Imagewoof subsets of ImageNet in 160 px, 320 px or full size, CIFAR-10/100,
Tiny ImageNet, Fashion-MNIST, any `folder:PATH` holding train/ and val/ class folders, and `synthetic` (generated,
for tests and throughput benchmarks only).

Where data comes from, in order: `data_dir` if given (the extracted folder, its parent, or the archive in it), then the
cache (`default_cache_dir()`, i.e. $ROADMAP_DATA or ~/.cache/convnext-roadmap), then a download into `data_dir` or the
cache (unless `download=False`). Archives are checked against their published size and every checksum we know for
sure; where no published sha256 exists, the sha256 of the first good download is recorded next to the archive
(`<archive>.sha256`) and later copies are checked against it. Every mistake a user can cause raises `RoadmapError`
with one line that says what to do.

In-memory datasets (Fashion-MNIST, synthetic) keep their raw uint8 pixels in `.images` (N, H, W[, 3]) and labels in
`.targets` (int64), like torchvision's CIFAR `.data`/`.targets`, so a GPU-side data path can skip PIL entirely.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch.utils.data
import torchvision.datasets as tvd
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS

from roadmap.errors import RoadmapError, unknown
from runner.download import check_file, download, extract

Transform = Callable[[Image.Image], object] | None
PathLike = str | Path | None

DATASETS: tuple[str, ...] = (
    "imagenette",
    "imagenette-320",
    "imagenette-full",
    "imagewoof",
    "imagewoof-320",
    "imagewoof-full",
    "cifar10",
    "cifar100",
    "tiny-imagenet",
    "fashion-mnist",
    "folder:PATH",
    "synthetic",
)

_ALIASES = {
    "imagenette-160": "imagenette",
    "imagenette2": "imagenette",
    "imagewoof-160": "imagewoof",
    "imagewoof2": "imagewoof",
    "cifar-10": "cifar10",
    "cifar-100": "cifar100",
    "tinyimagenet": "tiny-imagenet",
    "tiny-imagenet-200": "tiny-imagenet",
    "fashionmnist": "fashion-mnist",
}

CACHE_ENV = "ROADMAP_DATA"
MIRROR_ENV = "ROADMAP_MIRROR"  # base URL of a local mirror holding the archives under their usual file names
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # Debian's offline copy (package fashion-mnist)


@dataclass(frozen=True)
class DatasetInfo:
    """What a training run needs to know about a dataset, independent of how it is stored."""

    name: str  # canonical name, e.g. "imagenette", "fashion-mnist", "synthetic"
    num_classes: int
    classes: tuple[str, ...]  # human-readable class names, in label order
    train_size: int
    val_size: int
    native_size: int  # typical image side in px (shorter side for photos of varying size)
    synthetic: bool  # True only for "synthetic": its numbers say nothing about real images


@dataclass
class Splits:
    """The train and validation datasets, items (PIL RGB image or its transform, int label), plus their info."""

    train: torch.utils.data.Dataset
    val: torch.utils.data.Dataset
    info: DatasetInfo


@dataclass(frozen=True)
class Archive:
    """Where a file is published and what we know for sure about it (None: unknown, so not checked)."""

    url: str
    size: int | None
    sha256: str | None
    md5: str | None = None


def _torchvision_md5(table: object, url: str) -> str | None:
    """The md5 torchvision publishes for `url` in a {key: (url, md5)} table, if this torchvision has one."""
    if isinstance(table, dict):
        for entry in table.values():
            if isinstance(entry, tuple) and len(entry) == 2 and entry[0] == url:
                return entry[1]
    return None


_FASTAI = "https://s3.amazonaws.com/fast-ai-imageclas/"
_FASHION = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_TV_IMAGENETTE = getattr(getattr(tvd, "Imagenette", None), "_ARCHIVES", None)
_TV_FASHION_MD5 = dict(getattr(tvd.FashionMNIST, "resources", []))


def _fastai_archive(file: str, size: int) -> Archive:
    """A fast.ai archive; torchvision knows the md5 of the Imagenette ones (not of Imagewoof's)."""
    return Archive(_FASTAI + file, size, None, _torchvision_md5(_TV_IMAGENETTE, _FASTAI + file))


# The download table; tests (and ROADMAP_MIRROR) point it elsewhere. Keys are the archive file names.
# No publisher gives a sha256 for any of these, so sha256 is None everywhere: the size, the md5 where one is
# published, and a successful extraction are checked instead, and the sha256 of the first good download is recorded
# in `<archive>.sha256` next to it so that later copies are verified against it.
# Sizes: fast.ai archives as listed in fastai's data/checks.txt; CIFAR and Tiny ImageNet as served by their hosts.
# md5: Imagenette, CIFAR and Fashion-MNIST from the installed torchvision's own tables; Tiny ImageNet's is the
# md5 published with the cs231n archive and used by most loaders.
ARCHIVES: dict[str, Archive] = {
    "imagenette2-160.tgz": _fastai_archive("imagenette2-160.tgz", 99003388),
    "imagenette2-320.tgz": _fastai_archive("imagenette2-320.tgz", 341663724),
    "imagenette2.tgz": _fastai_archive("imagenette2.tgz", 1557161267),
    "imagewoof2-160.tgz": _fastai_archive("imagewoof2-160.tgz", 92612825),
    "imagewoof2-320.tgz": _fastai_archive("imagewoof2-320.tgz", 328387740),
    "imagewoof2.tgz": _fastai_archive("imagewoof2.tgz", 1343715595),
    "cifar-10-python.tar.gz": Archive(tvd.CIFAR10.url, 170498071, None, tvd.CIFAR10.tgz_md5),
    "cifar-100-python.tar.gz": Archive(tvd.CIFAR100.url, 169001437, None, tvd.CIFAR100.tgz_md5),
    "tiny-imagenet-200.zip": Archive(
        "http://cs231n.stanford.edu/tiny-imagenet-200.zip", 248100043, None, "90528d7ca1a48142e341f4ef8d21d0de"
    ),
    **{
        f: Archive(_FASHION + f, None, None, _TV_FASHION_MD5.get(f))
        for f in (
            "train-images-idx3-ubyte.gz",
            "train-labels-idx1-ubyte.gz",
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
        )
    },
}

# name -> (folder inside the archive, typical shorter image side). Full-size images are ImageNet originals of
# varying size, most often 500x375 or 500x333.
_FASTAI_SETS = {
    "imagenette": ("imagenette2-160", 160),
    "imagenette-320": ("imagenette2-320", 320),
    "imagenette-full": ("imagenette2", 375),
    "imagewoof": ("imagewoof2-160", 160),
    "imagewoof-320": ("imagewoof2-320", 320),
    "imagewoof-full": ("imagewoof2", 375),
}

# WordNet ids of the Imagenette and Imagewoof folders -> readable names. Parachute is n03888257 (ImageNet's
# "parachute, chute"), which is the folder name in the fast.ai archives; n03888605 would be "parallel bars".
WNID_NAMES: dict[str, str] = {
    "n01440764": "tench",
    "n02102040": "English springer",
    "n02979186": "cassette player",
    "n03000684": "chain saw",
    "n03028079": "church",
    "n03394916": "French horn",
    "n03417042": "garbage truck",
    "n03425413": "gas pump",
    "n03445777": "golf ball",
    "n03888257": "parachute",
    "n02086240": "Shih-Tzu",
    "n02087394": "Rhodesian ridgeback",
    "n02088364": "beagle",
    "n02089973": "English foxhound",
    "n02093754": "Border terrier",
    "n02096294": "Australian terrier",
    "n02099601": "golden retriever",
    "n02105641": "Old English sheepdog",
    "n02111889": "Samoyed",
    "n02115641": "dingo",
}

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def default_cache_dir() -> Path:
    """Where downloads and extracted datasets live: $ROADMAP_DATA, else ~/.cache/convnext-roadmap."""
    env = os.environ.get(CACHE_ENV, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "convnext-roadmap"


# ----------------------------------------------------------------------------------------------------------- images


def load_rgb(path: str) -> Image.Image:
    """Open an image file as RGB; an unreadable file raises RoadmapError naming it (the ImageFolder loader)."""
    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            return img.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise _bad_image(path, e) from None


def _bad_image(path: str | Path, e: BaseException) -> RoadmapError:
    return RoadmapError(f"cannot read image {str(path)!r} ({type(e).__name__}): remove or replace the file")


def _probe(path: str) -> int:
    """Decode `path` cheaply (JPEGs at reduced scale) to catch broken files early; returns its shorter side."""
    try:
        with Image.open(path) as img:
            side = min(img.size)
            img.draft("RGB", (64, 64))  # JPEG: decode at 1/2..1/8 scale; still reads the whole stream
            img.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise _bad_image(path, e) from None
    return side


class ImageFolderRGB(tvd.ImageFolder):
    """torchvision's ImageFolder that yields RGB images, names unreadable files, and skips hidden folders.

    Hidden folders (".ipynb_checkpoints", ".DS_Store" dirs...) would otherwise become extra classes.
    """

    def __init__(self, root: str | Path, transform: Transform = None):
        super().__init__(str(root), transform=transform, loader=load_rgb, allow_empty=True)

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        classes = _class_dirs(Path(directory))
        return classes, {c: i for i, c in enumerate(classes)}


class FileListDataset(torch.utils.data.Dataset):
    """Images listed as (path, label) pairs, e.g. Tiny ImageNet's validation split (one folder, labels in a file)."""

    def __init__(self, samples: list[tuple[str, int]], classes: list[str], transform: Transform = None):
        self.samples = samples
        self.targets = [label for _, label in samples]
        self.classes = classes
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[object, int]:
        path, label = self.samples[index]
        img = load_rgb(path)
        return (self.transform(img) if self.transform else img), label


class ArrayDataset(torch.utils.data.Dataset):
    """Images held in memory as uint8 (N, H, W) grey or (N, H, W, 3) RGB; items are RGB PIL images.

    `.images` and `.targets` (int64) stay accessible so a GPU data path can upload them in one go.
    """

    def __init__(self, images: np.ndarray, targets: np.ndarray, classes: Iterable[str], transform: Transform = None):
        if images.dtype != np.uint8 or images.ndim not in (3, 4) or len(images) != len(targets):
            raise ValueError(f"expected uint8 (N,H,W[,3]) images matching {len(targets)} targets, got {images.shape}")
        self.images = images
        self.targets = np.asarray(targets, dtype=np.int64)
        self.classes = list(classes)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[object, int]:
        img = Image.fromarray(self.images[index]).convert("RGB")
        return (self.transform(img) if self.transform else img), int(self.targets[index])


# ---------------------------------------------------------------------------------------------------- archive cache


def _url(archive: str) -> str:
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


def _fetch(
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
        root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = root / folder
    if complete(target):
        return target

    entry, url, path = ARCHIVES[archive], _url(archive), root / archive
    recorded = _recorded_sha256(root, archive)
    sha256 = entry.sha256 or recorded
    fresh = False
    if path.is_file():
        problem, digest = check_file(path, sha256=sha256, md5=entry.md5, size=entry.size)
        if problem:
            raise RoadmapError(f"{str(path)!r} is not the published {archive} ({problem}): delete it and rerun")
    elif not download_ok:
        raise RoadmapError(
            f"{dataset} is not in {str(root)!r} and downloading is off: download {url}, then pass --data-dir DIR "
            "(the folder holding the archive or its extracted contents)"
        )
    else:
        try:
            digest = download(url, path, sha256, entry.size, md5=entry.md5)
        except RoadmapError as e:
            if recorded and not entry.sha256 and "is corrupt" in str(e):
                record = str(root / f"{archive}.sha256")
                raise RoadmapError(
                    f"{e} (checked against {record!r}; delete it if the archive changed upstream)"
                ) from None
            raise
        fresh = True
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


# --------------------------------------------------------------------------------------------------------- folders


def _class_dirs(directory: Path) -> list[str]:
    """Sorted names of the non-hidden sub-folders of `directory` (ImageFolder's classes)."""
    with os.scandir(directory) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


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
        classes[split] = _class_dirs(root / split)
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
    sides = [_probe(path) for ds in (train, val) for path in _first_per_class(ds)]
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
    folder, side = _FASTAI_SETS[name]
    root = _fetch(
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
    root = _fetch(
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
        _probe(path)
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
    folder = _fetch(
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

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_FASHION_SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


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
            f"fashion-mnist files ({stems[0]}.gz, ...) not found and downloading is off: fetch them from {_FASHION} "
            "and pass --data-dir DIR (or install Debian's fashion-mnist package)"
        )
    for stem in stems:
        if _idx_file(cache, stem) is None:
            entry = ARCHIVES[f"{stem}.gz"]
            download(_url(f"{stem}.gz"), cache / f"{stem}.gz", entry.sha256, entry.size, md5=entry.md5)
    return cache


def _load_fashion(
    data_dir: PathLike, cache_dir: PathLike, download_ok: bool, train_transform: Transform, eval_transform: Transform
) -> Splits:
    cache = (Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()) / "fashion-mnist"
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


# ------------------------------------------------------------------------------------------------------ synthetic

SYNTHETIC_DEFAULTS = {"classes": 10, "size": 32, "train": 2000, "val": 500, "seed": 0}
_SYNTHETIC_RANGES = {
    "classes": (2, 100_000),
    "size": (8, 1024),
    "train": (1, 10**8),
    "val": (1, 10**8),
    "seed": (0, 2**31 - 1),
}


def _parse_synthetic(spec: str) -> dict[str, int]:
    """Options from "synthetic" or "synthetic:classes=10,size=64,train=2000,val=500[,seed=0]"."""
    opts = dict(SYNTHETIC_DEFAULTS)
    example = "e.g. synthetic:classes=10,size=64,train=2000,val=500"
    head, sep, body = spec.partition(":")
    if head.strip().lower() != "synthetic":
        raise unknown("dataset", spec, DATASETS)
    if not sep:
        return opts
    for part in body.split(","):
        key, eq, value = (s.strip() for s in part.partition("="))
        if not eq or not key:
            raise RoadmapError(f"bad synthetic option {part.strip()!r}: write key=value pairs, {example}")
        key = key.lower()
        if key not in opts:
            raise unknown("synthetic option", key, opts)
        try:
            number = int(value)
        except ValueError:
            raise RoadmapError(f"synthetic option {key}={value!r} must be a whole number, {example}") from None
        lo, hi = _SYNTHETIC_RANGES[key]
        if not lo <= number <= hi:
            raise RoadmapError(f"synthetic option {key}={number} is out of range: use {lo}..{hi}")
        opts[key] = number
    return opts


NOISE = 0.15  # std of the synthetic images' pixel noise, on a 0..1 scale


def _hue_rgb(hue: float) -> np.ndarray:
    """A saturated colour of the given hue (0..1) as an RGB offset from grey, in -0.5..0.5."""
    k = (np.array([5.0, 3.0, 1.0]) + hue * 6.0) % 6.0
    return 0.5 - np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


class SyntheticDataset(torch.utils.data.Dataset):
    """Procedural images whose class is the colour and frequency of a noisy grating; for tests and benchmarks.

    Learnable through the training recipe's augmentation: the class is the grating's hue (and, past 12 classes,
    its spatial frequency), which random-resized crops, flips, rotations and shears all keep; orientation, phase,
    position, contrast, a distracting blob of random colour and pixel noise vary per image. Image `i` is
    generated from the seed (seed, split, i), so any item is reproducible on its own and large sets cost no
    memory; `.images` renders and keeps them all on request.
    """

    def __init__(
        self, size: int, num_classes: int, length: int, seed: int, split: int, transform: Transform = None
    ) -> None:
        self.size, self.num_classes, self.length, self.seed, self.split = size, num_classes, length, seed, split
        self.transform = transform
        self.targets = np.arange(length, dtype=np.int64) % num_classes  # balanced for every prefix
        self.classes = [f"class {c}" for c in range(num_classes)]
        n_hue = min(num_classes, 12)
        n_freq = math.ceil(num_classes / n_hue)
        c = np.arange(num_classes)
        level = c // n_hue
        lo, hi = 2.0, max(2.0, min(size / 4.0, 9.0))  # cycles per image; size/4 keeps a period of >= 4 px
        self._freq = lo + (hi - lo) * level / max(n_freq - 1, 1)
        hue = (c % n_hue) / n_hue + 0.5 * (level % 2) / n_hue  # stagger hues between frequency levels
        self._tint = np.stack([_hue_rgb(h) for h in hue]).astype(np.float32)
        ax = (np.arange(size, dtype=np.float32) + 0.5) / size
        self._yy, self._xx = np.meshgrid(ax, ax, indexing="ij")
        self._images: np.ndarray | None = None
        self._bank: np.ndarray | None = None

    def __len__(self) -> int:
        return self.length

    def _noise_bank(self) -> np.ndarray | None:
        """Gaussian noise fields twice the image side; each image takes a window at a random offset (fast)."""
        if self._bank is None and self.size <= 256:  # <= 25 MB; larger images draw fresh noise instead
            rng = np.random.default_rng([self.seed, 104729])
            self._bank = rng.standard_normal((8, 2 * self.size, 2 * self.size, 3), dtype=np.float32) * NOISE
        return self._bank

    def render(self, index: int) -> np.ndarray:
        """Image `index` as uint8 (size, size, 3); depends only on (seed, split, index)."""
        # one draw for all per-image randomness; Python floats so float32 maths is not promoted to float64
        u = np.random.default_rng([self.seed, self.split, index]).random(17).tolist()
        label, n = int(self.targets[index]), self.size
        theta = math.pi * u[0]  # orientation is a nuisance, not the class
        freq = float(self._freq[label]) * (0.9 + 0.2 * u[1])
        phase, contrast = 2 * math.pi * u[2], 0.5 + 0.5 * u[3]
        cy, cx, by, bx = 0.3 + 0.4 * u[4], 0.3 + 0.4 * u[5], u[6], u[7]
        xx, yy = self._xx, self._yy
        wave = np.sin((2 * math.pi * freq) * (xx * math.cos(theta) + yy * math.sin(theta)) + phase)
        envelope = np.exp(((xx - cx) ** 2 + (yy - cy) ** 2) * (-1 / (2 * 0.3**2)))
        blob = np.exp(((xx - bx) ** 2 + (yy - by) ** 2) * (-1 / (2 * 0.12**2)))
        img = (0.45 * contrast) * ((0.5 + 0.5 * wave) * envelope)[..., None] * self._tint[label]
        img += blob[..., None] * np.array(
            [0.6 * v - 0.3 for v in u[8:11]], np.float32
        )  # a distractor of random colour and place
        img += np.array([0.4 + 0.2 * v for v in u[11:14]], np.float32)  # background
        bank = self._noise_bank()
        if bank is not None:
            k, oy, ox = int(u[14] * len(bank)), int(u[15] * n), int(u[16] * n)
            img += bank[k, oy : oy + n, ox : ox + n]
        else:
            img += (
                np.random.default_rng([self.seed, self.split, index, 1]).standard_normal((n, n, 3), np.float32) * NOISE
            )
        return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

    @property
    def images(self) -> np.ndarray:
        """All images as uint8 (N, size, size, 3), rendered on first access and kept (N * size^2 * 3 bytes)."""
        if self._images is None:
            out = np.empty((self.length, self.size, self.size, 3), np.uint8)
            for i in range(self.length):
                out[i] = self.render(i)
            self._images = out
        return self._images

    def __getitem__(self, index: int) -> tuple[object, int]:
        if not -self.length <= index < self.length:
            raise IndexError(index)
        index %= self.length
        pixels = self._images[index] if self._images is not None else self.render(index)
        img = Image.fromarray(pixels, "RGB")
        return (self.transform(img) if self.transform else img), int(self.targets[index])


def _load_synthetic(spec: str, train_transform: Transform, eval_transform: Transform) -> Splits:
    o = _parse_synthetic(spec)
    train = SyntheticDataset(o["size"], o["classes"], o["train"], o["seed"], 0, train_transform)
    val = SyntheticDataset(o["size"], o["classes"], o["val"], o["seed"], 1, eval_transform)
    name = "synthetic"
    if o != SYNTHETIC_DEFAULTS:
        name += ":" + ",".join(f"{k}={v}" for k, v in o.items())
    info = DatasetInfo(name, o["classes"], tuple(train.classes), o["train"], o["val"], o["size"], synthetic=True)
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
        return _load_synthetic(spec, train_transform, eval_transform)
    key = spec.lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key in _FASTAI_SETS:
        return _load_fastai(key, data_dir, cache_dir, download, train_transform, eval_transform)
    if key in ("cifar10", "cifar100"):
        return _load_cifar(key, data_dir, cache_dir, download, train_transform, eval_transform)
    if key == "tiny-imagenet":
        return _load_tiny(data_dir, cache_dir, download, train_transform, eval_transform)
    if key == "fashion-mnist":
        return _load_fashion(data_dir, cache_dir, download, train_transform, eval_transform)
    raise unknown("dataset", spec, DATASETS)
