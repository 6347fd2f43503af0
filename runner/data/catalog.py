"""The data set registry: one entry per data set the roadmap knows by name, with everything known about it before
it is on disk (aliases, the archives it is published in with their sizes and checksums, classes, native image size,
train/val image counts) and the reader function that reads it.

    entry = lookup("imagenette-160")      # aliases and spelling (case, `_`) resolve to the entry
    entry.info()                          # DatasetInfo from the catalog alone: a dry run plans with it offline
    help_text()                           # what `--dataset` accepts, for the CLI's help

Adding a data set is one `DatasetEntry` in `ENTRIES` plus one reader function in `runner.data.readers` (named by
the entry's `reader`): docs/adding-a-dataset.md. `load_dataset` dispatches from `CATALOG`; the CLI's help and
`roadmap run --dry-run` read it too.

Pure Python, no torch: `roadmap --help` reads this module. The reader is therefore named, not imported (the readers
import torchvision); a test checks that every name resolves. Tests (or $ROADMAP_MIRROR) point `ARCHIVES`, the
download table built from the entries, elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from roadmap.errors import RoadmapError, unknown
from runner.data.splits import DatasetInfo


@dataclass(frozen=True)
class Archive:
    """Where a file is published and what we know for sure about it (None: unknown, so not checked)."""

    url: str
    size: int | None
    sha256: str | None
    md5: str | None = None

    @property
    def file(self) -> str:
        """The published file name (the last part of its URL): its name in the cache and in --data-dir."""
        return self.url.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class DatasetEntry:
    """One data set: what it is called, where it comes from, its shape, and which function loads it.

    The counts and sizes are the published data set's, so a run can be planned before anything is fetched; data
    sets made from an argument (`folder:PATH`, `synthetic:...`) know them only once loaded (None here).
    """

    name: str  # the canonical name (run ids and records use it)
    about: str  # one phrase for the CLI's help
    reader: str  # the function in runner.data.readers that reads it: reader(DataRequest) -> Splits
    aliases: tuple[str, ...] = ()
    archives: tuple[Archive, ...] = ()  # what is downloaded, in order; empty: nothing is (local or generated)
    folder: str | None = None  # the folder the archive unpacks into
    num_classes: int | None = None
    native_size: int | None = None  # typical image side in px (shorter side for photos of varying size)
    train_size: int | None = None
    val_size: int | None = None
    download_size: int | None = None  # bytes fetched in all (published sizes; an estimate where none is published)
    argument: str | None = None  # `folder:PATH`'s "PATH", synthetic's options: the name then takes ":ARGUMENT"
    class_names: tuple[str, ...] = ()  # readable names in label order, where known before loading

    @property
    def usage(self) -> str:
        """How to type it on the command line."""
        if self.argument is None:
            return self.name
        return f"{self.name}:{self.argument}" if self.argument.isupper() else f"{self.name}[:{self.argument}]"

    @property
    def plannable(self) -> bool:
        """Whether its shape is known without the data (a dry run can plan it offline)."""
        sizes = (self.num_classes, self.native_size, self.train_size, self.val_size)
        return self.argument is None and all(v is not None for v in sizes)

    def info(self) -> DatasetInfo:
        """What a run needs to know about it, from the catalog alone (see `plannable`)."""
        if not self.plannable:
            raise RoadmapError(f"{self.name} has no fixed shape: it is known only once loaded")
        names = self.class_names or tuple(f"class {i}" for i in range(self.num_classes))
        return DatasetInfo(self.name, self.num_classes, names, self.train_size, self.val_size, self.native_size,
                           synthetic=False)


_FASTAI = "https://s3.amazonaws.com/fast-ai-imageclas/"
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte")

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
_IMAGENETTE = tuple(WNID_NAMES.values())[:10]  # in the folders' (sorted wnid) order, as the reader labels them
_IMAGEWOOF = tuple(WNID_NAMES.values())[10:]

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
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _fastai(name: str, file: str, size: int, md5: str | None, side: int, woof: bool, aliases=()) -> DatasetEntry:
    """A fast.ai Imagenette/Imagewoof archive: train/ and val/ folders of ImageNet classes."""
    what = "Imagewoof (10 dog breeds of ImageNet)" if woof else "Imagenette (10 ImageNet classes)"
    side_text = f"{side} px" if side != 375 else "full size"
    return DatasetEntry(
        name, f"{what}, {side_text}", "load_fastai", aliases, (Archive(_FASTAI + file, size, None, md5),),
        file.removesuffix(".tgz"), 10, side, 9025 if woof else 9469, 3929 if woof else 3925, size,
        class_names=_IMAGEWOOF if woof else _IMAGENETTE)


# No publisher gives a sha256 for any of these, so sha256 is None everywhere: the size, the md5 where one is
# published, and a successful extraction are checked instead, and the sha256 of the first good download is recorded
# in `<archive>.sha256` next to it so that later copies are verified against it.
# Sizes: fast.ai archives as listed in fastai's data/checks.txt; CIFAR and Tiny ImageNet as served by their hosts.
# md5: Imagenette, CIFAR and Fashion-MNIST as torchvision's own tables publish them (a test compares); Tiny
# ImageNet's is the md5 published with the cs231n archive and used by most loaders. Fashion-MNIST's file sizes are
# not checked (copies differ in their gzip headers); its download_size is the upstream files' total.
# Image counts: fast.ai's Imagenette/Imagewoof v2 README; the others as their authors publish them.
ENTRIES: tuple[DatasetEntry, ...] = (
    _fastai("imagenette", "imagenette2-160.tgz", 99003388, "e793b78cc4c9e9a4ccc0c1155377a412", 160, False,
            ("imagenette-160", "imagenette2", "imagenette2-160")),
    _fastai("imagenette-320", "imagenette2-320.tgz", 341663724, "3df6f0d01a2c9592104656642f5e78a3", 320, False,
            ("imagenette2-320",)),
    _fastai("imagenette-full", "imagenette2.tgz", 1557161267, "fe2fc210e6bb7c5664d602c3cd71e612", 375, False),
    _fastai("imagewoof", "imagewoof2-160.tgz", 92612825, None, 160, True,
            ("imagewoof-160", "imagewoof2", "imagewoof2-160")),
    _fastai("imagewoof-320", "imagewoof2-320.tgz", 328387740, None, 320, True, ("imagewoof2-320",)),
    _fastai("imagewoof-full", "imagewoof2.tgz", 1343715595, None, 375, True),
    DatasetEntry(
        "cifar10", "CIFAR-10, 32 px", "load_cifar", ("cifar-10",),
        (Archive("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", 170498071, None,
                 "c58f30108f718f92721af3b95e74349a"),),
        "cifar-10-batches-py", 10, 32, 50000, 10000, 170498071, class_names=CIFAR10_CLASSES),
    DatasetEntry(
        "cifar100", "CIFAR-100, 32 px", "load_cifar", ("cifar-100",),
        (Archive("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", 169001437, None,
                 "eb9058c3a382ffc7106e4002c42a8d85"),),
        "cifar-100-python", 100, 32, 50000, 10000, 169001437),
    DatasetEntry(
        "tiny-imagenet", "Tiny ImageNet (200 classes), 64 px", "load_tiny", ("tinyimagenet", "tiny-imagenet-200"),
        (Archive("http://cs231n.stanford.edu/tiny-imagenet-200.zip", 248100043, None,
                 "90528d7ca1a48142e341f4ef8d21d0de"),),
        "tiny-imagenet-200", 200, 64, 100000, 10000, 248100043),
    DatasetEntry(
        "fashion-mnist", "Fashion-MNIST, 28 px grey (Debian's offline copy when installed)", "load_fashion",
        ("fashionmnist",),
        tuple(Archive(f"{FASHION_URL}{stem}.gz", None, None, md5) for stem, md5 in zip(FASHION_FILES, (
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
            "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310"), strict=True)),
        "fashion-mnist", 10, 28, 60000, 10000, 30878645, class_names=FASHION_MNIST_CLASSES),
    DatasetEntry("folder", "your own images: class folders (split here), train/ and val/, or images with a "
                 "labels CSV", "load_folder", argument="PATH"),
    DatasetEntry("synthetic", "generated, learnable; for tests and throughput only", "load_synthetic",
                 argument="classes=10,size=32,train=2000,val=500"),
)

CATALOG: dict[str, DatasetEntry] = {e.name: e for e in ENTRIES}
"""Every data set by canonical name; `load_dataset`, the CLI's help and the dry run read it."""

