"""Fitting one run: `fit.train(job)` trains one planned run to the end of its budget, resumably.

job (the inputs) -> machinery (model, optimizer, schedule, mixing, EMA, built from the recipe's timm parts in
timm_parts) -> per epoch: seeding, feed (the loaders), loop (train_epoch, evaluate) -> checkpoint, tracking,
and the run's records (metrics.jsonl, result.json, weights).
"""
