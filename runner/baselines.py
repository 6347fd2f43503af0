"""Reference models beside the roadmap: any timm model, trained with the same recipe, data and budget.

A baseline is a spec `timm:NAME` (e.g. `timm:swin_tiny_patch4_window7_224`); `roadmap run --baselines NAME,...`
adds such specs to the plan, and `--steps` accepts them directly. The model is built by `timm.create_model`
(random init), with the recipe's stochastic depth rate and, for models that take one (ViT, Swin), the run's
input size. It keeps timm's own stem: a ResNet at 32 px is not adapted the way the roadmap's models are.
Params and GFLOPs are counted by torch's FLOP counter on the meta device (no memory, no compute), halved to
the paper's convention (multiply-accumulates); they include attention's matrix products, as the paper's
Swin-T figure does.
"""

from __future__ import annotations

import difflib
import functools
from typing import Any

from roadmap.schema import BASELINE_PREFIX as PREFIX

# The paper's ImageNet-1K numbers for the reference models it prints (PAPER.md: Swin-T 81.3 / 4.5).
PAPER_NUMBERS: dict[str, dict[str, float]] = {
    "swin_tiny_patch4_window7_224": {"top1": 81.3, "gflops": 4.5},
}


def is_baseline(spec: str) -> bool:
    return spec.startswith(PREFIX)


def model_name(spec: str) -> str:
    """`timm:NAME` -> NAME."""
    return spec[len(PREFIX):]


def check(name: str) -> str:
    """The spec for timm model `name` (with or without the `timm:` prefix); a one-line error for an unknown
    name, with the closest timm names."""
    import timm

    from roadmap.errors import RoadmapError

    name = model_name(name) if is_baseline(name) else name
    name = name.strip()
    if not name or not timm.is_model(name):
        close = timm.list_models(f"{name}*")[:4] or difflib.get_close_matches(name, timm.list_models(), n=4,
                                                                              cutoff=0.6)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise RoadmapError(f"--baselines: {name!r} is not a timm model{hint}; `python -c \"import timm; "
                           f"print(timm.list_models('*swin*'))\"` lists the names")
    return PREFIX + name


def create(name: str, num_classes: int, img_size: int, drop_path_rate: float):
    """timm's `name` with random weights, `num_classes` outputs, the recipe's stochastic depth, sized for
    `img_size` when the model has a fixed input size (it is left out for models that do not take one)."""
    import timm

    kwargs: dict[str, Any] = {"num_classes": num_classes, "pretrained": False}
    tries = ({"drop_path_rate": drop_path_rate, "img_size": img_size}, {"drop_path_rate": drop_path_rate},
             {"img_size": img_size}, {})
    for i, extra in enumerate(tries):
        try:
            return timm.create_model(name, **kwargs, **extra)
        except TypeError as e:  # the model's constructor does not take one of the extras
            if "unexpected keyword" not in str(e) or i == len(tries) - 1:
                raise
    raise AssertionError("unreachable")


@functools.cache  # planning validates each baseline, then its config and the dry-run table count it again
def complexity(name: str, num_classes: int, img_size: int) -> tuple[int, float]:
    """(params, GFLOPs) of timm's `name` at `img_size` px: GFLOPs = multiply-accumulates / 1e9, counted by
    torch's FlopCounterMode on the meta device (on the CPU for a model that cannot be built there). A model that
    cannot run at this size is a RoadmapError."""
    import torch

    from roadmap.errors import RoadmapError, first_line

    try:
        return _count(name, num_classes, img_size, "meta")
    except Exception:  # noqa: BLE001 - some constructors compute on their tensors; count for real instead
        pass
    try:
        return _count(name, num_classes, img_size, "cpu")
    except (RuntimeError, ValueError, AssertionError, torch.OutOfMemoryError) as e:
        raise RoadmapError(f"timm:{name} cannot run on {img_size} px images ({first_line(e)[:160]}); choose another "
                           "--img-size or leave it out of --baselines") from None


def _count(name: str, num_classes: int, img_size: int, device: str) -> tuple[int, float]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device(device):
        model = create(name, num_classes, img_size, 0.0)
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.empty(1, 3, img_size, img_size, device=device))
    params = sum(p.numel() for p in model.parameters())
    return params, counter.get_total_flops() / 2 / 1e9
