"""A flat folder of images and a CSV of file id and class, as Kaggle ships its competitions (dog-breed-identification:
`train/<id>.jpg` beside `labels.csv` with the columns `id,breed`).

    csv_path = find_csv(root)                          # the labels file in `root` (None: there is none)
    labelled = read_labels(root, csv_path, None)       # None: the CSV names no image file (not a labels file)
    labelled.samples                                   # [(image path, class name)], in path order

The CSV has a header row. Its id column is the one whose values name image files (by file name, with or without
the extension, or by path from `root`), and its images are in the folder (`root` or one of its sub-folders) where
most of them are found; its class column is the only other column, or the one named like a class (label, class,
breed, category...). `--label-columns ID,CLASS` names both where that is not enough. A CSV naming a file that is
not there, an image the CSV does not name, or a row without a class: one line naming the first few and the count.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from roadmap.errors import RoadmapError
from runner.data.datasets import is_image_file

NOT_LABELS = ("submission",)  # Kaggle's sample_submission.csv is the test set's answer form, not labels
CLASS_WORDS = ("label", "labels", "class", "classes", "category", "breed", "target", "species", "y")


@dataclass(frozen=True)
class Labelled:
    """What a labels file says: the CSV, its id and class columns, the folder of its images, and the samples."""

    csv: Path
    id_column: str
    class_column: str
    images: Path
    samples: list[tuple[str, str]]  # (image path, class name), in path order


def _few(items: list[str], limit: int = 3) -> str:
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


def find_csv(root: Path) -> Path | None:
    """The labels file in `root`: its only CSV (answer forms such as sample_submission.csv left out), or
    labels.csv among several; several others are an error that says how to name one."""
    if root.is_file():
        return root if root.suffix.lower() == ".csv" else None
    found = sorted(p for p in root.glob("*.csv") if p.is_file() and not any(w in p.name.lower() for w in NOT_LABELS))
    if len(found) <= 1:
        return found[0] if found else None
    for p in found:
        if p.name.lower() == "labels.csv":
            return p
    raise RoadmapError(f"{str(root)!r} holds several CSV files ({_few([p.name for p in found])}): name the labels "
                       f"file, e.g. --dataset folder:{root / found[0].name}")


def _images_in(folder: Path) -> dict[str, str]:
    """The image files directly in `folder`: file name -> path, and file stem -> path."""
    index: dict[str, str] = {}
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return index
    for e in entries:
        if is_image_file(e.name) and e.is_file():
            index.setdefault(e.name, e.path)
            index.setdefault(os.path.splitext(e.name)[0], e.path)
    return index


def _read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as e:
        raise RoadmapError(f"cannot read {str(path)!r} ({type(e).__name__}): check the file") from None
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(text.splitlines(), dialect=dialect)
    header = [h.strip() for h in reader.fieldnames or []]
    if len(header) < 2:
        raise RoadmapError(f"{str(path)!r} needs a header row and two columns, a file id and its class (e.g. "
                           f"id,label); it has {len(header)}")
    rows = [{h.strip(): (v or "").strip() for h, v in row.items() if h is not None} for row in reader]
    return header, rows


def _columns(path: Path, header: list[str], given: tuple[str, str] | None) -> tuple[list[str], str | None]:
    """The candidate id columns and the class column (None: decided once the id column is known)."""
    if given is None:
        return header, None
    missing = [c for c in given if c not in header]
    if missing:
        named = _few([repr(c) for c in missing])
        raise RoadmapError(f"--label-columns names {named}, which {str(path)!r} lacks (its columns: "
                           f"{_few(header, 8)})")
    return [given[0]], given[1]


def read_labels(root: Path, csv_path: Path, given: tuple[str, str] | None = None) -> Labelled | None:
    """The samples `csv_path` names (see the module's docstring); None when none of its values names an image
    file (then it is no labels file) and no columns were given."""
    base = root if root.is_dir() else csv_path.parent
    header, rows = _read_rows(csv_path)
    id_candidates, class_column = _columns(csv_path, header, given)
    folders = [base] + sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    indexes = {f: _images_in(f) for f in folders}
    best = (0, None, None)
    for column in id_candidates:
        values = [r.get(column, "") for r in rows]
        for folder, index in indexes.items():
            hits = sum(1 for v in values if _resolve(v, folder, base, index))
            if hits > best[0]:
                best = (hits, column, folder)
    hits, id_column, folder = best
    if not hits:
        if given is None:
            return None
        raise RoadmapError(f"no value of column {given[0]!r} of {str(csv_path)!r} names an image file in "
                           f"{str(base)!r} or its sub-folders: check --label-columns")
    if class_column is None:
        class_column = _class_column(csv_path, header, id_column)
    return Labelled(csv_path, id_column, class_column, folder,
                    _samples(csv_path, rows, id_column, class_column, folder, base, indexes[folder]))


def _class_column(path: Path, header: list[str], id_column: str) -> str:
    others = [h for h in header if h != id_column]
    if len(others) == 1:
        return others[0]
    named = [h for h in others if h.lower() in CLASS_WORDS]
    if len(named) == 1:
        return named[0]
    raise RoadmapError(f"{str(path)!r} has the columns {_few(header, 8)}: say which holds the class, e.g. "
                       f"--label-columns {id_column},{others[0]}")


def _resolve(value: str, folder: Path, base: Path, index: dict[str, str]) -> str | None:
    """The image file a CSV value names in `folder`: by name, by stem, or as a path from `base`."""
    if not value:
        return None
    found = index.get(value) or index.get(os.path.basename(value))
    if found is None and ("/" in value or "\\" in value):
        p = base / value
        if p.parent == folder and p.name in index:
            found = index[p.name]
    return found


def _samples(path: Path, rows: list[dict[str, str]], id_column: str, class_column: str, folder: Path, base: Path,
             index: dict[str, str]) -> list[tuple[str, str]]:
    """(image, class) of every row, checked: every row names an image that is there and has a class, and every
    image of the folder has a row."""
    missing, unlabelled_rows, twice = [], [], []
    labels: dict[str, str] = {}
    for line, row in enumerate(rows, 2):  # line 1 is the header
        value, label = row.get(id_column, ""), row.get(class_column, "")
        image = _resolve(value, folder, base, index)
        if image is None:
            missing.append(value or f"(line {line}: no id)")
        elif not label:
            unlabelled_rows.append(f"line {line} ({value})")
        elif labels.setdefault(image, label) != label:
            twice.append(f"{value} ({labels[image]}, {label})")
    name = str(path)
    if missing:
        raise RoadmapError(f"{name!r} names {len(missing)} file(s) that are not in {str(folder)!r} "
                           f"({_few(missing)}): add the images or remove those rows")
    if unlabelled_rows:
        raise RoadmapError(f"{name!r} has {len(unlabelled_rows)} row(s) with an empty {class_column!r} "
                           f"({_few(unlabelled_rows)}): fill in their class or remove the rows")
    if twice:
        raise RoadmapError(f"{name!r} gives {len(twice)} image(s) two classes ({_few(twice)}): keep one row each")
    images = sorted(set(index.values()))
    unnamed = [os.path.basename(p) for p in images if p not in labels]
    if unnamed:
        raise RoadmapError(f"{len(unnamed)} image(s) in {str(folder)!r} have no row in {name!r} ({_few(unnamed)}): "
                           "add rows for them or move them out of the folder")
    return sorted(labels.items())
