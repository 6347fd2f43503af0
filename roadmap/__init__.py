"""convnext-roadmap: the ConvNeXt paper's roadmap from ResNet-50 to ConvNeXt-T, one step at a time.

    from roadmap import build_model, design_at, STEPS
    model = build_model("large_kernel", num_classes=10)
    design = design_at("convnext_tiny", without=["layer_norm"])
"""

from roadmap import timm_models as _timm_models  # noqa: E402
from roadmap.complexity import count as complexity  # noqa: E402  (after steps, which it does not need)
from roadmap.design import Design, Network, Recipe
from roadmap.errors import RoadmapError
from roadmap.model import RoadmapNet, build_model  # noqa: E402
from steps import ROADMAP, STEPS, design_at, design_for, get_step, low_resolution, scaled

_timm_models.register()

__version__ = "0.1.0"

__all__ = [
    "Design", "Network", "Recipe", "RoadmapError", "RoadmapNet", "ROADMAP", "STEPS", "build_model", "complexity",
    "design_at", "design_for", "get_step", "low_resolution", "scaled",
]
