"""Training throughput of the `cpu` preset's models on this CPU in fp32, bf16 and fp16 autocast (issue 32): what
`--precision auto` chooses on the CPU rests on it (docs/bench-cpu.md, "Precision on the CPU").

Each model as the preset trains it (1/8 width, 1/3 depth, 28 px, batch 64, its recipe's optimizer), one torch
thread (as the preset's --jobs 2 runs train); the precisions interleaved step by step, round after round, so a
noisy machine's drifts hit all three alike; the median images/s of each, and the ratio to fp32.

    .venv/bin/python scripts/cpu_precision.py [--rounds 5] [--steps 10] [--specs resnet50,convnext_tiny]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from roadmap.model import build_model
from runner.fitting import timm_parts
from runner.planning.options import RunOptions, Selection, Training
from runner.planning.runs import plan
from runner.precision import Precision

SPECS = ("resnet50", "move_up_dwconv", "convnext_tiny")
PRECISIONS = ("fp32", "bf16", "fp16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per precision and round")
    parser.add_argument("--specs", default=",".join(SPECS), help="the roadmap steps to measure (comma-separated)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    specs = tuple(x for x in args.specs.split(",") if x)
    runs = plan(RunOptions(Selection(dataset="fashion-mnist", steps=specs, seeds=1), Training(preset="cpu")),
                "fashion-mnist", 28, 10, 60000)
    print(f"torch {torch.__version__}, 1 thread, batch 64 at 28 px, {args.rounds} rounds x {args.steps} steps\n")
    print("| step | fp32 img/s | bf16 img/s | fp16 img/s | bf16 / fp32 | fp16 / fp32 |")
    print("|---|---|---|---|---|---|")
    for r in runs:
        x, y = torch.randn(64, 3, 28, 28), torch.randint(0, 10, (64,))
        steps = {}
        for name in PRECISIONS:
            torch.manual_seed(0)
            model = build_model(r.design.net, num_classes=10).train()
            opt = timm_parts.optimizer(r.design.recipe, model, r.budget.lr)
            steps[name] = _step(model, opt, x, y, Precision(name))
            steps[name]()  # warm up
        rates = {name: [] for name in PRECISIONS}
        for k in range(args.rounds):
            for _ in range(args.steps):
                for name in PRECISIONS if k % 2 == 0 else PRECISIONS[::-1]:
                    t0 = time.perf_counter()
                    steps[name]()
                    rates[name].append(64 / (time.perf_counter() - t0))
        med = {name: statistics.median(v) for name, v in rates.items()}
        print(f"| {r.spec} | {med['fp32']:.0f} | {med['bf16']:.0f} | {med['fp16']:.0f} | "
              f"{med['bf16'] / med['fp32']:.2f} | {med['fp16'] / med['fp32']:.2f} |", flush=True)


def _step(model, opt, x, y, precision: Precision):
    scaler = precision.grad_scaler(x.device)

    def step() -> None:
        with precision.autocast(x.device):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    return step


if __name__ == "__main__":
    main()
