"""Benchmarks: `roadmap bench` (runner.benchmarks), our pipeline beside a plain timm-style loop, or the models alone."""

from __future__ import annotations

import argparse
import sys

from roadmap.cli.common import add_format
from roadmap.describe import RowPrinter, render
from roadmap.errors import RoadmapError
from runner.data import catalog
from runner.planning.budget import IMAGENETTE_SHAPED, PRESETS
from runner.planning.options import positive_int


def cmd_bench(args: argparse.Namespace) -> None:
    from runner.devices import resolve_device
    from runner.planning.selection import select_steps

    dev = resolve_device(args.device)
    specs = select_steps(None, [x for x in args.steps.split(",") if x.strip()] if args.steps else None, True)
    if any(s.startswith("timm:") for s in specs):
        raise RoadmapError("roadmap bench measures roadmap steps; timm baselines (timm:NAME) are not benchmarked")
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    precisions = _precisions(args.precision)
    if args.models_only:
        _bench_models(args, dev, specs, log, precisions)
        return
    from runner.benchmarks.pipeline_speed import pipeline_bench

    iters = args.iters or 25
    print(f"pipeline benchmark on {dev}: {len(specs)} step(s) on {args.dataset}, preset {args.preset}, "
          f"{args.warmup} warm-up + {iters} timed training steps and a full evaluation pass each, ours then the "
          f"reference loop{'' if not args.no_reference else ' (skipped)'}; torch.compile "
          f"{'on' if args.compile else 'off'}; precision {', '.join(precisions)}", flush=True)
    rows = RowPrinter(args.format) if args.format in RowPrinter.STREAMS else None  # each row as it is measured
    df, totals = pipeline_bench(specs, dev, args.dataset, args.preset, args.epochs, args.batch_size, args.img_size,
                                args.warmup, iters, args.compile, args.workers, not args.no_reference,
                                args.data_path, log, on_row=rows, precisions=precisions)
    if rows is None:
        print(render(df, args.format))
    if args.format != "json":
        data = f"{totals['train_size']:,} / {totals['val_size']:,} images"
        line = (f"\nprojected: {totals['ours_min']:.1f} min for these {totals['steps']} steps at {args.epochs} "
                f"epochs (the original recipe at 90:300) on {args.dataset} ({data}), training and one evaluation per "
                f"epoch, warm-up included; ours: {totals['data_path']}")
        if not args.no_reference:
            line += (f"; the reference loop ({totals['workers']} DataLoader workers): "
                     f"{totals['reference_min']:.1f} min ({totals['reference_min'] / totals['ours_min']:.2f}x)")
        if len(precisions) > 1:
            line += f"; projected in {totals['precision']}, the first precision asked for"
        print(line)


def _precisions(text: str) -> list[str]:
    """--precision: one of auto, bf16, fp16, fp32, or several, comma-separated, measured side by side."""
    from runner.precision import CHOICES

    chosen = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in chosen if p not in CHOICES]
    if bad or not chosen:
        raise RoadmapError(f"--precision {text!r}: use {', '.join(CHOICES)}, or several comma-separated (bf16,fp16)")
    return chosen


def _bench_models(args: argparse.Namespace, dev, specs: list[str], log, precisions: list[str]) -> None:
    from runner.benchmarks.model_speed import bench, projected_minutes
    from runner.precision import choose_precision

    img, batch, iters = args.img_size or 224, args.batch_size or 32, args.iters or 5
    chosen = [choose_precision(p, dev) for p in precisions]
    print(f"model benchmark on {dev}: {img} px, batch {batch}, {iters} iterations x "
          f"{args.rounds} interleaved rounds (median); reference models measured in the same process; precision "
          f"{', '.join(p.name for p in chosen)}", flush=True)
    df = bench(specs, img, batch, dev, iters=iters, rounds=args.rounds, references=not args.no_reference,
               log=log, precisions=chosen)
    print(render(df, args.format))
    if args.format != "json" and len(chosen) == 1:
        print(f"\nprojected: {projected_minutes(df):.1f} min for these {len(specs)} models at 100 epochs on "
              f"Imagenette-160's 9,469 / 3,925 images at {img} px (model compute only, data loading excluded)")


def add_commands(sub) -> None:
    """bench."""
    p = sub.add_parser(
        "bench", help="training/eval images/s per step: our pipeline beside a plain timm-style loop",
        description="A benchmark, not a test. Per step: training and evaluation images/s of `roadmap run`'s own "
        "pipeline (images on the device, augmented there; fused AdamW; the run's precision and channels-last on "
        "CUDA; optional torch.compile) beside the same model trained by a plain timm-style loop with a CPU "
        "DataLoader, GPU memory, model FLOP utilization, warm-up (compile) time, and the projected wall time of the "
        "roadmap. --models-only instead times the models alone on random tensors, interleaved with torchvision's "
        "resnet50 and timm's convnext_tiny.")
    p.add_argument("--steps", metavar="A,B,...", help="steps to measure (default: all)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:INDEX or mps (default: auto)")
    p.add_argument("--dataset", default=IMAGENETTE_SHAPED,
                   help=f"data to train on: {catalog.help_text()} (default: synthetic, Imagenette-160's size and "
                   "count)")
    p.add_argument("--preset", default="quick", choices=list(PRESETS), help="budget preset (default: quick)")
    p.add_argument("--epochs", type=positive_int, default=100, help="epochs of the projection (default: 100)")
    p.add_argument("--batch-size", type=positive_int, help="batch (default: the preset's; --models-only: 32)")
    p.add_argument("--img-size", type=positive_int, help="input size (default: the data set's; --models-only: 224)")
    p.add_argument("--warmup", type=positive_int, default=5, help="untimed training steps first (default: 5)")
    p.add_argument("--iters", type=positive_int,
                   help="timed training steps (default: 25); --models-only: iterations per round (default: 5)")
    p.add_argument("--compile", action="store_true", help="torch.compile our model (compile time: the warm-up column)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="DataLoader workers (default: ours as `roadmap run`, 8 on CUDA and 0 on CPU; reference 8)")
    p.add_argument("--data-path", choices=["auto", "loader", "device"], default="auto",
                   help="our data path, as in `roadmap run` (default: auto)")
    p.add_argument("--no-reference", "--no-references", action="store_true",
                   help="skip the reference loop / reference models")
    p.add_argument("--models-only", action="store_true", help="time the models alone on random tensors")
    p.add_argument("--rounds", type=positive_int, default=3, help="--models-only: interleaved rounds (default: 3)")
    p.add_argument("--precision", default="auto", metavar="P[,P...]",
                   help="auto (default: as `roadmap run` chooses), bf16, fp16 or fp32; several, comma-separated "
                   "(e.g. bf16,fp16), are measured side by side, interleaved with --models-only")
    add_format(p)
    p.set_defaults(func=cmd_bench)

