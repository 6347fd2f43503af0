"""`--set key=value`: design and recipe overrides for every step, each value type-checked against its field."""

from __future__ import annotations

import dataclasses
from typing import Any

from roadmap.dataclass_fields import parse_value
from roadmap.errors import RoadmapError, unknown
from roadmap.network import Network
from roadmap.recipe import Recipe


def parse_sets(sets: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`--set key=value` pairs split into (network changes, recipe changes), each value type-checked."""
    net_names = {f.name for f in dataclasses.fields(Network)}
    recipe_names = {f.name for f in dataclasses.fields(Recipe)}
    net, recipe = {}, {}
    for item in sets:
        if "=" not in item:
            raise RoadmapError(f"--set takes key=value, got {item!r} (e.g. --set kernel_size=5 or recipe.lr=0.002)")
        key, value = item.split("=", 1)
        key = key.strip()
        part, _, name = key.rpartition(".")
        if part not in ("", "net", "recipe"):
            raise RoadmapError(f"--set {key}: prefix a field with 'net.' or 'recipe.' (or nothing)")
        if part == "net" or (not part and name in net_names):
            net[name] = parse_value(Network, name, value)
        elif part == "recipe" or (not part and name in recipe_names):
            recipe[name] = parse_value(Recipe, name, value)
        else:
            raise unknown("--set field", key, sorted(net_names | recipe_names))
    return net, recipe

