"""The result records, typed: one run's config.json, metrics.jsonl lines and result.json, and an --out's plan.json.

The one definition of the record format (docs/records.md explains it): the runner writes these dataclasses, the
reports read them, and the test fixtures build them. Imports no torch, so reading records stays cheap.

Reading is tolerant, because records outlive the code that wrote them and crashes leave partial files behind: a
field a file lacks reads as its default (None for most), a value of the wrong JSON type reads as missing, and keys
this version does not know are ignored. A file without `schema_version` is version 1 (every file written before
the version was recorded); one from a newer version is unreadable, with a message that says so.

Versions: 1, the fields as first recorded; 2, result.json's `finished` (when the run ended, UTC). A version-1 result
reads with `finished` None.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from roadmap.record_files import Unreadable, load_json, load_jsonl

SCHEMA_VERSION = 2
"""The version of the record format written now (2: result.json records `finished`). Files without the field are
version 1."""

CONFIG, METRICS, RESULT, PLAN = "config.json", "metrics.jsonl", "result.json", "plan.json"
"""The file names of a run's records (in its directory) and of the plan (in the --out directory)."""

BASELINE_PREFIX = "timm:"
"""Specs of reference models (`timm:NAME`), trained beside the roadmap with the same recipe."""

R = TypeVar("R")


def _version() -> Any:
    """`schema_version`: written as SCHEMA_VERSION, read as 1 from a file without it (written before it was
    recorded)."""
    return field(default=SCHEMA_VERSION, metadata={"absent": 1})


def _omit_none() -> Any:
    """A field written only when it has a value (older files, and runs without the option, lack the key)."""
    return field(default=None, metadata={"omit_none": True})


