"""The design space: frozen descriptions of a network and its training recipe, and the roadmap's first design.

A `Network` is one point in the space the ConvNeXt paper walks through (Liu et al. 2022, Section 2):
every intermediate model of the roadmap, and every leave-one-out or reordered variant of it, is a
`Network`. A `Recipe` is a training setting (paper Table 5, or the original ResNet one). A `Design`
pairs the two. All three are immutable; the paper's steps (package `steps`) edit them with
`dataclasses.replace`, and `roadmap.model.build_model` turns a design into an `nn.Module`.

The parts live in `roadmap.enums` (the enums), `roadmap.dataclass_fields` (documented fields, JSON, `--set` parsing),
`roadmap.network` and `roadmap.recipe`, and are imported from there (one import path per name); this module only
pairs them. No torch here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from roadmap.dataclass_fields import from_dict, to_dict
from roadmap.errors import RoadmapError
from roadmap.network import Network
from roadmap.recipe import Recipe

__all__ = ["RESNET50", "Design"]


@dataclass(frozen=True)
class Design:
    """A network and the recipe it is trained with: what one step of the roadmap describes."""

    net: Network = field(default_factory=Network, metadata={"doc": "the network"})
    recipe: Recipe = field(default_factory=Recipe, metadata={"doc": "the training recipe"})

    def __post_init__(self) -> None:
        if not isinstance(self.net, Network) or not isinstance(self.recipe, Recipe):
            raise RoadmapError("a Design is made of a Network and a Recipe")

    def to_dict(self) -> dict[str, Any]:
        """The design as config.json stores it and as a run's identity hashes it (see `doc_field`'s `added`)."""
        return to_dict(self, as_recorded=True)

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_dict(), **kw)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Design:
        return from_dict(cls, data)

    @classmethod
    def from_json(cls, text: str) -> Design:
        return cls.from_dict(json.loads(text))


RESNET50 = Design(Network(), Recipe())
"""torchvision's ResNet-50 v1.5 with its original 90-epoch recipe: the roadmap's first design."""
