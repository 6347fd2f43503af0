"""A user's own folder (`folder:PATH`, issue #31): the split made where there is no val/, a labels CSV as Kaggle ships
one, every damaged file found in one pass (and remembered), and the images decoded once into the cache. Every
file is generated here; the runs through the CLI are in tests/test_folder_runs.py."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_data import one_line

from roadmap.errors import RoadmapError
from runner.data import load_dataset
from runner.data import scan as scan_mod
from runner.data.decoded import FolderImages, no_room, prepare_pixels, side_for
from runner.data.folders import FolderOptions

RNG = np.random.default_rng(0)


def image_bytes(size=(16, 12), fmt="JPEG", mode="RGB", seed=0) -> bytes:
    """A small generated image in `fmt` and `mode`."""
    rng = np.random.default_rng(seed)
    w, h = size
    if mode == "I;16":
        img = Image.fromarray((rng.integers(0, 65535, (h, w))).astype(np.uint16))
    else:
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def class_folder(root: Path, per_class=(10, 10, 10), names=("ant", "bee", "cow")) -> Path:
    for c, (name, n) in enumerate(zip(names, per_class, strict=False)):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (root / name / f"{i:03d}.jpg").write_bytes(image_bytes(seed=100 * c + i))
    return root


def kaggle_folder(root: Path, n=12, breeds=("beagle", "pug", "shiba")) -> Path:
    """dog-breed-identification as Kaggle ships it: train/<id>.jpg, labels.csv (id,breed), test/, and
    sample_submission.csv (one column per breed)."""
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "breed"])
        for i in range(n):
            image_id = f"{i:032x}"
            (root / "train" / f"{image_id}.jpg").write_bytes(image_bytes(seed=i))
            w.writerow([image_id, breeds[i % len(breeds)]])
    for i in range(3):
        (root / "test" / f"t{i}.jpg").write_bytes(image_bytes(seed=50 + i))
    (root / "sample_submission.csv").write_text("id," + ",".join(breeds) + "\nt0,0.3,0.3,0.4\n")
    return root


# --------------------------------------------------------------------------------------------------------- split


def test_class_folders_without_val_get_a_seeded_stratified_split(tmp_path, cache):
    root = class_folder(tmp_path / "animals", per_class=(10, 5, 20))
    s = load_dataset(f"folder:{root}")
    assert s.info.classes == ("ant", "bee", "cow") and s.info.layout == "class folders"
    assert s.info.split == {"val_fraction": 0.2, "seed": 0}
    assert np.bincount(s.val.targets).tolist() == [2, 1, 4] and np.bincount(s.train.targets).tolist() == [8, 4, 16]
    assert not {p for p, _ in s.train.samples} & {p for p, _ in s.val.samples}
    again = load_dataset(f"folder:{root}")  # the same split every time: the seed is fixed, not the run's
    assert again.val.samples == s.val.samples
    key = s.info.key()
    assert key["name"] == f"folder:{root}" and key["split"] == {"val_fraction": 0.2, "seed": 0}
    (root / "cow" / "new.jpg").write_bytes(image_bytes(seed=999))  # a new image moves at most the one it displaces
    grown = load_dataset(f"folder:{root}")
    assert len({p for p, _ in s.val.samples} ^ {p for p, _ in grown.val.samples}) <= 2
    third = load_dataset(f"folder:{root}", folder=FolderOptions(val_fraction=0.5))
    assert np.bincount(third.val.targets).tolist() == [5, 2, 10] and third.info.key() != key


def test_train_folder_without_val_is_split_too(tmp_path, cache):
    root = tmp_path / "ds"
    class_folder(root / "train", per_class=(5, 5), names=("a", "b"))
    s = load_dataset(f"folder:{root}")
    assert (s.info.train_size, s.info.val_size, s.info.layout) == (8, 2, "train/ class folders")


def test_train_and_val_work_as_before_and_refuse_a_fraction(tmp_path, cache):
    root = tmp_path / "ds"
    class_folder(root / "train", per_class=(3, 3), names=("a", "b"))
    class_folder(root / "val", per_class=(1, 1), names=("a", "b"))
    s = load_dataset(f"folder:{root}")
    assert (s.info.train_size, s.info.val_size, s.info.split, s.info.layout) == (6, 2, None, "train/ and val/")
    with pytest.raises(RoadmapError, match="has its own val/: --val-fraction is for a folder without one") as err:
        load_dataset(f"folder:{root}", folder=FolderOptions(val_fraction=0.3))
    one_line(err)


def test_a_class_too_small_to_split_is_named(tmp_path, cache):
    root = class_folder(tmp_path / "ds", per_class=(6, 1), names=("big", "tiny"))
    with pytest.raises(RoadmapError, match="class 'tiny' has 1 readable image: a validation split needs at least 2"):
        load_dataset(f"folder:{root}")


def test_mixed_formats_are_read_as_rgb_and_shrunk_to_the_runs_size(tmp_path, cache):
    files = {
        "a/photo.jpg": image_bytes((400, 300), seed=1), "a/rgba.png": image_bytes((20, 30), "PNG", "RGBA"),
        "a/deep.png": image_bytes((24, 18), "PNG", "I;16"), "a/grey.png": image_bytes((18, 18), "PNG", "L"),
        "b/cmyk.jpg": image_bytes((30, 20), "JPEG", "CMYK"), "b/anim.gif": image_bytes((20, 20), "GIF", "P"),
        "b/pic.webp": image_bytes((40, 30), "WEBP"), "b/tiny.png": image_bytes((3, 3), "PNG"),
    }
    for name, payload in files.items():
        (tmp_path / "mix" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "mix" / name).write_bytes(payload)
    s = load_dataset(f"folder:{tmp_path / 'mix'}")
    assert s.info.train_size + s.info.val_size == 8
    prepare_pixels(s, 28, log=lambda _: None)  # side 32: the photo shrinks to 42x32, the rest stay as they are
    sizes = {}
    for ds in (s.train, s.val):
        for i in range(len(ds)):
            img, _ = ds[i]
            assert img.mode == "RGB"
            sizes[Path(ds.samples[i][0]).name] = img.size
    assert side_for(28) == 32 and sizes["photo.jpg"] == (42, 32) and sizes["tiny.png"] == (3, 3)
    assert sizes["cmyk.jpg"] == (30, 20) and sizes["pic.webp"] == (40, 30) and sizes["deep.png"] == (24, 18)


# ---------------------------------------------------------------------------------------------------- labels file


def test_kaggles_layout_as_it_ships_needs_no_flag(tmp_path, cache):
    root = kaggle_folder(tmp_path / "dog-breed-identification")
    s = load_dataset(f"folder:{root}")
    assert s.info.classes == ("beagle", "pug", "shiba") and s.info.layout == "labels.csv (id,breed) with train/"
    assert (s.info.train_size, s.info.val_size) == (9, 3) and s.info.split == {"val_fraction": 0.2, "seed": 0}
    assert all("/train/" in p for p, _ in s.train.samples + s.val.samples)  # test/ is not training data
    by_csv = load_dataset(f"folder:{root / 'labels.csv'}")  # the CSV named
    assert by_csv.val.samples == s.val.samples


def test_label_columns_given_when_the_csv_has_more(tmp_path, cache):
    root = tmp_path / "flat"
    root.mkdir()
    rows = [["file", "label", "photographer"]]
    for i in range(8):
        (root / f"img{i}.png").write_bytes(image_bytes(fmt="PNG", seed=i))
        rows.append([f"img{i}.png", "cat" if i % 2 else "dog", f"p{i // 4}"])
    with open(root / "meta.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    s = load_dataset(f"folder:{root}")  # "label" is named like a class
    assert s.info.classes == ("cat", "dog")
    s = load_dataset(f"folder:{root}", folder=FolderOptions(label_columns=("file", "photographer")))
    assert s.info.classes == ("p0", "p1")
    with pytest.raises(RoadmapError, match="--label-columns names 'kind'"):
        load_dataset(f"folder:{root}", folder=FolderOptions(label_columns=("file", "kind")))


@pytest.mark.parametrize("case, match", [
    ("missing_files", r"names 4 file\(s\) that are not in .*train.* \(gone0, gone1, gone2 and 1 more\)"),
    ("unlabelled_images", r"5 image\(s\) in .*train.* have no row in .*labels.csv.* \(extra0.jpg, extra1.jpg, "
                          r"extra2.jpg and 2 more\)"),
    ("empty_class", r"has 2 row\(s\) with an empty 'breed' \(line 3 .*, line 5 .*\)"),
])
def test_a_labels_file_that_does_not_fit_its_images_is_one_line(tmp_path, cache, case, match):
    root = kaggle_folder(tmp_path / "k")
    text = (root / "labels.csv").read_text().splitlines()
    if case == "missing_files":
        text += [f"gone{i},pug" for i in range(4)]
    elif case == "unlabelled_images":
        for i in range(5):
            (root / "train" / f"extra{i}.jpg").write_bytes(image_bytes(seed=70 + i))
    else:
        text[2] = text[2].split(",")[0] + ","
        text[4] = text[4].split(",")[0] + ","
    (root / "labels.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(RoadmapError, match=match) as err:
        load_dataset(f"folder:{root}")
    one_line(err)


# --------------------------------------------------------------------------------------------------- damaged files


def damaged_folder(root: Path) -> Path:
    """Class folders with the three damaged files of the issue: a truncated JPEG, a zero-byte JPEG, a text .png."""
    class_folder(root, per_class=(6, 6, 6))
    good = (root / "ant" / "000.jpg").read_bytes()
    (root / "ant" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "bee" / "empty.jpg").write_bytes(b"")
    (root / "cow" / "notes.png").write_text("not an image\n")
    return root


def test_every_damaged_file_is_found_in_one_pass_and_listed(tmp_path, cache):
    root = damaged_folder(tmp_path / "ds")
    out = tmp_path / "out"
    with pytest.raises(RoadmapError) as err:
        load_dataset(f"folder:{root}", folder=FolderOptions(report_dir=out))
    line = one_line(err)
    assert "cannot read image files: 3 of 21" in line and str(out / "unreadable-images.txt") in line
    assert "ant/truncated.jpg (truncated)" in line and "bee/empty.jpg (empty file)" in line
    assert "cow/notes.png (not an image)" in line and "--skip-unreadable" in line
    listed = (out / "unreadable-images.txt").read_text().splitlines()[1:]
    assert sorted(Path(x.split("\t")[0]).name for x in listed) == ["empty.jpg", "notes.png", "truncated.jpg"]
    s = load_dataset(f"folder:{root}", folder=FolderOptions(skip_unreadable=True, report_dir=out))
    assert s.info.skipped == 3 and s.info.train_size + s.info.val_size == 18 and s.info.key()["skipped"] == 3


def test_the_check_is_remembered_for_an_unchanged_folder(tmp_path, cache, monkeypatch):
    root = damaged_folder(tmp_path / "ds")
    paths = sorted(str(p) for p in root.rglob("*") if p.is_file())
    first = scan_mod.check_images(root, paths, cache / "folder-checks")
    assert first.checked_now == 21 and len(first.damaged) == 3
    calls = []
    monkeypatch.setattr(scan_mod, "check_image", lambda p: calls.append(p) or (1, 1))
    again = scan_mod.check_images(root, paths, cache / "folder-checks")
    assert calls == [] and again.checked_now == 0 and again.damaged == first.damaged and again.sizes == first.sizes
    (root / "ant" / "truncated.jpg").write_bytes((root / "ant" / "000.jpg").read_bytes())  # repaired
    os.utime(root / "ant" / "truncated.jpg", ns=(1, 1))
    fixed = scan_mod.check_images(root, paths, cache / "folder-checks")
    assert calls == [str(root / "ant" / "truncated.jpg")] and len(fixed.damaged) == 2


# --------------------------------------------------------------------------------------------------- decoded once


def test_images_are_decoded_once_into_the_cache_and_epochs_read_it(tmp_path, cache, monkeypatch):
    root = class_folder(tmp_path / "ds", per_class=(4, 4))
    first = load_dataset(f"folder:{root}")
    lines = []
    prepare_pixels(first, 8, log=lines.append)  # side 9: every 16x12 image shrinks to 12x9
    assert "8 images decoded once (8 now) at 9 px" in lines[0]
    decoded = [np.asarray(first.train[i][0]) for i in range(len(first.train))]
    assert decoded[0].shape == (9, 12, 3)
    assert len(list((cache / "decoded").glob("*.pixels"))) == 2

    def no_decoding(*args, **kwargs):
        raise AssertionError("an image file was decoded again")

    monkeypatch.setattr(Image, "open", no_decoding)
    second = load_dataset(f"folder:{root}")  # the check is remembered: no file is opened
    lines.clear()
    prepare_pixels(second, 8, log=lines.append)  # another step, seed or command: the same cache
    assert "decoded earlier" in lines[0]
    for _ in range(2):  # epochs read pixels, never files
        assert all(np.array_equal(np.asarray(second.train[i][0]), decoded[i]) for i in range(len(second.train)))
    monkeypatch.undo()
    per_epoch = load_dataset(f"folder:{root}")  # without a cache, decoding every epoch gives the same pixels
    for ds in (per_epoch.train, per_epoch.val):
        ds.side = side_for(8)
    assert all(np.array_equal(np.asarray(per_epoch.train[i][0]), decoded[i]) for i in range(len(decoded)))


def test_a_cache_that_does_not_fit_says_so_and_decodes_per_epoch(tmp_path, cache, monkeypatch):
    assert "has 1.0 MB free" in no_room(10**6, tmp_path, ram=10**12, free=10**6)
    assert "over half the" in no_room(10**6, tmp_path, ram=10**6, free=10**13)
    assert no_room(10**6, tmp_path, ram=10**12, free=10**13) is None
    root = class_folder(tmp_path / "ds", per_class=(3, 3))
    s = load_dataset(f"folder:{root}")
    monkeypatch.setattr("runner.data.decoded.no_room", lambda need, where: "it would take 9.00 GB and ... free")
    lines = []
    prepare_pixels(s, 8, log=lines.append)
    assert lines == ["data: no decoded-image cache (it would take 9.00 GB and ... free): every epoch decodes the 6 "
                     "image files again"]
    assert isinstance(s.train, FolderImages) and s.train.cache is None and s.train[0][0].size == (12, 9)
