"""Every step is a timm model by timm's contract (issue #24): a pretrained cfg per name, the classifier methods,
features_only / forward_intermediates / pruning, grad checkpointing, torch.fx and TorchScript; and the outputs are
those of plain torch ops on the plan's layers, bit for bit (the endpoints: torchvision's and timm's models).

Tiny widths and 32 px images. timm's own tests/test_models.py (huggingface/pytorch-image-models) runs on the
full-size models from a directory outside the project, with a conftest.py that imports `roadmap.timm_models` and
adds its module ("timm_models") wherever the test file lists models by `module=FEAT_INTER_FILTERS` (the two
forward_intermediates kinds), by wrapping `timm.list_models` before the test file imports it:

    PYTHONPATH=<this checkout> pytest -p no:cacheprovider -W ignore test_models.py -k roadmap_

250 passed (25 names x the ten kinds convnext passes), 15-24 minutes on two busy cores."""

import copy

import pytest
import timm
import torch
from test_tracing import KEY_STEPS, TINY, randomize, x32  # (tests/ is on the path: pytest's rootdir mode)

import roadmap.timm_models  # noqa: F401  (registers timm.create_model("roadmap_<step>"))
from roadmap.complexity import count
from roadmap.errors import RoadmapError
from steps import NAMES, design_for


def tiny(name, **kwargs):
    return timm.create_model(f"roadmap_{name}", **{"num_classes": 5, **TINY, **kwargs})


# --------------------------------------------------------------------------------------------------
# cfgs and the classifier


def test_every_name_has_a_cfg():
    assert set(timm.list_models("roadmap_*", name_matches_cfg=True)) == {f"roadmap_{n}" for n in NAMES}
    assert timm.list_models("roadmap_*", pretrained=True) == []  # no weights to download
    for name in NAMES:
        cfg = timm.models.get_pretrained_cfg(f"roadmap_{name}").to_dict()
        recipe = design_for(name).recipe
        assert cfg["num_classes"] == 1000 and cfg["input_size"] == (3, 224, 224)
        assert cfg["pool_size"] == count(design_for(name).net, 224).by_stage()[-2]["out_shape"][1:] == (7, 7)
        assert (cfg["crop_pct"], cfg["interpolation"]) == (recipe.eval_crop_pct, recipe.eval_interpolation)
        assert cfg["mean"] == timm.data.IMAGENET_DEFAULT_MEAN and cfg["std"] == timm.data.IMAGENET_DEFAULT_STD
        assert (cfg["first_conv"], cfg["classifier"]) == ("stem.conv", "head.fc")
    model = tiny("gelu")
    assert model.default_cfg is model.pretrained_cfg and model.pretrained_cfg["architecture"] == "roadmap_gelu"
    assert {"stem.conv.weight", "head.fc.weight"} <= set(model.state_dict())
    assert timm.data.resolve_data_config(model=model)["interpolation"] == "bicubic"
    with pytest.raises(RoadmapError, match="no pretrained weights"):
        timm.create_model("roadmap_gelu", pretrained=True)


@pytest.mark.parametrize("name", NAMES)
def test_classifier_contract(name):
    model = tiny(name).eval()
    x = x32()
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape[1] == model.num_features == model.head_hidden_size
        pre = model.forward_head(feats, pre_logits=True)
        assert pre.shape == (2, model.head_hidden_size)
        assert torch.equal(model.forward_head(feats), model.get_classifier()(pre))
        assert model.get_classifier() is model.head.fc and model(x).shape == (2, 5)
        model.reset_classifier(3)
        assert model(x).shape == (2, 3) and model.num_classes == 3
        model.reset_classifier(0)
        assert torch.equal(model(x), pre) and model.num_classes == 0
        model.reset_classifier(0, "")  # no pooling: the normed spatial map
        assert model(x).shape == feats.shape
        model.reset_classifier(4, "max")
        assert model(x).shape == (2, 4)
        spatial = tiny(name, num_classes=0, global_pool="").eval()
        assert spatial(x).shape == feats.shape


