"""Trained models leave the result directory: `roadmap export OUT --to DIR` writes one folder per step in the layout
timm's `save_for_hf` writes (config.json, model.safetensors, a README.md model card), and `--push-to-hub ORG`
uploads each (docs/trained-models.md). The weights and config come from roadmap.export (torch, timm); the card's
numbers from reports.card (the records, as `roadmap results` reads them)."""

from __future__ import annotations

import argparse
from pathlib import Path

from roadmap.cli.common import finished_steps, seed_choice


def cmd_export(args: argparse.Namespace) -> None:
    from reports.card import model_card
    from roadmap.export import check_hub, export_run, push_to_hub
    from roadmap.schema import read_config
    from roadmap.trained import base_step, load_run, select_run

    out, to = Path(args.out), Path(args.to)
    if args.push_to_hub:
        check_hub()  # before any work: one line for what is missing
    plan = []
    for step in finished_steps(out, args.steps, "nothing to export"):
        run_dir = select_run(out, step, args.seed)
        load_run(run_dir)  # finished, weights present and fitting: one line otherwise, before anything is written
        cfg = read_config(run_dir / "config.json")
        plan.append((run_dir, cfg))
    for run_dir, cfg in plan:
        architecture = f"roadmap_{base_step(cfg)}"
        dest = export_run(run_dir, to / cfg.step, model_card(out, cfg.run_id, architecture))
        print(f"{cfg.step} (seed {cfg.seed}): {run_dir.name} -> {dest}")
        if args.push_to_hub:
            url = push_to_hub(dest, f"{args.push_to_hub}/{architecture if cfg.step == base_step(cfg) else cfg.step}")
            print(f"{cfg.step}: uploaded to {url}")


def add_commands(sub) -> None:
    """export."""
    p = sub.add_parser("export", help="export trained steps as timm models (safetensors, config, model card)")
    p.add_argument("out", help="a result directory (the --out of `roadmap run`)")
    p.add_argument("--to", required=True, metavar="DIR", help="where to write one folder per step")
    p.add_argument("--steps", metavar="STEP,...", help="the steps to export (default: every finished step)")
    p.add_argument("--seed", type=seed_choice, default="median", metavar="best|median|N",
                   help="which seed of each step: the best or median final top-1, or a seed number")
    p.add_argument("--push-to-hub", metavar="ORG", help="upload each folder to the Hugging Face Hub as "
                   "ORG/roadmap_<step> (needs huggingface_hub, a network and a token)")
    p.set_defaults(func=cmd_export)