class Record:
    """JSON conversion shared by the record dataclasses: `to_dict` in field order, tolerant `from_dict`."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this record, keys in field order; fields marked omit-none are left out when None."""
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None and f.metadata.get("omit_none"):
                continue
            out[f.metadata.get("key", f.name)] = _plain(value)
        return out

    def to_json(self) -> str:
        """The file's text: indented JSON and a final newline (config.json, result.json, plan.json)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls: type[R], data: Any) -> R:
        """Read a JSON object leniently (see the module's docstring); a non-object reads as an empty one."""
        data = data if isinstance(data, dict) else {}
        hints = _hints(cls)
        values = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            key = f.metadata.get("key", f.name)  # the JSON key, where it is no Python name ("class")
            if key in data:
                values[f.name] = _coerce(hints[f.name], data[key])
            elif "absent" in f.metadata:  # what a file without the key means (schema_version: 1)
                values[f.name] = f.metadata["absent"]
            elif f.default is not dataclasses.MISSING:
                values[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                values[f.name] = f.default_factory()
            else:
                values[f.name] = None
        return cls(**values)


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(hint: Any, value: Any) -> Any:
    """`value` as the annotated type, or None where it has another JSON type (a damaged or foreign file)."""
    if value is None:
        return None
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for option in options:
        origin = typing.get_origin(option) or option
        if option is Any:
            return value
        if isinstance(option, type) and issubclass(option, Record):
            if isinstance(value, dict):
                return option.from_dict(value)
        elif origin is list and isinstance(value, list):
            (item,) = typing.get_args(option) or (Any,)
            return [v for v in (_coerce(item, v) for v in value) if v is not None]
        elif origin is dict and isinstance(value, dict):
            return value
        elif option is bool and isinstance(value, bool):
            return value
        elif option in (int, float) and isinstance(value, int | float) and not isinstance(value, bool):
            return value
        elif option is str and isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
    return None


# -------------------------------------------------------------------------------------------------- config.json


@dataclass(frozen=True)
class Section(Record):
    """The paper section a step belongs to (Section 2's "Starting point", 2.2's "Macro design", ...)."""

    key: str = ""
    number: str = ""
    title: str = ""


BASELINE_SECTION = Section(key="baseline", number="", title="Reference models (timm)")
"""The section of a baseline (`timm:NAME`), in its config.json and in reports."""


@dataclass(frozen=True)
class PaperNumbers(Record):
    """The paper's ImageNet-1K top-1 and GFLOPs for a step (null in config.json for a composed spec)."""

    top1: float | None = None
    gflops: float | None = None
    footnote: str = ""


@dataclass(frozen=True)
class Complexity(Record):
    """Params and GFLOPs (multiply-accumulates) as trained, and of the full-size network at 224 px."""

    params: int | None = None  # the network as trained (after the preset's width/depth scaling)
    gflops_run: float | None = None  # ... at the run's resolution
    img_size: int | None = None
    gflops_224: float | None = None  # full size at 224 px, 1000 classes: the paper's column
    params_224: int | None = None


@dataclass(frozen=True)
class DatasetInfo(Record):
    """The data set a run trained on."""

    name: str | None = None
    num_classes: int | None = None
    classes: list[str] = field(default_factory=list)
    train_size: int | None = None
    val_size: int | None = None
    img_size: int | None = None
    synthetic: bool = False
    # a user's folder (`folder:PATH`); written only where they apply, so other data sets' records are as before
    layout: str | None = _omit_none()  # how it was read: "class folders", "train/ and val/", "labels.csv (...)"
    split: dict[str, Any] | None = _omit_none()  # the split made from it: {"val_fraction": 0.2, "seed": 0}
    skipped: int | None = _omit_none()  # unreadable image files left out (--skip-unreadable)


@dataclass(frozen=True)
class Budget(Record):
    """The effective training budget of one run (stored in its config.json; runner.planning.budget derives it)."""

    preset: str
    epochs: int
    batch_size: int
    lr: float  # after linear scaling to `batch_size`
    warmup_epochs: float
    img_size: int
    train_batches: int  # 0 = all
    val_batches: int  # validation batches of the last epoch (0 = all): the run's result
    epochs_rule: str  # how `epochs` was derived, for the report
    monitor_batches: int = 0  # validation batches of the epochs before the last (0 = as many as the last)
    # The optimizer steps the plan counts (epochs x the training set's batches an epoch, at most train_batches), and
    # the preset's budget they reach: budget_epochs epochs of budget_batches batches; epochs > budget_epochs where
    # the training set has fewer batches an epoch. Absent from older records, and budget_* from a budget in epochs
    # (--epochs, --train-batches 0, the paper preset). Not part of the run's identity (derived from what is).
    steps: int | None = _omit_none()
    budget_epochs: int | None = _omit_none()
    budget_batches: int | None = _omit_none()


@dataclass(frozen=True)
class RunConfig(Record):
    """config.json: everything needed to reproduce a run and to report on it without the code.

    `design` is `roadmap.Design.to_dict()` after budget scaling, or for a timm baseline {"timm_model", "drop_path_rate",
    "recipe"}; `identity` is what the run directory's hash is taken of (runner.store.run_id); `micro_batch` is
    present only when --micro-batch was given (how each optimizer step is computed, not part of the identity);
    `augment` only where the device path's augmentation could be compiled or eager (on CUDA, or with --compile):
    which one ran (its draws differ, not its distribution; not part of the identity either).
    """

    schema_version: int = _version()
    run_id: str | None = None
    step: str | None = None  # the spec as trained: a step name, or e.g. "convnext_tiny-layer_norm" or "timm:NAME"
    step_name: str | None = None  # the last step of the spec's path
    section: Section | None = None
    branch_of: str | None = None  # "move_up_dwconv" for kernel_5/9/11
    baseline: str | None = _omit_none()  # a reference model's timm name
    paper: PaperNumbers | None = None  # None for a composed spec (not a paper model)
    seed: int | None = None
    regime: str | None = None
    complexity: Complexity | None = None
    dataset: DatasetInfo | None = None
    budget: Budget | None = None
    design: dict[str, Any] | None = None
    identity: dict[str, Any] | None = None
    device: str | None = None
    precision: str | None = _omit_none()  # bf16, fp16 or fp32 (records before --precision: bf16 on CUDA, else fp32)
    code_version: str | None = None
    git_revision: str | None = None
    packages: dict[str, Any] | None = None
    command: str | None = None
    created: str | None = None
    micro_batch: dict[str, Any] | None = _omit_none()
    augment: str | None = _omit_none()  # the device path's augmentation: "compiled" or "eager" (CUDA, --compile)


# ------------------------------------------------------------------------------------ metrics.jsonl, result.json


@dataclass(frozen=True)
class EpochMetrics(Record):
    """One line of metrics.jsonl: a finished epoch (accuracies in percent, `epoch` from 1).

    `images_per_s` counts the epoch's training steps (data included, evaluation not; with --compile, the steps
    after the first, whose time is `compile_seconds`); `seconds` is the epoch's wall time, evaluation included.
    """

    epoch: int | None = None
    train_loss: float | None = None
    train_top1: float | None = None
    images_per_s: float | None = None
    compile_seconds: float | None = _omit_none()
    val_loss: float | None = None
    val_top1: float | None = None
    val_top5: float | None = None
    lr: float | None = None  # at the end of the epoch
    seconds: float | None = None
    eval_compile_seconds: float | None = _omit_none()
    skipped_steps: int | None = _omit_none()  # fp16: optimizer steps the loss scaler skipped (gradients overflowed)

    def to_line(self) -> str:
        """The metrics.jsonl line, without its newline."""
        return json.dumps(self.to_dict())


@dataclass(frozen=True)
class Diverged(Record):
    """Where the loss became NaN/inf."""

    epoch: int | None = None
    lr: float | None = None


@dataclass(frozen=True)
class ClassScore(Record):
    """Precision, recall and F1 (percent) of one class on the validation set."""

    class_: str | None = field(default=None, metadata={"key": "class"})
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    support: int | None = None


@dataclass(frozen=True)
class RunResult(Record):
    """result.json: written once, when a run ends ("done", or "diverged" when the loss became NaN/inf), at the time
    `finished` records (from version 2 on; a run's config.json records when it was `created`)."""

    schema_version: int = _version()
    status: str = "done"
    epochs: int | None = None
    val_top1: float | None = None
    val_top5: float | None = None
    train_top1: float | None = None
    best_val_top1: float | None = None
    wall_seconds: float | None = None
    finished: str | None = _omit_none()  # when the run ended, UTC ("2026-12-02T19:46:43Z"); version 1 lacks it
    images_per_s: float | None = None
    compile_seconds: float | None = None  # with --compile: the first steps' compile time, summed over (re)starts
    eval_compile_seconds: float | None = _omit_none()  # with --compile: the first eval batches' compile time
    diverged: Diverged | None = None
    per_class: list[ClassScore] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------ plan.json


@dataclass(frozen=True)
class PlanEntry(Record):
    """One run a plan meant to produce, and the directory it goes to."""

    step: str | None = None
    seed: int | None = None
    dir: str | None = None


@dataclass(frozen=True)
class OrderRecord(Record):
    """One --order: the steps added, in order, and the spec of each node (the first is the starting model)."""

    steps: list[str] = field(default_factory=list)
    specs: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Plan(Record):
    """plan.json: what the last `roadmap run` on an --out directory meant to produce (reports show "missing")."""

    schema_version: int = _version()
    steps: list[str] = field(default_factory=list)
    seeds: int | None = None
    dataset: str | None = None
    regime: str | None = None
    img_size: int | None = None
    preset: str | None = None
    command: str | None = None
    created: str | None = None
    orders: list[OrderRecord] = field(default_factory=list)
    runs: list[PlanEntry] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------ reading


class NotARecord(Unreadable):
    """A file that is valid JSON but not the record it should be (wrong shape, or from a newer version)."""


def _versioned(path: Path, data: Any, kind: str) -> dict[str, Any]:
    """`data` (parsed from `path`) as a JSON object of a version this code reads; NotARecord otherwise."""
    if not isinstance(data, dict):
        raise NotARecord(f"{path} is not a {kind} (expected a JSON object)", f"{path.name} is no {kind}")
    version = data.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version > SCHEMA_VERSION:
        raise NotARecord(f"{path} has schema_version {version!r}, newer than this code reads ({SCHEMA_VERSION}): "
                         "upgrade convnext-roadmap to read it", f"{path.name} from a newer version")
    return data


def precision_of(device: str | None, recorded: str | None = None) -> str:
    """The precision a run trained in: as its config.json records it, or for a record written before --precision
    existed, what its device trained in then (bf16 autocast on CUDA, fp32 elsewhere)."""
    if recorded:
        return recorded
    return "bf16" if (device or "").startswith("cuda") else "fp32"


def read_config(path: Path) -> RunConfig:
    """A run's config.json; Unreadable when it is missing or not JSON, NotARecord when it names no step."""
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("step"), str):
        raise NotARecord(f"{path} is not a run config (no 'step')", "config.json has no step")
    return RunConfig.from_dict(_versioned(path, data, "run config"))


def read_result(path: Path) -> RunResult:
    """A run's result.json; Unreadable when it is missing or not JSON, NotARecord when it is no result object."""
    return RunResult.from_dict(_versioned(path, load_json(path), "result"))


def read_metrics(path: Path) -> list[EpochMetrics]:
    """The finished epochs of a metrics.jsonl (none when it does not exist; a torn last line dropped with a
    warning; Unreadable for a malformed line before it)."""
    return [EpochMetrics.from_dict(row) for row in load_jsonl(path)]


def read_plan(path: Path) -> Plan:
    """An --out directory's plan.json; Unreadable when it is not JSON, NotARecord when it has no 'steps' list."""
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("steps", []), list):
        raise NotARecord(f"{path} is not a plan (expected an object with a 'steps' list)", "plan.json is no plan")
    return Plan.from_dict(_versioned(path, data, "plan"))
