"""The datasets the roadmap knows by name, the archives they come in, and their class names.

Data only: `load_dataset` reads these tables, the cache fetches the archives they list, and tests (or
$ROADMAP_MIRROR) point `ARCHIVES` elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import torchvision.datasets as tvd

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

ALIASES = {
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
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
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
        f: Archive(FASHION_URL + f, None, None, _TV_FASHION_MD5.get(f))
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
FASTAI_SETS = {
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


def help_text() -> str:
    """What `--dataset` accepts, for its help."""
    return ("imagenette[-320|-full], imagewoof[...], cifar10, cifar100, tiny-imagenet, fashion-mnist, folder:PATH, "
            "synthetic[:classes=10,size=32,...]")
