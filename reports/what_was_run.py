"""The report's "What was run": the data set, budget, recipes, preset, seeds, device and precision, code and
package versions, when the runs were made and how long they took, as `header_lines` (the lines under the report's
title) and `figure_title` (the same in brief, for the figures). Read from `load_runs`' table, nothing from "now".
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pandas as pd

from reports.elapsed import wall_time_line
from roadmap.schema import Plan

PAPER_EPOCH_RATIO = 90 / 300
"""The paper trains ResNet-50's original recipe 90 epochs and every modern-recipe step 300."""


def distinct(values: Any) -> list[Any]:
    """Distinct non-empty values in order of appearance."""
    out = []
    for v in values:
        if v is None or v == "" or (isinstance(v, float) and math.isnan(v)):
            continue
        if v not in out:
            out.append(v)
    return out


def _int(value: float) -> str:
    return f"{int(value):,}" if isinstance(value, int | float) and not math.isnan(value) else "?"


def _value_groups(runs: pd.DataFrame, column: str, fmt) -> list[tuple[str, list[str]]]:
    """(formatted value, steps with it) for a column, the most common value first."""
    groups: dict[str, list[str]] = {}
    for step, value in zip(runs["step"], runs[column], strict=True):
        if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
            continue
        steps = groups.setdefault(fmt(value), [])
        if step not in steps:
            steps.append(step)
    return sorted(groups.items(), key=lambda kv: -len(kv[1]))


def _by_step(runs: pd.DataFrame, column: str, fmt=str) -> str:
    """A column's value, or when steps differ: the most common value, then 'steps: value' for the others."""
    ranked = _value_groups(runs, column, fmt)
    if not ranked:
        return "?"
    others = "; ".join(f"{', '.join(steps)}: {value}" for value, steps in ranked[1:])
    return ranked[0][0] + (f"; {others}" if others else "")


def pipeline_check_only(runs: pd.DataFrame) -> bool:
    """Smoke preset or synthetic data: the accuracies only show that the pipeline runs."""
    return bool((runs["preset"] == "smoke").any() or runs["synthetic"].astype(bool).any())


def figure_title(runs: pd.DataFrame) -> str:
    """The dataset and budget, for figure titles: 'fashion-mnist, 32 px, 10 epochs (resnet50: 3), 2 seeds, ...',
    with a second line saying the accuracies mean nothing for a smoke preset or synthetic data."""
    dataset = ", ".join(distinct(runs["dataset"])) or "?"
    px = ", ".join(f"{int(v)}" for v in distinct(runs["img_size"])) or "?"
    ranked = _value_groups(runs, "epochs", lambda v: f"{int(v)}")
    epochs = f"{ranked[0][0]} epochs" if ranked else "? epochs"
    if len(ranked) > 1:
        epochs += " (" + "; ".join(f"{', '.join(steps)}: {value}" for value, steps in ranked[1:]) + ")"
    seeds = len(distinct(runs["seed"]))
    presets = ", ".join(distinct(runs["preset"]))
    warn = "\nPIPELINE CHECK ONLY: these accuracies mean nothing" if pipeline_check_only(runs) else ""
    return f"{dataset}, {px} px, {epochs}, {seeds} seed{'s' if seeds != 1 else ''}, preset {presets}{warn}"


def _recipes(runs: pd.DataFrame) -> str:
    """Which recipe each step used, e.g. '`convnext` (adamw, cosine, EMA off): 16 steps; `resnet` ...: resnet50'."""
    groups: dict[str, list[str]] = {}
    for row in runs.itertuples(index=False):
        if row.status == "missing":
            continue
        ema = "EMA on" if row.ema else "EMA off"
        key = f"`{row.recipe}` ({row.optimizer}, {row.schedule} schedule, {ema})"
        steps = groups.setdefault(key, [])
        if row.step not in steps:
            steps.append(row.step)
    parts = []
    for key, steps in sorted(groups.items(), key=lambda kv: len(kv[1])):
        if len(groups) == 1:
            parts.append(f"{key} for every step")
        elif len(steps) > 4:
            parts.append(f"{key} for the other {len(steps)} steps")
        else:
            parts.append(f"{key} for {', '.join(steps)}")
    return "; ".join(parts) or "?"


def _epochs(n: float) -> str:
    return f"{n:g} epoch" + ("" if n == 1 else "s")


