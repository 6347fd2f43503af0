"""Trained runs evaluated on a data set: what `roadmap evaluate` measures (the CLI picks the runs and prints).

    splits = open_dataset("folder:photos", val_fraction=None)
    check_classes(run, splits.info)                        # one line where the classes differ from the run's
    scored = evaluate_run(run, part(splits, "val"), device)

Each run is evaluated as the runner evaluated it at the end of training: its evaluation transform (the recipe's
crop and interpolation, ImageNet's mean and std) at its input size (or another one), the images in order, batches of
its evaluation batch size, in its precision on a device of the kind it trained on (else the device's own), with
`runner.fitting.loop.evaluate`. A folder's images are shrunk to the size the evaluation resizes to, as in training
(runner.data.decoded), so on the CPU loader path a run evaluated on its own validation split gives its recorded
top-1 exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.data import create_transform
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from roadmap.errors import RoadmapError
from roadmap.schema import RunConfig
from roadmap.trained import TrainedRun
from runner.data import DatasetInfo, Splits, load_dataset
from runner.data.decoded import prepare_pixels
from runner.data.folders import FolderOptions
from runner.devices import default_workers
from runner.fitting.loop import evaluate
from runner.fitting.training_run import Transformed, eval_batch_size
from runner.precision import Precision, device_default

SPLITS = ("val", "train", "all")


@dataclass(frozen=True)
class Scored:
    """One run's numbers on the data set (percent; `loss` the mean cross-entropy)."""

    img_size: int
    images: int
    top1: float
    top5: float
    loss: float
    precision: str


def open_dataset(spec: str, data_dir: str | None = None, val_fraction: float | None = None,
                 skip_unreadable: bool = False, progress: bool = False,
                 trained: list[RunConfig] | None = None) -> Splits:
    """The data set `spec` (the catalog's names, `folder:PATH`, `synthetic:...`), untransformed. A folder split here
    without `val_fraction` is split as the `trained` runs split it, when it is the folder they trained on."""
    splits = load_dataset(spec, data_dir, folder=FolderOptions(val_fraction, skip_unreadable=skip_unreadable,
                                                               progress=progress))
    info = splits.info
    if val_fraction is None and info.split:
        recorded = {c.dataset.split.get("val_fraction") for c in trained or []
                    if c.dataset is not None and c.dataset.name == info.name and c.dataset.split}
        if len(recorded) == 1 and None not in recorded and recorded != {info.split.get("val_fraction")}:
            return open_dataset(spec, data_dir, recorded.pop(), skip_unreadable, progress)
    return splits


def part(splits: Splits, split: str) -> Dataset:
    """The images to evaluate on: the validation split, the training split, or both (`all`: a folder of one's own
    images, every one of them)."""
    if split not in SPLITS:
        raise RoadmapError(f"unknown split {split!r}: use {', '.join(SPLITS)}")
    if split == "all":
        return ConcatDataset([splits.train, splits.val])
    return splits.val if split == "val" else splits.train


def _names(items: list[str], limit: int = 4) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def class_mismatch(trained: list[str], trained_count: int, info: DatasetInfo) -> str | None:
    """Why the data set's classes are not the run's (the same names in the same order, or where either side has no
    names the same count), or None."""
    names = list(info.classes)
    if not trained or not names:
        if trained_count == info.num_classes:
            return None
        return f"{info.num_classes} classes, the run {trained_count}"
    if names == trained:
        return None
    missing = [c for c in trained if c not in names]
    extra = [c for c in names if c not in trained]
    if missing or extra:
        parts = ([f"lacks {_names(missing)}"] if missing else []) + ([f"has {_names(extra)} besides"] if extra else [])
        return f"{len(names)} classes, the run {len(trained)}: the data set " + " and ".join(parts)
    i = next(i for i, (a, b) in enumerate(zip(names, trained, strict=True)) if a != b)
    return f"the run's classes in another order (class {i} is {names[i]!r} here, {trained[i]!r} in the run)"


def check_classes(config: RunConfig, info: DatasetInfo, spec: str) -> None:
    """One line where data set `spec` does not have the classes of the run `config` records."""
    dataset = config.dataset
    if dataset is None:
        raise RoadmapError(f"{config.step} (seed {config.seed}): its config.json does not say its classes")
    why = class_mismatch(list(dataset.classes or []), dataset.num_classes or 0, info)
    if why:
        raise RoadmapError(f"--dataset {spec} does not have the classes {config.step} (seed {config.seed}) "
                           f"was trained on ({dataset.name}): {why}")


def run_precision(run: TrainedRun, device: torch.device) -> Precision:
    """The run's precision on a device of the kind it trained on; elsewhere the device's own (fp32 on the CPU)."""
    trained_on = (run.config.device or "").split(":")[0]
    if run.config.precision and trained_on == device.type:
        return Precision(run.config.precision, "the run's")
    return device_default(device)


def evaluate_run(run: TrainedRun, data: Dataset, device: torch.device, img_size: int | None = None,
                 batch_size: int | None = None, workers: int | None = None, splits: Splits | None = None,
                 progress: bool = False) -> Scored:
    """Top-1, top-5 and loss of `run` on `data` (untransformed (PIL image, label) items), at `img_size` (default:
    the run's), in batches of `batch_size` (default: the run's evaluation batch). `splits`: where `data` comes from,
    so that a folder's images are read at the size the evaluation resizes to (decoded once into the data cache, with
    a progress bar where `progress`)."""
    budget = run.config.budget
    size = img_size or run.data_config["input_size"][-1]
    if size == run.data_config["input_size"][-1]:
        transform = run.transform
    else:
        transform = create_transform(**dict(run.data_config, input_size=(3, size, size)), is_training=False)
    if splits is not None:
        prepare_pixels(splits, size, log=lambda _: None, progress=progress)
    if len(data) == 0:
        raise RoadmapError("the split to evaluate on holds no images")
    batch = batch_size or eval_batch_size(budget.batch_size if budget else 64)
    workers = default_workers(device) if workers is None else workers
    loader = DataLoader(Transformed(data, transform), batch_size=batch, shuffle=False, num_workers=workers,
                        pin_memory=device.type == "cuda")
    precision = run_precision(run, device)
    model = run.model.to(device)
    num_classes = run.model.pretrained_cfg["num_classes"]
    with torch.no_grad():
        e = evaluate(model, loader, num_classes, device, len(loader), precision=precision)
    run.model.to("cpu")
    return Scored(size, len(data), e.val_top1, e.val_top5, e.val_loss, precision.name)


def trained_images(run: TrainedRun) -> int | None:
    """How many validation images the run's recorded top-1 was measured on (its last epoch's `val_batches` of its
    evaluation batch size), or None where the records do not say."""
    dataset, budget = run.config.dataset, run.config.budget
    if dataset is None or budget is None or dataset.val_size is None:
        return None
    if budget.val_batches <= 0:
        return dataset.val_size
    return min(dataset.val_size, budget.val_batches * eval_batch_size(budget.batch_size))
