"""timm entry points, registered by importing this module: after

    import roadmap.timm_models

`timm.create_model("roadmap_<step>")` builds any step, alias or section name. `import roadmap` alone registers
nothing (and imports neither torch nor timm): this module is the one explicit place where the roadmap joins timm's
registry.
"""

from __future__ import annotations

from typing import Any

import timm
from timm.models import register_model

from roadmap.errors import RoadmapError
from roadmap.model import build_model
from steps import NAMES


def _entrypoint(step: str):
    def create(pretrained: bool = False, **kwargs: Any):
        if pretrained:
            raise RoadmapError("no pretrained weights for the roadmap's models; load some with roadmap.weights")
        for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
            kwargs.pop(key, None)
        return build_model(step, **kwargs)

    create.__name__ = f"roadmap_{step}"
    create.__qualname__ = create.__name__
    create.__module__ = __name__
    create.__doc__ = f"The roadmap's `{step}` model (see `roadmap show {step}`)."
    return create


def register() -> None:
    """Register one timm entry point per step, alias and section name (idempotent)."""
    for name in NAMES:
        if f"roadmap_{name}" not in timm.list_models("roadmap_*"):
            register_model(_entrypoint(name))


register()
