"""The builder: exact endpoints, every combination of steps, timm entry points."""

import random

import pytest
import timm
import torch
import torchvision

import roadmap
import roadmap.timm_models  # noqa: F401  (registers timm.create_model("roadmap_<step>"))
from roadmap import build_model
from roadmap.complexity import count
from roadmap.errors import RoadmapError
from roadmap.layers import Kind, plan
from roadmap.model import BUILDERS, BatchNormLast, ChannelsFirst, ChannelsLast
from roadmap.weights import from_timm_convnext, from_torchvision_resnet50, state_dict_from_file
from steps import MAIN_PATH, ROADMAP, compose, design_for, low_resolution, scaled


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_resnet50_is_torchvision_resnet50():
    ref = torchvision.models.resnet50().eval()
    for m in ref.modules():  # non-trivial BN statistics, so a misplaced norm would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
    ours = build_model("resnet50").eval()
    assert n_params(ours) == n_params(ref) == 25_557_032
    ours.load_state_dict(from_torchvision_resnet50(ref.state_dict()), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=0)


def test_convnext_tiny_is_timm_convnext_tiny():
    ref = timm.create_model("convnext_tiny").eval()
    with torch.no_grad():  # layer scale 1e-6 would hide the blocks: give it weight
        for name, p in ref.named_parameters():
            if name.endswith("gamma") or "norm" in name:
                p.uniform_(0.5, 1.5)
    ours = build_model("convnext_tiny").eval()
    assert n_params(ours) == n_params(ref) == 28_589_128
    ours.load_state_dict(from_timm_convnext(ref.state_dict()), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=0)


def test_official_convnext_checkpoint_loads(tmp_path):
    """The facebookresearch/ConvNeXt key layout (downsample_layers, dwconv, pwconv1...) converts too."""
    ref = timm.create_model("convnext_tiny").eval()
    official = {}
    for k, v in ref.state_dict().items():
        k = (k.replace("stem.0.", "downsample_layers.0.0.").replace("stem.1.", "downsample_layers.0.1.")
             .replace(".conv_dw.", ".dwconv.").replace(".mlp.fc1.", ".pwconv1.").replace(".mlp.fc2.", ".pwconv2.")
             .replace("head.norm.", "norm.").replace("head.fc.", "head."))
        if k.startswith("stages.") and ".downsample." in k:
            i, rest = k.split(".downsample.")
            k = f"downsample_layers.{i.split('.')[1]}.{rest}"
        k = k.replace(".blocks.", ".")
        official[k] = v
    torch.save({"model": official}, tmp_path / "convnext_tiny_1k_224.pth")
    ours = build_model("convnext_tiny").eval()
    ours.load_state_dict(state_dict_from_file(tmp_path / "convnext_tiny_1k_224.pth"), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=0)


def test_bad_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(RoadmapError, match="does not exist"):
        state_dict_from_file(tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(RoadmapError, match="cannot read"):
        state_dict_from_file(tmp_path / "junk.pth")
    with pytest.raises(RoadmapError, match="unexpected key"):
        from_timm_convnext({"something.else": torch.zeros(1)})


def _tiny(design):
    return low_resolution(scaled(design, width=0.125, depth=1 / 3), stem_stride=1)


@pytest.mark.parametrize("seed", range(12))
def test_any_subset_in_any_order_builds_and_trains(seed):
    """Leave-one-out and reordered studies need no new code: every combination builds, runs forward and
    backward, and its analytic params/FLOPs equal the module's."""
    from torch.utils.flop_counter import FlopCounterMode

    rng = random.Random(seed)
    pool = [s for s in roadmap.ROADMAP if s.name != "resnet50"]
    chosen = rng.sample(pool, rng.randint(1, len(pool)))
    chosen = [s for s in chosen if not (s.is_branch and any(c.name == "large_kernel" for c in chosen))]
    design = _tiny(compose(chosen))
    model = build_model(design, num_classes=5)
    x = torch.randn(2, 3, 24, 24)
    with FlopCounterMode(display=False) as counter:
        out = model(x)
    out.sum().backward()
    assert out.shape == (2, 5) and torch.isfinite(out).all()
    assert all(p.grad is not None for p in model.parameters())
    c = count(design.net, 24, num_classes=5)
    assert c.params == n_params(model)
    assert c.macs * 2 * 2 == counter.get_total_flops()  # batch of 2, 2 FLOPs per MAC


def test_every_main_path_prefix_trains_a_step():
    x = torch.randn(2, 3, 32, 32)
    for i in range(1, len(MAIN_PATH) + 1):
        model = build_model(_tiny(compose(MAIN_PATH[:i])), num_classes=3)
        model(x).logsumexp(1).mean().backward()


def test_knob_combinations_the_paper_never_made():
    combos = [
        dict(stem="patchify", norm="batch"),  # patchify stem on BN bottlenecks
        dict(norm="layer", downsample="in_block"),  # LN with in-block downsampling
        dict(act="gelu", act_after=("spatial", "pw1", "pw2", "add")),  # GELU everywhere
        dict(group_width=8, expansion=1.0),  # a ResNeXt-style grouped conv
        dict(spatial_position="first", norm_after=(), act_after=(), layer_scale=0.1, drop_path_rate=0.2),
        dict(downsample="separate", norm="batch", head_norm=True, stem_stride=2),
    ]
    for changes in combos:
        model = build_model("resnet50", num_classes=4, width_mult=0.25, depth_mult=0.34, **changes)
        model.train()(torch.randn(2, 3, 32, 32)).sum().backward()


def test_channels_last_gives_the_same_output():
    model = build_model("convnext_tiny", num_classes=10, width_mult=0.25, depth_mult=0.34).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a = model(x)
        b = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_timm_create_model_builds_any_step():
    for name in ("resnet50", "gelu", "kernel_9", "convnext_tiny", "micro_design"):
        model = timm.create_model(f"roadmap_{name}", num_classes=7, width_mult=0.25)
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 7)
    assert "roadmap_large_kernel" in timm.list_models("roadmap_*")
    model = timm.create_model("roadmap_convnext_tiny", num_classes=0)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 768)


