"""Training: `roadmap run` and `roadmap ablate`, their flags, and the launcher they start (the runner trains, then
the CLI writes the report: `runner` never imports `reports`)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from roadmap.cli.common import EPILOG, add_regime, command_line, micro_batch, positive_int
from roadmap.errors import RoadmapError
from runner.planning.budget import PRESETS
from runner.planning.options import Machine, Output, RunOptions, Selection, Training
from steps import get_regime


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
    add_regime(p)
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



def add_commands(sub) -> None:
    """run, ablate."""
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
