"""The `roadmap` command: look at the roadmap, train it, report on it.

Every mistake a user can make ends in one line on stderr and exit code 2, never a traceback.

The CLI is the one layer that knows every package. What looking needs (the description, the catalog, the
options) is imported here; training (`runner.launchers.local`, torch) and reporting (`reports`, matplotlib) are
imported by the commands that use them, so `roadmap steps|show|diff|flops` never load torch or timm.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from roadmap.describe import (
    FORMATS,
    STEPS_MISSING,
    diff_table,
    fields_table,
    flops_table,
    render,
    stage_table,
    step_header,
    steps_table,
)
from roadmap.errors import RoadmapError
from runner.planning.budget import IMAGENETTE_SHAPED, PRESETS
from runner.planning.options import Machine, Output, RunOptions, Selection, Training
from steps import REGIMES, get_regime

EPILOG = "Step names: see `roadmap steps`. Specs: STEP, STEP-LEFT_OUT, STEP+APPLIED_AFTER (e.g. convnext_tiny-gelu)."


class Parser(argparse.ArgumentParser):
    """argparse, with errors on one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(2)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def micro_batch(text: str) -> int | str:
    """--micro-batch: a positive whole number or 'auto'."""
    return "auto" if text == "auto" else positive_int(text)


def _add_format(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")


def _add_regime(p: argparse.ArgumentParser) -> None:
    p.add_argument("--regime", default="resnet50", choices=list(REGIMES),
                   help="the paper's ResNet-50 roadmap (Figure 2, default) or its ResNet-200 one (Appendix C)")


def _add_size(p: argparse.ArgumentParser) -> None:
    p.add_argument("--img-size", type=positive_int, default=224, help="input resolution in pixels (default: 224)")
    p.add_argument("--num-classes", type=positive_int, default=1000, help="classifier outputs (default: 1000)")


# -------------------------------------------------------------------------------- looking


def cmd_steps(args: argparse.Namespace) -> None:
    print(render(steps_table(args.regime), args.format, missing=STEPS_MISSING))


def cmd_show(args: argparse.Namespace) -> None:
    design = get_regime(args.regime).design_for(args.step)
    header, stages = step_header(args.step, args.regime), stage_table(design, args.img_size, args.num_classes)
    print(header, end="\n\n")
    print(render(stages, "table"), end="\n\n")
    fields = fields_table(design)
    width = max(len(f) for f in fields["field"])
    for row in fields.itertuples():
        print(f"{row.field:<{width}}  {row.value:<24}  {row.doc}")


def cmd_diff(args: argparse.Namespace) -> None:
    changed, delta = diff_table(args.step_a, args.step_b, args.img_size, args.regime)
    if changed.empty:
        print(f"{args.step_a} and {args.step_b} describe the same design")
    else:
        print(render(changed, "table"))
    print()
    print(render(delta, "table"))


def cmd_flops(args: argparse.Namespace) -> None:
    df = flops_table(args.img_size, args.num_classes, args.regime)
    if args.img_size != 224:
        df["paper_gflops"] = None  # the paper's numbers are at 224 px
        df["matches_paper"] = None
    out = render(df if args.format == "json" else df.drop(columns=["note"]), args.format)
    print(out)
    if args.format != "json" and args.img_size == 224:
        print("\nGFLOPs = multiply-accumulates of conv and linear layers (the paper's convention).")
        for _, row in df[df["note"] != ""].iterrows():
            print(f"* {row['step']}: {row['note']}")


# -------------------------------------------------------------------------------- training and results


def command_line(argv: list[str]) -> str:
    """The command as a user would type it again (recorded in plan.json and config.json)."""
    return "roadmap " + " ".join(shlex.quote(a) for a in argv)


def run_options(args: argparse.Namespace, argv: list[str]):
    """The flags of `roadmap run` (and `ablate`) as the runner's `RunOptions`, checked."""
    from runner.planning.selection import parse_order

    steps = [x for x in args.steps.split(",") if x.strip()] if args.steps else None
    if args.steps is not None and not steps:
        raise RoadmapError("--steps needs at least one step, e.g. --steps resnet50,convnext_tiny")
    if args.upto and steps:
        raise RoadmapError("use --upto or --steps, not both")
    return RunOptions(
        Selection(dataset=args.dataset, regime=args.regime, upto=args.upto, steps=tuple(steps) if steps else None,
                  branches=not args.no_branches, orders=tuple(tuple(parse_order(o)) for o in args.order or []),
                  baselines=tuple(b.strip() for b in (args.baselines or "").split(",") if b.strip()),
                  seeds=args.seeds, only_seed=args.only_seed),
        Training(preset=args.preset, epochs=args.epochs, batch_size=args.batch_size, img_size=args.img_size,
                 same_epochs=args.same_epochs, train_batches=args.train_batches, val_batches=args.val_batches,
                 sets=tuple(args.set), init_from=args.init_from, micro_batch=args.micro_batch, compile=args.compile),
        Machine(device=args.device, data_dir=args.data_dir, data_path=args.data_path, workers=args.workers),
        Output(out=args.out, dry_run=args.dry_run, progress=False if args.quiet else None, report=not args.no_report,
               write_plan=not args.no_plan, tracker=args.log, command=command_line(argv)),
    )


def cmd_run(args: argparse.Namespace) -> None:
    argv = sys.argv[1:] if args.argv is None else args.argv
    opts = run_options(args, argv)
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:  # re-run this command under torchrun
        rest = [a for i, a in enumerate(argv) if a != "--nproc" and (i == 0 or argv[i - 1] != "--nproc")
                and not a.startswith("--nproc=")]
        raise SystemExit(subprocess.call([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                          "--nproc_per_node", str(args.nproc), "-m", "roadmap", *rest]))
    out = _train(args, opts, argv)
    if out is not None and opts.output.report and not opts.output.dry_run:  # the runner trains; the CLI reports
        from reports import build_report

        print(f"report: {build_report(out)}")


def _train(args: argparse.Namespace, opts, argv: list[str]) -> Path | None:
    """Train with the chosen launcher; the output directory to report on, or None (nothing to report here)."""
    from runner.launchers.local import run

    if args.launcher == "local" or args.dry_run:
        return run(opts)
    if args.nproc > 1:
        raise RoadmapError("--nproc (data-parallel steps) goes with --launcher local")
    from runner.launchers import children as launch
    if args.launcher == "gpus":
        gpus = [int(g) for g in args.gpus.split(",") if g.strip()] if args.gpus else []
        return launch.launch_gpus(opts, argv, gpus, args.per_gpu)
    return launch.launch_slurm(opts, argv, launch.SlurmOptions(
        partition=args.partition, account=args.account, gpus_per_job=args.gpus_per_job,
        cpus_per_job=args.cpus_per_job, time_min=args.time_min, cluster=args.cluster, wait=not args.no_wait))


def cmd_ablate(args: argparse.Namespace) -> None:
    regime = get_regime(args.regime)
    final = regime.get_step(args.final).name
    path = regime.path_to(final)
    args.steps = ",".join([final] + [f"{final}-{s.name}" for s in path[1:] if s.name != final])
    if args.out is None:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in args.dataset)
        args.out = f"runs/{safe}-ablation"
    cmd_run(args)


