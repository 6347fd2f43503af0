"""Adding a step off the main path, as docs/adding-a-step.md walks through: a squeeze-excitation branch.

What the walkthrough adds to the library is defined here through the same extension points, so this test walks
the same path: a Network field (here on a subclass), a layer kind (its placement, cost and label in
`roadmap.layers.KINDS`, its module in `roadmap.model.BUILDERS`), and a Step appended to a section's steps, which the
catalog joins into a roadmap. The step builds, its analytic count equals torch's, it trains, and `roadmap show`'s
table lists its layer.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from roadmap.complexity import count
from roadmap.dataclass_fields import doc_field
from roadmap.describe import stage_table
from roadmap.design import RESNET50, Design
from roadmap.enums import Site
from roadmap.errors import RoadmapError
from roadmap.layers import KINDS, LayerKind, LayerSpec, Layout, plan
from roadmap.model import BUILDERS, build_model
from roadmap.network import Network
from steps import low_resolution, scaled
from steps.catalog import RESNET50_STEPS, Roadmap
from steps.micro import MICRO
from steps.step import Step, net_edit

# -- 1. roadmap/network.py: the field that asks for the layer (the library adds it to Network itself)


@dataclasses.dataclass(frozen=True)
class SENetwork(Network):
    se_ratio: float | None = doc_field(
        "squeeze-excitation after the kxk conv: its bottleneck width / the conv's channels; null = none", None,
        added=True,  # added after results exist: left out of a design's recorded JSON while null
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.se_ratio is not None and not 0 < self.se_ratio <= 1:
            raise RoadmapError(f"invalid network: se_ratio must be in (0, 1] or null, got {self.se_ratio}")


# -- 2. roadmap/layers.py: where the plan puts the layer, what it costs, how `roadmap show` writes it


def place_se(net: Network, channels: int, prefix: str, layout: Layout) -> LayerSpec | None:
    """After the kxk conv's norm and activation, when the network asks for it (EfficientNet's and RegNet's place)."""
    ratio = getattr(net, "se_ratio", None)  # the library reads `net.se_ratio`: every Network has the field there
    if not ratio:
        return None
    return LayerSpec("se", f"{prefix}.se", channels, channels, layout=layout, mid=max(1, round(channels * ratio)))


SE = LayerKind(
    "se",
    cost=lambda spec, h_out: (2 * spec.c_out * spec.mid + spec.mid + spec.c_out, 2 * spec.c_out * spec.mid),
    label=lambda spec: f"se {spec.mid}",
    after=Site.SPATIAL,
    place=place_se,
)


# -- 3. roadmap/model.py: the module


class SqueezeExcite(nn.Module):
    """Global average pool, Linear C -> mid, ReLU, Linear mid -> C, sigmoid: a per-channel gate on the input."""

    def __init__(self, spec: LayerSpec):
        super().__init__()
        self.last = spec.layout is Layout.LAST
        self.fc1 = nn.Linear(spec.c_out, spec.mid)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(spec.mid, spec.c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.fc2(self.act(self.fc1(x.mean((1, 2) if self.last else (2, 3))))))
        return x * (gate[:, None, None, :] if self.last else gate[:, :, None, None])


# -- 4. steps/micro.py: the step, a branch off the last step, appended to the section's STEPS

squeeze_excite = Step(
    name="squeeze_excite",
    section=MICRO,
    summary="squeeze-excitation (ratio 1/4) after the depthwise conv of every block (a branch; not in the paper)",
    rationale="channel attention, as in EfficientNet and RegNetY: does ConvNeXt still gain from it?",
    paper_top1=None,
    paper_gflops=None,
    edit=net_edit(se_ratio=0.25),
    branch_of="separate_downsampling",
)

# The catalog joins the sections' tuples; here, a regime that starts from the subclass's ResNet-50.
# (In a tree that has made the walkthrough's edits, this copy of the step replaces the library's.)
ROADMAP = Roadmap("resnet50", (*(s for s in RESNET50_STEPS if s.name != "squeeze_excite"), squeeze_excite),
                  lambda: Design(SENetwork(), RESNET50.recipe), {"convnext_tiny": "separate_downsampling"})


