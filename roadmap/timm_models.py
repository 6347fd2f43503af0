"""timm entry points, registered by importing this module: after

    import roadmap.timm_models

`timm.create_model("roadmap_<step>")` builds any step, alias or section name, as timm builds its own models: through
`build_model_with_cfg`, with a pretrained cfg per name (`default_cfgs`, from `generate_default_cfgs`), so that
`features_only=True` / `out_indices`, `global_pool`, `pretrained_cfg_overlay` and timm's data config work as they
do for timm's convnext. Keyword arguments other than timm's set network fields, as in `build_model`:

    timm.create_model("roadmap_large_kernel", num_classes=10, width_mult=0.25)
    timm.create_model("roadmap_patchify_stem", features_only=True, out_indices=(1, 2))

Trained weights load through timm's own paths (the roadmap publishes none; `pretrained=True` without any says so in
one line): `pretrained=True, pretrained_cfg_overlay=dict(file=PATH, num_classes=N)` (a model.pt or .safetensors
state_dict), `checkpoint_path=PATH`, or a folder that `roadmap export` wrote (timm's `save_for_hf` layout):

    timm.create_model("local-dir:exported/gelu", pretrained=True)   # the run's classes, network and weights

`import roadmap` alone registers nothing (and imports neither torch nor timm): this module is the one explicit place
where the roadmap joins timm's registry.
"""

from functools import partial
from typing import Any

import timm
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model, resolve_pretrained_cfg

from roadmap.complexity import count
from roadmap.errors import RoadmapError
from roadmap.model import RoadmapNet, network_with
from steps import NAMES, design_for

IMG_SIZE = 224  # the paper's ImageNet resolution


def _cfg(step: str) -> dict[str, Any]:
    """A step's pretrained cfg as timm's convnext writes one (no weights: `url` empty): the input size and the
    final feature map's size at that input (from the plan), the step's own evaluation crop and interpolation."""
    design = design_for(step)
    layers = count(design.net, IMG_SIZE).layers
    _, h, w = [x for x in layers if x.stage != "head"][-1].out_shape
    return {
        "url": "",
        "num_classes": 1000, "input_size": (3, IMG_SIZE, IMG_SIZE), "pool_size": (h, w),
        "crop_pct": design.recipe.eval_crop_pct, "interpolation": design.recipe.eval_interpolation,
        "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD,
        "first_conv": "stem.conv", "classifier": "head.fc",
        "license": "mit", "paper_ids": "arXiv:2201.03545", "paper_name": "A ConvNet for the 2020s",
    }


default_cfgs = generate_default_cfgs({f"roadmap_{name}": _cfg(name) for name in NAMES})


def _roadmap_net(step: str, num_classes: int = 1000, in_chans: int = 3, global_pool: str = "avg",
                 **changes: Any) -> RoadmapNet:
    """The model class `build_model_with_cfg` instantiates: timm's arguments, the rest network fields."""
    return RoadmapNet(network_with(step, **changes), num_classes, in_chans, global_pool)


_SOURCES = ("file", "state_dict", "url", "hf_hub_id")  # where timm's load_pretrained finds weights


def _has_weights(step: str, kwargs: dict[str, Any]) -> bool:
    """Whether the pretrained cfg timm resolves for this call names weights: a `file` or `state_dict` (from
    `pretrained_cfg_overlay`), a `local-dir:` or `hf-hub:` source (timm's create_model sets it from the folder's
    config.json), a `url` or `hf_hub_id`. The registered cfgs name none (the roadmap publishes no weights)."""
    cfg = resolve_pretrained_cfg(f"roadmap_{step}", pretrained_cfg=kwargs.get("pretrained_cfg"),
                                 pretrained_cfg_overlay=kwargs.get("pretrained_cfg_overlay")).to_dict()
    return cfg.get("source") in ("local-dir", "hf-hub") or any(cfg.get(k) for k in _SOURCES)


def _create(step: str, pretrained: bool = False, **kwargs: Any) -> RoadmapNet:
    if pretrained and not _has_weights(step, kwargs):
        raise RoadmapError(f"roadmap_{step} has no pretrained weights of its own: pass "
                           "pretrained_cfg_overlay=dict(file=PATH), or checkpoint_path=PATH without pretrained=True, "
                           "or create 'local-dir:DIR' from `roadmap export` (docs/trained-models.md)")
    return build_model_with_cfg(
        partial(_roadmap_net, step), f"roadmap_{step}", pretrained,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), flatten_sequential=True),
        **kwargs)


def _entrypoint(step: str):
    def create(pretrained: bool = False, **kwargs: Any) -> RoadmapNet:
        return _create(step, pretrained, **kwargs)

    create.__name__ = f"roadmap_{step}"
    create.__qualname__ = create.__name__
    create.__module__ = __name__
    create.__doc__ = f"The roadmap's `{step}` model (see `roadmap show {step}`)."
    return create


def register() -> None:
    """Register one timm entry point per step, alias and section name, with its cfg (idempotent)."""
    registered = set(timm.list_models("roadmap_*"))
    for name in NAMES:
        if f"roadmap_{name}" not in registered:
            register_model(_entrypoint(name))


register()
