"""The runner: it trains what the roadmap describes and writes the records the reports read.

Its rooms, in the order a run passes through them:

- `planning/`: planning a roadmap: what `roadmap run` was asked for (options), which specs (selection, with the
  `--set` overrides), each run's design, budget and identity (runs, budget), how its batch is reached (batching),
  the fine-tuning weights' check (init_weights), the dry run, the records written before training (config.json,
  plan.json) and the provenance they carry.
  No training happens here.
- `fitting/`: fitting one run: the training function (fit), the run's inputs and state with each epoch's batches
  (training_run: `Job`, `TrainingRun`), its step loop and evaluation (loop), the recipe's timm parts (timm_parts),
  `--micro-batch auto` (micro_batch), checkpoints, seeding and tracking.
- `benchmarks/`: `roadmap bench`: the models alone (model_speed) and the whole pipeline (pipeline_speed).
- `data/` and `device_data/`: the data sets, and the device-resident data path.
- `launchers/`: how the planned runs are started: one after another in this process (local, also under torchrun),
  or one child process per run on local GPUs or as Slurm jobs (children).

Shared by the rooms: `store` (run directories), `devices` (device, data path, memory layout), `dist` (DDP),
`baselines` (timm reference models).
"""