def cmd_results(args: argparse.Namespace) -> None:
    from reports import results_table

    print(results_table(args.dir, args.format))


def cmd_report(args: argparse.Namespace) -> None:
    from reports import build_report

    print(build_report(args.dir, classes_step=args.classes))


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """The options `run` and `ablate` share."""
    p.add_argument("--dataset", default="fashion-mnist",
                   help="imagenette[-320|-full], imagewoof[...], cifar10, cifar100, tiny-imagenet, fashion-mnist, "
                   "folder:PATH, synthetic[:classes=10,size=32,...] (default: fashion-mnist)")
    p.add_argument("--data-dir", metavar="PATH", help="where the dataset is (or goes); default: the cache")
    p.add_argument("--preset", default="quick", choices=list(PRESETS),
                   help="; ".join(f"{k}: {v.note}" for k, v in PRESETS.items()) + " (default: quick)")
    p.add_argument("--epochs", type=positive_int, help="modern-recipe epochs (the original recipe keeps 90:300)")
    p.add_argument("--same-epochs", action="store_true", help="give the original recipe the same epochs too")
    p.add_argument("--batch-size", type=positive_int, help="global batch; the lr scales linearly with it")
    p.add_argument("--img-size", type=positive_int, help="training resolution (default: the dataset's)")
    p.add_argument("--micro-batch", type=micro_batch, metavar="N|auto",
                   help="gradient accumulation: N images per forward/backward on each process, batch/N of them per "
                   "optimizer step (N must divide the per-process batch; the lr still follows --batch-size); auto: "
                   "the largest that fits in free GPU memory (on CPU the whole batch). BatchNorm steps then see "
                   "micro-batch statistics, as in the paper's code (default: the whole batch at once)")
    p.add_argument("--seeds", type=positive_int, help="train each step with seeds 0..N-1 (default: the preset's, "
                   "3 for cpu, 1 otherwise)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:INDEX (default: auto)")
    p.add_argument("--out", metavar="DIR", help="result directory (default: runs/<dataset>)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a design or recipe field for every step, e.g. --set drop_path_rate=0 "
                   "--set recipe.lr=0.002 (see `roadmap show STEP` for the fields)")
    p.add_argument("--no-branches", action="store_true", help="skip the kernel 5/9/11 branches (run only)")
    _add_regime(p)
    p.add_argument("--dry-run", action="store_true", help="print the plan (params, GFLOPs, cost, status) and stop")
    p.add_argument("--train-batches", type=int, metavar="N", help="at most N training batches per epoch (0 = all)")
    p.add_argument("--val-batches", type=int, metavar="N", help="at most N validation batches (0 = all)")
    p.add_argument("--workers", type=int, metavar="N", help="data-loading processes (default: 8 on CUDA, 0 on CPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--data-path", choices=["auto", "loader", "device"], default="auto",
                   help="device: keep the images on the device and augment them there, batched (image files are "
                   "decoded once); loader: the CPU DataLoader; auto (default): device on CUDA when the images take at "
                   "most half the free GPU memory, else loader")
    p.add_argument("--quiet", action="store_true", help="no progress bars (one line per epoch instead)")
    p.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    p.add_argument("--init-from", metavar="PATH",
                   help="fine-tune from a torchvision ResNet-50 or timm/official ConvNeXt checkpoint with the paper's "
                   "fine-tuning recipe (AdamW 5e-5, layer decay 0.8, no mixup/cutmix, head init 0.001)")
    p.add_argument("--baselines", metavar="NAME,...",
                   help="also train these timm models (e.g. swin_tiny_patch4_window7_224,resnet50) with the same "
                   "recipe, data and budget, as reference points in the report (specs timm:NAME)")
    p.add_argument("--log", choices=["tensorboard", "wandb"],
                   help="also log each epoch to TensorBoard or Weights & Biases (imported only when asked for)")
    _add_scale_out(p)
    p.add_argument("--only-seed", type=int, help=argparse.SUPPRESS)  # a launcher's child: one seed
    p.add_argument("--no-plan", action="store_true", help=argparse.SUPPRESS)  # a launcher's child: no plan.json


