"""What `roadmap run` was asked for, in four groups: what to run, how to train it, on what machine, and what to
write. The CLI builds them from its flags; the runner only reads them (frozen).

Every option is written once, as a field declared with `option`: its `roadmap run` flag, help, metavar, choices,
argparse type or action, and how the flag's value becomes the field's (`parse`) sit in the field's metadata, as
`roadmap.dataclass_fields.doc_field` keeps a design field's documentation. `roadmap.cli.training` generates the
flags and reads them back from these, so a new field with `option(...)` is a new flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from roadmap.errors import RoadmapError
from runner.planning.budget import PRESETS
from steps import REGIMES

RUN_AND_ABLATE = ("run", "ablate")


def option(flag: str, help: str | Callable[[], str] | None, default: Any = None, *, at: int,
           commands: tuple[str, ...] = RUN_AND_ABLATE, parse: Callable[[Any], Any] | None = None,
           **argparse_kw: Any) -> Any:
    """A RunOptions field and its flag, written once.

    `help`: the flag's help, or a function that returns it when `--help` is shown (text read from elsewhere, e.g.
    the data set catalog), or None for a hidden flag. `at`: the flag's place in `roadmap run --help`. `commands`:
    the commands that take it. `parse`: the flag's value -> the field's (default: as argparse gives it; argparse's
    default is then the field's). `argparse_kw`: metavar, choices, type, action.
    """
    meta = {"flag": flag, "help": help, "at": at, "commands": commands, "parse": parse, "argparse": argparse_kw}
    return field(default=default, metadata=meta)


def flag_dest(f: dataclasses.Field) -> str:
    """The attribute argparse stores a field's flag under (`--no-branches` -> `no_branches`)."""
    return f.metadata["flag"].lstrip("-").replace("-", "_")


def positive_int(text: str) -> int:
    """An argparse type: a whole number above 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def micro_batch(text: str) -> int | str:
    """--micro-batch: a positive whole number or 'auto'."""
    return "auto" if text == "auto" else positive_int(text)


def _specs(text: str | None) -> tuple[str, ...] | None:
    """--steps A,B,...: the specs, at least one."""
    if text is None:
        return None
    specs = [x for x in text.split(",") if x.strip()]
    if not specs:
        raise RoadmapError("--steps needs at least one step, e.g. --steps resnet50,convnext_tiny")
    return tuple(specs)


def _orders(texts: list[str] | None) -> tuple[tuple[str, ...], ...]:
    """--order A,B,... (repeated): each order's steps, checked."""
    from runner.planning.selection import parse_order

    return tuple(tuple(parse_order(o)) for o in texts or [])


def _names(text: str | None) -> tuple[str, ...]:
    """NAME,...: the names, blanks dropped."""
    return tuple(b.strip() for b in (text or "").split(",") if b.strip())


def fraction(text: str) -> float:
    """An argparse type: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (e.g. 0.2), got {value:g}")
    return value


def _two_names(text: str | None) -> tuple[str, str] | None:
    """--label-columns ID,CLASS: two column names."""
    if text is None:
        return None
    names = _names(text)
    if len(names) != 2:
        raise RoadmapError(f"--label-columns takes two column names, the file id's and the class's (e.g. "
                           f"--label-columns id,breed); got {text!r}")
    return names[0], names[1]


def _dataset_help() -> str:
    """--dataset's help, from the data set catalog (read when the help is shown: the catalog may load torchvision)."""
    from runner.data import catalog

    return f"{catalog.help_text()} (default: fashion-mnist)"


def _not(value: bool) -> bool:
    """A --no-X flag's value -> the X field's."""
    return not value


@dataclass(frozen=True)
class Selection:
    """What to run: which steps of which regime, on which data set, with how many seeds."""

    dataset: str = option("--dataset", _dataset_help, "fashion-mnist", at=40)
    val_fraction: float | None = option(  # None: runner.data.folders.DEFAULT_VAL_FRACTION where a split is made
        "--val-fraction", "folder:PATH without val/: the share of each class held out for validation, the same "
        "split for every run (a fixed seed, recorded; default 0.2)", at=42, type=fraction, metavar="F")
    label_columns: tuple[str, str] | None = option(
        "--label-columns", "folder:PATH with a labels CSV: its file-id and class columns (default: found from the "
        "file)", at=44, parse=_two_names, metavar="ID,CLASS")
    skip_unreadable: bool = option(
        "--skip-unreadable", "folder:PATH: train on the images that can be read when some cannot (the count is "
        "recorded), instead of stopping with the list", False, at=46, action="store_true")
    regime: str = option(
        "--regime", "the paper's ResNet-50 roadmap (Figure 2, default) or its ResNet-200 one (Appendix C)",
        "resnet50", at=170, choices=list(REGIMES))
    upto: str | None = option("--upto", "train the roadmap up to this step (default: all of it)", at=10,
                              commands=("run",), metavar="STEP")
    steps: tuple[str, ...] | None = option(  # exactly these specs (`timm:NAME` included)
        "--steps", "train exactly these specs, e.g. convnext_tiny-layer_norm", at=20, commands=("run",),
        parse=_specs, metavar="A,B,...")
    branches: bool = option(  # with --upto: the kernel sweep's branches too (see steps.catalog.steps_upto)
        "--no-branches", "skip the kernel 5/9/11 branches (run only)", True, at=160, parse=_not, action="store_true")
    orders: tuple[tuple[str, ...], ...] = option(  # step orders to train as paths from the start
        "--order", "also train the path that applies these steps one at a time, in this order, from resnet50 "
        "(e.g. --order gelu,layer_norm,patchify_stem); repeat for more orders; the report compares the paths on the "
        "accuracy-GFLOPs plot", (), at=30, commands=("run",), parse=_orders, action="append", metavar="A,B,...")
    baselines: tuple[str, ...] = option(  # timm model names trained beside the roadmap
        "--baselines", "also train these timm models (e.g. swin_tiny_patch4_window7_224,resnet50) with the same "
        "recipe, data and budget, as reference points in the report (specs timm:NAME)", (), at=270, parse=_names,
        metavar="NAME,...")
    seeds: int | None = option(  # None: the preset's
        "--seeds", "train each step with seeds 0..N-1 (default: the preset's, 3 for cpu, 1 otherwise)", at=120,
        type=positive_int)
    only_seed: int | None = option("--only-seed", None, at=900, type=int)  # a launcher's child trains one seed


@dataclass(frozen=True)
class Training:
    """How to train: the budget preset and what overrides it, the design overrides, and the step's mechanics."""

    preset: str = option("--preset", "; ".join(f"{k}: {v.note}" for k, v in PRESETS.items()) + " (default: quick)",
                         "quick", at=60, choices=list(PRESETS))
    epochs: int | None = option("--epochs", "modern-recipe epochs (the original recipe keeps 90:300)", at=70,
                                type=positive_int)
    batch_size: int | None = option("--batch-size", "global batch; the lr scales linearly with it", at=90,
                                    type=positive_int)
    img_size: int | None = option("--img-size", "training resolution (default: the dataset's)", at=100,
                                  type=positive_int)
    same_epochs: bool = option("--same-epochs", "give the original recipe the same epochs too", False, at=80,
                               action="store_true")
    train_batches: int | None = option("--train-batches", "at most N training batches per epoch (0 = all)", at=190,
                                       type=int, metavar="N")
    val_batches: int | None = option("--val-batches", "at most N validation batches (0 = all)", at=200, type=int,
                                     metavar="N")
    sets: tuple[str, ...] = option(  # --set KEY=VALUE design/recipe overrides
        "--set", "override a design or recipe field for every step, e.g. --set drop_path_rate=0 --set "
        "recipe.lr=0.002 (see `roadmap show STEP` for the fields)", (), at=150, parse=lambda v: tuple(v or ()),
        action="append", metavar="KEY=VALUE")
    init_from: str | None = option(  # fine-tune from these weights with the paper's fine-tuning recipe
        "--init-from", "fine-tune from a torchvision ResNet-50 or timm/official ConvNeXt checkpoint with the paper's "
        "fine-tuning recipe (AdamW 5e-5, layer decay 0.8, no mixup/cutmix, head init 0.001)", at=260, metavar="PATH")
    micro_batch: int | str | None = option(  # gradient accumulation (None: the whole batch)
        "--micro-batch", "gradient accumulation: N images per forward/backward on each process, batch/N of them per "
        "optimizer step (N must divide the per-process batch; the lr still follows --batch-size); auto: the largest "
        "that fits in free GPU memory (on CPU the whole batch). BatchNorm steps then see micro-batch statistics, as "
        "in the paper's code (default: the whole batch at once)", at=110, type=micro_batch, metavar="N|auto")
    compile: bool = option("--compile", "torch.compile the model", False, at=220, action="store_true")


@dataclass(frozen=True)
class Machine:
    """Where: the device, the data's location and how it reaches the device."""

    device: str = option("--device", "auto, cpu, cuda, cuda:INDEX or mps (Apple silicon, untested; default: auto, "
                         "CUDA when there is one, else the CPU)", "auto", at=130)
    precision: str = option(  # runner.precision.choose_precision
        "--precision", "auto (default): bf16 on GPUs with bf16 hardware (compute capability 8.0+), fp16 with loss "
        "scaling on older GPUs, fp32 on the CPU and on mps; or force bf16, fp16 or fp32", "auto", at=132,
        choices=["auto", "bf16", "fp16", "fp32"])
    data_dir: str | None = option("--data-dir", "where the dataset is (or goes); default: the cache", at=50,
                                  metavar="PATH")
    data_path: str = option(  # see runner.devices.choose_data_path
        "--data-path", "device: keep the images on the device and augment them there, batched (image files are "
        "decoded once); loader: the CPU DataLoader; auto (default): device on CUDA when the images take at most half "
        "the free GPU memory, else loader", "auto", at=230, choices=["auto", "loader", "device"])
    workers: int | None = option(  # DataLoader processes (None: see runner.devices.default_workers)
        "--workers", "data-loading processes (default: 8 on CUDA, 0 on CPU)", at=210, type=int, metavar="N")
    jobs: int | None = option(  # >1: runner.launchers.children.launch_cpu (not part of a run's identity)
        "--jobs", "runs trained at once on the CPU, each an ordinary `roadmap run` process of its own (the run's "
        "lock, resume, its log in OUT/logs/) with --threads-per-job threads; each run's numbers equal those of the "
        "run trained alone with as many threads (default: with --preset cpu on the CPU one run per core, 1 thread "
        "each, the fastest measured in docs/bench-cpu.md; otherwise 1, one run after another)", at=212,
        type=positive_int, metavar="N")  # None: runner.devices.default_jobs decides
    threads_per_job: int | None = option(  # None: the cores shared out (--jobs N), or torch's own (one job)
        "--threads-per-job", "torch threads of each run's process (default: with --jobs N the CPU cores / N, at "
        "least 1; with one job torch's own default)", at=214, type=positive_int, metavar="T")


@dataclass(frozen=True)
class Output:
    """What to write and say: the result directory, the plan, progress, trackers, the report."""

    out: str | None = option("--out", "result directory (default: runs/<dataset>)", at=140, metavar="DIR")
    dry_run: bool = option("--dry-run", "print the plan (params, GFLOPs, cost, status) and stop", False, at=180,
                           action="store_true")
    progress: bool | None = option(  # None: progress bars when stderr is a terminal
        "--quiet", "no progress bars (one line per epoch instead)", at=240,
        parse=lambda quiet: False if quiet else None, action="store_true")
    report: bool = option("--no-report", "do not write the report at the end", True, at=250, parse=_not,
                          action="store_true")  # the CLI writes the report after the runs
    write_plan: bool = option(  # False for a launcher's child process: the parent owns plan.json
        "--no-plan", None, True, at=910, parse=_not, action="store_true")
    tracker: str | None = option(
        "--log", "also log each epoch to TensorBoard or Weights & Biases (imported only when asked for)", at=280,
        choices=["tensorboard", "wandb"])
    command: str = ""  # the command line, as recorded in plan.json and config.json (no flag: the CLI's argv)

    def shows_progress(self) -> bool:
        """Whether to draw progress bars: never with --quiet, else when stderr is a terminal."""
        return sys.stderr.isatty() if self.progress is None else self.progress


@dataclass(frozen=True)
class RunOptions:
    """Everything `roadmap run` was asked for."""

    selection: Selection = field(default_factory=Selection)
    training: Training = field(default_factory=Training)
    machine: Machine = field(default_factory=Machine)
    output: Output = field(default_factory=Output)
