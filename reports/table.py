"""The per-step summary (seeds aggregated) and its renderings: markdown, plain text, CSV and JSON.

A step's top-1 is the final-epoch validation top-1 of its *finished* runs (mean, sample std over seeds, n);
diverged, running and interrupted runs are not averaged in but stay visible in the status column.
A step's change (Δ) is measured against the previous main-path step (a branch against its `branch_of`), and
the paper's Δ against the same step, so both columns always compare the same pair.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from reports.records import aliases, load_runs
from roadmap.durations import duration
from roadmap.errors import unknown

SUMMARY_COLUMNS: tuple[str, ...] = (
    "step", "label", "step_name", "section", "section_key", "branch_of", "is_branch", "edited", "is_baseline",
    "order",
    "params_224_m", "gflops_224", "params_m", "gflops_run", "img_size", "paper_gflops", "paper_footnote",
    "n", "n_runs", "seeds", "top1_mean", "top1_std", "delta", "delta_vs", "delta_vs_nominal", "pooled_std",
    "significance",
    "paper_top1", "paper_delta", "train_top1", "images_per_s", "wall_seconds", "epochs", "precision",
    "status", "status_kind", "unreadable",
)
"""Columns of `summarize`; `unreadable` lists why runs of the step cannot be read (footnotes of the table)."""

EXPORT_COLUMNS: tuple[str, ...] = (
    "step", "label", "section", "branch_of", "params_224_m", "gflops_224", "params_m", "gflops_run", "img_size",
    "paper_gflops",
    "n", "seeds", "top1_mean", "top1_std", "delta", "delta_vs", "significance", "paper_top1", "paper_delta",
    "train_top1", "images_per_s", "wall_seconds", "epochs", "precision", "status",
)
"""Columns of `results_table(..., "csv"|"json")`: numbers unformatted, NaN as empty / null."""

FORMATS: tuple[str, ...] = ("table", "markdown", "csv", "json")

# Which status a step shows in figures when none of its runs finished: the most informative first.
_STATUS_PRIORITY = ("diverged", "running", "interrupted", "unreadable", "missing")


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _step_row(step: str, group: pd.DataFrame) -> dict[str, Any]:
    """One step's row: description from its first recorded config, numbers over its finished runs."""
    present = group[~group["status"].isin(["missing", "unreadable"])]
    meta = (present if len(present) else group).iloc[0]
    done = group[group["status"] == "done"]
    top1 = done["val_top1"].dropna()
    n = int(len(top1))
    statuses = list(group["status"])
    if all(s == "done" for s in statuses):
        kind = "done"
    elif n:
        kind = "partial"
    else:
        kind = next(s for s in (*_STATUS_PRIORITY, statuses[0]) if s in statuses)
    texts = list(dict.fromkeys(group["status_text"]))
    if len(texts) == 1:
        status = texts[0]
    else:
        status = "; ".join(
            f"s{int(r.seed)}: {r.status_text}" if not math.isnan(r.seed) else r.status_text
            for r in group.itertuples(index=False)
        )
    branch_of = meta["branch_of"] if isinstance(meta["branch_of"], str) and meta["branch_of"] else None
    edited = step != meta["step_name"]
    is_baseline = isinstance(meta["baseline"], str) and bool(meta["baseline"])
    label = f"↳ {step} (branch)" if branch_of else f"{step} (reference)" if is_baseline else step
    section = f"{meta['section_number'] or ''} {meta['section_title'] or ''}".strip()
    return {
        "step": step,
        "label": label,
        "step_name": meta["step_name"],
        "section": section,
        "section_key": meta["section_key"] or "",
        "branch_of": branch_of,
        "is_branch": branch_of is not None,
        "edited": edited,
        "is_baseline": is_baseline,
        "order": int(meta["order"]),
        "params_224_m": meta["params_224"] / 1e6,
        "params_m": meta["params"] / 1e6,
        "gflops_224": meta["gflops_224"],
        "gflops_run": meta["gflops_run"],
        "img_size": meta["img_size"],
        "paper_gflops": math.nan if edited else meta["paper_gflops"],
        "paper_footnote": "" if edited else (meta["paper_footnote"] or ""),
        "n": n,
        "n_runs": int(len(group)),
        "seeds": ",".join(str(int(s)) for s in sorted(done.loc[top1.index, "seed"].dropna())),
        "top1_mean": float(top1.mean()) if n else math.nan,
        "top1_std": float(top1.std(ddof=1)) if n >= 2 else math.nan,
        "paper_top1": math.nan if edited else meta["paper_top1"],  # the paper never trained an edited spec
        "train_top1": float(done["train_top1"].mean()) if len(done) else math.nan,
        "images_per_s": float(done["images_per_s"].mean()) if len(done) else math.nan,
        "wall_seconds": float(done["wall_seconds"].mean()) if len(done) else math.nan,
        "epochs": meta["epochs"],
        "precision": ", ".join(dict.fromkeys(present["precision"])) if len(present) else "",
        "status": status,
        "status_kind": kind,
        "unreadable": [r for r in group["unreadable"] if r],
    }


