"""What every command of the CLI shares: the parser with one-line errors, argument types, the common flags."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from roadmap.describe import FORMATS
from roadmap.errors import RoadmapError
from runner.planning.options import positive_int
from steps import REGIMES

EPILOG = "Step names: see `roadmap steps`. Specs: STEP, STEP-LEFT_OUT, STEP+APPLIED_AFTER (e.g. convnext_tiny-gelu)."


class Formatter(argparse.HelpFormatter):
    """argparse's help, where a flag's help can be read when it is shown (`action.help_from`, a function): text that
    lives elsewhere (the data set catalog) costs nothing to commands that do not show it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        source = getattr(action, "help_from", None)
        return source() if source is not None else super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """argparse, with errors on one line."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(2)


def add_format(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")


def add_regime(p: argparse.ArgumentParser) -> None:
    p.add_argument("--regime", default="resnet50", choices=list(REGIMES),
                   help="the paper's ResNet-50 roadmap (Figure 2, default) or its ResNet-200 one (Appendix C)")


def add_size(p: argparse.ArgumentParser) -> None:
    p.add_argument("--img-size", type=positive_int, default=224, help="input resolution in pixels (default: 224)")
    p.add_argument("--num-classes", type=positive_int, default=1000, help="classifier outputs (default: 1000)")


def seed_choice(text: str) -> int | str:
    """--seed of `export` and `evaluate`: best, median or a seed number."""
    if text in ("best", "median"):
        return text
    if text.isdigit():
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r} is not a seed: pass best, median or a seed number")


def finished_steps(out: Path, wanted: str | None, nothing: str) -> list[str]:
    """The steps `export` and `evaluate` take: those asked for (--steps A,B), or every roadmap step of `out` with a
    run that ended "done" (`nothing`: what the line says when there is none)."""
    from roadmap.trained import find_runs, finished_top1

    if wanted:
        return [s.strip() for s in wanted.split(",") if s.strip()]
    if not out.is_dir():
        raise RoadmapError(f"{out} does not exist or is not a directory: pass the --out directory of `roadmap run`")
    steps: list[str] = []
    for run_dir, cfg in find_runs(out):
        if finished_top1(run_dir) is not None and cfg.step and cfg.step not in steps and not cfg.baseline:
            steps.append(cfg.step)
    if not steps:
        raise RoadmapError(f"{out} holds no finished run of the roadmap's steps: {nothing}")
    return sorted(steps, key=_plan_order(out))


def _plan_order(out: Path):
    """A sort key: a step's place in OUT's plan.json (the roadmap's order), steps it does not list after them."""
    from roadmap.record_files import Unreadable
    from roadmap.schema import read_plan

    try:
        planned = [r.step for r in read_plan(out / "plan.json").runs]
    except (Unreadable, OSError):
        planned = []
    return lambda step: planned.index(step) if step in planned else len(planned)


def command_line(argv: list[str]) -> str:
    """The command as a user would type it again (recorded in plan.json and config.json)."""
    return "roadmap " + " ".join(shlex.quote(a) for a in argv)

