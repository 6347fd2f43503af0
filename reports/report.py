"""`report.md` for an `--out` directory: what was run, the per-step table, figures, statistics, per-class results.

Everything comes from the stored records, nothing from "now": no absolute path, no current date (dates shown
are the records' own `created` fields), figures referenced by relative path. A copied directory therefore
rebuilds a byte-identical report.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from reports import figures
from reports.elapsed import wall_time_line
from reports.records import aliases, curves, load_runs, read_plan
from reports.table import display_frame, fmt_gflops, fmt_num, fmt_top1, spearman, summarize, to_markdown
from reports.verdict import (
    UNDERFIT_MARK,
    convergence_section,
    convergence_warning,
    reproduction_section,
    underfit_runs,
)
from roadmap.record_files import atomic_write, fail, remove_stale_temps
from roadmap.schema import Plan

PAPER_EPOCH_RATIO = 90 / 300
"""The paper trains ResNet-50's original recipe 90 epochs and every modern-recipe step 300."""


def _distinct(values: Any) -> list[Any]:
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
    dataset = ", ".join(_distinct(runs["dataset"])) or "?"
    px = ", ".join(f"{int(v)}" for v in _distinct(runs["img_size"])) or "?"
    ranked = _value_groups(runs, "epochs", lambda v: f"{int(v)}")
    epochs = f"{ranked[0][0]} epochs" if ranked else "? epochs"
    if len(ranked) > 1:
        epochs += " (" + "; ".join(f"{', '.join(steps)}: {value}" for value, steps in ranked[1:]) + ")"
    seeds = len(_distinct(runs["seed"]))
    presets = ", ".join(_distinct(runs["preset"]))
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
    batches = ", ".join(f"{int(v)}" for v in _distinct(in_steps["budget_batches"]))
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
    dataset = ", ".join(_distinct(present["dataset"])) or "?"
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
    lines.append(f"- **Preset**: {', '.join(_distinct(present['preset']))}")
    seeds = sorted(int(s) for s in _distinct(present["seed"]))
    planned = f"{plan.seeds} per step planned; " if plan and plan.seeds is not None else ""
    lines.append(f"- **Seeds**: {planned}{len(seeds)} recorded ({', '.join(map(str, seeds))})")
    lines.append(f"- **Device**: {', '.join(_distinct(present['device']))}; precision "
                 f"{', '.join(_distinct(present['precision']))}")
    versions = _distinct(f"{v} (git {g})" if g else v for v, g in zip(present["code_version"], present["git_revision"],
                                                                        strict=True))
    lines.append(f"- **Code version**: {', '.join(versions)}")
    packages = _distinct(", ".join(f"{k} {v}" for k, v in sorted(p.items())) for p in present["packages"]
                         if isinstance(p, dict) and p)
    if packages:
        lines.append(f"- **Packages**: {' / '.join(packages)}")
    lines += [*_when(runs, plan), "", *_epoch_ratio(present)]
    commands = [plan.command] if plan and plan.command else _distinct(present["command"])
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
    created = sorted(_distinct(runs.loc[runs["status"] != "missing", "created"]))
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


def _notes(summary: pd.DataFrame, runs: pd.DataFrame) -> list[str]:
    """What each column means, and where our convention differs from the paper's print."""
    px = ", ".join(f"{int(v)} px" for v in _distinct(summary["img_size"])) or "not recorded"
    device = ", ".join(_distinct(runs.loc[runs["status"] != "missing", "device"]))
    return [
        "Notes:",
        "",
        "- **GFLOPs (224 px)** uses the paper's convention: multiply-accumulates of conv and linear layers at a "
        "224×224 input, 1 MAC = 1 FLOP; norms, activations and pooling are not counted (torchvision's `_ops` "
        "metadata counts the same way). It and **params (M, full size)** describe the full-size network with 1000 "
        "classes, as in the paper. **params (M, as trained)** and the next GFLOPs column count the network as "
        f"trained here (after the preset's width/depth scaling, with this data set's classes) at the run's input "
        f"size ({px}). **paper GFLOPs** is what the paper prints (Figure 2 / Table 10).",
        "- **top-1**: final-epoch validation top-1 (%), mean ± sample standard deviation (ddof 1) over the n seeds "
        "that finished; diverged, running and interrupted runs are not averaged in (see status). **train top-1**: "
        "the last epoch's training top-1 as recorded.",
        "- **Δ top-1**: change against the previous main-path step; a branch (↳) against the step it branches from; "
        "a composed spec (e.g. `convnext_tiny-layer_norm`) against the step it starts from. "
        "When that step has no accuracy (diverged, missing) the nearest earlier step that has one is used, shown "
        "as \"(vs step)\". **paper Δ** is the paper's change between the same two steps.",
        "- **Δ vs seed spread**: \"significant\" when |Δ| > 2 × the pooled seed standard deviation of the two steps, "
        "\"within noise\" otherwise, \"spread unknown\" when either step has a single finished seed.",
        "- **paper top-1**: ImageNet-1K at 224 px, 300 epochs (ResNet-50: 90), mean of 3 seeds. Absolute numbers "
        "are not comparable across data sets and budgets; compare the direction and size of each Δ.",
        f"- **images/s** and **wall time / run**: training throughput and wall-clock time per run, mean over "
        f"finished seeds, on {device or '?'}.",
    ]


