"""What `roadmap run` was asked for, in four groups: what to run, how to train it, on what machine, and what to
write. The CLI builds them from its flags; the runner only reads them (frozen)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Selection:
    """What to run: which steps of which regime, on which data set, with how many seeds."""

    dataset: str = "fashion-mnist"
    regime: str = "resnet50"
    upto: str | None = None  # the roadmap up to this step (default: all of it)
    steps: tuple[str, ...] | None = None  # exactly these specs (`timm:NAME` included)
    branches: bool = True  # with --upto: the kernel sweep's branches too (see steps.catalog.steps_upto)
    orders: tuple[tuple[str, ...], ...] = ()  # step orders to train as paths from the start
    baselines: tuple[str, ...] = ()  # timm model names trained beside the roadmap
    seeds: int | None = None  # None: the preset's
    only_seed: int | None = None  # a launcher's child trains one seed


@dataclass(frozen=True)
class Training:
    """How to train: the budget preset and what overrides it, the design overrides, and the step's mechanics."""

    preset: str = "quick"
    epochs: int | None = None
    batch_size: int | None = None
    img_size: int | None = None
    same_epochs: bool = False  # the original recipe gets the same epochs too
    train_batches: int | None = None
    val_batches: int | None = None
    sets: tuple[str, ...] = ()  # --set KEY=VALUE design/recipe overrides
    init_from: str | None = None  # fine-tune from these weights with the paper's fine-tuning recipe
    micro_batch: int | str | None = None  # --micro-batch N|auto: gradient accumulation (None: the whole batch)
    compile: bool = False


@dataclass(frozen=True)
class Machine:
    """Where: the device, the data's location and how it reaches the device."""

    device: str = "auto"
    data_dir: str | None = None
    data_path: str = "auto"  # auto | loader | device (see runner.devices.choose_data_path)
    workers: int | None = None  # DataLoader processes (None: see runner.devices.default_workers)


@dataclass(frozen=True)
class Output:
    """What to write and say: the result directory, the plan, progress, trackers, the report."""

    out: str | None = None  # default: runs/<dataset>
    dry_run: bool = False  # print the plan and stop
    progress: bool | None = None  # None: progress bars when stderr is a terminal
    report: bool = True  # the CLI writes the report after the runs
    write_plan: bool = True  # False for a launcher's child process: the parent owns plan.json
    tracker: str | None = None  # --log tensorboard|wandb
    command: str = ""  # the command line, as recorded in plan.json and config.json


@dataclass(frozen=True)
class RunOptions:
    """Everything `roadmap run` was asked for."""

    selection: Selection = field(default_factory=Selection)
    training: Training = field(default_factory=Training)
    machine: Machine = field(default_factory=Machine)
    output: Output = field(default_factory=Output)
