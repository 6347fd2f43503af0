"""A run's checkpoints: written each epoch in the background (atomically, keeping the one before), read back on
resume (a damaged one set aside), and the pretrained weights a fine-tuning run starts from, loaded when it starts
(`load_pretrained`; runner.planning.init_weights checks them against the step's network when the run is planned)."""

from __future__ import annotations

import io
import pickle
import threading
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._pytree import tree_map

from roadmap.errors import RoadmapError, first_line
from roadmap.weights import state_dict_from_file
from runner.store import RunDir


class CheckpointWriter:
    """Writes each epoch's checkpoint in a background thread, so training goes on while it is serialized and
    written (a ConvNeXt-T checkpoint with AdamW state is ~330 MB: on a GPU that is as long as an epoch of a small
    data set). The state is first copied off the device and out of the tensors training keeps updating; a
    checkpoint waits for the previous one, and the write is atomic and keeps the one before (RunDir.save_checkpoint),
    so a crash or a damaged file leaves a finished one.
    The thread is not a daemon: an interrupted process still finishes the write it started."""

    def __init__(self, run_dir: RunDir) -> None:
        self.run_dir = run_dir
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def save(self, state: dict[str, Any]) -> None:
        self.wait()
        snapshot = tree_map(lambda v: v.detach().to("cpu", copy=True) if isinstance(v, torch.Tensor) else v, state)

        def write() -> None:
            try:
                buffer = io.BytesIO()
                torch.save(snapshot, buffer)
                self.run_dir.save_checkpoint(buffer.getvalue())
            except BaseException as e:  # re-raised in the training thread by wait()
                self._error = e

        self._thread = threading.Thread(target=write, name="checkpoint-writer")
        self._thread.start()

    def wait(self) -> None:
        """Block until the last checkpoint is on disk; raise what writing it raised."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def load_checkpoint(run_dir: RunDir, device: torch.device, log: Callable[[str], None] | None, label: str
                    ) -> dict[str, Any] | None:
    """The state of the newest readable checkpoint in `run_dir`, or None (the run starts over). An unreadable one
    (cut short, empty, not a checkpoint) is moved aside by the process that `log`s (the main one; None on the
    others, which read the same file and skip it too) with a one-line warning, and the one before it is tried.

    A checkpoint is read with `weights_only=True`: tensors and plain values (the model, optimizer, EMA and
    GradScaler states, the history) and nothing else, so one dropped into a shared result directory cannot run code
    when it is read; one that holds any other object is refused and set aside like a damaged one."""
    for path in run_dir.checkpoints():
        try:
            state = torch.load(path, map_location=device, weights_only=True)
            if isinstance(state, dict) and {"model", "optimizer", "epoch", "history"} <= set(state):
                return state
            why = "not a training checkpoint"
        except pickle.UnpicklingError as e:  # also a damaged file: only "Weights only load failed" is a refusal
            why = ("it holds objects other than tensors and plain values, refused as loading them could run code"
                   if "weights only load failed" in str(e).lower() else first_line(e))
        except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for a damaged file
            why = first_line(e)
        if log is not None:
            aside = run_dir.set_aside(path)
            then = "resuming from the one before it" if run_dir.checkpoints() else "starting the run over"
            log(f"warning: {label}: {path} is unreadable ({why}); moved to {aside.name}, {then}")
    return None


def load_pretrained(model: torch.nn.Module, path: str, log: Callable[[str], None], label: str) -> None:
    """Load converted weights strictly; only a classifier of another class count is left at its new init."""
    weights = state_dict_from_file(path)
    own = model.state_dict()
    fresh = [k for k in ("head.fc.weight", "head.fc.bias") if k in weights and k in own
             and weights[k].shape != own[k].shape]
    for k in fresh:
        del weights[k]
    bad = [k for k, v in weights.items() if k in own and v.shape != own[k].shape]
    if bad:
        raise RoadmapError(f"--init-from {path}: the shape of {bad[0]} differs from this step's network; fine-tune "
                           "the step (and size) the weights were trained for")
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if set(missing) - set(fresh) or unexpected:
        wrong = sorted(set(missing) - set(fresh)) + sorted(unexpected)
        raise RoadmapError(f"--init-from {path}: the weights do not fit this step's network ({len(wrong)} tensors "
                           f"differ, e.g. {wrong[0]}); fine-tune the step they were trained for")
    note = f", classifier re-initialized for {own['head.fc.weight'].shape[0]} classes" if fresh else ""
    log(f"{label}: loaded {len(weights)} tensors from {path}{note}")
