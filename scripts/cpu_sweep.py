"""The sweep that chose the `cpu` preset: the first and the last model only (resnet50, convnext_tiny).

Each configuration is the `cpu` preset with some fields changed (and `--set` overrides); every run lands in one
result directory, so a model whose run does not change between configurations (ResNet-50 when only the modern
recipe's strengths change) is trained once and reused. Prints one Markdown row per (configuration, step, seed):

    python scripts/cpu_sweep.py OUT NAME:field=value,field=value[:set=key=value;key=value] ...

e.g. `python scripts/cpu_sweep.py /tmp/sweep s0.5:regularization=0.5 lr2e-3:regularization=0.5:set=recipe.lr=0.002`.
The sweep's record, with the commands that produced it, is docs/cpu-preset-sweep.md.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from runner.launchers.local import run
from runner.planning.options import Output, RunOptions, Selection, Training
from runner.planning.runs import budget
from runner.store import RunDir

STEPS = ["resnet50", "separate_downsampling"]


def parse(arg: str) -> tuple[str, dict, list[str], list[str]]:
    name, *parts = arg.split(":")
    fields, sets, steps = {}, [], STEPS
    for part in parts:
        if part.startswith("set="):
            sets = part[4:].split(";")
        elif part.startswith("steps="):
            steps = part[6:].split(";")
        elif part:
            for item in part.split(","):
                key, value = item.split("=")
                fields[key] = None if value == "none" else float(value) if "." in value or "e" in value else int(value)
    return name, fields, sets, steps


def main(out: str, configs: list[str], seeds: int = 1) -> None:
    from runner.data import load_dataset
    from runner.planning.runs import plan

    info = load_dataset("fashion-mnist").info
    print("| config | step | seed | val top-1 | train top-1 | run seconds | img/s |")
    print("|---|---|---|---|---|---|---|")
    for arg in configs:
        name, fields, sets, steps = parse(arg)
        budget.PRESETS[name] = dataclasses.replace(budget.PRESETS["cpu"], name=name, **fields)
        opts = RunOptions(Selection(dataset="fashion-mnist", steps=tuple(steps), seeds=seeds),
                          Training(preset=name, sets=tuple(sets)),
                          output=Output(out=out, progress=False, report=False, write_plan=False,
                                        command=f"cpu_sweep {arg}"))
        run(opts, log=lambda _: None)
        for r in plan(opts, info.name, info.native_size, info.num_classes, info.train_size):
            res = RunDir(Path(out) / r.run_id).read_result()
            print(f"| {name} | {r.spec} | {r.seed} | {res.val_top1:.2f} | {res.train_top1:.1f} | "
                  f"{res.wall_seconds:.1f} | {res.images_per_s:.0f} |", flush=True)


if __name__ == "__main__":
    seeds = 1
    args = sys.argv[1:]
    if args and args[0].startswith("--seeds="):
        seeds, args = int(args[0].split("=")[1]), args[1:]
    main(args[0], args[1:], seeds)
