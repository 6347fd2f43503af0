"""The `roadmap` command: look at the roadmap, train it, report on it.

Every mistake a user can make ends in one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from roadmap.errors import RoadmapError

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


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _add_format(p: argparse.ArgumentParser) -> None:
    from roadmap.describe import FORMATS

    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")


def _add_size(p: argparse.ArgumentParser) -> None:
    p.add_argument("--img-size", type=positive_int, default=224, help="input resolution in pixels (default: 224)")
    p.add_argument("--num-classes", type=positive_int, default=1000, help="classifier outputs (default: 1000)")


# -------------------------------------------------------------------------------- looking


def cmd_steps(args: argparse.Namespace) -> None:
    from roadmap.describe import render, steps_table

    print(render(steps_table(), args.format))


def cmd_show(args: argparse.Namespace) -> None:
    from roadmap.describe import fields_table, render, stage_table, step_header
    from steps import design_for

    design = design_for(args.step)
    header, stages = step_header(args.step), stage_table(design, args.img_size, args.num_classes)
    print(header, end="\n\n")
    print(render(stages, "table"), end="\n\n")
    fields = fields_table(design)
    width = max(len(f) for f in fields["field"])
    for row in fields.itertuples():
        print(f"{row.field:<{width}}  {row.value:<24}  {row.doc}")


def cmd_diff(args: argparse.Namespace) -> None:
    from roadmap.describe import diff_table, render

    changed, delta = diff_table(args.step_a, args.step_b, args.img_size)
    if changed.empty:
        print(f"{args.step_a} and {args.step_b} describe the same design")
    else:
        print(render(changed, "table"))
    print()
    print(render(delta, "table"))


def cmd_flops(args: argparse.Namespace) -> None:
    from roadmap.describe import flops_table, render

    df = flops_table(args.img_size, args.num_classes)
    if args.img_size != 224:
        df["paper_gflops"] = None  # the paper's numbers are at 224 px
        df["matches_paper"] = None
    out = render(df if args.format == "json" else df.drop(columns=["note"]), args.format)
    print(out)
    if args.format != "json" and args.img_size == 224:
        print("\nGFLOPs = multiply-accumulates of conv and linear layers (the paper's convention).")
        for _, row in df[df["note"] != ""].iterrows():
            print(f"* {row['step']}: {row['note']}")


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
    p.set_defaults(func=cmd_steps)

    p = sub.add_parser("show", help="a step's design: fields and per-stage table", epilog=EPILOG)
    p.add_argument("step", help="a step name or spec, e.g. large_kernel or convnext_tiny-layer_norm")
    _add_size(p)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("diff", help="what changes between two steps, and the params/GFLOPs delta", epilog=EPILOG)
    p.add_argument("step_a")
    p.add_argument("step_b")
    p.add_argument("--img-size", type=positive_int, default=224, help="input resolution (default: 224)")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("flops", help="params and GFLOPs of every step beside the paper's")
    _add_size(p)
    _add_format(p)
    p.set_defaults(func=cmd_flops)

    for register in _LATER:
        register(sub)
    return parser


_LATER: list[Callable[[argparse._SubParsersAction], None]] = []


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
