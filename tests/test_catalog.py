"""The data set registry (runner.data.catalog) and the plan that needs no data (issues #19 item 3, #21 items 1-2).

Offline: nothing is downloaded. The user's cache is an empty folder, Debian's Fashion-MNIST copy is hidden, and
`urlopen` fails loudly, so a dry run that tried to download would fail the test.
"""

from __future__ import annotations

import io
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from roadmap.errors import RoadmapError
from runner.data import DataRequest, DatasetInfo, Splits, catalog, load_dataset, plan_info, readers
from runner.data.cache import fetch_archive

URLOPEN = urllib.request.urlopen


@pytest.fixture
def offline(tmp_path, monkeypatch) -> Path:
    """An empty cache, no mirror, no Debian copy, and no network: any download attempt fails the test."""
    monkeypatch.setenv("ROADMAP_DATA", str(tmp_path / "cache"))
    monkeypatch.delenv("ROADMAP_MIRROR", raising=False)
    monkeypatch.setattr(readers, "DEBIAN_FASHION_MNIST", tmp_path / "not-installed")

    def no_network(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    return tmp_path / "cache"


# ------------------------------------------------------------------------------------------------ the dry run


def test_the_readme_imagenette_dry_run_plans_from_the_catalog_offline(offline, cli, tmp_path):
    code, out, err = cli("run", "--upto", "large_kernel", "--dataset", "imagenette", "--dry-run",
                         "--out", str(tmp_path / "o"))
    assert code == 0, err
    assert "12 runs (12 steps x 1 seed(s)) on imagenette (9469 train / 3925 val, 10 classes), 160 px" in out
    (note,) = [line for line in out.splitlines() if line.startswith("data:")]
    assert "imagenette is not here yet: 99.0 MB (imagenette2-160.tgz)" in note and repr(str(offline)) in note
    assert "9,469 / 3,925 images, 10 classes, 160 px" in note and not (tmp_path / "o").exists()
    assert not offline.exists() or not any(offline.iterdir())  # nothing fetched, nothing unpacked


def test_ablate_dry_run_plans_from_the_catalog_too(offline, cli, tmp_path):
    code, out, err = cli("ablate", "--dataset", "cifar100", "--preset", "smoke", "--dry-run", "--data-dir",
                         str(tmp_path))
    assert code == 0, err
    assert "on cifar100 (50000 train / 10000 val, 100 classes)" in out
    assert f"will be downloaded to {str(tmp_path)!r}" in out  # --data-dir: the download goes there


@pytest.mark.parametrize("entry", [e for e in catalog.ENTRIES if e.plannable], ids=lambda e: e.name)
def test_every_catalog_dataset_is_planned_offline_with_its_published_shape(offline, entry):
    info, note = plan_info(entry.name)
    assert info == entry.info() and note.startswith(f"data: {entry.name} is not here yet")
    assert f"{entry.train_size:,} / {entry.val_size:,} images" in note and len(note.splitlines()) == 1


def test_data_that_is_here_is_read_and_gets_no_note(offline, tmp_path):
    root = tmp_path / "flowers"
    for split in ("train", "val"):
        (root / split / "rose").mkdir(parents=True)
        Image.new("RGB", (20, 16), (200, 0, 0)).save(root / split / "rose" / "a.png")
    info, note = plan_info(f"folder:{root}")
    assert (info.train_size, info.native_size, note) == (1, 16, None)
    with pytest.raises(RoadmapError, match="does not exist"):  # a folder is never downloaded: a wrong path is an error
        plan_info(f"folder:{tmp_path / 'nope'}")


def test_a_dry_run_plans_the_run_ids_the_real_run_uses(offline):
    """The catalog's shape gives the same run ids as the loaded data set: the plan a dry run shows is the plan."""
    from runner.planning.options import RunOptions, Selection, Training
    from runner.planning.runs import plan

    opts = RunOptions(Selection(dataset="imagenette", upto="patchify_stem"), Training(preset="smoke"))
    info = catalog.lookup("imagenette").info()
    from_catalog = [r.run_id for r in plan(opts, info.name, info.native_size, info.num_classes, info.train_size)]
    loaded = DatasetInfo("imagenette", 10, info.classes, 9469, 3925, 160, synthetic=False)  # what the reader reports
    assert from_catalog == [r.run_id for r in plan(opts, loaded.name, loaded.native_size, loaded.num_classes,
                                                   loaded.train_size)]


# -------------------------------------------------------------------------- adding a data set: one entry + one reader


def load_toyset(req: DataRequest) -> Splits:
    """docs/adding-a-dataset.md's reader: toyset.tgz unpacks into toyset/train/<class>/ and toyset/val/<class>/."""
    e = req.entry
    root = fetch_archive(e.name, e.archives[0].file, e.folder, readers.has_splits, req.data_dir, req.cache_dir,
                         req.download)
    train, val, _ = readers.folder_pair(root, req.train_transform, req.eval_transform)
    info = DatasetInfo(e.name, len(train.classes), tuple(train.classes), len(train), len(val), e.native_size,
                       synthetic=False)
    return Splits(train, val, info)


def _toyset_archive(path: Path) -> Path:
    """A tiny toyset.tgz: 2 classes, 4 training and 2 validation images of 40 px."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for split, n in (("train", 2), ("val", 1)):
            for c, colour in (("red", (220, 0, 0)), ("blue", (0, 0, 220))):
                for i in range(n):
                    buf = io.BytesIO()
                    Image.new("RGB", (40, 40), colour).save(buf, "PNG")
                    member = tarfile.TarInfo(f"toyset/{split}/{c}/{i}.png")
                    member.size = len(buf.getvalue())
                    tar.addfile(member, io.BytesIO(buf.getvalue()))
    return path


@pytest.fixture
def toyset(tmp_path, monkeypatch):
    """The doc's entry, added to the catalog and the download table, published at a file:// URL (not there yet)."""
    served = tmp_path / "served" / "toyset.tgz"
    entry = catalog.DatasetEntry(
        "toyset", "two colours, 40 px (a test's data set)", "load_toyset", aliases=("toy-set",),
        archives=(catalog.Archive(served.as_uri(), None, None),), folder="toyset", num_classes=2, native_size=40,
        train_size=4, val_size=2, download_size=1234, class_names=("blue", "red"))
    monkeypatch.setitem(catalog.CATALOG, entry.name, entry)
    monkeypatch.setitem(catalog.ARCHIVES, "toyset.tgz", entry.archives[0])
    monkeypatch.setattr(readers, "load_toyset", load_toyset, raising=False)
    return served


def test_a_new_entry_is_in_the_help_the_dry_run_and_the_reader(offline, toyset, cli, tmp_path, monkeypatch):
    code, out, _ = cli("run", "--help")
    assert code == 0 and "toyset: two colours, 40 px" in " ".join(out.split())
    code, out, err = cli("run", "--steps", "convnext_tiny", "--dataset", "toy_set", "--preset", "smoke",
                         "--dry-run", "--out", str(tmp_path / "o"))
    assert code == 0, err
    assert "on toy_set (4 train / 2 val, 2 classes)" in out  # the header names it as typed
    assert "data: toyset is not here yet: 1.2 kB (toyset.tgz)" in out

    monkeypatch.setattr(urllib.request, "urlopen", URLOPEN)  # the network again, for the file:// URL
    code, _, err = cli("run", "--steps", "convnext_tiny", "--dataset", "toyset", "--preset", "smoke",
                       "--out", str(tmp_path / "o"))  # the archive is not published yet: one line, exit 2
    assert code == 2 and "cannot download toyset.tgz" in err and len(err.strip().splitlines()) == 1
    _toyset_archive(toyset)
    splits = load_dataset("toyset")  # dispatched to the entry's reader, downloaded and unpacked into the cache
    assert splits.info == DatasetInfo("toyset", 2, ("blue", "red"), 4, 2, 40, synthetic=False)
    assert (offline / "toyset" / "train" / "red").is_dir()


def test_every_entry_names_a_reader_function_and_spells_uniquely():
    spellings = [n for e in catalog.ENTRIES for n in (e.name, *e.aliases)]
    assert len(spellings) == len(set(spellings))
    for e in catalog.ENTRIES:
        assert callable(getattr(readers, e.reader, None)), e.reader
        assert catalog.lookup(e.usage.replace("PATH", "/x").split("[")[0]) is e
    assert catalog.lookup("Imagenette_160").name == "imagenette"
    with pytest.raises(RoadmapError, match="takes no argument"):
        catalog.lookup("cifar10:x")


# ------------------------------------------------------------------- a real run without its data: one line, exit 2


@pytest.fixture
def unreachable(tmp_path, monkeypatch) -> Path:
    """An empty cache, no Debian copy, and every download failing as it does offline."""
    monkeypatch.setenv("ROADMAP_DATA", str(tmp_path / "cache"))
    monkeypatch.delenv("ROADMAP_MIRROR", raising=False)
    monkeypatch.setattr(readers, "DEBIAN_FASHION_MNIST", tmp_path / "not-installed")

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    return tmp_path


@pytest.mark.parametrize("argv, says", [
    (["run", "--dataset", "imagenette", "--preset", "smoke"], "cannot download imagenette2-160.tgz (offline?"),
    (["run", "--dataset", "fashion-mnist", "--preset", "smoke", "--steps", "resnet50"],
     "cannot download train-images-idx3-ubyte.gz (offline?"),
    (["ablate", "--dataset", "cifar10", "--preset", "smoke"], "cannot download cifar-10-python.tar.gz (offline?"),
    (["bench", "--dataset", "tiny-imagenet", "--steps", "resnet50"], "cannot download tiny-imagenet-200.zip"),
    (["run", "--dataset", "imagenette", "--launcher", "gpus", "--gpus", "0"], "cannot download imagenette2-160.tgz"),
    (["run", "--dataset", "imagewoof", "--data-dir", "{tmp}/typo"], "--data-dir '{tmp}/typo' does not exist"),
    (["ablate", "--dataset", "imagewoof", "--data-dir", "{tmp}/typo", "--dry-run"], "does not exist"),
    (["run", "--dataset", "folder:{tmp}/typo"], "dataset folder '{tmp}/typo' does not exist"),
    (["run", "--dataset", "imagenete", "--dry-run"], "unknown dataset 'imagenete'. Did you mean 'imagenette'?"),
    (["bench", "--dataset", "cifar-1O", "--steps", "resnet50"], "unknown dataset 'cifar-1O'"),
    (["report", "{tmp}/typo"], "no such directory {tmp}/typo"),
    (["results", "{tmp}/typo"], "no such directory {tmp}/typo"),
    (["report", "{tmp}"], "contains no run records"),
    (["results", "{tmp}"], "contains no run records"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_missing_data_and_wrong_paths_end_every_command_in_one_line(unreachable, cli, argv, says):
    tmp = str(unreachable)
    code, _, err = cli(*(a.replace("{tmp}", tmp) for a in argv), *(["--out", f"{tmp}/o"] if argv[0] in (
        "run", "ablate") else []))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("roadmap: error: ") and says.replace("{tmp}", tmp) in err
    assert not (unreachable / "cache").exists() or not any((unreachable / "cache").rglob("*.tgz"))


def test_the_training_docs_dry_run_output_is_what_the_command_prints(offline, cli, monkeypatch, tmp_path):
    """docs/training.md shows `roadmap run --upto large_kernel --dataset imagenette --dry-run` with its output: still
    true."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("the documented output was printed on CPU")
    text = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text()
    command = "$ roadmap run --upto large_kernel --dataset imagenette --dry-run\n"
    shown = text.split(command, 1)[1].split("\n```", 1)[0]
    monkeypatch.delenv("ROADMAP_DATA")
    monkeypatch.setenv("HOME", "/home/you")
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(*command[2:].split()[1:])
    assert code == 0, err
    assert out.rstrip("\n") == shown
