"""Results: `roadmap results` (the table of a result directory) and `roadmap report` (report.md and figures),
from stored records only (package `reports`)."""

from __future__ import annotations

import argparse

from roadmap.cli.common import add_format


def cmd_results(args: argparse.Namespace) -> None:
    from reports import results_table

    print(results_table(args.dir, args.format))


def cmd_report(args: argparse.Namespace) -> None:
    from reports import build_report

    print(build_report(args.dir, classes_step=args.classes))


def add_commands(sub) -> None:
    """results, report."""
    p = sub.add_parser("results", help="the table of a result directory")
    p.add_argument("dir", help="a result directory (the --out of `roadmap run`)")
    add_format(p)
    p.set_defaults(func=cmd_results)

    p = sub.add_parser("report", help="write report.md and figures into a result directory")
    p.add_argument("dir", help="a result directory (the --out of `roadmap run`)")
    p.add_argument("--classes", metavar="STEP", help="add per-class precision/recall/F1 for this step")
    p.set_defaults(func=cmd_report)
