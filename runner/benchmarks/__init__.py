"""`roadmap bench`: benchmarks, not tests. model_speed times the models alone on random tensors; pipeline_speed
times `roadmap run`'s whole training pipeline beside a plain timm-style loop."""