def _epoch_ratio(runs: pd.DataFrame) -> list[str]:
    """How each step's epochs were set (the configs' epochs_rule), and whether the original-recipe step
    (resnet50) kept the paper's 90:300 budget ratio to the modern recipe."""
    present = runs[runs["status"] != "missing"]
    groups = _value_groups(present, "epochs_rule", lambda r: str(r).rstrip(". "))
    lines = ["Epoch budget, as each config records it:", ""] if groups else ["Epoch budget: not recorded.", ""]
    for rule, steps in groups:
        if len(groups) == 1:
            who = "every step"
        elif len(steps) > 4:
            who = f"the other {len(steps)} steps"
        else:
            who = ", ".join(f"`{s}`" for s in steps)
        lines.append(f"- {who}: {rule}")
    lines.append("")
    return lines + [_ratio_verdict(present), ""]


def _budget_kind(counted: pd.DataFrame) -> str:
    """How the budget was set, for 'Optimizer steps': in steps (and whether this training set stretched it to more
    epochs) or in epochs."""
    in_steps = counted[counted["budget_batches"].notna()]
    if not len(in_steps):
        return "epochs × batches an epoch; the budget was set in epochs"
    stretched = in_steps[in_steps["epochs"] != in_steps["budget_epochs"]]
    batches = ", ".join(f"{int(v)}" for v in distinct(in_steps["budget_batches"]))
    if not len(stretched):
        return (f"the budget in optimizer steps: the preset's epochs of {batches} batches, which this training set "
                "fills")
    return (f"the budget in optimizer steps: the preset's epochs of {batches} batches, reached on this training set's "
            "fewer batches an epoch by more epochs, as each config's epoch budget below says")


def _ratio_verdict(present: pd.DataFrame) -> str:
    """One sentence: did resnet50 keep 90:300 against the modern-recipe steps? Judged on the budget's epochs (the
    preset's, before a small training set stretched them to more epochs of its fewer batches) where recorded."""
    rule = "90:300 ratio:"
    base = present[present["step"] == "resnet50"]
    if not len(base):
        return rule + " `resnet50` was not run, so the 90:300 ratio does not apply."
    if math.isnan(base["epochs"].iloc[0]):
        return rule + " `resnet50` recorded no epoch budget: whether it kept the 90:300 ratio is unknown."
    column = "budget_epochs" if present["budget_epochs"].notna().all() else "epochs"
    e_orig = float(base[column].iloc[0])
    modern = present[(present["recipe"] != base["recipe"].iloc[0]) & present[column].notna()]
    if not len(modern):
        return rule + f" `resnet50` ran {_epochs(e_orig)}; no modern-recipe step to compare with."
    e_mod = float(Counter(modern[column]).most_common(1)[0][0])
    expected = max(1, round(e_mod * PAPER_EPOCH_RATIO))
    kept = "kept" if e_orig == expected else "NOT kept"
    how = "" if e_orig / e_mod == PAPER_EPOCH_RATIO else f" (to whole epochs: {e_mod:g} × 90/300 → {expected})"
    ran = f"ran {_epochs(e_orig)} against {e_mod:g} for the modern recipe"
    stretched = (present["epochs"] != present["budget_epochs"]).any() if column == "budget_epochs" else False
    if stretched:
        s_orig = float(base["steps"].iloc[0])
        s_mod = float(Counter(modern["steps"]).most_common(1)[0][0])
        ran = (f"has a budget of {_epochs(e_orig)} against {e_mod:g} for the modern recipe, of "
               f"{int(base['budget_batches'].iloc[0])} batches each (on this training set {s_orig:,.0f} optimizer "
               f"steps against {s_mod:,.0f}, in whole epochs)")
    return (f"{rule} `resnet50` (original recipe) {ran}: ratio {e_orig / e_mod:.2f}, the paper's 90:300 = 0.30 → "
            f"{kept}{how}.")


