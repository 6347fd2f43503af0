"""convnext-roadmap: the ConvNeXt paper's roadmap from ResNet-50 to ConvNeXt-T, one step at a time.

    from roadmap import build_model, design_at, STEPS
    model = build_model("large_kernel", num_classes=10)
    design = design_at("convnext_tiny", without=["layer_norm"])
    run = load_run("runs", step="gelu", seed=0)   # a trained run: run.model (eval mode), run.transform

    import roadmap.timm_models                # registers timm.create_model("roadmap_<step>")

`import roadmap` imports neither torch nor timm: the names below load their module on first use (PEP 562), so
looking at the roadmap (`roadmap flops`, `show`, `diff`, `steps`) never pays for torch. The timm entry points are
registered by importing `roadmap.timm_models`, never as a side effect of `import roadmap`.

Params and GFLOPs: `roadmap.complexity.count(net, img_size)`. (The old alias `roadmap.complexity` for `count` is
gone: with lazy attributes the submodule of that name, once imported by anyone, would replace it.)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> (module, attribute in it)
_LAZY: dict[str, tuple[str, str]] = {
    "Design": ("roadmap.design", "Design"),
    "Network": ("roadmap.network", "Network"),
    "Recipe": ("roadmap.recipe", "Recipe"),
    "RoadmapError": ("roadmap.errors", "RoadmapError"),
    "RoadmapNet": ("roadmap.model", "RoadmapNet"),
    "build_model": ("roadmap.model", "build_model"),
    "ROADMAP": ("steps", "ROADMAP"),
    "STEPS": ("steps", "STEPS"),
    "design_at": ("steps", "design_at"),
    "design_for": ("steps", "design_for"),
    "get_step": ("steps", "get_step"),
    "load_run": ("roadmap.trained", "load_run"),
    "low_resolution": ("steps", "low_resolution"),
    "scaled": ("steps", "scaled"),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    """Load a public name's module on first access (and cache the name here)."""
    if name not in _LAZY:
        raise AttributeError(f"module 'roadmap' has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
