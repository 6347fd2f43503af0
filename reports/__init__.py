"""Reports on stored roadmap runs: tables, figures and report.md, from the result records alone.

    from reports import build_report, results_table
    build_report("runs/fashion-mnist", classes_step="convnext_tiny")   # writes report.md + PNGs
    print(results_table("runs/fashion-mnist", "markdown"))

Reads only the files described in docs/records.md; never imports torch, timm, the runner or the model code, so
a copied `--out` directory renders the same report on any machine.
"""

from reports.records import load_runs
from reports.report import build_report
from reports.table import results_table, summarize

__all__ = ["build_report", "load_runs", "results_table", "summarize"]
