"""Training: `roadmap run` and `roadmap ablate`, their flags, and the launcher they start (the runner trains, then
the CLI writes the report: `runner` never imports `reports`)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import typing
from pathlib import Path

from roadmap.cli.common import EPILOG, command_line
from roadmap.errors import RoadmapError
from runner.planning.options import RunOptions, flag_dest, positive_int
from steps import get_regime


def _groups(options: type) -> dict[str, type]:
    """Each option group's dataclass, by field name (`RunOptions.training` -> `Training`)."""
    return {g.name: g.default_factory if isinstance(g.default_factory, type) else typing.get_type_hints(options)[g.name]
            for g in dataclasses.fields(options)}


def option_fields(options: type = RunOptions) -> list[tuple[str, dataclasses.Field]]:
    """(group, field) for every field of `options`' groups that has a flag (see `runner.planning.options.option`),
    in the order `roadmap run --help` lists them."""
    groups = _groups(options)
    found = [(g.name, f) for g in dataclasses.fields(options) for f in dataclasses.fields(groups[g.name])
             if "flag" in f.metadata]
    return sorted(found, key=lambda gf: gf[1].metadata["at"])


def add_option_flags(p: argparse.ArgumentParser, command: str, options: type = RunOptions) -> None:
    """The flags of `options`' fields that `command` takes, generated from each field's metadata: the flag, its help
    (read when shown, for help from elsewhere), metavar, choices, type or action, and the field's default."""
    for _, f in option_fields(options):
        meta = f.metadata
        if command not in meta["commands"]:
            continue
        kw = dict(meta["argparse"])
        if meta["parse"] is None and "action" not in kw:
            kw["default"] = f.default
        help_ = meta["help"]
        action = p.add_argument(meta["flag"], help=argparse.SUPPRESS if help_ is None else
                                help_ if isinstance(help_, str) else "(read when shown)", **kw)
        if callable(help_):
            action.help_from = help_  # see roadmap.cli.common.Formatter


def options_from(args: argparse.Namespace, options: type = RunOptions, **given):
    """`options` built from the parsed flags (each through its field's `parse`); `given`: fields without a flag."""
    groups = _groups(options)
    values: dict[str, dict] = {g.name: {} for g in dataclasses.fields(options)}
    for group, f in option_fields(options):
        raw = getattr(args, flag_dest(f), None)
        values[group][f.name] = raw if f.metadata["parse"] is None else f.metadata["parse"](raw)
    for g in dataclasses.fields(options):
        names = {f.name for f in dataclasses.fields(groups[g.name])}
        values[g.name].update({k: v for k, v in given.items() if k in names})
    return options(**{name: groups[name](**kw) for name, kw in values.items()})


def run_options(args: argparse.Namespace, argv: list[str]) -> RunOptions:
    """The flags of `roadmap run` (and `ablate`) as the runner's `RunOptions`, checked."""
    opts = options_from(args, command=command_line(argv))
    if opts.selection.upto and opts.selection.steps:
        raise RoadmapError("use --upto or --steps, not both")
    nproc, launcher = getattr(args, "nproc", 1), getattr(args, "launcher", "local")
    if opts.machine.jobs is None:  # the preset's choice on this machine (one run per core for `cpu` on the CPU)
        from runner.devices import default_jobs
        from runner.planning.budget import get_preset

        run_per_core = get_preset(opts.training.preset).run_per_core and nproc == 1 and launcher == "local"
        opts = dataclasses.replace(opts, machine=dataclasses.replace(
            opts.machine, jobs=default_jobs(run_per_core, opts.machine.device)))
    _check_jobs(opts, nproc, launcher)
    return opts


def _check_jobs(opts, nproc: int, launcher: str) -> None:
    """--jobs N (several runs at once on the CPU) goes with the local launcher, one process per run, the CPU."""
    jobs, device = opts.machine.jobs, opts.machine.device
    if jobs == 1:
        return
    if nproc > 1:
        raise RoadmapError(f"--jobs {jobs} (several runs at once, one process each) and --nproc {nproc} (one run over "
                           "several processes) do not combine: use one of them")
    if launcher != "local":
        raise RoadmapError(f"--jobs {jobs} trains runs side by side on this machine's CPU and goes with --launcher "
                           f"local; --launcher {launcher} has its own (--per-gpu for gpus, one job per run for slurm)")
    if device == "cuda" or device.startswith("cuda:"):
        raise RoadmapError(f"--jobs {jobs} trains several runs at once on the CPU, not with --device {device}: "
                           f"train on GPUs with --launcher gpus --gpus 0,... --per-gpu {jobs}")


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

    if args.dry_run or (args.launcher == "local" and opts.machine.jobs == 1):
        return run(opts)
    if args.nproc > 1:
        raise RoadmapError("--nproc (data-parallel steps) goes with --launcher local")
    from runner.launchers import children as launch
    if args.launcher == "local":  # --jobs N: one child per run, N at a time on the CPU
        return launch.launch_cpu(opts, argv)
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


def _add_run_options(p: argparse.ArgumentParser, command: str) -> None:
    """The options of `run` (and of `ablate`, which takes all but the selection of steps): RunOptions' flags, then
    the launchers'."""
    add_option_flags(p, command)
    _add_scale_out(p)


def _add_scale_out(p: argparse.ArgumentParser) -> None:
    """The launcher options of `run` and `ablate`: data-parallel processes, local GPUs, Slurm."""
    g = p.add_argument_group("scale-out (see docs/training.md: several GPUs, or a Slurm cluster)")
    g.add_argument("--nproc", type=positive_int, default=1,
                   help="data-parallel processes per step (runs this command under torchrun; --batch-size is global)")
    g.add_argument("--launcher", choices=["local", "gpus", "slurm"], default="local",
                   help="local: one run after another (default; --jobs N: N at a time on the CPU); gpus: one run "
                   "per GPU at a time (--gpus); "
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
        description="Train every model of the roadmap up to a step, one after another (--jobs N: N at a time on the "
        "CPU). Finished runs are reused, "
        "unfinished ones resume: run the same command again after an interruption.",
    )
    _add_run_options(p, "run")
    p.set_defaults(func=cmd_run, argv=None)

    p = sub.add_parser(
        "ablate", help="leave-one-out study: the final model without each of its steps", epilog=EPILOG,
        description="Train the final model (default convnext_tiny) and, for every step on its path, the same model "
        "without that step (specs like convnext_tiny-layer_norm). The report shows what removing each step costs, "
        "against the seed-to-seed spread (use --seeds 3 or more).",
    )
    p.add_argument("--final", default="separate_downsampling", metavar="STEP",
                   help="the model to ablate (default: separate_downsampling = convnext_tiny)")
    _add_run_options(p, "ablate")
    p.set_defaults(func=cmd_ablate, argv=None, upto=None, steps=None, order=None)
