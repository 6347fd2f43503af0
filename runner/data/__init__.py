"""The datasets the roadmap trains on, found locally or downloaded once into a cache.

    splits = load_dataset("imagenette", train_transform=t_train, eval_transform=t_eval)
    splits.train[0]       # (PIL.Image in RGB mode, int label), transform applied
    splits.info           # DatasetInfo: name, classes, sizes, typical image side

Every dataset yields RGB PIL images (grey ones are converted) and int labels, so one transform pipeline fits all.
Names (see DATASETS): the fast.ai Imagenette/Imagewoof subsets of ImageNet in 160 px, 320 px or full size, CIFAR-10/100,
Tiny ImageNet, Fashion-MNIST, any `folder:PATH` holding train/ and val/ class folders, and `synthetic` (generated,
for tests and throughput benchmarks only). Every mistake a user can cause raises `RoadmapError` with one line that
says what to do.

The modules, one concern each:

- `catalog`: the dataset names, the archives they are published in (URL, size, checksums), class names.
- `download`: fetching a URL into a file (resumable, checked) and unpacking an archive safely.
- `cache`: where archives live ($ROADMAP_DATA, --data-dir) and how one becomes a checked, extracted folder.
- `formats`: readers of image files and IDX arrays.
- `datasets`: the torch Datasets (image folders, file lists, in-memory arrays).
- `loaders`: one loader per kind of dataset, and `load_dataset`, the entry point.
- `synthetic`: the generated dataset.
- `splits`: `Splits` and `DatasetInfo`, what every loader returns.

This package exports the names callers use; the rest is imported from the module that holds it.
"""

from runner.data.cache import CACHE_ENV, MIRROR_ENV, default_cache_dir
from runner.data.catalog import ARCHIVES, DATASETS, FASHION_MNIST_CLASSES, WNID_NAMES, Archive
from runner.data.datasets import ArrayDataset, FileListDataset, ImageFolderRGB
from runner.data.formats import load_rgb, read_idx
from runner.data.loaders import load_dataset
from runner.data.splits import DatasetInfo, Splits, Transform
from runner.data.synthetic import SYNTHETIC_DEFAULTS, SyntheticDataset

__all__ = [
    "ARCHIVES",
    "CACHE_ENV",
    "DATASETS",
    "FASHION_MNIST_CLASSES",
    "MIRROR_ENV",
    "SYNTHETIC_DEFAULTS",
    "WNID_NAMES",
    "Archive",
    "ArrayDataset",
    "DatasetInfo",
    "FileListDataset",
    "ImageFolderRGB",
    "SyntheticDataset",
    "Splits",
    "Transform",
    "default_cache_dir",
    "load_dataset",
    "load_rgb",
    "read_idx",
]
