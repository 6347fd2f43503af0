"""The report judging its own run: did the runs converge, and does the run reproduce the paper's roadmap?

Both read only the summary (`reports.table.summarize`) and the per-epoch curves (`reports.records.curves`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
from scipy import stats

from reports.table import fmt_num, to_markdown

LATE_FRACTION = 1 / 3
"""The convergence checks compare the last epoch with the epoch at the start of the last third of training."""
STILL_RISING = 3.0
"""Validation top-1 still rising by more than this many points over the last third of training: underfit."""
TRAIN_GAP = 20.0
"""Training top-1 (on augmented, mixed images) more than this many points below validation top-1: the
regularization is too strong for the budget, the model has not fit even its training images."""
LOSS_FALLING = 0.15
"""Training loss still falling by more than this fraction over the last third of training: underfit."""
UNDERFIT_MARK = "⚠"
SMALL_IMAGE_FINDINGS = {
    "large_kernel": "`large_kernel` goes against the paper here. One explanation for small images: most blocks see "
                    "stage maps no larger than its 7×7 kernel, which then sees mostly padding. The project tested it "
                    "on Fashion-MNIST at 28 px: with stem stride 1 (maps 4× larger) the step still loses, by "
                    "-0.55 ± 0.38 (2σ) against -0.66 ± 0.53 at stride 2, the same within the seed noise, so the "
                    "padding does not explain the reversal (`docs/cpu-preset-sweep.md`, section \"Large kernels at "
                    "28 px\", in the convnext-roadmap sources).",
}
"""Main-path steps whose reversal on small images the project has studied: the report's note when one is opposite.
The note names the document in plain text: a report must rebuild byte-identically wherever its directory is."""


@dataclass(frozen=True)
class Convergence:
    """Why a run looks underfit (empty when it does not)."""

    run_id: str
    step: str
    seed: float
    reasons: tuple[str, ...]


def _late_index(epochs: int) -> int:
    """0-based index of the epoch where the last third of training starts (at least one epoch before the end)."""
    return min(epochs - 2, max(0, round(epochs * (1 - LATE_FRACTION)) - 1))


def run_convergence(run_id: str, step: str, seed: float, curve: pd.DataFrame, train_top1: float) -> Convergence:
    """The convergence checks of one run's curve (epoch, val_top1, train_loss) and its last training top-1."""
    curve = curve.sort_values("epoch")
    reasons = []
    last_val = float(curve["val_top1"].iloc[-1]) if len(curve) else math.nan
    if len(curve) >= 3:
        k = _late_index(len(curve))
        gain = last_val - float(curve["val_top1"].iloc[k])
        if gain > STILL_RISING:
            reasons.append(f"val top-1 +{gain:.1f} over the last {len(curve) - 1 - k} epochs")
        start, end = float(curve["train_loss"].iloc[k]), float(curve["train_loss"].iloc[-1])
        if start > 0 and (start - end) / start > LOSS_FALLING:
            reasons.append(f"train loss −{100 * (start - end) / start:.0f} % over the last {len(curve) - 1 - k} "
                           "epochs")
    if not math.isnan(train_top1) and not math.isnan(last_val) and last_val - train_top1 > TRAIN_GAP:
        reasons.append(f"train top-1 {train_top1:.1f} vs val {last_val:.1f}")
    return Convergence(run_id, step, seed, tuple(reasons))


def underfit_runs(runs: pd.DataFrame, curves: pd.DataFrame) -> list[Convergence]:
    """The finished runs that look underfit, in table order."""
    out = []
    done = runs[runs["counted"].astype(bool) & (runs["status"] == "done")]
    for row in done.itertuples(index=False):
        curve = curves[curves["run_id"] == row.run_id]
        c = run_convergence(row.run_id, row.step, row.seed, curve, float(row.train_top1))
        if c.reasons:
            out.append(c)
    return out


def convergence_warning(flagged: list[Convergence], runs: pd.DataFrame) -> list[str]:
    """The report's first-line warning when any run looks underfit (empty otherwise)."""
    if not flagged:
        return []
    done = int((runs["counted"].astype(bool) & (runs["status"] == "done")).sum())
    steps = list(dict.fromkeys(c.step for c in flagged))
    shown = ", ".join(f"`{s}`" for s in steps[:6]) + (f" and {len(steps) - 6} more" if len(steps) > 6 else "")
    return [f"> **{UNDERFIT_MARK} {len(flagged)} of {done} runs look underfit** ({shown}; marked {UNDERFIT_MARK} in "
            "the table): their accuracy was still rising, their loss still falling, or they did not fit their own "
            "training images. Their Δs say more about the budget than about the steps; see \"Did the runs "
            "converge?\".", ""]