def _pooled_std(a: pd.Series, b: pd.Series) -> float:
    """Pooled sample std of two steps' seeds; NaN unless both have at least two finished seeds."""
    if a["n"] < 2 or b["n"] < 2:
        return math.nan
    var = ((a["n"] - 1) * a["top1_std"] ** 2 + (b["n"] - 1) * b["top1_std"] ** 2) / (a["n"] + b["n"] - 2)
    return math.sqrt(var)


def _add_deltas(frame: pd.DataFrame) -> None:
    """Fill delta, delta_vs, paper_delta, pooled_std and significance, in place (frame is in roadmap order).

    The nominal reference is the previous main-path step (a branch: its branch_of; a composed spec: the step it
    starts from, so `convnext_tiny-layer_norm` compares with ConvNeXt-T and `resnet50+gelu` with ResNet-50;
    a reference model (timm baseline): the last main-path step, the roadmap's end point).
    When that step has no accuracy (diverged, missing), our Δ falls back to the nearest earlier main-path step
    that has one, and the paper's Δ uses the same step.
    """
    rows = [frame.loc[i] for i in frame.index]
    main_seen: list[pd.Series] = []
    by_step = {r["step"]: r for r in rows}
    alias = aliases()
    main_path = [r for r in rows if not (r["edited"] or r["is_branch"] or r["is_baseline"])]
    for i, row in zip(frame.index, rows, strict=True):
        if row["is_baseline"]:
            chain = main_path
        elif row["edited"]:
            head = re.match(r"[A-Za-z0-9_]+", row["step"])
            start = by_step.get(alias.get(head.group(0), head.group(0))) if head else None
            chain = [start] if start is not None and not start["edited"] else []
        elif row["is_branch"]:
            names = [r["step"] for r in main_seen]
            chain = main_seen[: names.index(row["branch_of"]) + 1] if row["branch_of"] in names else []
        else:
            chain = list(main_seen)
            main_seen.append(row)
        if not chain:
            continue
        nominal = chain[-1]
        with_top1 = [r for r in chain if not math.isnan(r["top1_mean"])]
        ref = with_top1[-1] if with_top1 and not math.isnan(row["top1_mean"]) else nominal
        frame.at[i, "delta_vs"] = ref["step"]
        frame.at[i, "delta_vs_nominal"] = ref["step"] == nominal["step"]
        frame.at[i, "paper_delta"] = row["paper_top1"] - ref["paper_top1"]
        if math.isnan(row["top1_mean"]) or math.isnan(ref["top1_mean"]):
            continue
        delta = row["top1_mean"] - ref["top1_mean"]
        frame.at[i, "delta"] = delta
        pooled = _pooled_std(row, ref)
        frame.at[i, "pooled_std"] = pooled
        if math.isnan(pooled):
            frame.at[i, "significance"] = "spread unknown (1 seed)"
        else:
            frame.at[i, "significance"] = "significant" if abs(delta) > 2 * pooled else "within noise"


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per step (seeds aggregated) in roadmap order, from `load_runs` output; see SUMMARY_COLUMNS."""
    counted = runs[runs["counted"].astype(bool)]
    rows = [_step_row(step, group) for step, group in counted.groupby("step", sort=False)]
    frame = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    frame = frame.sort_values("order", kind="stable").reset_index(drop=True)
    for col in ("delta", "pooled_std", "paper_delta"):
        frame[col] = math.nan
    frame["delta_vs"] = None
    frame["delta_vs_nominal"] = True
    frame["significance"] = ""
    frame = frame.astype({"delta_vs": object, "significance": object, "delta_vs_nominal": bool})
    _add_deltas(frame)
    return frame


def spearman(summary: pd.DataFrame) -> tuple[float, int]:
    """Spearman's rank correlation between our Δ and the paper's Δ over the steps that have both (reference
    models left out), and how many steps that is. Ranks (ties averaged) then Pearson, so scipy is not needed;
    NaN below 3 steps."""
    both = summary[summary["delta"].notna() & summary["paper_delta"].notna() & ~summary["is_baseline"]]
    count = int(len(both))
    if count < 3:
        return math.nan, count
    ours, paper = both["delta"].rank(), both["paper_delta"].rank()
    if ours.std() == 0 or paper.std() == 0:
        return math.nan, count
    return float(ours.corr(paper)), count


# ------------------------------------------------------------------------------------------------ formatting


def fmt_top1(mean: float, std: float, n: int) -> str:
    """'45.20 ± 0.30 (n=2)', '45.20 (n=1)' or '—' (no finished run)."""
    if not n or math.isnan(mean):
        return "—"
    if n == 1 or math.isnan(std):
        return f"{mean:.2f} (n={n})"
    return f"{mean:.2f} ± {std:.2f} (n={n})"


def fmt_num(value: float, spec: str = ".2f", signed: bool = False) -> str:
    """A number with `spec`, '—' for NaN/None."""
    if _is_missing(value) or math.isnan(float(value)):
        return "—"
    return format(float(value), ("+" if signed else "") + spec)


def fmt_gflops(value: float) -> str:
    """Two decimals like the paper, three significant digits below 1 GFLOP (small models, small images)."""
    if _is_missing(value) or math.isnan(float(value)):
        return "—"
    return f"{value:.2f}" if value >= 1 else f"{value:.3g}"


def fmt_duration(seconds: float) -> str:
    """'25.0 s', '12m 05s', '3h 02m'."""
    if _is_missing(seconds) or math.isnan(float(seconds)):
        return "—"
    return duration(seconds)


def _run_px(summary: pd.DataFrame) -> float | None:
    """The one image size all steps ran at, or None when they differ."""
    sizes = set(summary["img_size"].dropna())
    return sizes.pop() if len(sizes) == 1 else None


def display_frame(summary: pd.DataFrame, footnote_style: str = "markdown") -> tuple[pd.DataFrame, list[str]]:
    """The summary as formatted strings, one column per table column, and the footnote lines.

    `footnote_style` "markdown" writes `[^1]` references (rendered as footnotes), "text" writes `[1]`.
    """
    px = _run_px(summary)
    run_col = f"GFLOPs ({int(px)} px)" if px is not None else "GFLOPs (run size)"
    notes: list[str] = []
    records = []

    def note(text: str) -> str:
        """A footnote mark for `text`, which goes below the table."""
        k = len(notes) + 1
        notes.append(f"[^{k}]: {text}" if footnote_style == "markdown" else f"[{k}] {text}")
        return f"[^{k}]" if footnote_style == "markdown" else f" [{k}]"

    for row in summary.itertuples(index=False):
        paper_gflops = fmt_gflops(row.paper_gflops)
        if row.paper_footnote:
            paper_gflops += note(f"`{row.step}`: {row.paper_footnote}")
        gflops_run = fmt_gflops(row.gflops_run)
        if px is None and gflops_run != "—" and not math.isnan(row.img_size):
            gflops_run += f" @{int(row.img_size)}"
        delta = fmt_num(row.delta, signed=True)
        if delta != "—" and not row.delta_vs_nominal:
            delta += f" (vs {row.delta_vs})"
        records.append({
            "step": row.label,
            "section": row.section or "—",
            "params (M, full size)": fmt_num(row.params_224_m),
            "GFLOPs (224 px)": fmt_gflops(row.gflops_224),
            "params (M, as trained)": fmt_num(row.params_m),
            run_col: gflops_run,
            "paper GFLOPs": paper_gflops,
            "top-1 % (mean ± std, n)": fmt_top1(row.top1_mean, row.top1_std, row.n),
            "Δ top-1": delta,
            "Δ vs seed spread": row.significance or "—",
            "paper top-1": fmt_num(row.paper_top1),
            "paper Δ": fmt_num(row.paper_delta, signed=True),
            "train top-1": fmt_num(row.train_top1),
            "images/s": fmt_num(row.images_per_s, ",.0f"),
            "wall time / run": fmt_duration(row.wall_seconds),
            "status": row.status + "".join(note(why) for why in row.unreadable),
        })
    columns = ["step", "section", "params (M, full size)", "GFLOPs (224 px)", "params (M, as trained)", run_col,
               "paper GFLOPs", "top-1 % (mean ± std, n)", "Δ top-1", "Δ vs seed spread", "paper top-1", "paper Δ",
               "train top-1", "images/s", "wall time / run", "status"]
    return pd.DataFrame(records, columns=columns), notes


_LEFT = {"step", "section", "Δ vs seed spread", "status", "class", "model", "left out", "node", "step added", "spec"}


def to_markdown(cells: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table of string cells (numbers right-aligned)."""
    def esc(text: str) -> str:
        return str(text).replace("|", "\\|")

    head = "| " + " | ".join(esc(c) for c in cells.columns) + " |"
    align = "|" + "|".join(":---" if c in _LEFT else "---:" for c in cells.columns) + "|"
    body = ["| " + " | ".join(esc(v) for v in row) + " |" for row in cells.itertuples(index=False)]
    return "\n".join([head, align, *body])