def _add_scale_out(p: argparse.ArgumentParser) -> None:
    """The launcher options of `run` and `ablate`: data-parallel processes, local GPUs, Slurm."""
    g = p.add_argument_group("scale-out (see the README's multi-GPU and Slurm section)")
    g.add_argument("--nproc", type=positive_int, default=1,
                   help="data-parallel processes per step (runs this command under torchrun; --batch-size is global)")
    g.add_argument("--launcher", choices=["local", "gpus", "slurm"], default="local",
                   help="local: one run after another (default); gpus: one run per GPU at a time (--gpus); "
                   "slurm: one submitit job per run")
    g.add_argument("--gpus", metavar="0,1,...", help="GPUs for --launcher gpus")
    g.add_argument("--per-gpu", type=positive_int, default=1, help="runs sharing one GPU at a time (default: 1)")
    g.add_argument("--partition", help="Slurm partition")
    g.add_argument("--account", help="Slurm account")
    g.add_argument("--gpus-per-job", type=positive_int, default=1, help="GPUs per Slurm job (default: 1)")
    g.add_argument("--cpus-per-job", type=positive_int, default=8, help="CPUs per Slurm job (default: 8)")
    g.add_argument("--time-min", type=positive_int, default=24 * 60, help="Slurm time limit, minutes (default: 1440)")
    g.add_argument("--no-wait", action="store_true", help="submit the Slurm jobs and return")
    g.add_argument("--cluster", choices=["slurm", "local", "debug"], help=argparse.SUPPRESS)