def convergence_section(flagged: list[Convergence]) -> list[str]:
    lines = ["## Did the runs converge?", "",
             f"A run is flagged when, over the last third of its epochs, validation top-1 rose by more than "
             f"{STILL_RISING:g} points or the training loss fell by more than {100 * LOSS_FALLING:.0f} %, or when "
             f"its last training top-1 (augmented, mixed images) is more than {TRAIN_GAP:g} points below its "
             "validation top-1.", ""]
    if not flagged:
        return lines + ["No run is flagged.", ""]
    lines += [f"- `{c.step}` seed {int(c.seed) if not math.isnan(c.seed) else '?'}: {'; '.join(c.reasons)}"
              for c in flagged]
    return lines + [""]


def _call(delta: float, paper_delta: float, pooled: float) -> str:
    """'same direction', 'opposite' or 'within noise' (|Δ| <= 2 pooled seed std); 'spread unknown' with 1 seed."""
    if math.isnan(delta) or math.isnan(paper_delta):
        return "—"
    if math.isnan(pooled):
        return "spread unknown (1 seed)"
    if abs(delta) <= 2 * pooled:
        return "within noise"
    return "same direction" if (delta > 0) == (paper_delta > 0) else "opposite"


def _pooled(a: pd.Series, b: pd.Series) -> float:
    if a["n"] < 2 or b["n"] < 2:
        return math.nan
    return math.sqrt(((a["n"] - 1) * a["top1_std"] ** 2 + (b["n"] - 1) * b["top1_std"] ** 2) / (a["n"] + b["n"] - 2))


def main_path(summary: pd.DataFrame) -> pd.DataFrame:
    """The paper's main-path steps present (no branch, no composed spec, no reference model), in roadmap order."""
    return summary[~(summary["edited"] | summary["is_branch"] | summary["is_baseline"])]


def reproduction_section(summary: pd.DataFrame) -> list[str]:
    """"Does it reproduce the paper?": per main-path step the paper's Δ, ours ± 2 pooled seed std and the call;
    Spearman's ρ (with its p-value) between our per-step top-1 and the paper's; end minus start with its spread."""
    main = main_path(summary)
    lines = ["## Does it reproduce the paper?", ""]
    rows = main.iloc[1:]  # the first step has nothing before it
    rows = rows[rows["delta"].notna() | rows["paper_delta"].notna()]
    if not len(rows):
        return lines + ["No main-path step has a Δ to compare.", ""]
    calls = [_call(r.delta, r.paper_delta, r.pooled_std) for r in rows.itertuples(index=False)]
    cells = pd.DataFrame({
        "step": [f"`{s}`" for s in rows["step"]],
        "paper Δ": [fmt_num(v, signed=True) for v in rows["paper_delta"]],
        "our Δ ± 2σ": [fmt_num(r.delta, signed=True) + ("" if math.isnan(r.pooled_std) or math.isnan(r.delta)
                                                         else f" ± {2 * r.pooled_std:.2f}")
                       for r in rows.itertuples(index=False)],
        "verdict": calls,
    })
    counts = {c: calls.count(c) for c in ("same direction", "opposite", "within noise")}
    lines += ["Per step of the paper's path: the paper's Δ (ImageNet-1K), ours against the same previous step with "
              "2 × the pooled seed standard deviation, and the call: **same direction** or **opposite** when our "
              "|Δ| exceeds 2σ, **within noise** otherwise.", "", to_markdown(cells), "",
              f"Same direction: {counts['same direction']}; opposite: {counts['opposite']}; within noise: "
              f"{counts['within noise']} (of {len(calls)} steps).", ""]
    for step, call in zip(rows["step"], calls, strict=True):
        if call == "opposite" and step in SMALL_IMAGE_FINDINGS:
            lines += [SMALL_IMAGE_FINDINGS[step], ""]
    both = main[main["top1_mean"].notna() & main["paper_top1"].notna()]
    if len(both) >= 3 and both["top1_mean"].nunique() > 1 and both["paper_top1"].nunique() > 1:
        rho, p = stats.spearmanr(both["top1_mean"], both["paper_top1"])
        lines.append(f"Spearman's rank correlation between our per-step top-1 and the paper's over {len(both)} "
                     f"main-path steps: **ρ = {rho:+.2f}** (p = {p:.2g}; 1: the steps rank as in the paper).")
    else:
        lines.append(f"Spearman's rank correlation between our per-step top-1 and the paper's: not defined "
                     f"({len(both)} steps with both; at least 3 with varying values are needed).")
    with_top1 = main[main["top1_mean"].notna()]
    if len(with_top1) >= 2:
        start, end = with_top1.iloc[0], with_top1.iloc[-1]
        diff, pooled = end["top1_mean"] - start["top1_mean"], _pooled(start, end)
        paper = end["paper_top1"] - start["paper_top1"]
        spread = "" if math.isnan(pooled) else f" ± {2 * pooled:.2f} (2σ)"
        lines += ["", f"End minus start: `{end['step']}` − `{start['step']}` = **{diff:+.2f}**{spread} points "
                  f"(paper: {fmt_num(paper, signed=True)}): {_call(diff, paper, pooled)}."]
    return lines + [""]
