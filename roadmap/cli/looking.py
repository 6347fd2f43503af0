"""Looking at the roadmap: `roadmap steps|show|diff|flops`. Neither torch nor timm, nor the runner or the reports,
are imported on this path (tests/test_cli_look.py checks it in a fresh process)."""

from __future__ import annotations

import argparse

from roadmap.cli.common import EPILOG, add_format, add_regime, add_size
from roadmap.describe import (
    STEPS_MISSING,
    diff_table,
    fields_table,
    flops_table,
    render,
    stage_table,
    step_header,
    steps_table,
)
from runner.planning.options import positive_int
from steps import get_regime


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



def add_commands(sub) -> None:
    """steps, show, diff, flops."""
    p = sub.add_parser("steps", help="the ordered roadmap with the paper's numbers")
    add_format(p)
    add_regime(p)
    p.set_defaults(func=cmd_steps)

    p = sub.add_parser("show", help="a step's design: fields and per-stage table", epilog=EPILOG)
    p.add_argument("step", help="a step name or spec, e.g. large_kernel or convnext_tiny-layer_norm")
    add_size(p)
    add_regime(p)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("diff", help="what changes between two steps, and the params/GFLOPs delta", epilog=EPILOG)
    p.add_argument("step_a")
    p.add_argument("step_b")
    p.add_argument("--img-size", type=positive_int, default=224, help="input resolution (default: 224)")
    add_regime(p)
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("flops", help="params and GFLOPs of every step beside the paper's")
    add_size(p)
    add_format(p)
    add_regime(p)
    p.set_defaults(func=cmd_flops)