def _add_run(sub) -> None:
    p = sub.add_parser(
        "run", help="train the roadmap (every step up to --upto) and write the report", epilog=EPILOG,
        description="Train every model of the roadmap up to a step, one after another. Finished runs are reused, "
        "unfinished ones resume: run the same command again after an interruption.",
    )
    p.add_argument("--upto", metavar="STEP", help="train the roadmap up to this step (default: all of it)")
    p.add_argument("--steps", metavar="A,B,...", help="train exactly these specs, e.g. convnext_tiny-layer_norm")
    p.add_argument("--order", action="append", metavar="A,B,...",
                   help="also train the path that applies these steps one at a time, in this order, from resnet50 "
                   "(e.g. --order gelu,layer_norm,patchify_stem); repeat for more orders; the report compares the "
                   "paths on the accuracy-GFLOPs plot")
    _add_run_options(p)
    p.set_defaults(func=cmd_run, argv=None)

    p = sub.add_parser(
        "ablate", help="leave-one-out study: the final model without each of its steps", epilog=EPILOG,
        description="Train the final model (default convnext_tiny) and, for every step on its path, the same model "
        "without that step (specs like convnext_tiny-layer_norm). The report shows what removing each step costs, "
        "against the seed-to-seed spread (use --seeds 3 or more).",
    )
    p.add_argument("--final", default="separate_downsampling", metavar="STEP",
                   help="the model to ablate (default: separate_downsampling = convnext_tiny)")
    _add_run_options(p)
    p.set_defaults(func=cmd_ablate, argv=None, upto=None, steps=None, order=None)

    p = sub.add_parser("results", help="the table of a result directory")
    p.add_argument("dir", help="a result directory (the --out of `roadmap run`)")
    _add_format(p)
    p.set_defaults(func=cmd_results)

    p = sub.add_parser("report", help="write report.md and figures into a result directory")
    p.add_argument("dir", help="a result directory (the --out of `roadmap run`)")
    p.add_argument("--classes", metavar="STEP", help="add per-class precision/recall/F1 for this step")
    p.set_defaults(func=cmd_report)


def cmd_bench(args: argparse.Namespace) -> None:
    from runner.devices import resolve_device
    from runner.planning.selection import select_steps

    dev = resolve_device(args.device)
    specs = select_steps(None, [x for x in args.steps.split(",") if x.strip()] if args.steps else None, True)
    if any(s.startswith("timm:") for s in specs):
        raise RoadmapError("roadmap bench measures roadmap steps; timm baselines (timm:NAME) are not benchmarked")
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    if args.models_only:
        _bench_models(args, dev, specs, log)
        return
    from runner.benchmarks.pipeline_speed import pipeline_bench

    iters = args.iters or 25
    print(f"pipeline benchmark on {dev}: {len(specs)} step(s) on {args.dataset}, preset {args.preset}, "
          f"{args.warmup} warm-up + {iters} timed training steps and a full evaluation pass each, ours then the "
          f"reference loop{'' if not args.no_reference else ' (skipped)'}; torch.compile "
          f"{'on' if args.compile else 'off'}", flush=True)
    df, totals = pipeline_bench(specs, dev, args.dataset, args.preset, args.epochs, args.batch_size, args.img_size,
                                args.warmup, iters, args.compile, args.workers, not args.no_reference,
                                args.data_path, log)
    print(render(df, args.format))
    if args.format != "json":
        data = f"{totals['train_size']:,} / {totals['val_size']:,} images"
        line = (f"\nprojected: {totals['ours_min']:.1f} min for these {totals['steps']} steps at {args.epochs} "
                f"epochs (the original recipe at 90:300) on {args.dataset} ({data}), training and one evaluation per "
                f"epoch, warm-up included; ours: {totals['data_path']}")
        if not args.no_reference:
            line += (f"; the reference loop ({totals['workers']} DataLoader workers): "
                     f"{totals['reference_min']:.1f} min ({totals['reference_min'] / totals['ours_min']:.2f}x)")
        print(line)


def _bench_models(args: argparse.Namespace, dev, specs: list[str], log) -> None:
    from runner.benchmarks.model_speed import bench, projected_minutes

    img, batch, iters = args.img_size or 224, args.batch_size or 32, args.iters or 5
    print(f"model benchmark on {dev}: {img} px, batch {batch}, {iters} iterations x "
          f"{args.rounds} interleaved rounds (median); reference models measured in the same process", flush=True)
    df = bench(specs, img, batch, dev, iters=iters, rounds=args.rounds, references=not args.no_reference,
               log=log)
    print(render(df, args.format))
    if args.format != "json":
        print(f"\nprojected: {projected_minutes(df):.1f} min for these {len(specs)} models at 100 epochs on "
              f"Imagenette-160's 9,469 / 3,925 images at {img} px (model compute only, data loading excluded)")