def _statistics(summary: pd.DataFrame) -> list[str]:
    """Which Δ stand out from the seed-to-seed spread, which steps are not averaged in, and Spearman's ρ."""
    lines = ["## Is each change bigger than the seed-to-seed spread?", ""]
    with_delta = summary[summary["delta"].notna()]
    if summary["n"].max() < 2:
        lines.append("Every step has one finished seed, so the seed-to-seed spread is unknown: no Δ below can be "
                     "told apart from noise. Train more seeds per step to measure it.")
    else:
        lines.append("A Δ counts as significant when |Δ| > 2 × the pooled seed standard deviation of the two steps "
                     "compared (a rough screen with few seeds, not a formal test).")
        lines.append("")
        for verdict in ("significant", "within noise", "spread unknown (1 seed)"):
            rows = with_delta[with_delta["significance"] == verdict]
            if len(rows):
                items = ", ".join(
                    f"`{r.step}` {r.delta:+.2f}"
                    + ("" if math.isnan(r.pooled_std) else f" (2σ = {2 * r.pooled_std:.2f})")
                    for r in rows.itertuples(index=False))
                lines.append(f"- **{verdict}**: {items}")
    unfinished = summary[summary["status_kind"] != "done"]
    if len(unfinished):
        lines += ["", "Not (fully) averaged in:", ""]
        lines += [f"- `{r.step}`: {r.status} ({r.n} of {r.n_runs} runs finished)"
                  for r in unfinished.itertuples(index=False)]
    rho, count = spearman(summary)
    lines += ["", "## Does the roadmap transfer?", ""]
    if math.isnan(rho):
        lines.append(f"Spearman's rank correlation between our Δ and the paper's Δ: not defined ({count} steps with "
                     "both; at least 3 with varying values are needed).")
    else:
        lines.append(f"Spearman's rank correlation between our Δ and the paper's Δ over {count} steps: "
                     f"**ρ = {rho:+.2f}** (1: the steps help and hurt in the paper's order; 0: no relation).")
    return lines


def _resolve_step(summary: pd.DataFrame, name: str) -> str:
    """The step spec `name` refers to (a spec, or a step name when exactly one spec has it); else an error."""
    steps = list(summary["step"])
    if name in steps:
        return name
    key = aliases().get(name, name)  # e.g. `convnext_tiny`
    if key in steps:
        return key
    matches = list(summary.loc[summary["step_name"] == key, "step"])
    if len(matches) == 1:
        return matches[0]
    fail(f"no results for step {name!r} in this directory: choose one of {', '.join(steps)}")


def _per_class(runs: pd.DataFrame, step: str) -> list[str]:
    """Precision, recall, F1 and support per class for `step`, averaged over its finished seeds."""
    lines = [f"## Per-class results: {step}", ""]
    done = runs[(runs["step"] == step) & (runs["status"] == "done")]
    rows = [dict(c, seed=seed) for seed, per in zip(done["seed"], done["per_class"], strict=True)
            for c in (per or []) if isinstance(c, dict) and "class" in c]
    if not rows:
        status = "; ".join(_distinct(runs.loc[runs["step"] == step, "status_text"]))
        return lines + [f"No finished run of `{step}` recorded per-class results ({status}).", ""]
    frame = pd.DataFrame(rows)
    for col in ("precision", "recall", "f1", "support"):
        frame[col] = pd.to_numeric(frame.get(col), errors="coerce")
    table = frame.groupby("class", sort=False)[["precision", "recall", "f1", "support"]].mean()
    table["n"] = frame.groupby("class", sort=False)["seed"].nunique()
    order = [c for c in (done["classes"].iloc[0] or []) if c in table.index]
    table = table.loc[order + [c for c in table.index if c not in order]]
    seeds = int(frame["seed"].nunique())
    lines.append(f"Validation set, {'mean over ' + str(seeds) + ' seeds' if seeds > 1 else 'one seed'}; "
                 "precision, recall and F1 in %.")
    lines.append("")
    cells = pd.DataFrame({
        "class": [str(c) for c in table.index],
        "precision": [fmt_num(v) for v in table["precision"]],
        "recall": [fmt_num(v) for v in table["recall"]],
        "F1": [fmt_num(v) for v in table["f1"]],
        "support": [fmt_num(v, ",.0f") for v in table["support"]],
    })
    macro = table[["precision", "recall", "f1"]].mean()
    total = pd.DataFrame([{"class": "**macro average**", "precision": fmt_num(macro["precision"]),
                           "recall": fmt_num(macro["recall"]), "F1": fmt_num(macro["f1"]),
                           "support": fmt_num(table["support"].sum(), ",.0f")}])
    return lines + [to_markdown(pd.concat([cells, total], ignore_index=True)), ""]


