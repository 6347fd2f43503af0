"""The records a run writes about itself, beside its metrics and result: config.json (the step, its complexity,
the data, budget, design and identity, the code and package versions, the command) and the result directory's
plan.json (every planned run, the step orders)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from reports.records import BASELINE_SECTION
from runner import baselines as timm_baselines
from runner.batching import micro_batch_record
from runner.options import RunOptions
from runner.planning import PlannedRun, complexity_of, described, seeds_of
from runner.provenance import code_version, git_revision, now, package_versions
from runner.selection import order_specs, order_steps
from runner.store import atomic_write_json
from steps import Roadmap, get_regime


def config_for(run: PlannedRun, info, device: str, opts: RunOptions, world: int = 1) -> dict[str, Any]:
    """config.json: everything needed to reproduce the run and to report on it without the code."""
    regime = get_regime(opts.selection.regime)
    img = run.budget.img_size
    c = complexity_of(run, info.num_classes, regime)
    if run.model is not None:
        paper = timm_baselines.PAPER_NUMBERS.get(run.model)
        step_fields = {"step_name": run.spec, "section": BASELINE_SECTION, "branch_of": None,
                       "baseline": run.model, "paper": dict(paper, footnote="") if paper else None}
    else:
        step = regime.parse_spec(run.spec)[-1]
        is_paper_step = run.spec == step.name  # a composed spec (leave-one-out, reordered) is not the paper's model
        step_fields = {
            "step_name": step.name,
            "section": {"key": step.section.key, "number": step.section.number, "title": step.section.title},
            "branch_of": step.branch_of,
            "paper": {"top1": step.paper_top1, "gflops": step.paper_gflops, "footnote": step.footnote}
            if is_paper_step else None,
        }
    return {
        "run_id": run.run_id,
        "step": run.spec,
        **step_fields,
        "seed": run.seed,
        "regime": regime.name,
        "complexity": {
            "params": c.params,  # the network as trained (after the preset's scaling)
            "gflops_run": round(c.gflops_run, 5),  # ... at the run's resolution
            "img_size": img,
            "gflops_224": round(c.gflops_224, 4),  # full size at 224 px, 1000 classes: the paper's column
            "params_224": c.params_224,
        },
        "dataset": {"name": info.name, "num_classes": info.num_classes, "classes": list(info.classes),
                    "train_size": info.train_size, "val_size": info.val_size, "img_size": img,
                    "synthetic": info.synthetic},
        "budget": dataclasses.asdict(run.budget),
        "design": described(run.design, run.model),
        "identity": run.identity,
        "device": device,
        "code_version": code_version(),
        "git_revision": git_revision(),
        "packages": package_versions(),
        "command": opts.output.command,
        "created": now(),
        # only when asked for: how each optimizer step is computed (not part of the run's identity, like --nproc)
        **({"micro_batch": micro_batch_record(run, info.train_size, opts.training.micro_batch, world)}
           if opts.training.micro_batch is not None else {}),
    }


def write_plan(out: Path, runs: list[PlannedRun], opts: RunOptions) -> None:
    atomic_write_json(out / "plan.json", {
        "steps": list(dict.fromkeys(r.spec for r in runs)), "seeds": seeds_of(opts), "dataset": opts.selection.dataset,
        "regime": opts.selection.regime, "img_size": runs[0].budget.img_size, "preset": runs[0].budget.preset,
        "command": opts.output.command, "created": now(),
        "orders": [order_record(steps, get_regime(opts.selection.regime)) for steps in opts.selection.orders],
        "runs": [{"step": r.spec, "seed": r.seed, "dir": r.run_id} for r in runs],
    })


def order_record(order: list[str], regime: Roadmap) -> dict[str, list[str]]:
    """plan.json's record of one step order: the steps added, in order, and the spec of each node (the first
    node is the starting model, which adds no step)."""
    return {"steps": order_steps(order, regime), "specs": order_specs(order, regime)}

