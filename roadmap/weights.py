"""Load published weights into the two ends of the roadmap.

    sd = from_torchvision_resnet50(torchvision.models.resnet50(weights=...).state_dict())
    build_model("resnet50").load_state_dict(sd)              # strict, same logits

    sd = from_timm_convnext(timm.create_model("convnext_tiny", pretrained=True).state_dict())
    build_model("convnext_tiny").load_state_dict(sd)         # also takes the official ConvNeXt checkpoints

Each converter renames keys; it never changes a value or a shape (our ConvNeXt blocks use Linear 1x1 layers too).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch

from roadmap.errors import RoadmapError

_TORCHVISION_RESNET = [
    (r"^conv1\.", "stem.conv."),
    (r"^bn1\.", "stem.norm."),
    (r"^layer(\d)\.(\d+)\.conv1\.", lambda m: f"stages.{int(m[1]) - 1}.blocks.{m[2]}.branch.conv_pw1."),
    (r"^layer(\d)\.(\d+)\.bn1\.", lambda m: f"stages.{int(m[1]) - 1}.blocks.{m[2]}.branch.norm_pw1."),
    (r"^layer(\d)\.(\d+)\.conv2\.", lambda m: f"stages.{int(m[1]) - 1}.blocks.{m[2]}.branch.conv_spatial."),
    (r"^layer(\d)\.(\d+)\.bn2\.", lambda m: f"stages.{int(m[1]) - 1}.blocks.{m[2]}.branch.norm_spatial."),
    (r"^layer(\d)\.(\d+)\.conv3\.", lambda m: f"stages.{int(m[1]) - 1}.blocks.{m[2]}.branch.conv_pw2."),
    (r"^layer(\d)\.(\d+)\.bn3\.", lambda m: f"stages.{int(m[1]) - 1}.blocks.{m[2]}.branch.norm_pw2."),
    (r"^layer(\d)\.(\d+)\.downsample\.0\.", lambda m: f"stages.{int(m[1]) - 1}.blocks.{m[2]}.shortcut.conv."),
    (r"^layer(\d)\.(\d+)\.downsample\.1\.", lambda m: f"stages.{int(m[1]) - 1}.blocks.{m[2]}.shortcut.norm."),
    (r"^fc\.", "head.fc."),
]

_TIMM_CONVNEXT = [
    (r"^stem\.0\.", "stem.conv."),
    (r"^stem\.1\.", "stem.norm."),
    (r"^stages\.(\d)\.downsample\.0\.", r"stages.\1.downsample.norm."),
    (r"^stages\.(\d)\.downsample\.1\.", r"stages.\1.downsample.conv."),
    (r"^stages\.(\d)\.blocks\.(\d+)\.conv_dw\.", r"stages.\1.blocks.\2.branch.conv_spatial."),
    (r"^stages\.(\d)\.blocks\.(\d+)\.norm\.", r"stages.\1.blocks.\2.branch.norm_spatial."),
    (r"^stages\.(\d)\.blocks\.(\d+)\.mlp\.fc1\.", r"stages.\1.blocks.\2.branch.conv_pw1."),
    (r"^stages\.(\d)\.blocks\.(\d+)\.mlp\.fc2\.", r"stages.\1.blocks.\2.branch.conv_pw2."),
    (r"^stages\.(\d)\.blocks\.(\d+)\.gamma$", r"stages.\1.blocks.\2.layer_scale.gamma"),
    (r"^head\.norm\.", "head.norm."),
    (r"^head\.fc\.", "head.fc."),
]

# facebookresearch/ConvNeXt's own checkpoints (the "model" entry of convnext_tiny_1k_224.pth and friends)
_OFFICIAL_CONVNEXT = [
    (r"^downsample_layers\.0\.0\.", "stem.conv."),
    (r"^downsample_layers\.0\.1\.", "stem.norm."),
    (r"^downsample_layers\.(\d)\.0\.", r"stages.\1.downsample.norm."),
    (r"^downsample_layers\.(\d)\.1\.", r"stages.\1.downsample.conv."),
    (r"^stages\.(\d)\.(\d+)\.dwconv\.", r"stages.\1.blocks.\2.branch.conv_spatial."),
    (r"^stages\.(\d)\.(\d+)\.norm\.", r"stages.\1.blocks.\2.branch.norm_spatial."),
    (r"^stages\.(\d)\.(\d+)\.pwconv1\.", r"stages.\1.blocks.\2.branch.conv_pw1."),
    (r"^stages\.(\d)\.(\d+)\.pwconv2\.", r"stages.\1.blocks.\2.branch.conv_pw2."),
    (r"^stages\.(\d)\.(\d+)\.gamma$", r"stages.\1.blocks.\2.layer_scale.gamma"),
    (r"^norm\.", "head.norm."),
    (r"^head\.", "head.fc."),
]


def _rename(state_dict: Mapping[str, torch.Tensor], rules: list, source: str) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state_dict.items():
        for pattern, repl in rules:
            new, n = re.subn(pattern, repl, key)
            if n:
                break
        else:
            raise RoadmapError(f"unexpected key {key!r} in a {source} state_dict: is this the right converter?")
        out[new] = value
    return out


def from_torchvision_resnet50(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A torchvision `resnet50` state_dict renamed for `build_model("resnet50")` (strict load)."""
    return _rename(state_dict, _TORCHVISION_RESNET, "torchvision ResNet")


def from_timm_convnext(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A timm `convnext_*` or official ConvNeXt state_dict renamed for the final step (strict load).

    Works for every ConvNeXt size; build the matching network (e.g. ConvNeXt-T = `convnext_tiny`).
    """
    official = any(k.startswith("downsample_layers.") for k in state_dict)
    rules = _OFFICIAL_CONVNEXT if official else _TIMM_CONVNEXT
    return _rename(state_dict, rules, "official ConvNeXt" if official else "timm ConvNeXt")


def state_dict_from_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A converted state_dict from a checkpoint file of torchvision ResNet-50, timm or official ConvNeXt, or of a
    roadmap network itself (`build_model(...).state_dict()`, a run's model.pt), which needs no conversion.

    Nested checkpoints ({"model": ...}, {"state_dict": ...}) are unwrapped; the source is told apart by its keys.
    """
    path = Path(path)
    if not path.is_file():
        raise RoadmapError(f"checkpoint {str(path)!r} does not exist: pass the path of a .pth/.bin file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a corrupt or foreign file
        raise RoadmapError(f"cannot read checkpoint {str(path)!r}: {type(e).__name__}") from None
    for key in ("model", "state_dict", "model_ema"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
            break
    if not isinstance(data, dict):
        raise RoadmapError(f"checkpoint {str(path)!r} holds no state_dict")
    if "stem.conv.weight" in data:  # our own names (timm's stem is stem.0, torchvision's conv1)
        return dict(data)
    if any(k.startswith("layer1.") for k in data):
        return from_torchvision_resnet50(data)
    return from_timm_convnext(data)