def _delta_cell(row) -> str:
    """Δ with its noise call, e.g. "-1.20 (within noise)"."""
    delta = fmt_num(row.delta, signed=True)
    return delta if delta == "—" or not row.significance else f"{delta} ({row.significance})"


def _leave_one_out(summary: pd.DataFrame) -> list[str]:
    """What removing each step costs: the specs that leave steps out, against the model they start from."""
    rows = summary[summary["step"].str.contains("-", regex=False) & ~summary["is_baseline"]]
    if not len(rows):
        return []
    rows = rows.assign(sort=rows["delta"].fillna(math.inf)).sort_values("sort", kind="stable")
    full = ", ".join(f"`{s}`" for s in _distinct(rows["delta_vs"].dropna())) or "the full model"
    lines = ["## Leave-one-out: what removing each step costs", "",
             f"Each row is {full} with the named step(s) left out (every other step kept), most costly first. "
             "Δ is the change against the full model: negative means the step helped here.", ""]
    cells = pd.DataFrame({
        "left out": [" ".join("`" + s + "`" for s in r.step.split("-")[1:]) for r in rows.itertuples(index=False)],
        "GFLOPs (224 px)": [fmt_gflops(v) for v in rows["gflops_224"]],
        "top-1 % (mean ± std, n)": [fmt_top1(r.top1_mean, r.top1_std, r.n) for r in rows.itertuples(index=False)],
        "Δ vs full model": [_delta_cell(r) for r in rows.itertuples(index=False)],
        "status": list(rows["status"]),
    })
    return lines + [to_markdown(cells), ""]


def _reference_models(summary: pd.DataFrame) -> list[str]:
    """The timm baselines beside the roadmap's end point."""
    rows = summary[summary["is_baseline"]]
    if not len(rows):
        return []
    end = ", ".join(f"`{s}`" for s in _distinct(rows["delta_vs"].dropna())) or "the roadmap's last step"
    lines = ["## Reference models", "",
             f"timm models trained with the same recipe, data, budget and seeds as the roadmap (`--baselines`). "
             f"Δ is against {end}, the end of the roadmap here; paper top-1 is the paper's ImageNet-1K figure "
             "where it prints one. Params and GFLOPs are counted by torch's FLOP counter (multiply-accumulates, "
             "attention's matrix products included).", ""]
    cells = pd.DataFrame({
        "model": [f"`{r.step}`" for r in rows.itertuples(index=False)],
        "params (M, full size)": [fmt_num(v) for v in rows["params_224_m"]],
        "GFLOPs (224 px)": [fmt_gflops(v) for v in rows["gflops_224"]],
        "params (M, as trained)": [fmt_num(v) for v in rows["params_m"]],
        "top-1 % (mean ± std, n)": [fmt_top1(r.top1_mean, r.top1_std, r.n) for r in rows.itertuples(index=False)],
        f"Δ vs {end.strip('`')}": [_delta_cell(r) for r in rows.itertuples(index=False)],
        "paper top-1": [fmt_num(v) for v in rows["paper_top1"]],
        "status": list(rows["status"]),
    })
    return lines + [to_markdown(cells), ""]


def step_orders(summary: pd.DataFrame, plan: Plan | None) -> list[figures.StepOrder]:
    """The paper's order (the main-path steps present) and each `--order` of plan.json, as paths of nodes
    (step added, spec); empty when the plan has no `--order`."""
    recorded = [o for o in (plan.orders if plan else []) if len(o.specs) == len(o.steps) + 1]
    if not recorded:
        return []
    main = summary[~(summary["edited"] | summary["is_branch"] | summary["is_baseline"])]
    paths = [figures.StepOrder("the paper's order", [(s, s) for s in main["step"]])]
    for i, o in enumerate(recorded, 1):
        start = o.specs[0]
        paths.append(figures.StepOrder(f"--order #{i}", list(zip([start, *o.steps], o.specs, strict=True))))
    return paths