def test_init_schemes():
    resnet = build_model("resnet50", width_mult=0.25)
    modern = build_model("training_recipe", width_mult=0.25)
    # trunc-normal std .02 (cut at +-2 absolute, as in the official code), kaiming fan-out for ResNet's 7x7 conv
    assert abs(modern.stages[2].blocks[0].branch.conv_pw1.weight.std().item() - 0.02) < 0.002
    assert resnet.stem.conv.weight.std() > 0.05
    full = build_model("convnext_tiny", width_mult=0.25)
    scaled_head = build_model("convnext_tiny", width_mult=0.25, head_init_scale=1e-3)
    assert abs(scaled_head.head.fc.weight.std().item() / full.head.fc.weight.std().item() - 1e-3) < 2e-4


MODULES = {  # what each kind of layer builds
    Kind.CONV: torch.nn.Conv2d,
    Kind.LINEAR: torch.nn.Linear,
    Kind.NORM: (torch.nn.BatchNorm2d, BatchNormLast, torch.nn.LayerNorm),  # timm's LayerNorm2d is a LayerNorm
    Kind.ACT: (torch.nn.ReLU, torch.nn.GELU),
    Kind.MAX_POOL: torch.nn.MaxPool2d,
    Kind.GLOBAL_POOL: torch.nn.AdaptiveAvgPool2d,
    Kind.LAYER_SCALE: timm.layers.LayerScale2d,
    Kind.DROP_PATH: timm.layers.DropPath,
    Kind.PERMUTE: (ChannelsLast, ChannelsFirst),
}


def module_class(kind: str) -> type | tuple[type, ...]:
    """What a kind of layer builds: the table above, else (a kind added since, e.g. a new step's) the class that
    `BUILDERS` builds for it."""
    if kind in MODULES:
        return MODULES[kind]
    assert isinstance(BUILDERS[kind], type), f"{kind}: add what it builds to MODULES"
    return BUILDERS[kind]


@pytest.mark.parametrize("spec", [ROADMAP[0].name, MAIN_PATH[len(MAIN_PATH) // 2].name, MAIN_PATH[-1].name,
                                  "convnext_tiny-layer_norm", *(s.name for s in ROADMAP if not s.in_paper)])
def test_the_plan_lists_the_built_layers(spec):
    """The builder builds what the plan lists: same layers in the same order, same kinds, names and shapes; a
    planned layer is the module at its name (a leaf, or a module with sub-modules, e.g. a new step's)."""
    net = design_for(spec).net
    with torch.device("meta"):
        model = build_model(net, num_classes=10)
    specs = list(plan(net, num_classes=10).layers())
    modules = dict(model.named_modules())
    names = [x.name for x in specs]
    assert all(name in modules for name in names), [n for n in names if n not in modules]
    planned = [(n, m) for n, m in model.named_modules() if n in set(names)]
    assert [n for n, _ in planned] == names  # the same layers, in the same order

    def owner(name: str) -> list[str]:
        return [x for x in names if name == x or name.startswith(x + ".")]

    leaves = [n for n, m in model.named_modules()
              if not list(m.children()) and not isinstance(m, torch.nn.Identity)]
    assert all(len(owner(n)) == 1 for n in leaves), [n for n in leaves if len(owner(n)) != 1]
    for x in specs:
        m = modules[x.name]
        assert isinstance(m, module_class(x.kind)), x.name
        if x.kind == Kind.CONV:
            got = (m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.groups, m.bias is not None)
            assert got == (x.c_in, x.c_out, (x.kernel,) * 2, (x.stride,) * 2, (x.padding,) * 2, x.groups, x.bias)
        elif x.kind == Kind.LINEAR:
            assert (m.in_features, m.out_features, m.bias is not None) == (x.c_in, x.c_out, x.bias)
    for key in model.state_dict():  # every parameter and buffer lies under exactly one planned layer
        assert len(owner(key.rsplit(".", 1)[0])) == 1, key


def test_build_model_rejects_bad_input():
    with pytest.raises(RoadmapError, match="Did you mean 'large_kernel'"):
        build_model("large_kernal")
    with pytest.raises(RoadmapError, match="unknown Network field"):
        build_model("gelu", widht_mult=0.5)
    with pytest.raises(RoadmapError, match="num_classes"):
        build_model("gelu", num_classes=-1)
    with pytest.raises(RoadmapError):
        build_model(42)
