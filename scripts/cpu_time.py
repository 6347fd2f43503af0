"""Where a CPU run's time goes, per step: the whole training pipeline against the model alone.

For every step of the roadmap as the given preset plans it (Fashion-MNIST), interleaved in one process so a
noisy machine hits both alike:

- **pipeline**: `runner.fitting.fit.train` for one epoch of `--batches` batches (DataLoader, the recipe's augmentation,
  mixing, forward, backward, optimizer): its recorded training images/s;
- **model only**: the same model, optimizer and loss on one fixed batch of already-transformed images: images/s
  of forward + backward + optimizer step;
- **eval**: images/s of `runner.fitting.loop.evaluate` on `--eval-batches` validation batches.

    python scripts/cpu_time.py [--preset cpu] [--batches 40] [--rounds 2] [--steps a,b] [--batch-size N]
                               [--threads N] [--workers N] [--channels-last]
    python scripts/cpu_time.py --layouts [--steps a,b] [--rounds 3]   # channels-last and threads

Prints a Markdown table (docs/bench-cpu.md holds the measured one, with this command).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from roadmap.model import build_model
from runner.data import load_dataset
from runner.fitting import timm_parts
from runner.fitting.fit import train
from runner.fitting.loop import evaluate
from runner.fitting.training_run import Job, Transformed
from runner.planning.options import RunOptions, Selection, Training
from runner.planning.runs import plan
from runner.store import RunDir


def model_only(run, info, batch: int, iters: int, channels_last: bool = False) -> float:
    """Training images/s of the model alone on one fixed batch of transformed images."""
    torch.manual_seed(0)
    model = build_model(run.design.net, num_classes=info.num_classes).train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = timm_parts.optimizer(run.design.recipe, model, run.budget.lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.randn(batch, 3, run.budget.img_size, run.budget.img_size).contiguous(memory_format=fmt)
    y = torch.randint(0, info.num_classes, (batch,))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    return iters * batch / (time.perf_counter() - t0)


def pipeline(run, splits, info, batches: int, out: Path, workers: int = 0) -> float:
    """Training images/s of `train` itself for one epoch of `batches` batches (its own measurement)."""
    budget = run.budget.__class__(**{**run.budget.__dict__, "epochs": 1, "train_batches": batches,
                                     "val_batches": 1, "monitor_batches": 0})
    design = run.design
    job = Job(run_dir=RunDir(out), design=design, budget=budget, seed=0, num_classes=info.num_classes,
              class_names=tuple(info.classes), train_set=splits.train, val_set=splits.val,
              device=torch.device("cpu"), workers=workers, progress=False, log=lambda _: None, label=run.spec)
    return train(job)["images_per_s"]


def eval_speed(run, splits, info, batches: int) -> float:
    model = build_model(run.design.net, num_classes=info.num_classes)
    val = Transformed(splits.val, timm_parts.eval_transform(run.design.recipe, run.budget.img_size))
    loader = torch.utils.data.DataLoader(val, batch_size=min(2 * run.budget.batch_size, 512))
    t0 = time.perf_counter()
    evaluate(model, loader, info.num_classes, torch.device("cpu"), batches)
    return batches * loader.batch_size / (time.perf_counter() - t0)


def compare_layouts(runs, splits, info, batch: int, iters: int, rounds: int) -> None:
    """Training img/s per step: channels-last against contiguous memory (the model alone, and the whole pipeline
    through `train`), and one thread against two (the model alone); each ratio taken within a round, where the
    measurements are interleaved, and the median over rounds."""
    import runner.devices
    import runner.fitting.training_run

    layout = runner.devices.channels_last

    def pipeline_in(cl: bool) -> float:  # the layout of the model (training_run) and of the batches (devices)
        runner.devices.channels_last = runner.fitting.training_run.channels_last = lambda dev: cl
        try:
            with tempfile.TemporaryDirectory() as tmp:
                return pipeline(run, splits, info, iters, Path(tmp))
        finally:
            runner.devices.channels_last = runner.fitting.training_run.channels_last = layout

    print(f"training, {runs[0].budget.img_size} px, batch {batch}; median of {rounds} interleaved rounds")
    print("| step | model img/s (contiguous, 2 threads) | model: channels-last / contiguous | "
          "pipeline: channels-last / contiguous | model: 1 thread / 2 threads |")
    print("|---|---|---|---|---|")
    med = statistics.median
    for run in runs:
        base, cl, pipe, one = [], [], [], []
        for _ in range(rounds):
            torch.set_num_threads(2)
            b = model_only(run, info, batch, iters)
            base.append(b)
            cl.append(model_only(run, info, batch, iters, channels_last=True) / b)
            pipe.append(pipeline_in(True) / pipeline_in(False))
            torch.set_num_threads(1)
            one.append(model_only(run, info, batch, iters) / b)
            torch.set_num_threads(2)
        print(f"| `{run.spec}` | {med(base):.0f} | {med(cl):.2f} | {med(pipe):.2f} | {med(one):.2f} |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="cpu")
    p.add_argument("--steps", help="comma-separated specs (default: the whole roadmap)")
    p.add_argument("--batches", type=int, default=40, help="training batches per pipeline measurement")
    p.add_argument("--eval-batches", type=int, default=16)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--threads", type=int, help="torch threads (default: torch's, one per core)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader processes of the pipeline (default: 0)")
    p.add_argument("--channels-last", action="store_true", help="the model-only measurement in channels-last")
    p.add_argument("--layouts", action="store_true",
                   help="instead: channels-last vs contiguous (model, pipeline) and 1 vs 2 threads, interleaved")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    splits = load_dataset("fashion-mnist")
    info = splits.info
    opts = RunOptions(Selection(steps=tuple(args.steps.split(",")) if args.steps else None, seeds=1),
                      Training(preset=args.preset, batch_size=args.batch_size))
    runs = plan(opts, info.name, info.native_size, info.num_classes, info.train_size)
    batch = runs[0].budget.batch_size
    if args.layouts:
        return compare_layouts(runs, splits, info, batch, args.batches, args.rounds)
    print(f"preset {args.preset}, {runs[0].budget.img_size} px, batch {batch}, {torch.get_num_threads()} threads, "
          f"{args.workers} workers{', channels-last model' if args.channels_last else ''}; "
          f"median of {args.rounds} interleaved rounds")
    print("| step | pipeline img/s | model-only img/s | pipeline / model | eval img/s |")
    print("|---|---|---|---|---|")
    for run in runs:
        pipe, model, ev = [], [], []
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory() as tmp:
                pipe.append(pipeline(run, splits, info, args.batches, Path(tmp), args.workers))
            model.append(model_only(run, info, batch, args.batches, args.channels_last))
            ev.append(eval_speed(run, splits, info, args.eval_batches))
        p_, m_, e_ = statistics.median(pipe), statistics.median(model), statistics.median(ev)
        print(f"| `{run.spec}` | {p_:.0f} | {m_:.0f} | {p_ / m_:.2f} | {e_:.0f} |", flush=True)


if __name__ == "__main__":
    main()
