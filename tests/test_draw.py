"""`roadmap draw`: the drawn layers are the built module's layers, for every step; files, diffs and errors."""

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from timm.layers import DropPath, LayerScale2d
from torch import nn

import roadmap
from roadmap.draw import mark_changes, picture
from roadmap.draw.picture import design_of
from roadmap.layers import plan
from roadmap.model import BUILDERS
from steps import ROADMAP

ROOT = str(Path(__file__).resolve().parents[1])
SPECS = [s.name for s in ROADMAP] + ["convnext_tiny-layer_norm", "resnet50+gelu+patchify_stem"]
KINDS = [  # what each module class is, in the plan's words
    (nn.Conv2d, "conv"), (nn.Linear, "linear"), (nn.modules.batchnorm._BatchNorm, "norm"), (nn.LayerNorm, "norm"),
    (nn.ReLU, "act"), (nn.GELU, "act"), (nn.MaxPool2d, "max_pool"), (nn.AdaptiveAvgPool2d, "global_pool"),
    (LayerScale2d, "layer_scale"), (DropPath, "drop_path"),
]


def module_kind(m: nn.Module) -> str | None:
    """The kind of a layer's module; None for what is no layer (identity, a channels-first/last permute). A kind
    missing from `KINDS` (e.g. a new step's) is the one whose `BUILDERS` entry is the module's class."""
    if isinstance(m, nn.Identity) or type(m).__name__.startswith(("Channels", "Permute")):
        return None
    built_as = next((kind for kind, builder in BUILDERS.items() if builder is type(m)), None)
    return next((kind for cls, kind in KINDS if isinstance(m, cls)), built_as or f"unknown {type(m).__name__}")


@functools.lru_cache(maxsize=4)
def layers_of(model: nn.Module) -> tuple[str, ...]:
    """The names of the module's layers, in registration order: the modules at the plan's names (a leaf, or a
    module with sub-modules, e.g. a new step's); every leaf lies under exactly one of them."""
    planned = {x.name for x in plan(model.network, model.num_classes).layers()}
    names = [n for n, m in model.named_modules() if n in planned or (not list(m.children()) and not any(
        n.startswith(p + ".") for p in planned))]
    for n, m in model.named_modules():
        if not list(m.children()) and module_kind(m) is not None:
            assert sum(n == p or n.startswith(p + ".") for p in names) == 1, n
    return tuple(names)


def leaves(model: nn.Module, prefix: str) -> list[tuple[str, str]]:
    """(name, kind) of the module's layers under `prefix`, in the order the module registers them."""
    modules = dict(model.named_modules())
    found = [(name, module_kind(modules[name])) for name in layers_of(model) if name.startswith(prefix)]
    return [(name, kind) for name, kind in found if kind is not None]


def drawn(part) -> list[tuple[str, str]]:
    return [(item.spec.name, str(item.kind)) for item in part.drawn()]


def check_against_module(pic, model: nn.Module) -> None:
    stem, *stages, head = pic.parts
    assert drawn(stem) == leaves(model, "stem.")
    assert drawn(head) == leaves(model, "head.")
    total = len(stem.drawn()) + len(head.drawn())
    assert len(stages) == len(model.stages)
    for i, (part, stage) in enumerate(zip(stages, model.stages, strict=True)):
        assert drawn(part) == leaves(model, f"stages.{i}.downsample.") + leaves(model, f"stages.{i}.blocks.0.")
        n = len(stage.blocks)
        assert part.note.startswith(f"{n} block"), part.note
        like_first = [i.kind for i in part.items[part.downsample:] + part.after_sum if i.kind != "drop_path"]
        for j in range(1, n):  # the note's "then N-1 with the same layers, stride 1, identity shortcut"
            rest = leaves(model, f"stages.{i}.blocks.{j}.")
            assert [kind for _, kind in rest if kind != "drop_path"] == like_first
            assert not any(".shortcut." in name for name, _ in rest)
            assert all(m.stride == (1, 1) for m in stage.blocks[j].modules() if isinstance(m, nn.Conv2d))
            total += len(rest)
        total += len(part.drawn())
    assert total == len(leaves(model, ""))  # the picture and its notes account for every layer of the module


