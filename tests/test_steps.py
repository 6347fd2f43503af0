"""The steps: names, metadata, purity, composition and specs."""

import dataclasses

import pytest

from roadmap.design import RESNET50
from roadmap.errors import RoadmapError
from roadmap.recipe import MODERN_RECIPE
from steps import MAIN_PATH, ROADMAP, STEPS, compose, design_at, design_for, get_step, parse_spec, path_to
from steps.catalog import ALIASES

REQUIRED = ["resnet50", "training_recipe", "stage_ratio", "patchify_stem", "depthwise_conv", "resnext_width",
            "inverted_bottleneck", "move_up_dwconv", "large_kernel", "gelu", "fewer_activations", "fewer_norms",
            "layer_norm", "separate_downsampling", "kernel_5", "kernel_9", "kernel_11"]
PAPER_TOP1 = [76.13, 78.82, 79.36, 79.51, 78.28, 80.50, 80.64, 79.92, 80.35, 80.57, 80.57, 80.47, 80.62, 81.27,
              81.41, 81.47, 81.97]


def test_names_and_order():
    """The paper's steps, in Figure 2's order (steps of one's own, off the paper, may join them)."""
    assert {name for name, s in STEPS.items() if s.in_paper} == set(REQUIRED)
    assert [s.paper_top1 for s in ROADMAP if s.in_paper] == PAPER_TOP1


def test_aliases_and_sections():
    assert get_step("convnext_tiny") is STEPS["separate_downsampling"]
    assert ALIASES["macro_design"] == "patchify_stem"
    assert ALIASES["resnextify"] == "resnext_width"
    assert get_step("inverted_bottleneck").name == "inverted_bottleneck"
    assert get_step("large_kernel").name == "large_kernel" and design_at("large_kernel").net.kernel_size == 7
    assert ALIASES["micro_design"] == "separate_downsampling"
    assert design_at("micro_design") == design_at("convnext_tiny")


def test_metadata():
    for s in ROADMAP:
        assert s.section.number.startswith("2") and s.summary and s.rationale
        assert not s.in_paper or s.paper_gflops > 0
    kernel_sweep = [s for s in ROADMAP if s.is_branch and s.section.key == "large_kernel"]
    assert [s.name for s in kernel_sweep] == ["kernel_5", "kernel_9", "kernel_11"]
    assert all(s.branch_of == "move_up_dwconv" for s in kernel_sweep)
    assert all(s.branch_of in {m.name for m in MAIN_PATH} for s in ROADMAP if s.is_branch)


def test_the_roadmap_is_the_sections_in_order():
    """The catalog joins each section module's steps: a step is added in its section's module alone."""
    from steps import inverted, kernel, macro, micro, resnextify, training

    assert ROADMAP == (*training.STEPS, *macro.STEPS, *resnextify.STEPS, *inverted.STEPS, *kernel.STEPS,
                       *micro.STEPS)
    assert [s.section.number for s in ROADMAP] == sorted(s.section.number for s in ROADMAP)


@pytest.mark.parametrize("step", list(STEPS))
def test_steps_are_pure(step):
    before = design_at("move_up_dwconv")
    snapshot = before.to_json()
    after = STEPS[step](before)
    assert before.to_json() == snapshot  # the input is untouched
    assert STEPS[step](before) == after  # same input, same output


def test_training_recipe_edits_the_recipe_and_no_layer():
    d = STEPS["training_recipe"](RESNET50)
    assert d.recipe == MODERN_RECIPE and d.recipe.ema is False
    # the recipe's stochastic depth and init are training choices: no parameter or FLOP changes
    assert dataclasses.replace(d.net, drop_path_rate=0.0, init="kaiming") == RESNET50.net


def test_each_step_changes_what_it_says():
    def net(name):
        return design_at(name).net

    assert net("stage_ratio").depths == (3, 3, 9, 3)
    assert net("patchify_stem").stem == "patchify" and net("patchify_stem").stem_stride == 4
    assert net("depthwise_conv").group_width == 1 and net("depthwise_conv").widths == (256, 512, 1024, 2048)
    assert net("resnext_width").widths == (384, 768, 1536, 3072) and net("resnext_width").stem_width == 96
    assert net("inverted_bottleneck").widths == (96, 192, 384, 768) and net("inverted_bottleneck").expansion == 4
    assert net("move_up_dwconv").spatial_position == "first"
    assert [net(k).kernel_size for k in ("kernel_5", "large_kernel", "kernel_9", "kernel_11")] == [5, 7, 9, 11]
    assert net("gelu").act == "gelu"
    assert net("fewer_activations").act_after == ("pw1",)
    assert net("fewer_norms").norm_after == ("spatial",)
    assert net("layer_norm").norm == "layer"
    assert net("convnext_tiny").downsample == "separate" and net("convnext_tiny").layer_scale == 1e-6


def test_branches_start_from_move_up_dwconv():
    assert [s.name for s in path_to("kernel_9")][-2:] == ["move_up_dwconv", "kernel_9"]
    assert "kernel_5" not in [s.name for s in path_to("convnext_tiny")]


def test_leave_one_out():
    d = design_at("convnext_tiny", without=["layer_norm"])
    assert d.net.norm == "batch" and d.net.downsample == "separate"
    assert design_for("convnext_tiny-layer_norm") == d
    with pytest.raises(RoadmapError, match="starting point"):
        design_at("gelu", without=["resnet50"])
    with pytest.raises(RoadmapError, match="not on the path"):
        design_at("gelu", without=["layer_norm"])


def test_reordering_commutes_where_the_paper_implies():
    # width and inversion commute: scaling and swapping widths are independent edits
    a = compose([STEPS["inverted_bottleneck"], STEPS["resnext_width"]])
    b = compose([STEPS["resnext_width"], STEPS["inverted_bottleneck"]])
    assert a == b
    assert design_for("resnet50+layer_norm+gelu").net.norm == "layer"


@pytest.mark.parametrize("spec, message", [
    ("gelu+gelu", "applies once"),
    ("-gelu", "cannot read"),
    ("gelu--", "cannot read"),
    ("gelu layer_norm", "cannot read"),
    ("gelo", "Did you mean 'gelu'"),
])
def test_bad_specs(spec, message):
    with pytest.raises(RoadmapError, match=message):
        parse_spec(spec)
