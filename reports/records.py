"""Read the result records of an `--out` directory (docs/records.md) into one pandas row per run.

Only the stored files are read, through roadmap.schema: plan.json, and per run directory config.json,
metrics.jsonl, result.json and the `lock` file (to tell a run that is training now from one that was interrupted).
Nothing here needs the model code: each config.json carries its step's section, paper numbers and complexity; the
step catalog (pure Python) gives the roadmap's order and describes steps no record describes.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from roadmap.record_files import Unreadable, fail, lock_held
from roadmap.schema import (
    BASELINE_PREFIX,
    BASELINE_SECTION,
    CONFIG,
    METRICS,
    RESULT,
    Budget,
    Complexity,
    DatasetInfo,
    EpochMetrics,
    NotARecord,
    PaperNumbers,
    Plan,
    RunConfig,
    RunResult,
    Section,
    precision_of,
    read_config,
    read_metrics,
    read_result,
)
from roadmap.schema import read_plan as read_plan_file
from steps import ALIASES, ROADMAP, STEPS

CANONICAL_ORDER: tuple[str, ...] = tuple(step.name for step in ROADMAP)
"""The roadmap's steps in Figure 2's order (the catalog's): used only to order steps when plan.json is missing."""

RUN_COLUMNS: tuple[str, ...] = (
    "run_id", "step", "step_name", "seed", "status", "status_text", "counted", "excluded", "order",
    "section_key", "section_number", "section_title", "branch_of", "baseline",
    "paper_top1", "paper_gflops", "paper_footnote",
    "params", "params_224", "gflops_224", "gflops_run", "img_size",
    "dataset", "num_classes", "classes", "train_size", "val_size", "synthetic", "data_layout", "data_split",
    "skipped", "preset", "epochs", "batch_size", "lr", "warmup_epochs", "train_batches", "val_batches", "epochs_rule",
    "steps", "budget_epochs", "budget_batches",
    "recipe", "optimizer", "schedule", "ema", "device", "precision", "code_version", "git_revision", "packages",
    "command", "created", "finished",
    "epochs_done", "diverged_epoch", "val_top1", "val_top5", "train_top1", "best_val_top1",
    "wall_seconds", "images_per_s", "last_epoch", "last_train_loss", "last_val_top1",
    "per_class", "metrics", "unreadable",
)
"""Columns of `load_runs`; `per_class`, `metrics`, `classes` and `packages` hold Python lists/dicts; `unreadable`
says why a run's records cannot be read (empty for the others)."""

_NUMERIC = ("seed", "paper_top1", "paper_gflops", "params", "params_224", "gflops_224", "gflops_run", "img_size",
            "num_classes", "train_size", "val_size", "epochs", "batch_size", "lr", "warmup_epochs", "train_batches",
            "val_batches", "steps", "budget_epochs", "budget_batches",
            "epochs_done", "diverged_epoch", "val_top1", "val_top5", "train_top1", "best_val_top1", "wall_seconds",
            "images_per_s", "last_epoch", "last_train_loss", "last_val_top1")

_RECORDS = (CONFIG, METRICS, RESULT, "checkpoint.pt")
"""A directory with any of these is a run's (one with a lock alone has not started)."""

# Fields that describe the step itself (not the run): borrowed by a *missing* step from any other config of it.
_STEP_FIELDS = ("step_name", "section_key", "section_number", "section_title", "branch_of", "baseline",
                "paper_top1", "paper_gflops", "paper_footnote")


def read_plan(out_dir: str | Path) -> Plan | None:
    """plan.json of `out_dir` (what the last `roadmap run` meant to produce), or None when there is none."""
    path = Path(out_dir) / "plan.json"
    if not path.is_file():
        return None
    try:
        return read_plan_file(path)
    except NotARecord as e:
        fail(f"{e}: fix it or delete it")
    except Unreadable as e:
        fail(f"{e}: fix it or delete plan.json (the report then orders steps by the roadmap)")


def _or(value: Any, default: Any) -> Any:
    """`value`, or `default` where the record lacks it (None)."""
    return default if value is None else value


def _num(value: Any) -> float:
    """A float for numeric values, NaN for anything else (None: missing from the record)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)


def _status(result: RunResult | None, metrics: list[EpochMetrics], epochs: float,
            lock: Path) -> tuple[str, str, float]:
    """(status, status text, diverged epoch) of one run, from result.json or, without one, its lock."""
    last = _num(metrics[-1].epoch) if metrics else math.nan
    of = f"/{int(epochs)}" if not math.isnan(epochs) else ""
    if result is None:
        if lock_held(lock):
            text = f"running (epoch {int(last)}{of} done)" if not math.isnan(last) else "running (first epoch)"
            return "running", text, math.nan
        text = f"interrupted after epoch {int(last)}{of}" if not math.isnan(last) else "interrupted before epoch 1"
        return "interrupted", text, math.nan
    if result.status == "diverged":
        epoch = _num(result.diverged.epoch if result.diverged else None)
        return "diverged", (f"diverged at epoch {int(epoch)}" if not math.isnan(epoch) else "diverged"), epoch
    return result.status, result.status, math.nan


def _run_row(run_dir: Path) -> dict[str, Any]:
    """One run directory as a flat dict of RUN_COLUMNS; Unreadable when its config or result cannot be read."""
    config = read_config(run_dir / CONFIG)
    result = read_result(run_dir / RESULT) if (run_dir / RESULT).is_file() else None
    metrics = read_metrics(run_dir / METRICS)
    return {"run_id": run_dir.name, **_config_columns(config), **_outcome_columns(config, result, metrics, run_dir),
            "unreadable": ""}


def _config_columns(cfg: RunConfig) -> dict[str, Any]:
    """The columns config.json gives: the step, its paper numbers and complexity, the data, budget and provenance.
    Parts an older or damaged config lacks read as empty (NaN, "?" or "")."""
    section, paper, size = cfg.section or Section(), cfg.paper or PaperNumbers(), cfg.complexity or Complexity()
    data, budget = cfg.dataset or DatasetInfo(), cfg.budget or Budget.from_dict({})
    recipe = _or(cfg.design, {}).get("recipe")
    recipe = recipe if isinstance(recipe, dict) else {}
    return {
        "step": cfg.step, "step_name": _or(cfg.step_name, cfg.step), "seed": _num(cfg.seed),
        "section_key": section.key, "section_number": section.number, "section_title": section.title,
        "branch_of": cfg.branch_of, "baseline": cfg.baseline,
        "paper_top1": _num(paper.top1), "paper_gflops": _num(paper.gflops), "paper_footnote": paper.footnote,
        "params": _num(size.params), "params_224": _num(size.params_224), "gflops_224": _num(size.gflops_224),
        "gflops_run": _num(size.gflops_run), "img_size": _num(_or(size.img_size, data.img_size)),
        "dataset": _or(data.name, "?"), "num_classes": _num(data.num_classes), "classes": data.classes,
        "train_size": _num(data.train_size), "val_size": _num(data.val_size), "synthetic": bool(data.synthetic),
        "data_layout": _or(data.layout, ""), "data_split": _or(data.split, {}), "skipped": _num(data.skipped),
        "preset": _or(budget.preset, "?"), "epochs": _num(budget.epochs), "batch_size": _num(budget.batch_size),
        "lr": _num(budget.lr), "warmup_epochs": _num(budget.warmup_epochs),
        "train_batches": _num(budget.train_batches), "val_batches": _num(budget.val_batches),
        "epochs_rule": _or(budget.epochs_rule, ""), "steps": _num(budget.steps),
        "budget_epochs": _num(budget.budget_epochs), "budget_batches": _num(budget.budget_batches),
        "recipe": _or(recipe.get("name"), "?"), "optimizer": _or(recipe.get("optimizer"), "?"),
        "schedule": _or(recipe.get("schedule"), "?"), "ema": bool(_or(recipe.get("ema"), False)),
        "device": _or(cfg.device, "?"), "precision": precision_of(cfg.device, cfg.precision),
        "code_version": _or(cfg.code_version, "?"),
        "git_revision": _or(cfg.git_revision, ""), "packages": _or(cfg.packages, {}), "command": _or(cfg.command, ""),
        "created": _or(cfg.created, ""),
    }


def _outcome_columns(cfg: RunConfig, result: RunResult | None, metrics: list[EpochMetrics],
                     run_dir: Path) -> dict[str, Any]:
    """The columns result.json and metrics.jsonl give: status, accuracies, time and the per-epoch history. An
    unfinished run (no result.json) takes its time and speed from its finished epochs."""
    epochs = _num(cfg.budget.epochs if cfg.budget else None)
    status, text, div_epoch = _status(result, metrics, epochs, run_dir / "lock")
    res = result or RunResult.from_dict({})
    last = metrics[-1] if metrics else EpochMetrics()
    seconds = [_num(m.seconds) for m in metrics]
    speeds = [_num(m.images_per_s) for m in metrics]
    wall = _num(res.wall_seconds)
    if math.isnan(wall) and seconds and not any(math.isnan(s) for s in seconds):
        wall = sum(seconds)  # an unfinished run: the time of its finished epochs
    speed = _num(res.images_per_s)
    if math.isnan(speed) and speeds and not all(math.isnan(s) for s in speeds):
        speed = float(pd.Series(speeds).mean())
    return {
        "status": status, "status_text": text,
        "epochs_done": _num(res.epochs if res.epochs is not None else last.epoch), "diverged_epoch": div_epoch,
        "val_top1": _num(res.val_top1), "val_top5": _num(res.val_top5), "train_top1": _num(res.train_top1),
        "best_val_top1": _num(res.best_val_top1), "wall_seconds": wall, "finished": _or(res.finished, ""),
        "images_per_s": speed,
        "last_epoch": _num(last.epoch), "last_train_loss": _num(last.train_loss), "last_val_top1": _num(last.val_top1),
        "per_class": [c.to_dict() for c in res.per_class if c.class_ is not None],
        "metrics": [m.to_dict() for m in metrics],
    }


def _unreadable_row(run_dir: Path, error: Unreadable, plan: Plan | None,
                    known: list[dict[str, Any]]) -> dict[str, Any]:
    """A run directory whose records cannot be read: its step and seed from plan.json or from its name
    (`<step>-s<seed>-<hash>`), the reason in `status_text` (short) and `unreadable` (in full)."""
    entry = next((r for r in (plan.runs if plan else []) if r.dir == run_dir.name), None)
    named = re.fullmatch(r"(.+)-s(\d+)-[0-9a-f]{10}", run_dir.name)
    if entry is not None and entry.step is not None:
        step, seed = entry.step, entry.seed
    else:
        step, seed = (named.group(1), int(named.group(2))) if named else (run_dir.name, None)
    row = _missing_row(step, seed, run_dir.name, known)
    row.update(status="unreadable", status_text=f"unreadable ({error.short})", created="",
               unreadable=f"`{run_dir.name}`: {error}; fix or delete that file (the run is then resumed or retrained)")
    return row


def _missing_row(step: str, seed: Any, run_id: str, known: list[dict[str, Any]]) -> dict[str, Any]:
    """A planned run with no directory; its step's description is borrowed from any config of that step."""
    row: dict[str, Any] = {c: None for c in RUN_COLUMNS}
    row.update(run_id=run_id, step=step, step_name=step, seed=_num(seed), status="missing", status_text="missing",
               per_class=[], metrics=[], classes=[], packages={}, synthetic=False, ema=False, unreadable="",
               section_key="", section_number="", section_title="", paper_footnote="")
    for other in known:
        if other["step"] == step or other["step_name"] == step:
            row.update({k: other[k] for k in _STEP_FIELDS})
            return row
    if step.startswith(BASELINE_PREFIX):
        row.update(baseline=step[len(BASELINE_PREFIX):], section_key=BASELINE_SECTION.key,
                   section_title=BASELINE_SECTION.title)
    else:
        row.update(_catalog_fields(step))
    return row


def aliases() -> dict[str, str]:
    """Names users type for steps (`convnext_tiny`, section names) -> step names, from the step catalog."""
    return dict(ALIASES)


def _catalog_fields(step: str) -> dict[str, Any]:
    """A missing step's section, branch and paper numbers from the step catalog (pure Python, no torch).

    Only a step with no config.json anywhere needs this (so that, e.g., a missing kernel_11 still reads as a
    branch); a spec the catalog does not know is described by name only.
    """
    found = STEPS.get(step)
    if found is None:
        return {}
    return {"step_name": found.name, "section_key": found.section.key, "section_number": found.section.number,
            "section_title": found.section.title, "branch_of": found.branch_of, "paper_top1": found.paper_top1,
            "paper_gflops": found.paper_gflops, "paper_footnote": found.footnote}


def _order_keys(rows: list[dict[str, Any]], plan: Plan | None) -> dict[str, tuple[int, str, str]]:
    """Sort key per step spec: plan.json order, then the roadmap's order, then first-created order."""
    planned = plan.steps if plan else []
    first_created: dict[str, str] = {}
    for row in rows:
        created = row.get("created") or ""
        first_created[row["step"]] = min(first_created.get(row["step"], created), created)
    keys = {}
    for step, created in first_created.items():
        if step in planned:
            keys[step] = (0, f"{planned.index(step):04d}", "")
        elif step in CANONICAL_ORDER:
            keys[step] = (1, f"{CANONICAL_ORDER.index(step):04d}", "")
        else:
            keys[step] = (2, created, step)
    return keys


def load_runs(out_dir: str | Path) -> pd.DataFrame:
    """One row per run directory of `out_dir` (config + result + last metrics) and one per planned run that
    has no directory (status "missing"), in roadmap order.

    `status` is done / diverged / running / interrupted / unreadable / missing; `status_text` says it for a table
    ("diverged at epoch 3"). `counted` is False for runs a summary must leave out, with the reason in
    `excluded`: a run not in plan.json (left from an earlier plan), or an older duplicate of the same step and
    seed when there is no plan. `order` ranks the steps: plan.json's order, else the roadmap's.
    """
    out = Path(out_dir)
    plan = read_plan(_check_out(out))
    rows = _read_rows(out, plan)
    for row in rows:
        row["counted"], row["excluded"] = True, ""
    if plan is not None:
        rows += _apply_plan(rows, plan)
    _drop_older_duplicates(rows)
    return _frame(rows, plan)


def _check_out(out: Path) -> Path:
    """`out`, when it is a directory; a one-line error that says what to pass otherwise."""
    if not out.exists():
        fail(f"no such directory {out}: pass the --out directory that `roadmap run` wrote")
    if not out.is_dir():
        fail(f"{out} is not a directory: pass the --out directory that `roadmap run` wrote")
    return out


def _read_rows(out: Path, plan: Plan | None) -> list[dict[str, Any]]:
    """A row per run directory; a damaged run becomes an "unreadable" row and never hides the others."""
    dirs = sorted(p for p in out.iterdir() if p.is_dir() and any((p / f).is_file() for f in _RECORDS))
    if not dirs:
        fail(f"{out} contains no run records (no <run>/config.json): run `roadmap run --out {out}` first, "
             "or pass the directory it wrote")
    rows, broken = [], []
    for d in dirs:
        try:
            rows.append(_run_row(d))
        except Unreadable as e:
            broken.append((d, e))
    if not rows:
        fail(f"no run record in {out} can be read ({broken[0][1]}, ...): fix or delete the damaged files")
    return rows + [_unreadable_row(d, e, plan, rows) for d, e in broken]


def _apply_plan(rows: list[dict[str, Any]], plan: Plan) -> list[dict[str, Any]]:
    """Leave out the runs plan.json does not list (an earlier plan); return a "missing" row per planned run
    with no directory. An old plan.json without `runs` matches by step."""
    planned_runs = [r for r in plan.runs if r.step is not None]
    if planned_runs:
        wanted = {str(r.dir) for r in planned_runs}
        present = {row["run_id"] for row in rows}
        missing = [_missing_row(r.step, r.seed, str(r.dir or r.step), rows)
                   for r in planned_runs if str(r.dir) not in present]
    else:
        wanted = None
        missing = [_missing_row(step, None, step, rows) for step in plan.steps
                   if not any(row["step"] == step for row in rows)]
    for row in rows:
        if (row["run_id"] not in wanted) if wanted is not None else (row["step"] not in plan.steps):
            row["counted"], row["excluded"] = False, "not in plan.json (an earlier plan)"
    for row in missing:
        row["counted"], row["excluded"] = True, ""
    return missing


def _drop_older_duplicates(rows: list[dict[str, Any]]) -> None:
    """The same step and seed twice (budget or code changed between runs): the newest config counts."""
    newest: dict[tuple[str, float], dict[str, Any]] = {}
    for row in rows:
        if not row["counted"] or row["status"] in ("missing", "unreadable"):
            continue
        key = (row["step"], row["seed"])
        if key in newest:
            older, newer = sorted([newest[key], row], key=lambda r: (r["created"], r["run_id"]))
            older["counted"], older["excluded"] = False, f"older run of the same step and seed than {newer['run_id']}"
            newest[key] = newer
        else:
            newest[key] = row


def _frame(rows: list[dict[str, Any]], plan: Plan | None) -> pd.DataFrame:
    """The rows as a frame of RUN_COLUMNS, numeric columns as floats, sorted by step order, seed and run id."""
    keys = _order_keys(rows, plan)
    ranked = sorted(keys, key=lambda s: keys[s])
    for row in rows:
        row["order"] = ranked.index(row["step"])
    frame = pd.DataFrame(rows, columns=list(RUN_COLUMNS))
    for col in _NUMERIC:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    frame["seed_sort"] = frame["seed"].fillna(-1)
    frame = frame.sort_values(["order", "seed_sort", "run_id"], kind="stable").drop(columns="seed_sort")
    return frame.reset_index(drop=True)


def curves(runs: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch metrics of the counted runs, long format: step, seed, run_id, epoch and the metrics fields."""
    parts = []
    for row in runs[runs["counted"]].itertuples(index=False):
        if row.metrics:
            part = pd.DataFrame(row.metrics)
            part["step"], part["seed"], part["run_id"] = row.step, row.seed, row.run_id
            parts.append(part)
    cols = ["step", "seed", "run_id", "epoch", "train_loss", "val_top1"]
    if not parts:
        return pd.DataFrame(columns=cols)
    frame = pd.concat(parts, ignore_index=True)
    for col in cols:
        if col not in frame:
            frame[col] = math.nan
    for col in ("epoch", "train_loss", "val_top1"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame
