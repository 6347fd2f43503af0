"""The model card (README.md) of an exported step (`roadmap export`, docs/trained-models.md), from the records alone.

Its numbers are those of `roadmap results` (the same summary row, formatted the same way): the seeds' top-1 (mean ±
std, n), params and GFLOPs at the run's size and at 224 px, the paper's top-1 and GFLOPs; and the exported seed's own
final top-1, from its result.json.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from reports.records import load_runs
from reports.table import fmt_gflops, fmt_num, fmt_top1, summarize
from roadmap.errors import RoadmapError

PAPER = "arXiv:2201.03545"


def _row(frame: Any, column: str, value: Any) -> dict[str, Any]:
    rows = frame[frame[column] == value]
    if rows.empty:
        raise RoadmapError(f"no record of {value!r} in the result directory")
    return rows.iloc[0].to_dict()


def card_numbers(out: str | Path, run_id: str) -> dict[str, Any]:
    """The card's numbers for run `run_id` of result directory `out`: its step's summary row (what `roadmap results
    --format json` prints) and the run's own row."""
    runs = load_runs(out)
    run = _row(runs, "run_id", run_id)
    step = _row(summarize(runs), "step", run["step"])
    return {"run": run, "step": step}


def model_card(out: str | Path, run_id: str, architecture: str) -> str:
    """README.md for the exported run `run_id` of `out`, loaded as timm model `architecture`."""
    numbers = card_numbers(out, run_id)
    run, step = numbers["run"], numbers["step"]
    px = int(run["img_size"])
    classes = list(run["classes"] or [])
    data = run["dataset"] + (" (synthetic data: a pipeline check, its accuracies mean nothing)"
                             if run["synthetic"] else "")
    paper = step.get("paper_top1")
    paper_line = (f"{fmt_num(paper)} top-1 on ImageNet-1k at 224 px, {fmt_gflops(step['paper_gflops'])} GFLOPs"
                  if paper is not None and not (isinstance(paper, float) and math.isnan(paper)) else "—")
    lines = [
        "---",
        "library_name: timm",
        "license: mit",
        "tags:",
        "- image-classification",
        "- timm",
        "- convnext-roadmap",
        "---",
        "",
        f"# {architecture} (seed {int(run['seed'])})",
        "",
        f"The step `{run['step']}` of the ConvNeXt paper's roadmap from ResNet-50 to ConvNeXt-T "
        f"(\"A ConvNet for the 2020s\", {PAPER}, section {run['section_number']} {run['section_title']}), "
        "trained with convnext-roadmap and exported by `roadmap export`.",
        "",
        "| | |",
        "|---|---|",
        f"| data set | {data} |",
        f"| classes | {len(classes)}: {', '.join(classes[:20])}{', ...' if len(classes) > 20 else ''} |",
        f"| recipe | {run['recipe']} ({run['optimizer']}, {run['schedule']} schedule"
        f"{', EMA weights' if run['ema'] else ''}), preset {run['preset']} |",
        f"| epochs | {fmt_num(step['epochs'], '.0f')} |",
        f"| input | {px} px |",
        f"| top-1, this seed | {fmt_num(run['val_top1'])} |",
        f"| top-1, all seeds (mean ± std, n) | {fmt_top1(step['top1_mean'], step['top1_std'], int(step['n']))} |",
        f"| params, GFLOPs at {px} px | {fmt_num(step['params_m'], '.2f')} M, {fmt_gflops(step['gflops_run'])} |",
        f"| params, GFLOPs at 224 px, full size | {fmt_num(step['params_224_m'], '.2f')} M, "
        f"{fmt_gflops(step['gflops_224'])} |",
        f"| the paper | {paper_line} |",
        f"| license, paper | MIT, {PAPER} |",
        "",
        "The numbers are those of `roadmap results` on the result directory (top-1 in percent on its validation "
        "set, the final epoch's).",
        "",
        "## Use",
        "",
        "```python",
        "import timm",
        "import roadmap.timm_models  # registers the roadmap_<step> models",
        "",
        "model = timm.create_model(\"local-dir:PATH/TO/THIS/FOLDER\", pretrained=True).eval()  # or hf-hub:ORG/NAME",
        "transform = timm.data.create_transform(**timm.data.resolve_data_config(model=model))",
        "```",
        "",
        "## Reproduce",
        "",
        "The command that trained it (this step and seed are among its runs):",
        "",
        "```",
        f"{run['command']}",
        "```",
        "",
        f"Code version {run['code_version']} (git {run['git_revision']}), {run['device']}, {run['precision']}.",
        "",
    ]
    return "\n".join(lines)
