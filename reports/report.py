"""`report.md` for an `--out` directory: what was run, the per-step table, figures, statistics, per-class results.

Everything comes from the stored records, nothing from "now": no absolute path, no current date (dates shown
are the records' own `created` fields), figures referenced by relative path. A copied directory therefore
rebuilds a byte-identical report.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from reports import figures
from reports.records import aliases, curves, load_runs, read_plan
from reports.table import display_frame, fmt_gflops, fmt_num, fmt_top1, spearman, summarize, to_markdown
from reports.verdict import (
    UNDERFIT_MARK,
    convergence_section,
    convergence_warning,
    reproduction_section,
    underfit_runs,
)
from reports.what_was_run import distinct, figure_title, header_lines
from roadmap.record_files import atomic_write, fail, remove_stale_temps
from roadmap.schema import Plan


def _notes(summary: pd.DataFrame, runs: pd.DataFrame) -> list[str]:
    """What each column means, and where our convention differs from the paper's print."""
    px = ", ".join(f"{int(v)} px" for v in distinct(summary["img_size"])) or "not recorded"
    device = ", ".join(distinct(runs.loc[runs["status"] != "missing", "device"]))
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
        status = "; ".join(distinct(runs.loc[runs["step"] == step, "status_text"]))
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
    full = ", ".join(f"`{s}`" for s in distinct(rows["delta_vs"].dropna())) or "the full model"
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
    end = ", ".join(f"`{s}`" for s in distinct(rows["delta_vs"].dropna())) or "the roadmap's last step"
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