def built(net) -> nn.Module:
    with torch.device("meta"):
        return roadmap.build_model(net)


@pytest.mark.parametrize("spec", SPECS)
def test_drawn_layers_are_the_modules(spec):
    check_against_module(picture(spec), built(design_of(spec).net))


@pytest.mark.parametrize("spec", ["resnet50", "inverted_bottleneck", "convnext_tiny"])
def test_drawn_layers_are_the_modules_when_scaled(spec):
    options = dict(width_mult=0.25, depth_mult=1 / 3)
    pic = picture(spec, **options)
    check_against_module(pic, built(design_of(spec, **options).net))
    assert pic.drawn()[0].spec.c_out == (16 if spec.startswith("resnet") else 24)  # the stem, scaled by 1/4


def test_what_the_picture_says():
    stem, first, second, *_, head = picture("resnet50").parts
    texts = [item.text for item in stem.items]
    assert texts[0].startswith("7\u00d77 conv\n3 \u2192 64, stride 2") and texts[1:3] == ["BatchNorm", "ReLU"]
    assert "max-pool" in texts[3]
    assert "no downsampling" in first.title and "stride 2" in second.title
    assert [i.text for i in second.shortcut] == ["1\u00d71 conv\n256 \u2192 512, stride 2", "BatchNorm"]
    assert head.items[-1].text == "linear (classifier)\n2048 \u2192 1000"
    convnext = picture("convnext_tiny").parts
    assert "7\u00d77 depthwise conv" in convnext[2].items[2].text and "layers above" in convnext[2].title
    assert not any(p.shortcut for p in convnext)


def test_a_diff_marks_what_changed_and_nothing_else():
    same = mark_changes(picture("large_kernel"), picture("large_kernel"))
    assert not any(i.changed for p in same for i in p.drawn()) and not any(x.changed for p in same for x in p.parts)
    before, after = mark_changes(picture("gelu"), picture("fewer_activations"))
    gone = [i.spec.name for i in before.drawn() if i.changed]
    assert "stem.act" in gone and "stages.0.blocks.0.act" in gone
    assert not [i for i in after.drawn() if i.changed]  # fewer_activations only removes
    a, b = mark_changes(picture("training_recipe"), picture("stage_ratio"))
    assert [p.changed for p in b.parts] == [False, False, True, True, False, False]  # stages 2, 3: 4 -> 3, 6 -> 9


@pytest.mark.parametrize("suffix", [".svg", ".png"])
def test_cli_writes_the_file_its_suffix_names(cli, tmp_path, suffix):
    out = tmp_path / f"block{suffix}"
    code, stdout, _ = cli("draw", "convnext_tiny-layer_norm", "--diff", "convnext_tiny", "--out", str(out))
    assert code == 0 and stdout.strip() == str(out)
    head = out.read_bytes()[:200]
    assert (b"<svg" in head or b"<?xml" in head) if suffix == ".svg" else head.startswith(b"\x89PNG")


def test_cli_scaled_and_default_name(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, stdout, _ = cli("draw", "kernel_5", "--width-mult", "0.25", "--depth-mult", "0.34")
    assert code == 0 and (tmp_path / "kernel_5.svg").is_file()


@pytest.mark.parametrize("argv, message", [
    (["draw", "no_such_step"], "unknown step"),
    (["draw", "gelu", "--out", "gelu.pdf"], "must end in .svg or .png"),
    (["draw", "gelu", "--out", "/no/such/folder/gelu.svg"], "does not exist"),
    (["draw", "gelu", "--diff", "nope"], "unknown step"),
    (["draw", "gelu", "--width-mult", "-1"], "width_mult"),
])
def test_cli_errors_are_one_line(cli, argv, message):
    code, _, err = cli(*argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_matplotlib_is_imported_only_to_draw():
    """`roadmap.draw` and its pictures cost nothing at import: matplotlib comes with the first figure."""
    code = "import sys, roadmap.draw as d; d.picture('gelu'); assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env=os.environ | {"PYTHONPATH": ROOT})
