"""Our analytic params/FLOPs against the paper's column and against torch's own counters."""

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import roadmap
from roadmap.complexity import count
from roadmap.errors import RoadmapError
from steps import REGIMES, ROADMAP, design_for, low_resolution, scaled

FOOTNOTED = {"layer_norm": 4.15, "separate_downsampling": 4.46}  # what the architecture counts, not the print


def measured(net, img_size, num_classes=1000):
    """Parameters and conv+linear MACs counted by torch on a model built on the meta device."""
    with torch.device("meta"):
        model = roadmap.build_model(net, num_classes=num_classes)
        x = torch.empty(1, 3, img_size, img_size)
    params = sum(p.numel() for p in model.parameters())
    with FlopCounterMode(display=False) as counter:
        model.eval()(x)
    return params, counter.get_total_flops() // 2  # torch counts a MAC as 2 FLOPs


@pytest.mark.parametrize("step", [s.name for s in ROADMAP if s.in_paper])
def test_paper_gflops_to_two_decimals(step):
    s = roadmap.STEPS[step]
    ours = round(count(design_for(step).net).gflops, 2)
    assert ours == FOOTNOTED.get(step, s.paper_gflops)
    assert bool(s.footnote) == (step in FOOTNOTED)


@pytest.mark.parametrize("step", [s.name for s in ROADMAP])
def test_analytic_counts_equal_torch_counter(step):
    net = design_for(step).net
    for size in (224, 160):
        c = count(net, size)
        assert (c.params, c.macs) == measured(net, size)


def test_endpoint_param_counts():
    assert count(design_for("resnet50").net).params == 25_557_032
    assert count(design_for("convnext_tiny").net).params == 28_589_128
    assert count(design_for("resnet50").net).macs == 4_089_184_256  # torchvision: _ops 4.089


@pytest.mark.parametrize("step", ["resnet50", "patchify_stem", "inverted_bottleneck", "separate_downsampling"])
def test_adapted_designs_count_like_torch(step):
    design = low_resolution(scaled(design_for(step), width=0.25, depth=1 / 3), stem_stride=1)
    c = count(design.net, 32, num_classes=10)
    assert (c.params, c.macs) == measured(design.net, 32, num_classes=10)


def test_fvcore_agrees_up_to_norms():
    """fvcore's default counter counts conv/linear like ours plus norm layers (so it reads a little higher)."""
    from fvcore.nn import FlopCountAnalysis

    net = design_for("resnet50").net
    model = roadmap.build_model(net).eval()
    analysis = FlopCountAnalysis(model, torch.zeros(1, 3, 64, 64))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    by_op = analysis.by_operator()
    assert by_op["conv"] + by_op["linear"] == count(net, 64).macs
    assert analysis.total() > count(net, 64).macs


def test_too_small_images_are_a_clear_error():
    with pytest.raises(RoadmapError, match="too small"):
        count(design_for("convnext_tiny").net, 16)


def test_flops_cli_json(capsys):
    from roadmap.cli import main

    assert main(["flops", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["step"] for r in rows] == [s.name for s in ROADMAP]
    for r in rows:
        assert {"step", "params", "gflops", "paper_gflops"} <= set(r)
        if roadmap.STEPS[r["step"]].in_paper:
            expected = FOOTNOTED.get(r["step"], r["paper_gflops"])
            assert round(r["gflops"], 2) == expected


TABLE_11 = {"resnet200": 15.01, "training_recipe": 15.01, "stage_ratio": 14.52, "patchify_stem": 14.38,
            "depthwise_conv": 7.23, "resnext_width": 16.76, "inverted_bottleneck": 15.68, "move_up_dwconv": 14.63,
            "kernel_5": 14.70, "large_kernel": 14.81, "kernel_9": 14.95, "kernel_11": 15.13,
            "separate_downsampling": 15.35}


def test_resnet200_regime_reproduces_table_11(capsys):
    from roadmap.cli import main

    assert main(["flops", "--regime", "resnet200", "--format", "json"]) == 0
    rows = {r["step"]: r for r in json.loads(capsys.readouterr().out)}
    assert list(rows) == [s.name for s in REGIMES["resnet200"].steps]
    for step, gflops in TABLE_11.items():  # every architecture row Table 11 prints
        assert round(rows[step]["gflops"], 2) == gflops == rows[step]["paper_gflops"], step
    assert rows["separate_downsampling"]["params"] == 88_591_464  # ConvNeXt-B


@pytest.mark.parametrize("name", ["convnext_small", "convnext_base", "convnext_large"])
def test_family_end_points_match_timm_structurally(name):
    """Same parameter names (after conversion) and shapes as timm's model: its weights would load strictly."""
    import timm

    from roadmap.weights import from_timm_convnext

    with torch.device("meta"):
        ref = timm.create_model(name)
        ours = roadmap.build_model(name)
    converted = {k: v.shape for k, v in from_timm_convnext(ref.state_dict()).items()}
    assert converted == {k: v.shape for k, v in ours.state_dict().items()}
    assert round(count(design_for(name).net).gflops, 1) == roadmap.get_step(name).paper_gflops
