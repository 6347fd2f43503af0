"""docs/example-fashion-mnist-weights (issue 33): the example's trained weights, one seed of each of its 17 steps,
load through timm's own `local-dir:` path and classify Fashion-MNIST-sized images; no file in them is a pickle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch

import roadmap.timm_models  # noqa: F401  (registers roadmap_<step>)

DOCS = Path(__file__).resolve().parents[1] / "docs"
WEIGHTS = DOCS / "example-fashion-mnist-weights"
STEPS = json.loads((DOCS / "example-fashion-mnist" / "plan.json").read_text())["steps"]


def test_every_step_of_the_example_has_its_weights_and_no_pickle():
    assert sorted(p.name for p in WEIGHTS.iterdir() if p.is_dir()) == sorted(STEPS) and len(STEPS) == 17
    for folder in (WEIGHTS / step for step in STEPS):
        assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
        assert (folder / "model.safetensors").read_bytes()[8:9] == b"{"  # safetensors' JSON header, not a pickle


@pytest.mark.parametrize("step", STEPS)
def test_the_weights_load_through_timm_and_classify(step):
    model = timm.create_model(f"local-dir:{WEIGHTS / step}", pretrained=True).eval()
    config = json.loads((WEIGHTS / step / "config.json").read_text())
    assert config["architecture"] == f"roadmap_{step}" and len(config["label_names"]) == 10
    assert list(model.pretrained_cfg["input_size"]) == [3, 28, 28]
    torch.manual_seed(0)
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 28, 28))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    card = (WEIGHTS / step / "README.md").read_text()
    assert f"# roadmap_{step} (seed 0)" in card and "fashion-mnist" in card
