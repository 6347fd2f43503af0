"""Drawing: `roadmap draw`, a picture of a step's network from its layer plan (package roadmap.draw)."""

from __future__ import annotations

import argparse

from roadmap.cli.common import EPILOG, add_regime


def cmd_draw(args: argparse.Namespace) -> None:
    from roadmap.draw import check_suffix, draw, draw_diff, save

    name = "".join(c if c.isalnum() or c in "-_+." else "_" for c in args.step)
    out = check_suffix(args.out or (f"{name}-vs-{args.diff}.svg" if args.diff else f"{name}.svg"))
    options = dict(regime=args.regime, width_mult=args.width_mult, depth_mult=args.depth_mult)
    fig = draw_diff(args.step, args.diff, **options) if args.diff else draw(args.step, **options)
    print(save(fig, out))


def add_commands(sub) -> None:
    """draw."""
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
    add_regime(p)
    p.set_defaults(func=cmd_draw)

