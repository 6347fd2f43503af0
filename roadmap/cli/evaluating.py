"""Trained steps on other images: `roadmap evaluate OUT --dataset SPEC` evaluates each trained step of a result
directory (one seed each, chosen as `roadmap export` chooses it) on a data set with the same classes, or on the same
one at another size, and prints the top-1 and top-5 beside the accuracy the run was trained to
(docs/trained-models.md). The measuring is runner.evaluation's; the runs come from roadmap.trained."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from roadmap.cli.common import add_format, finished_steps, seed_choice
from runner.planning.options import fraction, positive_int

COLUMNS = {  # csv and json keys -> the table's and Markdown's headers
    "step": "step", "seed": "seed", "trained_on": "trained on", "img_size": "px", "trained_top1": "trained top-1",
    "images": "images", "top1": "top-1", "top5": "top-5", "delta_top1": "Δ top-1",
}
EXTRA = ("run", "dataset", "split", "trained_images", "loss", "device", "precision")  # csv and json only


def _dataset_help() -> str:
    from runner.data import catalog

    return f"the data set to evaluate on, with the runs' classes: {catalog.help_text()}"


def evaluate_rows(args: argparse.Namespace) -> tuple[list[dict], list[str]]:
    """One row per step (its numbers) and the notes under the table."""
    from tqdm.auto import tqdm

    from roadmap.trained import load_run, select_run
    from runner.devices import resolve_device
    from runner.evaluation import check_classes, evaluate_run, open_dataset, part, trained_images

    out, terminal = Path(args.out), sys.stderr.isatty()
    paths = [select_run(out, step, args.seed) for step in finished_steps(out, args.steps, "nothing to evaluate")]
    configs = [load_run(p).config for p in paths]  # finished, weights whole and fitting: checked before any work
    device = resolve_device(args.device)
    splits = open_dataset(args.dataset, args.data_dir, args.val_fraction, args.skip_unreadable, terminal, configs)
    for cfg in configs:  # every run's classes before any is evaluated: one line for the first that differs
        check_classes(cfg, splits.info, args.dataset)
    data = part(splits, args.split)
    rows, notes = [], []
    bar = tqdm(paths, desc="evaluate", unit="step", disable=not terminal, file=sys.stderr, dynamic_ncols=True)
    for path in bar:
        run = load_run(path)  # one network in memory at a time
        cfg = run.config
        bar.set_postfix_str(f"{cfg.step} (seed {cfg.seed})")
        s = evaluate_run(run, data, device, args.img_size, args.batch_size, args.workers, splits, terminal)
        trained = run.result.val_top1
        rows.append({"step": cfg.step, "seed": cfg.seed, "trained_on": cfg.dataset.name if cfg.dataset else None,
                     "img_size": s.img_size, "trained_top1": trained, "images": s.images, "top1": s.top1,
                     "top5": s.top5, "delta_top1": None if trained is None else s.top1 - trained,
                     "run": run.path.name, "dataset": splits.info.name, "split": args.split,
                     "trained_images": trained_images(run), "loss": s.loss, "device": str(device),
                     "precision": s.precision})
        n, size = trained_images(run), cfg.dataset.val_size if cfg.dataset else None
        if n is not None and size is not None and n < size:
            notes.append(f"{cfg.step}: its trained top-1 was measured on the first {n} of its {size} validation "
                         "images (the preset's --val-batches)")
    bar.close()
    precisions = ", ".join(dict.fromkeys(r["precision"] for r in rows))
    notes.insert(0, f"Evaluated on {args.dataset} ({args.split} split, {rows[0]['images']} images) on {device} in "
                 f"{precisions}; trained top-1: each run's final top-1 on its own validation split.")
    if splits.info.split and args.split != "all":
        notes.append(f"{splits.info.name}: {splits.info.split['val_fraction']:g} of each class held out for "
                     f"validation (seed {splits.info.split['seed']}; --val-fraction to change it, --split all for "
                     "every image)")
    if splits.info.synthetic:
        notes.append("note: synthetic data: a pipeline check, its accuracies mean nothing")
    return rows, notes


def render_rows(rows: list[dict], notes: list[str], fmt: str) -> str:
    """The rows as a table or Markdown (rounded, with the notes under them), or CSV or JSON (every key, unrounded)."""
    import pandas as pd

    from roadmap.describe import render

    if fmt in ("csv", "json"):
        return render(pd.DataFrame(rows, columns=[*COLUMNS, *EXTRA]), fmt, missing="")
    shown = []
    for r in rows:
        cells = {COLUMNS[k]: r[k] for k in COLUMNS}
        for k in ("trained_top1", "top1", "top5"):
            cells[COLUMNS[k]] = "-" if r[k] is None else f"{r[k]:.2f}"
        cells[COLUMNS["delta_top1"]] = "-" if r["delta_top1"] is None else f"{r['delta_top1']:+.2f}"
        shown.append(cells)
    frame = pd.DataFrame(shown)
    # (Markdown: the cells as written, "+0.00" not read back as a number)
    text = frame.to_markdown(index=False, disable_numparse=True) if fmt == "markdown" else render(frame, fmt)
    return text + "\n\n" + "\n".join(notes)


def cmd_evaluate(args: argparse.Namespace) -> None:
    rows, notes = evaluate_rows(args)
    print(render_rows(rows, notes, args.format))


def add_commands(sub) -> None:
    """evaluate."""
    p = sub.add_parser(
        "evaluate", help="evaluate trained steps on another data set with the same classes (or at another size)",
        description="Evaluate each trained step of a result directory on a data set with the classes it was trained "
        "on (your own images: --dataset folder:PATH), or on its own data set at another --img-size, and print the "
        "top-1 and top-5 beside the top-1 it was trained to.")
    p.add_argument("out", help="a result directory (the --out of `roadmap run`)")
    action = p.add_argument("--dataset", required=True, metavar="SPEC", help="(read when shown)")
    action.help_from = _dataset_help  # see roadmap.cli.common.Formatter
    p.add_argument("--steps", metavar="STEP,...", help="the steps to evaluate (default: every finished step)")
    p.add_argument("--seed", type=seed_choice, default="median", metavar="best|median|N",
                   help="which seed of each step: the best or median final top-1, or a seed number")
    p.add_argument("--split", choices=["val", "train", "all"], default="val",
                   help="the data set's split to evaluate on (default: val; all: both, e.g. a folder of new images)")
    p.add_argument("--img-size", type=positive_int, metavar="N",
                   help="evaluate at this resolution (default: each run's own)")
    p.add_argument("--batch-size", type=positive_int, metavar="N",
                   help="images per batch (default: each run's evaluation batch)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:INDEX or mps")
    p.add_argument("--workers", type=int, metavar="N", help="data-loading processes (default: 8 on CUDA, 0 on CPU)")
    p.add_argument("--data-dir", metavar="PATH", help="where the data set is (or goes); default: the cache")
    p.add_argument("--val-fraction", type=fraction, metavar="F",
                   help="folder:PATH without val/: the share of each class held out for validation (default: "
                   "the runs' own where they trained on this folder, else 0.2)")
    p.add_argument("--skip-unreadable", action="store_true",
                   help="folder:PATH: evaluate on the images that can be read when some cannot")
    add_format(p)
    p.set_defaults(func=cmd_evaluate)