@pytest.fixture(autouse=True)
def se_layer(monkeypatch):
    monkeypatch.setitem(KINDS, "se", SE)
    monkeypatch.setitem(BUILDERS, "se", SqueezeExcite)


def tiny(spec: str) -> Network:
    return low_resolution(scaled(ROADMAP.design_for(spec), width=0.125, depth=1 / 3), stem_stride=1).net


SPECS = ["squeeze_excite", "resnet50+squeeze_excite"]  # channels-last (ConvNeXt's block) and channels-first


def test_the_step_is_a_branch_of_the_roadmap():
    step = ROADMAP.get_step("squeeze_excite")
    assert step.is_branch and not step.in_paper and step not in ROADMAP.main_path
    assert [s.name for s in ROADMAP.path_to("squeeze_excite")][-2:] == ["separate_downsampling", "squeeze_excite"]
    assert ROADMAP.design_for("squeeze_excite").net.se_ratio == 0.25
    assert ROADMAP.design_for("convnext_tiny").net.se_ratio is None
    with pytest.raises(RoadmapError, match="se_ratio"):
        SENetwork(se_ratio=2.0)


def test_existing_run_identities_are_unchanged():
    """The field is declared `added=True`: at its default it is not recorded, so every existing step's design JSON
    (and with it its runs' identities) is what it was without the field; the new step records it."""
    from steps import design_for

    assert ROADMAP.design_for("convnext_tiny").to_dict() == design_for("convnext_tiny").to_dict()
    assert "se_ratio" not in ROADMAP.design_for("convnext_tiny").to_dict()["net"]
    assert ROADMAP.design_for("squeeze_excite").to_dict()["net"]["se_ratio"] == 0.25


@pytest.mark.parametrize("spec", SPECS)
def test_it_builds_what_the_plan_says(spec):
    net = tiny(spec)
    model = build_model(net, num_classes=10)
    specs = list(plan(net, num_classes=10).layers())
    se = [x for x in specs if x.kind == "se"]
    assert len(se) == sum(len(stage.blocks) for stage in net.resolved().stages)  # one per block
    modules = dict(model.named_modules())
    assert all(isinstance(modules[x.name], SqueezeExcite) for x in se)
    layers = [name for name, m in model.named_modules() if ".se." not in name and not isinstance(m, nn.Identity)
              and (isinstance(m, SqueezeExcite) or not list(m.children()))]  # the SE's own parts are inside it
    assert [x.name for x in specs] == layers


@pytest.mark.parametrize("spec", SPECS)
def test_it_counts_like_torch(spec):
    net = tiny(spec)
    model = build_model(net, num_classes=10).eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(2, 3, 32, 32))
    c = count(net, 32, num_classes=10)
    assert c.params == sum(p.numel() for p in model.parameters())
    assert c.macs * 2 * 2 == counter.get_total_flops()  # a batch of 2, 2 FLOPs per MAC
    without = {"squeeze_excite": "separate_downsampling", "resnet50+squeeze_excite": "resnet50"}[spec]
    assert c.macs > count(tiny(without), 32, num_classes=10).macs


def test_it_trains_one_step():
    torch.manual_seed(0)
    model = build_model(tiny("squeeze_excite"), num_classes=10).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    before = {n: p.detach().clone() for n, p in model.named_parameters() if ".se." in n}
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and before
    for name, p in model.named_parameters():
        if name in before:
            assert p.grad is not None and torch.isfinite(p.grad).all()
            assert not torch.equal(p.detach(), before[name]), f"{name} did not move"


def test_show_lists_the_layer():
    table = stage_table(ROADMAP.design_for("squeeze_excite"))
    assert table.loc[table["stage"] == "stage1", "layout"].item() == "[7x7 dw 96, se 24, 1x1 384, 1x1 96] x3"
