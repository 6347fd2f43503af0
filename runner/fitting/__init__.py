"""Fitting one run: `fit.train(job)` trains one planned run to the end of its budget, resumably.

job (the inputs) -> `training_run.prepare` (the run's state, `TrainingRun`: model, optimizer, schedule, mixing, EMA,
built from the recipe's timm parts in timm_parts; the batch plan; each epoch's batches) -> per epoch: seeding,
loop (train_epoch, evaluate) -> checkpoint, tracking, and the run's records (metrics.jsonl, result.json, weights).
"""
