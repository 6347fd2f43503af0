"""Read the result records of an `--out` directory (docs/records.md) into one pandas row per run.

Only the stored files are read: plan.json, and per run directory config.json, metrics.jsonl, result.json and
the `lock` file (to tell a run that is training now from one that was interrupted). Nothing here needs the
step catalog or the model code: each config.json carries its step's section, paper numbers and complexity.
"""

from __future__ import annotations

import fcntl
import math
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd

from reports.errors import fail
from reports.files import Unreadable, load_json, load_jsonl

CANONICAL_ORDER: tuple[str, ...] = (
    "resnet50", "training_recipe", "stage_ratio", "patchify_stem", "depthwise_conv", "resnext_width",
    "inverted_bottleneck", "move_up_dwconv", "kernel_5", "large_kernel", "kernel_9", "kernel_11", "gelu",
    "fewer_activations", "fewer_norms", "layer_norm", "separate_downsampling",
)
"""The 17 steps in roadmap (Figure 2) order: used only to order steps when plan.json is missing."""

RUN_COLUMNS: tuple[str, ...] = (
    "run_id", "step", "step_name", "seed", "status", "status_text", "counted", "excluded", "order",
    "section_key", "section_number", "section_title", "branch_of", "baseline",
    "paper_top1", "paper_gflops", "paper_footnote",
    "params", "params_224", "gflops_224", "gflops_run", "img_size",
    "dataset", "num_classes", "classes", "train_size", "val_size", "synthetic",
    "preset", "epochs", "batch_size", "lr", "warmup_epochs", "train_batches", "val_batches", "epochs_rule",
    "recipe", "optimizer", "schedule", "ema", "device", "code_version", "git_revision", "packages", "command",
    "created",
    "epochs_done", "diverged_epoch", "val_top1", "val_top5", "train_top1", "best_val_top1",
    "wall_seconds", "images_per_s", "last_epoch", "last_train_loss", "last_val_top1",
    "per_class", "metrics", "unreadable",
)
"""Columns of `load_runs`; `per_class`, `metrics`, `classes` and `packages` hold Python lists/dicts; `unreadable`
says why a run's records cannot be read (empty for the others)."""

_NUMERIC = ("seed", "paper_top1", "paper_gflops", "params", "params_224", "gflops_224", "gflops_run", "img_size",
            "num_classes", "train_size", "val_size", "epochs", "batch_size", "lr", "warmup_epochs", "train_batches",
            "val_batches",
            "epochs_done", "diverged_epoch", "val_top1", "val_top5", "train_top1", "best_val_top1", "wall_seconds",
            "images_per_s", "last_epoch", "last_train_loss", "last_val_top1")

_RECORDS = ("config.json", "metrics.jsonl", "result.json", "checkpoint.pt")
"""A directory with any of these is a run's (one with a lock alone has not started)."""

# Fields that describe the step itself (not the run): borrowed by a *missing* step from any other config of it.
_STEP_FIELDS = ("step_name", "section_key", "section_number", "section_title", "branch_of", "baseline",
                "paper_top1", "paper_gflops", "paper_footnote")

BASELINE_PREFIX = "timm:"
"""Specs of reference models (`timm:NAME`), trained beside the roadmap with the same recipe."""
BASELINE_SECTION = {"key": "baseline", "number": "", "title": "Reference models (timm)"}
"""The section of a baseline, in its config.json (written by runner.baselines) and in reports."""


def read_json(path: Path, what_to_do: str) -> Any:
    """Parse one JSON file; a malformed one is a `RoadmapError` naming the file and saying `what_to_do`."""
    try:
        return load_json(path)
    except Unreadable as e:
        fail(f"{e}: {what_to_do}")


def read_plan(out_dir: str | Path) -> dict[str, Any] | None:
    """plan.json of `out_dir` (what the last `roadmap run` meant to produce), or None when there is none."""
    path = Path(out_dir) / "plan.json"
    if not path.is_file():
        return None
    plan = read_json(path, "fix it or delete plan.json (the report then orders steps by the roadmap)")
    if not isinstance(plan, dict) or not isinstance(plan.get("steps", []), list):
        fail(f"{path} is not a plan (expected an object with a 'steps' list): fix it or delete it")
    return plan


def lock_held(path: Path) -> bool:
    """Whether another process holds the run's `lock` (fcntl) right now, i.e. the run is training."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False  # no lock file: nobody trains this run
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False  # a file system without flock: cannot tell, so do not claim the run is alive
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _get(data: Any, *keys: str, default: Any = None) -> Any:
    """`data[k1][k2]...`, or `default` where a level is missing or not a dict."""
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return default
        data = data[key]
    return default if data is None else data


def _num(value: Any) -> float:
    """A float for numeric JSON values, NaN for anything else (null, missing, strings)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)


