"""The design space: frozen, documented, JSON round trip, invalid combinations rejected."""

import dataclasses

import pytest

from roadmap.dataclass_fields import doc_field, from_dict, parse_value, to_dict
from roadmap.design import RESNET50, Design
from roadmap.errors import RoadmapError
from roadmap.network import Network
from roadmap.recipe import Recipe
from steps import ROADMAP, design_at, design_for


@pytest.mark.parametrize("step", [s.name for s in ROADMAP] + ["convnext_tiny-layer_norm"])
def test_json_round_trip(step):
    design = design_for(step)
    again = Design.from_json(design.to_json())
    assert again == design
    assert hash(again) == hash(design)


def test_designs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        RESNET50.net.kernel_size = 7


def test_every_field_is_documented():
    for cls in (Network, Recipe, Design):
        for f in dataclasses.fields(cls):
            assert len(f.metadata.get("doc", "")) > 5, f"{cls.__name__}.{f.name} has no doc"


@pytest.mark.parametrize("changes, message", [
    (dict(depths=(3, 4, 6)), "one entry per stage"),
    (dict(depths=(3, 0, 6, 3)), "at least one block"),
    (dict(kernel_size=4), "odd"),
    (dict(expansion=0), "expansion"),
    (dict(stem_stride=3), "stride 1, 2 or 4"),
    (dict(norm_after=("add",)), "no norm after 'add'"),
    (dict(act_after=("pw1", "pw1")), "twice"),
    (dict(group_width=3), "not divisible by group_width"),
    (dict(drop_path_rate=1.0), "drop_path_rate"),
    (dict(norm="group"), "unknown value for Network.norm"),
    (dict(act="swish"), "Did you mean|Valid: relu, gelu"),
    (dict(kernel_size="7"), "expects int"),
    (dict(width_mult=0), "width_mult"),
])
def test_invalid_networks_are_rejected(changes, message):
    with pytest.raises(RoadmapError, match=message):
        dataclasses.replace(RESNET50.net, **changes)


@pytest.mark.parametrize("changes, message", [
    (dict(epochs=0), "epochs"),
    (dict(warmup_epochs=90), "warmup_epochs"),
    (dict(optimizer="lamb"), "unknown value"),
    (dict(random_erasing=1.5), "probability"),
    (dict(rand_augment="m9"), "timm string"),
    (dict(schedule="poly"), "unknown value"),
])
def test_invalid_recipes_are_rejected(changes, message):
    with pytest.raises(RoadmapError, match=message):
        dataclasses.replace(RESNET50.recipe, **changes)


def test_from_dict_rejects_unknown_fields():
    data = RESNET50.to_dict()
    data["net"]["kernal_size"] = 7
    with pytest.raises(RoadmapError, match="Did you mean 'kernel_size'"):
        Design.from_dict(data)


def test_parse_value_is_type_checked():
    assert parse_value(Network, "kernel_size", "7") == 7
    assert parse_value(Network, "depths", "1,1,3,1") == (1, 1, 3, 1)
    assert parse_value(Network, "layer_scale", "null") is None
    assert parse_value(Network, "stem_act", "false") is False
    assert parse_value(Recipe, "rand_augment", "rand-m9-mstd0.5-inc1") == "rand-m9-mstd0.5-inc1"
    with pytest.raises(RoadmapError, match="expects int"):
        parse_value(Network, "kernel_size", "seven")
    with pytest.raises(RoadmapError, match="unknown Network field"):
        parse_value(Network, "kernel", "7")
    with pytest.raises(RoadmapError, match="Valid"):
        parse_value(Network, "norm", "instance")


def test_an_added_field_at_its_default_leaves_records_and_identities_as_they_were():
    """A new step's knob (`doc_field(..., added=True)`, docs/adding-a-step.md) must not change the JSON of existing
    designs: that JSON is hashed into every run's identity, so finished runs would otherwise train again."""

    @dataclasses.dataclass(frozen=True)
    class WithKnob(Network):
        se_ratio: float | None = doc_field("a knob added later", None, added=True)

    old = design_at("convnext_tiny")
    new = dataclasses.replace(old, net=WithKnob(**{f.name: getattr(old.net, f.name)
                                                   for f in dataclasses.fields(old.net)}))
    assert new.to_dict() == old.to_dict() and new.to_json() == old.to_json()
    assert "se_ratio" in to_dict(new.net)  # shown in full by `roadmap show` / `diff`
    on = dataclasses.replace(new, net=dataclasses.replace(new.net, se_ratio=0.25))
    assert on.to_dict()["net"]["se_ratio"] == 0.25
    assert from_dict(WithKnob, new.to_dict()["net"]).se_ratio is None  # a record without it reads the default
