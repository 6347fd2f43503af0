"""Planning a roadmap: from what `roadmap run` was asked for to the list of runs, each with its design, budget,
batch and identity, and the records written before anything trains (config.json, plan.json). No training here.

options (RunOptions) -> selection (which specs) + overrides (--set) -> runs (PlannedRun: design, budget, identity;
budget: the presets) -> batching (how each step's batch is reached) -> run_records (config.json, plan.json, with
provenance) or dry_run (the plan as a table).
"""