def to_text(cells: pd.DataFrame) -> str:
    """A plain fixed-width table for a terminal (numbers right-aligned)."""
    widths = [max(len(str(c)), *(len(str(v)) for v in cells[c])) if len(cells) else len(c) for c in cells.columns]

    def line(values: list[str]) -> str:
        parts = [str(v).ljust(w) if c in _LEFT else str(v).rjust(w)
                 for c, v, w in zip(cells.columns, values, widths, strict=True)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(list(cells.columns)), rule, *(line(list(r)) for r in cells.itertuples(index=False))])


def export_records(summary: pd.DataFrame) -> list[dict[str, Any]]:
    """The summary's EXPORT_COLUMNS as JSON-ready dicts (NaN -> None, numbers rounded to 6 decimals)."""
    out = []
    for rec in summary[list(EXPORT_COLUMNS)].to_dict(orient="records"):
        clean: dict[str, Any] = {}
        for key, value in rec.items():
            if isinstance(value, float):
                value = None if math.isnan(value) else round(value, 6)
            elif hasattr(value, "item"):
                value = value.item()  # numpy scalar
            clean[key] = value
        clean["n"] = int(clean["n"])
        out.append(clean)
    return out


def render_summary(summary: pd.DataFrame, fmt: str) -> str:
    """The summary in one of FORMATS, as text ending with a newline."""
    if fmt not in FORMATS:
        raise unknown("results format", fmt, FORMATS)
    if fmt == "json":
        return json.dumps(export_records(summary), indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        return pd.DataFrame(export_records(summary), columns=list(EXPORT_COLUMNS)).to_csv(index=False)
    cells, notes = display_frame(summary, "markdown" if fmt == "markdown" else "text")
    table = to_markdown(cells) if fmt == "markdown" else to_text(cells)
    return table + ("\n\n" + "\n".join(notes) if notes else "") + "\n"


def results_table(out_dir: str | Path, fmt: str = "table") -> str:
    """The per-step summary of `out_dir` for `roadmap results`, in `fmt` (table, markdown, csv or json)."""
    if fmt not in FORMATS:
        raise unknown("results format", fmt, FORMATS)
    runs = load_runs(out_dir)
    text = render_summary(summarize(runs), fmt)
    if fmt in ("table", "markdown"):  # (csv and json carry it per step)
        present = runs[~runs["status"].isin(["missing", "unreadable"])]
        trained = ", ".join(f"{d} in {p}" for d, p in dict.fromkeys(zip(present["device"], present["precision"],
                                                                         strict=True)))
        text += f"\nTrained on {trained or '?'}.\n"
    return text
