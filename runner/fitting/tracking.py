"""Optional experiment tracking: TensorBoard or Weights & Biases, imported only when asked for.

The result store stays the record of truth; a tracker mirrors each epoch's metrics for people who use one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from roadmap.errors import RoadmapError, unknown

TRACKERS = ("tensorboard", "wandb")


class Tracker(Protocol):
    def log_epoch(self, row: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class TensorBoard:
    """Scalars under <run dir>/tensorboard, one event file per run (`tensorboard --logdir OUT`)."""

    def __init__(self, run_dir: Path, run_name: str, config: dict[str, Any]):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise RoadmapError("--log tensorboard needs the tensorboard package: pip install tensorboard") from None
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        self.writer.add_text("config", f"```\n{config}\n```")

    def log_epoch(self, row: dict[str, Any]) -> None:
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, row["epoch"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandB:
    """One W&B run per roadmap run, named like its directory, grouped by the result directory."""

    def __init__(self, run_dir: Path, run_name: str, config: dict[str, Any]):
        try:
            import wandb
        except ImportError:
            raise RoadmapError("--log wandb needs the wandb package: pip install wandb") from None
        self.run = wandb.init(project="convnext-roadmap", name=run_name, group=run_dir.parent.name, config=config,
                              dir=str(run_dir), reinit=True)

    def log_epoch(self, row: dict[str, Any]) -> None:
        self.run.log({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])

    def close(self) -> None:
        self.run.finish()


def make_tracker(kind: str | None, run_dir: Path, run_name: str, config: dict[str, Any]) -> Tracker | None:
    if kind is None:
        return None
    if kind not in TRACKERS:
        raise unknown("--log tracker", kind, TRACKERS)
    return (TensorBoard if kind == "tensorboard" else WandB)(run_dir, run_name, config)