def header_lines(runs: pd.DataFrame, plan: Plan | None) -> list[str]:
    """Title and 'what was run', from plan.json and the configs of the counted runs."""
    present = runs[runs["status"] != "missing"]
    dataset = ", ".join(distinct(present["dataset"])) or "?"
    lines = []
    if pipeline_check_only(present):
        why = []
        if (present["preset"] == "smoke").any():
            why.append("the `smoke` preset trains a few batches")
        if present["synthetic"].astype(bool).any():
            why.append("the data set is synthetic (random images)")
        lines += [f"> **Pipeline check only: these accuracies mean nothing** ({'; '.join(why)}). This report shows "
                  "that training, recording and reporting work, not how the steps compare.", ""]
    lines += [f"# ConvNeXt roadmap on {dataset}: ResNet-50 → ConvNeXt-T", "", "## What was run", ""]
    first = present.iloc[0] if len(present) else pd.Series({"num_classes": math.nan, "train_size": math.nan,
                                                              "val_size": math.nan})
    synthetic = "synthetic (random images)" if present["synthetic"].astype(bool).any() else "real images"
    lines.append(f"- **Dataset**: {dataset}: {_int(first['num_classes'])} classes, {_int(first['train_size'])} "
                 f"training / {_int(first['val_size'])} validation images, {synthetic}{_folder_text(first)}")
    lines.append(f"- **Resolution**: {_by_step(present, 'img_size', lambda v: f'{int(v)} px')}")
    lines.append(f"- **Epochs**: {_by_step(present, 'epochs', lambda v: f'{int(v)}')}")
    counted = present[present["steps"].notna()]  # recorded since the budget counts optimizer steps
    if len(counted):
        lines.append(f"- **Optimizer steps**: {_by_step(counted, 'steps', lambda v: f'{int(v):,}')} "
                     f"({_budget_kind(counted)})")
    limits = []
    for col, what in (("train_batches", "training"), ("val_batches", "validation")):
        limited = present[present[col] > 0]  # 0 (or none recorded) = the whole split
        if len(limited):
            limits.append(f"{_by_step(limited, col, lambda v: f'{int(v)}')} {what} batches")
    if limits:
        lines.append(f"- **Epoch length**: limited to {' and '.join(limits)} per epoch")
    lines.append(f"- **Batch size**: {_by_step(present, 'batch_size', lambda v: f'{int(v)}')}; peak learning rate "
                 f"{_by_step(present, 'lr', lambda v: f'{v:g}')}; warmup epochs "
                 f"{_by_step(present, 'warmup_epochs', lambda v: f'{v:.3g}')}")
    lines.append(f"- **Recipes**: {_recipes(present)}")
    lines.append(f"- **Preset**: {', '.join(distinct(present['preset']))}")
    seeds = sorted(int(s) for s in distinct(present["seed"]))
    planned = f"{plan.seeds} per step planned; " if plan and plan.seeds is not None else ""
    lines.append(f"- **Seeds**: {planned}{len(seeds)} recorded ({', '.join(map(str, seeds))})")
    lines.append(f"- **Device**: {', '.join(distinct(present['device']))}; precision "
                 f"{', '.join(distinct(present['precision']))}")
    versions = distinct(f"{v} (git {g})" if g else v for v, g in zip(present["code_version"], present["git_revision"],
                                                                        strict=True))
    lines.append(f"- **Code version**: {', '.join(versions)}")
    packages = distinct(", ".join(f"{k} {v}" for k, v in sorted(p.items())) for p in present["packages"]
                         if isinstance(p, dict) and p)
    if packages:
        lines.append(f"- **Packages**: {' / '.join(packages)}")
    lines += [*_when(runs, plan), "", *_epoch_ratio(present)]
    commands = [plan.command] if plan and plan.command else distinct(present["command"])
    if commands:
        lines += ["Reproduce with:", "", "```sh", *commands, "```", ""]
    return lines


def _folder_text(first: pd.Series) -> str:
    """What the Dataset line adds for a user's folder: how it was read, the split made, the files left out."""
    parts = []
    if first.get("data_layout"):
        parts.append(f"read as {first['data_layout']}")
    split = first.get("data_split")
    if isinstance(split, dict) and split:
        fraction = split.get("val_fraction")
        share = f"{fraction:g}" if isinstance(fraction, int | float) else "?"
        parts.append(f"validation split made here: {share} of each class held out, a fixed split (seed "
                     f"{split.get('seed', '?')}) shared by every run")
    skipped = first.get("skipped")
    if isinstance(skipped, int | float) and not math.isnan(skipped) and skipped > 0:
        parts.append(f"{int(skipped)} unreadable image file(s) left out (--skip-unreadable)")
    return "".join(f"; {p}" for p in parts)


def _when(runs: pd.DataFrame, plan: Plan | None) -> list[str]:
    """'What was run''s dates (plan written, runs created), and the elapsed wall time where the records say it."""
    created = sorted(distinct(runs.loc[runs["status"] != "missing", "created"]))
    if not created:
        dates = "run dates not recorded"
    elif len(created) == 1:
        dates = f"runs created {created[0]}"
    else:
        dates = f"runs created {created[0]} to {created[-1]}"
    if plan and plan.created:
        dates = f"plan written {plan.created}; {dates}"
    elapsed = wall_time_line(runs)
    return [f"- **When**: {dates}", *([elapsed] if elapsed is not None else [])]
