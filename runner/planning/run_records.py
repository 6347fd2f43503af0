"""The records a run writes about itself, beside its metrics and result: config.json (the step, its complexity,
the data, budget, design and identity, the code and package versions, the command) and the result directory's
plan.json (every planned run, the step orders)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from roadmap import schema
from runner import baselines as timm_baselines
from runner import store
from runner.planning.batching import BatchPlan
from runner.planning.options import RunOptions
from runner.planning.provenance import code_version, git_revision, now, package_versions
from runner.planning.runs import PlannedRun, complexity_of, described, seeds_of
from runner.planning.selection import order_specs, order_steps
from steps import Roadmap, get_regime


def config_for(run: PlannedRun, info, device: str, opts: RunOptions, batch: BatchPlan, precision: str
               ) -> schema.RunConfig:
    """config.json: everything needed to reproduce the run and to report on it without the code; `batch`: how its
    optimizer step is reached (recorded when --micro-batch was given, "auto" resolved by then); `precision`: the
    number format it trains in (runner.precision)."""
    regime = get_regime(opts.selection.regime)
    img = run.budget.img_size
    c = complexity_of(run, info.num_classes, regime)
    if run.model is not None:
        paper = timm_baselines.PAPER_NUMBERS.get(run.model)
        step_fields = {"step_name": run.spec, "section": schema.BASELINE_SECTION, "branch_of": None,
                       "baseline": run.model, "paper": schema.PaperNumbers(**paper) if paper else None}
    else:
        step = regime.parse_spec(run.spec)[-1]
        is_paper_step = run.spec == step.name  # a composed spec (leave-one-out, reordered) is not the paper's model
        step_fields = {
            "step_name": step.name, "branch_of": step.branch_of,
            "section": schema.Section(step.section.key, step.section.number, step.section.title),
            "paper": schema.PaperNumbers(step.paper_top1, step.paper_gflops, step.footnote) if is_paper_step else None,
        }
    return schema.RunConfig(
        run_id=run.run_id, step=run.spec, **step_fields, seed=run.seed, regime=regime.name,
        complexity=dataclasses.replace(c, gflops_run=round(c.gflops_run, 5), gflops_224=round(c.gflops_224, 4)),
        dataset=schema.DatasetInfo(name=info.name, num_classes=info.num_classes, classes=list(info.classes),
                                   train_size=info.train_size, val_size=info.val_size, img_size=img,
                                   synthetic=info.synthetic, layout=getattr(info, "layout", None),
                                   split=getattr(info, "split", None), skipped=getattr(info, "skipped", 0) or None),
        budget=run.budget, design=described(run.design, run.model), identity=run.identity, device=device,
        precision=precision,
        code_version=code_version(), git_revision=git_revision(), packages=package_versions(),
        command=opts.output.command, created=now(),
        # only when asked for: how each optimizer step is computed (not part of the run's identity, like --nproc)
        micro_batch=batch.record(),
    )


def write_plan(out: Path, runs: list[PlannedRun], opts: RunOptions) -> None:
    """plan.json: every planned run (spec, seed, directory) and the step orders, as the report reads them."""
    what = opts.selection
    store.write_plan(out, schema.Plan(
        steps=list(dict.fromkeys(r.spec for r in runs)), seeds=seeds_of(opts), dataset=what.dataset,
        regime=what.regime, img_size=runs[0].budget.img_size, preset=runs[0].budget.preset,
        command=opts.output.command, created=now(),
        orders=[order_record(steps, get_regime(what.regime)) for steps in what.orders],
        runs=[schema.PlanEntry(step=r.spec, seed=r.seed, dir=r.run_id) for r in runs],
    ))


def order_record(order: Sequence[str], regime: Roadmap) -> schema.OrderRecord:
    """plan.json's record of one step order: the steps added, in order, and the spec of each node (the first
    node is the starting model, which adds no step)."""
    return schema.OrderRecord(steps=order_steps(order, regime), specs=order_specs(order, regime))
