"""What every command of the CLI shares: the parser with one-line errors, argument types, the common flags."""

from __future__ import annotations

import argparse
import shlex
import sys

from roadmap.describe import FORMATS
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



def command_line(argv: list[str]) -> str:
    """The command as a user would type it again (recorded in plan.json and config.json)."""
    return "roadmap " + " ".join(shlex.quote(a) for a in argv)