ARCHIVES: dict[str, Archive] = {a.file: a for e in ENTRIES for a in e.archives}
"""The download table, by published file name; tests (and ROADMAP_MIRROR) point it elsewhere."""


def names() -> list[str]:
    """What `--dataset` accepts, as typed (`folder:PATH`, `synthetic[:...]`)."""
    return [e.usage for e in CATALOG.values()]


def help_text() -> str:
    """The `--dataset` help: every data set with what it is, from the catalog."""
    return "; ".join(f"{e.usage}: {e.about}" for e in CATALOG.values())


def _key(text: str) -> str:
    return text.strip().lower().replace("_", "-")


def lookup(spec: str) -> DatasetEntry:
    """The entry `spec` names: its canonical name or an alias, in any case, `_` for `-`; an entry that takes an
    argument is named by its head (`folder:/data/x`, `synthetic:size=64`). Unknown: one line with the choices."""
    head, sep, _ = str(spec).partition(":")
    key = _key(head if sep else spec)
    for entry in CATALOG.values():
        if key == entry.name or key in (_key(a) for a in entry.aliases):
            if entry.argument is None and sep:
                raise RoadmapError(f"dataset {entry.name} takes no argument: pass --dataset {entry.name}")
            if entry.argument == "PATH" and not sep:
                break  # `folder` without a path: unknown, with the choices
            return entry
    raise unknown("dataset", str(spec), names())


def size_text(n_bytes: int) -> str:
    """A byte count as people read it (1.2 kB, 99.0 MB, 1.56 GB)."""
    if n_bytes >= 1e9:
        return f"{n_bytes / 1e9:.2f} GB"
    return f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 1e6 else f"{n_bytes / 1e3:.1f} kB"


def files_text(entry: DatasetEntry, limit: int = 2) -> str:
    """The archives of an entry, named for a message."""
    files = [a.file for a in entry.archives]
    return ", ".join(files[:limit]) + (f" and {len(files) - limit} more" if len(files) > limit else "")
