"""Which number format a run trains in (`--precision auto|bf16|fp16|fp32`), chosen by the hardware.

- bf16 autocast where the GPU has bf16 hardware (compute capability 8.0 and up: Ampere, Ada, Hopper). Below it
  cuDNN has no bf16 convolution engines, and `torch.cuda.is_bf16_supported()` still answers True there (it counts
  software emulation), so the capability is asked directly.
- fp16 autocast with loss scaling (`torch.amp.GradScaler`) on older GPUs (T4, V100, P100, RTX 20xx).
- fp32 on the CPU: bf16 autocast trained the `cpu` preset's depthwise models at 0.4-0.7x the speed of fp32 on this
  project's CPU (ResNet-50 at 1.2x), so the CPU stays in fp32 unless asked otherwise.
- fp32 on Apple's MPS backend: no one has run this project there yet; --precision fp16 or bf16 try the others.

A run's identity names its precision only where it differs from what its device trained in before the option
existed (bf16 on CUDA, fp32 on the CPU), so every earlier run id stays valid (`identity_entry`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from roadmap.errors import RoadmapError
from roadmap.schema import precision_of

CHOICES = ("auto", "bf16", "fp16", "fp32")
BF16_CAPABILITY = (8, 0)  # the first compute capability with bf16 tensor cores and cuDNN's bf16 convolutions
MIN_LOSS_SCALE = 1e-4
"""Below this loss scale an fp16 run has diverged: only steps that keep overflowing (about 30 in a row from
GradScaler's 2**16) bring the scale this low; one overflowed step only halves it (fairseq's `min_loss_scale`)."""

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


@dataclass(frozen=True)
class Precision:
    """The number format a run trains and evaluates in, and why it was chosen."""

    name: str  # "bf16", "fp16" or "fp32"
    reason: str = ""

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype (None: no autocast, fp32)."""
        return _DTYPES[self.name]

    @property
    def scales_loss(self) -> bool:
        """fp16's narrow range needs the loss scaled up before backward (and the gradients back down)."""
        return self.name == "fp16"

    def autocast(self, device: torch.device):
        """The context a forward pass runs in."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.dtype)

    def grad_scaler(self, device: torch.device) -> torch.amp.GradScaler:
        """torch's loss scaler, enabled for fp16 only (disabled it passes losses, gradients and steps through)."""
        return torch.amp.GradScaler(device.type, enabled=self.scales_loss)


def legacy(device: torch.device) -> str:
    """What a device trained in before --precision existed: bf16 autocast on CUDA, fp32 elsewhere."""
    return precision_of(device.type)


def device_default(device: torch.device) -> Precision:
    """The precision `device` trained in before --precision existed (`legacy`): what code handed no precision uses."""
    return Precision(legacy(device), "the device's own")


def choose_precision(requested: str, device: torch.device) -> Precision:
    """The precision a run on `device` trains in: as asked, or for `auto` the one its hardware runs best (see the
    module's docstring). bf16 asked of a GPU without bf16 hardware is refused in one line."""
    if requested not in CHOICES:
        raise RoadmapError(f"unknown --precision {requested!r}: use one of {', '.join(CHOICES)}")
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        has_bf16 = (major, minor) >= BF16_CAPABILITY
        where = f"compute capability {major}.{minor}"
        if requested == "bf16" and not has_bf16:
            raise RoadmapError(f"--precision bf16: this GPU ({where}) has no bf16 hardware (cuDNN has no bf16 "
                               "convolutions below 8.0); use --precision fp16 or auto")
        if requested == "auto":
            if has_bf16:
                return Precision("bf16", f"auto: {where} has bf16 hardware")
            return Precision("fp16", f"auto: {where} has no bf16 hardware, so fp16 with loss scaling")
        return Precision(requested, f"--precision {requested} on {where}")
    if requested == "auto":
        why = {"cpu": "the CPU trains fastest in fp32 (docs/bench-cpu.md)",
               "mps": "Apple's MPS backend has not been run by this project yet; fp32 is the safe choice"}
        return Precision("fp32", f"auto: {why.get(device.type, f'{device.type}: fp32')}")
    return Precision(requested, f"--precision {requested} on {device.type}")


def identity_entry(precision: Precision, device: torch.device) -> dict[str, str]:
    """The run identity's precision entry: empty where the run trains as its device did before --precision (so the
    ids of every earlier run stay valid), else {"precision": name}."""
    return {} if precision.name == legacy(device) else {"precision": precision.name}
