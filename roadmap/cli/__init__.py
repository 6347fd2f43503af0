"""The `roadmap` command: look at the roadmap, train it, report on it.

Every mistake a user can make ends in one line on stderr and exit code 2, never a traceback.

The CLI is the one layer that knows every package. What looking needs (the description, the catalog, the
options) is imported here; training (`runner.launchers.local`, torch) and reporting (`reports`, matplotlib) are
imported by the commands that use them, so `roadmap steps|show|diff|flops` never load torch or timm.

The commands, by group: looking (steps, show, diff, flops), training (run, ablate), reporting (results, report),
exporting (export), evaluating (evaluate), benchmarking (bench), drawing (draw); common holds the parser and the
shared flags. This package is the only part of roadmap/ that imports `runner` or `reports` (tests/test_layering.py).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from roadmap.cli import benchmarking, drawing, evaluating, exporting, looking, reporting, training
from roadmap.cli.common import EPILOG, Parser
from roadmap.errors import RoadmapError


def build_parser() -> Parser:
    parser = Parser(
        prog="roadmap",
        description="The ConvNeXt paper's roadmap from ResNet-50 to ConvNeXt-T, one trainable step at a time.",
        epilog=EPILOG,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    looking.add_commands(sub)
    training.add_commands(sub)
    reporting.add_commands(sub)
    exporting.add_commands(sub)
    evaluating.add_commands(sub)
    benchmarking.add_commands(sub)
    drawing.add_commands(sub)
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
