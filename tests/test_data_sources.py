"""Datasets from image folders, synthetic data and the catalog's names: what each loads, and one-line errors for
user mistakes (the downloads and the archive formats: tests/test_data.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torchvision.datasets as tvd
from test_data import jpeg, one_line, png_grey, write_tree

from roadmap.errors import RoadmapError
from runner import data
from runner.data import ARCHIVES, catalog, load_dataset

# ---------------------------------------------------------------------------------------------------------- folder

GOOD_FOLDER = {
    "train/cat/a.jpg": jpeg((1, 2, 3), (40, 30)),
    "train/cat/b.png": png_grey(100),
    "train/dog/c.jpg": jpeg((4, 5, 6), (40, 30)),
    "train/.ipynb_checkpoints/junk.jpg": jpeg((0, 0, 0)),
    "val/cat/d.jpg": jpeg((7, 8, 9), (40, 30)),
    "val/dog/e.jpg": jpeg((7, 8, 9), (40, 30)),
}


def test_folder_good(tmp_path):
    root = write_tree(tmp_path / "ds", GOOD_FOLDER)
    splits = load_dataset(f"folder:{root}")
    assert splits.info.classes == ("cat", "dog") and splits.info.name == f"folder:{root}"
    assert (splits.info.train_size, splits.info.val_size, splits.info.native_size) == (3, 2, 30)
    img, label = splits.train[1]  # the grey PNG
    assert img.mode == "RGB" and img.size == (10, 12) and label == 0


@pytest.mark.parametrize(
    "case, match",
    [
        ("missing", "does not exist"),
        ("no_val", "class 'dog' has 1 readable image: a validation split needs at least 2 per class"),  # #31: split
        ("val_only", "has val/ but no train/ subfolder"),
        ("no_classes", "has no class folders"),
        ("classes_differ", "different class folders .*only in train: dog; only in val: -"),
        ("no_images", "holds no images"),
        ("empty_class", "class folder.*dog.* hold no images"),
        ("broken_first", "cannot read image .*a.jpg"),
        ("no_path", "folder: needs a path"),
    ],
)
def test_folder_mistakes(tmp_path, case, match):
    files = dict(GOOD_FOLDER)
    if case == "no_val":  # train/ alone is split (#31), and dog's one image cannot be
        files = {k: v for k, v in files.items() if k.startswith("train/")}
    elif case == "val_only":
        files = {k: v for k, v in files.items() if k.startswith("val/")}
    elif case == "no_classes":
        files = {"train/x.jpg": jpeg((0, 0, 0)), "val/y.jpg": jpeg((0, 0, 0))}
    elif case == "classes_differ":
        del files["val/dog/e.jpg"]
    elif case == "no_images":
        files = {"train/cat/notes.txt": b"hi", "val/cat/more.txt": b"hi"}
    elif case == "broken_first":
        files["train/cat/a.jpg"] = b"not an image"
    root = tmp_path / "ds"
    if case != "missing":
        write_tree(root, files)
    if case == "empty_class":
        (root / "train" / "dog" / "c.jpg").unlink()
    name = "folder:" if case == "no_path" else f"folder:{root}"
    with pytest.raises(RoadmapError, match=match) as err:
        load_dataset(name)
    one_line(err)


def test_folder_unreadable_image_names_the_file(tmp_path, cache):
    root = write_tree(tmp_path / "ds", {**GOOD_FOLDER, "train/dog/z_broken.jpg": b"\x00garbage bytes\xff" * 10})
    with pytest.raises(RoadmapError, match=r"cannot read image .*z_broken\.jpg.*remove or replace") as err:
        load_dataset(f"folder:{root}")  # every image is checked up front now (#31)
    one_line(err)
    with pytest.raises(RoadmapError, match=r"cannot read image .*z_broken\.jpg.*remove or replace") as err:
        data.ImageFolderRGB(root / "train")[3]  # and an image that breaks while training is still named
    one_line(err)


# ------------------------------------------------------------------------------------------------------- synthetic


def test_synthetic_defaults_and_determinism():
    a, b = load_dataset("synthetic"), load_dataset("synthetic")
    assert a.info.synthetic and a.info.name == "synthetic"
    assert (a.info.num_classes, a.info.native_size, a.info.train_size, a.info.val_size) == (10, 32, 2000, 500)
    assert len(a.train) == 2000 and len(a.val) == 500
    img, label = a.train[13]
    assert img.mode == "RGB" and img.size == (32, 32) and label == 3
    assert np.array_equal(np.asarray(img), np.asarray(b.train[13][0]))
    assert np.array_equal(a.train.images[13], np.asarray(img))  # lazy and materialised agree
    assert not np.array_equal(a.train.render(0), a.val.render(0))  # the splits differ
    assert np.bincount(a.train.targets).tolist() == [200] * 10


def test_synthetic_options():
    s = load_dataset("synthetic:classes=3,size=48,train=30,val=9,seed=5", train_transform=lambda im: im.size)
    assert s.info.name == "synthetic:classes=3,size=48,train=30,val=9,seed=5"
    assert (s.info.num_classes, s.info.native_size, len(s.train), len(s.val)) == (3, 48, 30, 9)
    assert s.train[4] == ((48, 48), 1)
    other_seed = load_dataset("synthetic:classes=3,size=48,train=30,val=9")
    assert not np.array_equal(s.train.render(0), other_seed.train.render(0))
    big = load_dataset("synthetic:size=300,train=2,val=1")  # large images draw their noise directly
    assert big.train.render(1).shape == (300, 300, 3)


@pytest.mark.parametrize(
    "spec, match",
    [
        ("synthetic:classes=ten", "must be a whole number"),
        ("synthetic:colour=3", "unknown synthetic option 'colour'"),
        ("synthetic:clases=3", "Did you mean 'classes'"),
        ("synthetic:size=2", "out of range"),
        ("synthetic:train", "write key=value"),
        ("synthetic:", "write key=value"),
    ],
)
def test_synthetic_bad_options(spec, match):
    with pytest.raises(RoadmapError, match=match) as err:
        load_dataset(spec)
    one_line(err)


def test_synthetic_class_is_the_grating_colour_not_its_place():
    """The class survives crops, flips and rotations: it is a hue, which even a crude colour feature finds.

    That the models really learn it through the recipe's augmentation is checked end to end by the runner's
    smoke test (tests/test_runner.py)."""
    s = load_dataset("synthetic:train=600,val=200")
    xtr, ytr, xva, yva = s.train.images, s.train.targets, s.val.images, s.val.targets

    def nearest_mean(ftr, fva):
        means = np.stack([ftr[ytr == c].mean(0) for c in range(10)])
        return float((((fva[:, None] - means[None]) ** 2).sum(-1).argmin(1) == yva).mean())

    def chroma(x):  # the colour of the brightest-in-chroma pixels: what a colour-sensitive filter + pooling sees
        x = x.astype(np.float32)
        c = (x - x.mean(-1, keepdims=True)).reshape(len(x), -1, 3)
        strength = np.linalg.norm(c, axis=-1)
        top = np.argsort(strength, axis=1)[:, -16:]
        return np.take_along_axis(c, top[..., None], axis=1).mean(1)

    # chance is 0.1; a random-coloured distractor blob keeps this crude feature far from perfect
    assert nearest_mean(chroma(xtr), chroma(xva)) > 0.25


# ------------------------------------------------------------------------------------------------------------ names


def test_unknown_dataset_suggests():
    with pytest.raises(RoadmapError, match="unknown dataset 'imagenete'. Did you mean 'imagenette'") as err:
        load_dataset("imagenete")
    assert "folder:PATH" in one_line(err)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("ROADMAP_DATA", str(tmp_path))
    assert data.default_cache_dir() == tmp_path
    monkeypatch.delenv("ROADMAP_DATA")
    assert data.default_cache_dir() == Path.home() / ".cache" / "convnext-roadmap"


def test_tables_are_consistent():
    """The catalog's entries, the download table built from them, and torchvision's own checksums agree."""

    assert [e.usage for e in catalog.CATALOG.values()][-2:] == ["folder:PATH", "synthetic[:classes=10,size=32,"
                                                                 "train=2000,val=500]"]
    assert {a.file for e in catalog.CATALOG.values() for a in e.archives} == set(ARCHIVES)
    for file, entry in ARCHIVES.items():
        assert entry.url.endswith(file) and entry.sha256 is None  # no publisher gives one: never invented
    published = {url.rsplit("/", 1)[-1]: md5 for url, md5 in tvd.Imagenette._ARCHIVES.values()}
    published |= {tvd.CIFAR10.filename: tvd.CIFAR10.tgz_md5, tvd.CIFAR100.filename: tvd.CIFAR100.tgz_md5}
    published |= dict(tvd.FashionMNIST.resources)
    assert {f: ARCHIVES[f].md5 for f in published} == published  # the md5s are torchvision's, copied (no torch here)
    for e in catalog.CATALOG.values():
        if e.plannable and all(a.size for a in e.archives):
            assert e.download_size == sum(a.size for a in e.archives)
        assert not e.class_names or len(e.class_names) == e.num_classes
    assert len(data.WNID_NAMES) == 20