def test_global_pool_errors_are_clear():
    with pytest.raises(RoadmapError, match="needs num_classes=0"):
        tiny("gelu", global_pool="")
    with pytest.raises(RoadmapError, match="unknown global_pool 'catavgmax'"):
        tiny("gelu", num_classes=0, global_pool="catavgmax")
    with pytest.raises(RoadmapError, match="unknown Network field 'drop_rate'"):
        tiny("gelu", drop_rate=0.1)


# --------------------------------------------------------------------------------------------------
# features


def same_weights(model, wrapper, rename):
    """`model`'s state_dict under the names of a feature wrapper around the same network (which has fewer keys)."""
    keys = set(wrapper.state_dict())
    out = {rename(k): v for k, v in model.state_dict().items() if rename(k) in keys}
    assert set(out) == keys
    return out


@pytest.mark.parametrize("name", NAMES)
def test_features_only_and_forward_intermediates(name):
    model = randomize(tiny(name)).eval()
    x = x32()
    with torch.no_grad():
        final, inter = model.forward_intermediates(x)
        assert torch.equal(final, model.forward_features(x))
        info = model.feature_info
        assert [i["module"] for i in info] == [f"stages.{i}" for i in range(4)]
        for i, t in zip(info, inter, strict=True):
            assert t.shape == (2, i["num_chs"], 32 // i["reduction"], 32 // i["reduction"])
        two = model.forward_intermediates(x, indices=[1, 2], intermediates_only=True)
        assert all(torch.equal(a, b) for a, b in zip(two, inter[1:3], strict=True))
        last2 = model.forward_intermediates(x, indices=2, stop_early=True, intermediates_only=True)
        assert all(torch.equal(a, b) for a, b in zip(last2, inter[2:], strict=True))

        feat = timm.create_model(f"roadmap_{name}", features_only=True, out_indices=(1, 3), **TINY).eval()
        feat.load_state_dict(same_weights(model, feat, lambda k: k.replace("stem.", "stem_", 1)
                                          .replace("stages.", "stages_", 1)))  # timm flattens the Sequentials
        assert feat.feature_info.channels() == [info[1]["num_chs"], info[3]["num_chs"]]
        assert feat.feature_info.reduction() == [info[1]["reduction"], info[3]["reduction"]]
        assert all(torch.equal(a, b) for a, b in zip(feat(x), [inter[1], inter[3]], strict=True))

        getter = timm.create_model(f"roadmap_{name}", features_only=True, out_indices=(0, 1), feature_cls="getter",
                                   **TINY).eval()
        getter.load_state_dict(same_weights(model, getter, lambda k: f"model.{k}"))
        assert all(torch.equal(a, b) for a, b in zip(getter(x), inter[:2], strict=True))
        assert len(getter.model.stages) == 2  # pruned after the last stage it returns


def test_prune_intermediate_layers():
    model = randomize(tiny("large_kernel")).eval()
    x = x32()
    with torch.no_grad():
        inter = model.forward_intermediates(x, intermediates_only=True)
        assert model.prune_intermediate_layers([0, 2]) == [0, 2]
        assert len(model.stages) == 3 and model.num_classes == 0
        assert model.num_features == model.head_hidden_size == model.feature_info[2]["num_chs"]
        assert torch.equal(model.forward_features(x), inter[2]) and torch.equal(model(x), inter[2])
        full = tiny("convnext_tiny")
        full.prune_intermediate_layers(3, prune_head=True)
        assert len(full.stages) == 4 and isinstance(full.head.norm, torch.nn.Identity)


@pytest.mark.parametrize("name", KEY_STEPS)
def test_grad_checkpointing_gives_the_same_outputs_and_gradients(name):
    torch.manual_seed(0)
    a = randomize(tiny(name)).train()
    b = copy.deepcopy(a)
    b.set_grad_checkpointing(True)
    assert all(s.grad_checkpointing for s in b.stages)
    x = x32()
    torch.manual_seed(1)  # the same stochastic-depth draws (checkpointing replays them in the backward pass)
    ya = a(x)
    torch.manual_seed(1)
    yb = b(x)
    assert torch.equal(ya, yb)
    ya.square().sum().backward()
    yb.square().sum().backward()
    for (n, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7, msg=n)