def _orders_section(summary: pd.DataFrame, paths: list[figures.StepOrder]) -> list[str]:
    """Each order's path, node by node, with the change each added step made along that path."""
    if len(paths) < 2:
        return []
    by_step = {r.step: r for r in summary.itertuples(index=False)}
    lines = ["## The same steps in other orders", "",
             "Each path applies steps one at a time from its start; a step's effect can depend on what came before "
             "it. Δ is against the previous node of the same path. A node whose model equals a step of the paper's "
             f"path is that step (trained once). Figure: `{figures.ORDERS_FIGURE}`.", ""]
    for p, order in enumerate(paths):
        letter = chr(ord("A") + p)
        lines += [f"**{letter}: {order.name}**", ""]
        records, prev = [], None
        for k, (added, spec) in enumerate(order.nodes):
            row = by_step.get(spec)
            top1 = row.top1_mean if row is not None else math.nan
            delta = top1 - prev if prev is not None and not math.isnan(top1) else math.nan
            records.append({
                "node": f"{letter}{k}", "step added": "(start)" if k == 0 else f"`{added}`", "spec": f"`{spec}`",
                "GFLOPs (224 px)": fmt_gflops(row.gflops_224) if row is not None else "—",
                "top-1 % (mean ± std, n)": fmt_top1(row.top1_mean, row.top1_std, row.n) if row is not None else "—",
                "Δ along this path": fmt_num(delta, signed=True),
                "status": row.status if row is not None else "not in the records",
            })
            prev = top1 if not math.isnan(top1) else prev
        lines += [to_markdown(pd.DataFrame(records)), ""]
    ends = []
    for p, order in enumerate(paths):
        row = by_step.get(order.nodes[-1][1])
        if row is not None and not math.isnan(row.top1_mean):
            ends.append(f"{chr(ord('A') + p)} ends at `{order.nodes[-1][1]}` with {row.top1_mean:.2f} %")
    if ends:
        lines += ["End points: " + "; ".join(ends) + ".", ""]
    return lines


def excluded_lines(runs: pd.DataFrame) -> list[str]:
    """Run directories present but left out of the summary, and why."""
    left = runs[~runs["counted"].astype(bool)]
    if not len(left):
        return []
    lines = ["## Run directories not counted", ""]
    lines += [f"- `{r.run_id}` ({r.status_text}): {r.excluded}" for r in left.itertuples(index=False)]
    return lines + [""]


def build_report(out_dir: str | Path, classes_step: str | None = None) -> Path:
    """Write `out_dir/report.md` and its PNG figures from the records in `out_dir`; return the report's path.

    `classes_step` adds per-class precision/recall/F1 for that step (a RoadmapError lists the steps present
    when it has no runs here).
    """
    out = Path(out_dir)
    runs = load_runs(out)
    remove_stale_temps(out)  # figures or a report.md a killed `roadmap report` was writing
    plan = read_plan(out)
    summary = summarize(runs)
    counted = runs[runs["counted"].astype(bool)]
    chosen = _resolve_step(summary, classes_step) if classes_step is not None else None

    title = figure_title(counted[counted["status"] != "missing"])
    orders = step_orders(summary, plan)
    per_epoch = curves(runs)
    names = figures.render_all(summary, per_epoch, out, title, orders)

    underfit = underfit_runs(runs, per_epoch)
    marked = summary.assign(label=[f"{label} {UNDERFIT_MARK}" if step in {c.step for c in underfit} else label
                                   for step, label in zip(summary["step"], summary["label"], strict=True)])
    cells, footnotes = display_frame(marked, "markdown")
    lines = header_lines(counted, plan)
    at = lines.index(next(line for line in lines if line.startswith("# ")))  # after a pipeline-check warning
    lines[at:at] = convergence_warning(underfit, counted)
    lines += ["## Results per step", "", to_markdown(cells), ""]
    lines += _notes(summary, counted) + [""]
    for note in footnotes:
        lines += [note, ""]
    lines += ["## Figures", ""]
    captions = {
        "fig_roadmap.png": "Top-1 per step (bars: ours, hatched: branches; diamonds: the paper's), GFLOPs on bars.",
        "fig_acc_vs_flops.png": "Top-1 against GFLOPs at 224 px; arrows follow the main path.",
        "fig_curves.png": "Learning curves: validation top-1 and training loss per epoch.",
        "fig_delta.png": "Our per-step Δ against the paper's; dashed line y = x.",
        figures.ORDERS_FIGURE: "Top-1 against GFLOPs along each order of the steps (the paper's: solid).",
    }
    for name in names:
        lines += [f"![{captions[name]}]({name})", "", f"*{captions[name]}*", ""]
    lines += _statistics(summary) + [""]
    lines += reproduction_section(summary) + convergence_section(underfit)
    lines += _leave_one_out(summary) + _reference_models(summary) + _orders_section(summary, orders)
    if chosen is not None:
        lines += _per_class(counted, chosen)
    lines += excluded_lines(runs)
    text = "\n".join(lines).rstrip("\n") + "\n"
    path = out / "report.md"
    atomic_write(path, text.encode(), "report")
    return path