def _add_bench(sub) -> None:
    p = sub.add_parser(
        "bench", help="training/eval images/s per step: our pipeline beside a plain timm-style loop",
        description="A benchmark, not a test. Per step: training and evaluation images/s of `roadmap run`'s own "
        "pipeline (images on the device, augmented there; fused AdamW; bf16 and channels-last on CUDA; optional "
        "torch.compile) beside the same model trained by a plain timm-style loop with a CPU DataLoader, GPU memory, "
        "model FLOP utilization, warm-up (compile) time, and the projected wall time of the roadmap. "
        "--models-only instead times the models alone on random tensors, interleaved with torchvision's resnet50 "
        "and timm's convnext_tiny.")
    p.add_argument("--steps", metavar="A,B,...", help="steps to measure (default: all)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:INDEX (default: auto)")
    p.add_argument("--dataset", default=IMAGENETTE_SHAPED,
                   help="data to train on (default: synthetic, Imagenette-160's size and count)")
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
    _add_format(p)
    p.set_defaults(func=cmd_bench)


# -------------------------------------------------------------------------------- drawing (issue 15)


def cmd_draw(args: argparse.Namespace) -> None:
    from roadmap.draw import check_suffix, draw, draw_diff, save

    name = "".join(c if c.isalnum() or c in "-_+." else "_" for c in args.step)
    out = check_suffix(args.out or (f"{name}-vs-{args.diff}.svg" if args.diff else f"{name}.svg"))
    options = dict(regime=args.regime, width_mult=args.width_mult, depth_mult=args.depth_mult)
    fig = draw_diff(args.step, args.diff, **options) if args.diff else draw(args.step, **options)
    print(save(fig, out))


def _add_draw(sub) -> None:
    p = sub.add_parser(
        "draw", help="a picture of a step's network: stem, each stage's block, head (SVG or PNG)", epilog=EPILOG,
        description="Draw a step the way the paper draws blocks, from the layer plan that builds it: each layer "
        "with its kind, kernel, channels and groups, the norms and activations, the residual path and where "
        "downsampling happens, the stem and the head. --diff draws a second step below it, changes in orange.")
    p.add_argument("step", help="a step name or spec, e.g. large_kernel or convnext_tiny-layer_norm")
    p.add_argument("--out", metavar="FILE", help="FILE.svg or FILE.png (default: STEP.svg here)")
    p.add_argument("--diff", metavar="OTHER", help="also draw this step, highlighting what changed")
    p.add_argument("--width-mult", type=float, default=1.0, help="multiplier on every width (default: 1)")
    p.add_argument("--depth-mult", type=float, default=1.0, help="multiplier on every stage depth (default: 1)")
    _add_regime(p)
    p.set_defaults(func=cmd_draw)


# -------------------------------------------------------------------------------- the parser


def build_parser() -> Parser:
    parser = Parser(
        prog="roadmap",
        description="The ConvNeXt paper's roadmap from ResNet-50 to ConvNeXt-T, one trainable step at a time.",
        epilog=EPILOG,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    p = sub.add_parser("steps", help="the ordered roadmap with the paper's numbers")
    _add_format(p)
    _add_regime(p)
    p.set_defaults(func=cmd_steps)

    p = sub.add_parser("show", help="a step's design: fields and per-stage table", epilog=EPILOG)
    p.add_argument("step", help="a step name or spec, e.g. large_kernel or convnext_tiny-layer_norm")
    _add_size(p)
    _add_regime(p)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("diff", help="what changes between two steps, and the params/GFLOPs delta", epilog=EPILOG)
    p.add_argument("step_a")
    p.add_argument("step_b")
    p.add_argument("--img-size", type=positive_int, default=224, help="input resolution (default: 224)")
    _add_regime(p)
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("flops", help="params and GFLOPs of every step beside the paper's")
    _add_size(p)
    _add_format(p)
    _add_regime(p)
    p.set_defaults(func=cmd_flops)

    _add_run(sub)
    _add_bench(sub)
    _add_draw(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if hasattr(args, "argv"):
        args.argv = list(argv) if argv is not None else None
    try:
        args.func(args)
    except RoadmapError as e:
        print(f"roadmap: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("roadmap: interrupted; finished work is kept, run the same command again to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `roadmap flops | head`
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
