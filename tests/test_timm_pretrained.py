"""timm's pretrained paths open for every `roadmap_*` name (issue #33 item 2): `pretrained=True` with
`pretrained_cfg_overlay=dict(file=...)`, `checkpoint_path=...` and `local-dir:DIR` (the folder timm's `save_for_hf`
writes), for a full-size network and a preset-scaled one whose differing network fields travel as model arguments.
Without weights, `pretrained=True` says so in one line. Weights are randomized, so a load that is skipped (or a
classifier left at its init) shows in the logits."""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file
from test_tracing import TINY, randomize, x32  # (tests/ is on the path: pytest's rootdir mode)
from timm.models import save_for_hf

import roadmap.timm_models  # noqa: F401  (registers timm.create_model("roadmap_<step>"))
from roadmap.errors import RoadmapError
from steps import NAMES

SCALED = dict(stem_stride=2, width_mult=0.125, depth_mult=1 / 3)  # the smoke preset's gelu at 32 px
CASES = {"full-size convnext_tiny": ("convnext_tiny", {}), "preset-scaled gelu": ("gelu", SCALED)}


def source(name: str, classes: int, args: dict) -> torch.nn.Module:
    return randomize(timm.create_model(f"roadmap_{name}", num_classes=classes, **args)).eval()


@pytest.fixture(scope="module", params=list(CASES))
def saved(request, tmp_path_factory):
    """A randomized network of 7 classes saved three ways: model.pt, .safetensors, and a save_for_hf folder."""
    name, args = CASES[request.param]
    d = tmp_path_factory.mktemp("weights")
    model = source(name, 7, args)
    torch.save(model.state_dict(), d / "model.pt")
    save_file(model.state_dict(), d / "model.safetensors")
    save_for_hf(model, d / "folder", model_config={"label_names": list("abcdefg")}, model_args=args,
                safe_serialization=True)
    with torch.no_grad():
        logits = model(x32())
    return name, args, d, logits


def logits_of(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x32())


@pytest.mark.parametrize("file", ["model.pt", "model.safetensors"])
def test_pretrained_with_a_file_overlay(saved, file):
    name, args, d, logits = saved
    model = timm.create_model(f"roadmap_{name}", pretrained=True, **args,
                              pretrained_cfg_overlay=dict(file=str(d / file), num_classes=7))
    assert model.num_classes == 7 and torch.equal(logits_of(model), logits)


def test_a_checkpoint_path(saved):
    name, args, d, logits = saved
    model = timm.create_model(f"roadmap_{name}", num_classes=7, checkpoint_path=str(d / "model.pt"), **args)
    assert torch.equal(logits_of(model), logits)


def test_a_local_dir_brings_its_classes_network_and_weights(saved):
    name, args, d, logits = saved
    model = timm.create_model(f"local-dir:{d / 'folder'}", pretrained=True)  # no arguments: all from config.json
    assert model.pretrained_cfg["architecture"] == f"roadmap_{name}"
    assert model.pretrained_cfg["label_names"] == list("abcdefg")
    assert torch.equal(logits_of(model), logits)


def test_every_name_loads_a_file_and_refuses_pretrained_without_weights_in_one_line(tmp_path):
    for name in NAMES:
        model = source(name, 3, TINY)
        torch.save(model.state_dict(), tmp_path / f"{name}.pt")
        loaded = timm.create_model(f"roadmap_{name}", pretrained=True, **TINY,
                                   pretrained_cfg_overlay=dict(file=str(tmp_path / f"{name}.pt"), num_classes=3))
        assert torch.equal(logits_of(loaded), logits_of(model)), name
        with pytest.raises(RoadmapError, match=f"roadmap_{name} has no pretrained weights of its own") as e:
            timm.create_model(f"roadmap_{name}", pretrained=True)
        assert "\n" not in str(e.value)