def _status(result: dict[str, Any] | None, metrics: list[dict[str, Any]], epochs: float,
            lock: Path) -> tuple[str, str, float]:
    """(status, status text, diverged epoch) of one run, from result.json or, without one, its lock."""
    last = _num(metrics[-1].get("epoch")) if metrics else math.nan
    of = f"/{int(epochs)}" if not math.isnan(epochs) else ""
    if result is None:
        if lock_held(lock):
            text = f"running (epoch {int(last)}{of} done)" if not math.isnan(last) else "running (first epoch)"
            return "running", text, math.nan
        text = f"interrupted after epoch {int(last)}{of}" if not math.isnan(last) else "interrupted before epoch 1"
        return "interrupted", text, math.nan
    status = str(result.get("status", "done"))
    if status == "diverged":
        epoch = _num(_get(result, "diverged", "epoch"))
        return "diverged", (f"diverged at epoch {int(epoch)}" if not math.isnan(epoch) else "diverged"), epoch
    return status, status, math.nan


def _run_row(run_dir: Path) -> dict[str, Any]:
    """One run directory as a flat dict of RUN_COLUMNS; Unreadable when its config or result cannot be read."""
    cfg = load_json(run_dir / "config.json")
    if not isinstance(cfg, dict) or not isinstance(cfg.get("step"), str):
        raise Unreadable(f"{run_dir / 'config.json'} is not a run config (no 'step')", "config.json has no step")
    result_path = run_dir / "result.json"
    result = None
    if result_path.is_file():
        result = load_json(result_path)
        if not isinstance(result, dict):
            raise Unreadable(f"{result_path} is not a result (expected a JSON object)", "result.json is no result")
    metrics = load_jsonl(run_dir / "metrics.jsonl")
    last = metrics[-1] if metrics else {}
    epochs = _num(_get(cfg, "budget", "epochs"))
    status, text, div_epoch = _status(result, metrics, epochs, run_dir / "lock")
    res = result or {}
    seconds = [_num(m.get("seconds")) for m in metrics]
    speeds = [_num(m.get("images_per_s")) for m in metrics]
    wall = _num(res.get("wall_seconds"))
    if math.isnan(wall) and seconds and not any(math.isnan(s) for s in seconds):
        wall = sum(seconds)  # an unfinished run: the time of its finished epochs
    speed = _num(res.get("images_per_s"))
    if math.isnan(speed) and speeds and not all(math.isnan(s) for s in speeds):
        speed = float(pd.Series(speeds).mean())
    return {
        "run_id": run_dir.name,
        "step": cfg["step"],
        "step_name": _get(cfg, "step_name", default=cfg["step"]),
        "seed": _num(cfg.get("seed")),
        "status": status,
        "status_text": text,
        "section_key": _get(cfg, "section", "key", default=""),
        "section_number": str(_get(cfg, "section", "number", default="")),
        "section_title": _get(cfg, "section", "title", default=""),
        "branch_of": _get(cfg, "branch_of"),
        "baseline": _get(cfg, "baseline"),
        "paper_top1": _num(_get(cfg, "paper", "top1")),
        "paper_gflops": _num(_get(cfg, "paper", "gflops")),
        "paper_footnote": _get(cfg, "paper", "footnote", default=""),
        "params": _num(_get(cfg, "complexity", "params")),
        "params_224": _num(_get(cfg, "complexity", "params_224")),
        "gflops_224": _num(_get(cfg, "complexity", "gflops_224")),
        "gflops_run": _num(_get(cfg, "complexity", "gflops_run")),
        "img_size": _num(_get(cfg, "complexity", "img_size", default=_get(cfg, "dataset", "img_size"))),
        "dataset": _get(cfg, "dataset", "name", default="?"),
        "num_classes": _num(_get(cfg, "dataset", "num_classes")),
        "classes": _get(cfg, "dataset", "classes", default=[]),
        "train_size": _num(_get(cfg, "dataset", "train_size")),
        "val_size": _num(_get(cfg, "dataset", "val_size")),
        "synthetic": bool(_get(cfg, "dataset", "synthetic", default=False)),
        "preset": _get(cfg, "budget", "preset", default="?"),
        "epochs": epochs,
        "batch_size": _num(_get(cfg, "budget", "batch_size")),
        "lr": _num(_get(cfg, "budget", "lr")),
        "warmup_epochs": _num(_get(cfg, "budget", "warmup_epochs")),
        "train_batches": _num(_get(cfg, "budget", "train_batches")),
        "val_batches": _num(_get(cfg, "budget", "val_batches")),
        "epochs_rule": _get(cfg, "budget", "epochs_rule", default=""),
        "recipe": _get(cfg, "design", "recipe", "name", default="?"),
        "optimizer": _get(cfg, "design", "recipe", "optimizer", default="?"),
        "schedule": _get(cfg, "design", "recipe", "schedule", default="?"),
        "ema": bool(_get(cfg, "design", "recipe", "ema", default=False)),
        "device": str(_get(cfg, "device", default="?")),
        "code_version": str(_get(cfg, "code_version", default="?")),
        "git_revision": str(_get(cfg, "git_revision", default="")),
        "packages": _get(cfg, "packages", default={}),
        "command": _get(cfg, "command", default=""),
        "created": str(_get(cfg, "created", default="")),
        "epochs_done": _num(res.get("epochs", last.get("epoch"))),
        "diverged_epoch": div_epoch,
        "val_top1": _num(res.get("val_top1")),
        "val_top5": _num(res.get("val_top5")),
        "train_top1": _num(res.get("train_top1")),
        "best_val_top1": _num(res.get("best_val_top1")),
        "wall_seconds": wall,
        "images_per_s": speed,
        "last_epoch": _num(last.get("epoch")),
        "last_train_loss": _num(last.get("train_loss")),
        "last_val_top1": _num(last.get("val_top1")),
        "per_class": res.get("per_class") if isinstance(res.get("per_class"), list) else [],
        "metrics": metrics,
        "unreadable": "",
    }


