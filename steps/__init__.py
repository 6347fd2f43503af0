"""The paper's edits, one module per section of its roadmap, and the ordered roadmap.

Each step is a pure `Step`: `step(design) -> design`. This package never imports torch.
"""

from steps.adapt import low_resolution, scaled
from steps.catalog import (
    ALIASES,
    MAIN_PATH,
    NAMES,
    REGIMES,
    ROADMAP,
    SECTIONS,
    STEPS,
    Roadmap,
    canonical,
    compose,
    design_at,
    design_for,
    get_regime,
    get_step,
    parse_spec,
    path_to,
    path_with,
)
from steps.step import Section, Step

__all__ = [
    "ALIASES", "MAIN_PATH", "NAMES", "REGIMES", "ROADMAP", "Roadmap", "SECTIONS", "STEPS", "Section", "Step",
    "canonical", "compose", "design_at", "design_for", "get_regime", "get_step", "low_resolution", "parse_spec",
    "path_to", "path_with", "scaled",
]
