"""The datasets the roadmap trains on, found locally or downloaded once into a cache.

    splits = load_dataset("imagenette", train_transform=t_train, eval_transform=t_eval)
    splits.train[0]       # (PIL.Image in RGB mode, int label), transform applied
    splits.info           # DatasetInfo: name, classes, sizes, typical image side

Every dataset yields RGB PIL images (grey ones are converted) and int labels, so one transform pipeline fits all.
The data sets are the entries of the registry (`catalog.CATALOG`): the fast.ai Imagenette/Imagewoof subsets of
ImageNet in 160 px, 320 px or full size, CIFAR-10/100, Tiny ImageNet, Fashion-MNIST, any `folder:PATH` of your own
images (class folders, train/ and val/, or a labels CSV; docs/your-own-images.md), and `synthetic` (generated, for
tests and throughput benchmarks only). Every mistake a user can cause raises `RoadmapError` with one line that says
what to do; data that is not on disk while downloading is off raises its subclass `DataMissing`.

The modules, one concern each:

- `catalog`: the registry, one entry per data set (names, archives with sizes and checksums, classes, native size,
  image counts, its reader); pure Python, read by the CLI's help and the dry run.
- `download`: fetching a URL into a file (resumable, checked) and unpacking an archive safely.
- `cache`: where archives live ($ROADMAP_DATA, --data-dir) and how one becomes a checked, extracted folder.
- `formats`: decoding image files and IDX arrays.
- `datasets`: the torch Datasets (image folders, file lists, in-memory arrays).
- `readers`: one reader function per kind of dataset, `load_dataset` (the entry point, which dispatches from the
  catalog) and `plan_info` (a data set's shape for a dry run, from the catalog when the data is not here).
- `folders`: `folder:PATH`, a user's folder in any of its layouts, split where it has no val/.
- `labels_file`: a labels CSV beside a flat folder of images (Kaggle's layout).
- `scan`: every image of a folder checked once, before training, and remembered.
- `decoded`: a folder's images shrunk to the run's size and decoded once into the cache.
- `synthetic`: the generated dataset.
- `splits`: `Splits` and `DatasetInfo`, what every reader returns.

The names below load their module on first use (PEP 562), so `runner.data.catalog` imports no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module that holds it
_LAZY: dict[str, str] = {
    "ARCHIVES": "runner.data.catalog",
    "CATALOG": "runner.data.catalog",
    "FASHION_MNIST_CLASSES": "runner.data.catalog",
    "WNID_NAMES": "runner.data.catalog",
    "Archive": "runner.data.catalog",
    "DatasetEntry": "runner.data.catalog",
    "CACHE_ENV": "runner.data.cache",
    "MIRROR_ENV": "runner.data.cache",
    "DataMissing": "runner.data.cache",
    "default_cache_dir": "runner.data.cache",
    "ArrayDataset": "runner.data.datasets",
    "FileListDataset": "runner.data.datasets",
    "ImageFolderRGB": "runner.data.datasets",
    "load_rgb": "runner.data.formats",
    "read_idx": "runner.data.formats",
    "DataRequest": "runner.data.readers",
    "load_dataset": "runner.data.readers",
    "plan_info": "runner.data.readers",
    "DatasetInfo": "runner.data.splits",
    "Splits": "runner.data.splits",
    "Transform": "runner.data.splits",
    "SYNTHETIC_DEFAULTS": "runner.data.synthetic",
    "SyntheticDataset": "runner.data.synthetic",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    """Load a public name's module on first access (and cache the name here)."""
    if name not in _LAZY:
        raise AttributeError(f"module 'runner.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