def _unreadable_row(run_dir: Path, error: Unreadable, plan: dict[str, Any] | None,
                    known: list[dict[str, Any]]) -> dict[str, Any]:
    """A run directory whose records cannot be read: its step and seed from plan.json or from its name
    (`<step>-s<seed>-<hash>`), the reason in `status_text` (short) and `unreadable` (in full)."""
    planned = {str(r.get("dir")): r for r in (plan or {}).get("runs", []) if isinstance(r, dict)}
    entry = planned.get(run_dir.name)
    named = re.fullmatch(r"(.+)-s(\d+)-[0-9a-f]{10}", run_dir.name)
    if entry is not None and isinstance(entry.get("step"), str):
        step, seed = entry["step"], entry.get("seed")
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
        row.update(baseline=step[len(BASELINE_PREFIX):], section_key=BASELINE_SECTION["key"],
                   section_title=BASELINE_SECTION["title"])
    else:
        row.update(_catalog_fields(step))
    return row


def aliases() -> dict[str, str]:
    """Names users type for steps (`convnext_tiny`, section names) -> step names, from the step catalog when it
    is importable (pure Python, no torch); empty otherwise, and then only step names are understood."""
    try:
        from steps.catalog import ALIASES
    except ImportError:
        return {}
    return dict(ALIASES)


def _catalog_fields(step: str) -> dict[str, Any]:
    """A missing step's section, branch and paper numbers from the step catalog, when it is importable.

    Only a step with no config.json anywhere needs this (so that, e.g., a missing kernel_11 still reads as a
    branch); the catalog is pure Python and imports no torch. Without it, the step is described by name only.
    """
    try:
        from steps.catalog import STEPS
    except ImportError:
        return {}
    found = STEPS.get(step)
    if found is None:
        return {}
    return {"step_name": found.name, "section_key": found.section.key, "section_number": found.section.number,
            "section_title": found.section.title, "branch_of": found.branch_of, "paper_top1": found.paper_top1,
            "paper_gflops": found.paper_gflops, "paper_footnote": found.footnote}


def _order_keys(rows: list[dict[str, Any]], plan: dict[str, Any] | None) -> dict[str, tuple[int, str, str]]:
    """Sort key per step spec: plan.json order, then the roadmap's order, then first-created order."""
    planned = [s for s in (plan or {}).get("steps", []) if isinstance(s, str)]
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
    if not out.exists():
        fail(f"no such directory {out}: pass the --out directory that `roadmap run` wrote")
    if not out.is_dir():
        fail(f"{out} is not a directory: pass the --out directory that `roadmap run` wrote")
    plan = read_plan(out)
    dirs = sorted(p for p in out.iterdir() if p.is_dir() and any((p / f).is_file() for f in _RECORDS))
    if not dirs:
        fail(f"{out} contains no run records (no <run>/config.json): run `roadmap run --out {out}` first, "
             "or pass the directory it wrote")
    rows, broken = [], []
    for d in dirs:
        try:
            rows.append(_run_row(d))
        except Unreadable as e:  # one damaged run never hides the others
            broken.append((d, e))
    if not rows:
        fail(f"no run record in {out} can be read ({broken[0][1]}, ...): fix or delete the damaged files")
    rows += [_unreadable_row(d, e, plan, rows) for d, e in broken]
    for row in rows:
        row["counted"], row["excluded"] = True, ""

    if plan is not None:
        planned_runs = [r for r in plan.get("runs", []) if isinstance(r, dict) and isinstance(r.get("step"), str)]
        if planned_runs:
            wanted = {str(r.get("dir")) for r in planned_runs}
            for row in rows:
                if row["run_id"] not in wanted:
                    row["counted"], row["excluded"] = False, "not in plan.json (an earlier plan)"
            present = {row["run_id"] for row in rows}
            for r in planned_runs:
                if str(r.get("dir")) not in present:
                    missing = _missing_row(r["step"], r.get("seed"), str(r.get("dir") or r["step"]), rows)
                    missing["counted"], missing["excluded"] = True, ""
                    rows.append(missing)
        else:
            steps = [s for s in plan.get("steps", []) if isinstance(s, str)]
            for row in rows:
                if row["step"] not in steps:
                    row["counted"], row["excluded"] = False, "not in plan.json (an earlier plan)"
            for step in steps:
                if not any(row["step"] == step for row in rows):
                    missing = _missing_row(step, None, step, rows)
                    missing["counted"], missing["excluded"] = True, ""
                    rows.append(missing)

    # The same step and seed twice (budget or code changed between runs): the newest config counts.
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
