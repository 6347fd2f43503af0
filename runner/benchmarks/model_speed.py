"""`roadmap bench`: training and evaluation throughput of each step, beside the reference implementations.

The references (torchvision's `resnet50`, timm's `convnext_tiny`) are measured in the same process,
interleaved with our models round by round, so the ratio ours/reference holds on a noisy machine even
when absolute numbers drift. A benchmark, not a test.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from roadmap.complexity import count
from roadmap.model import build_model
from runner.dist import synchronize
from runner.fitting.training_run import configure_backends
from runner.precision import Precision, device_default
from steps import canonical, design_for

# Our step -> the reference implementation of the same network
REFERENCES: dict[str, tuple[str, Callable[[float], nn.Module]]] = {
    "resnet50": ("torchvision resnet50", lambda drop_path: __import__("torchvision").models.resnet50()),
    "separate_downsampling": ("timm convnext_tiny",
                              lambda drop_path: __import__("timm").create_model("convnext_tiny",
                                                                                drop_path_rate=drop_path)),
}

# Dense bf16 peak TFLOP/s of known accelerators (vendor datasheets), for model FLOP utilization
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


@dataclass
class Entry:
    name: str
    model: nn.Module
    gflops: float  # forward, per image, at the benchmark's size (paper convention: MACs)
    train: list[float]  # images/s per round
    eval: list[float]
    precision: Precision | None = None  # what it trains and evaluates in (set by `bench`)

    @property
    def key(self) -> tuple[str, str]:
        return self.name, self.precision.name if self.precision else ""


def peak_tflops(dev: torch.device) -> float | None:
    """The dense bf16 peak of a known CUDA device (PEAK_TFLOPS), else None."""
    if dev.type != "cuda":
        return None
    name = torch.cuda.get_device_name(dev)
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def mfu_percent(train_images_per_s: float, gflops: float, peak: float) -> float:
    """Model FLOP utilization of training: ~3x the forward's multiply-accumulates, 2 FLOPs each, against `peak`."""
    return 100 * train_images_per_s * 3 * 2 * gflops * 1e9 / (peak * 1e12)


def _allocated(dev: torch.device) -> int:
    """Bytes allocated on the device now (0 on CPU)."""
    return torch.cuda.memory_allocated(dev) if dev.type == "cuda" else 0


def _reset_peak(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)


def _peak(dev: torch.device) -> int:
    """The most bytes allocated since the last `_reset_peak` (0 on CPU)."""
    return torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else 0


def _place(model: nn.Module, dev: torch.device) -> nn.Module:
    """The model on the device, channels-last on CUDA."""
    model = model.to(dev)
    return model.to(memory_format=torch.channels_last) if dev.type == "cuda" else model


def _time(fn: Callable[[], None], iters: int, dev: torch.device) -> float:
    synchronize(dev)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    synchronize(dev)
    return time.perf_counter() - t0


def bench(specs: list[str], img_size: int, batch: int, dev: torch.device, iters: int = 5, warmup: int = 2,
          rounds: int = 3, references: bool = True, log: Callable[[str], None] = print,
          precisions: list[Precision] | None = None) -> pd.DataFrame:
    """Images/s for training (forward, backward, SGD step) and evaluation, per model and precision (default: the
    device's own, bf16 on CUDA, else fp32; fp16 steps through a loss scaler, as `roadmap run` trains).

    Every timed step of one model is followed by one of each other model and precision (the order alternates every
    round), so slow drifts of a noisy machine hit all of them alike; each number is the median over all steps."""
    cuda = dev.type == "cuda"
    precisions = precisions or [device_default(dev)]
    entries = [dataclasses.replace(e, precision=p) for p in precisions for e in _entries(specs, img_size, references)]
    # (each precision its own models: one model's memory is not counted twice)
    x = torch.randn(batch, 3, img_size, img_size, device=dev)
    y = torch.randint(0, 1000, (batch,), device=dev)
    if cuda:
        x = x.contiguous(memory_format=torch.channels_last)
        configure_backends(dev)  # cuDNN autotuning, as `roadmap run` trains
    steps = {}
    memory: dict[str, float] = {}
    for e in entries:
        # Each model goes to the device in its own turn, and its memory is what its training step adds to what was
        # there before (the other models' weights and optimizer state are not counted): its weights, gradients,
        # optimizer state and the step's activations.
        before = _allocated(dev)
        _reset_peak(dev)
        e.model = model = _place(e.model, dev)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        steps[e.key] = (_train_step(model, opt, x, y, e.precision), _eval_step(model, x, e.precision))
        model.train()  # warm up (allocations, kernel selection) and read the peak memory of a training step
        _time(steps[e.key][0], warmup, dev)
        memory[e.key] = (_peak(dev) - before) / 2**30
        model.eval()
        _time(steps[e.key][1], 1, dev)
    for r in range(rounds):
        order = entries if r % 2 == 0 else entries[::-1]
        for _ in range(iters):
            for e in order:
                e.model.train()
                e.train.append(batch / _time(steps[e.key][0], 1, dev))
        for _ in range(iters):
            for e in order:
                e.model.eval()
                e.eval.append(batch / _time(steps[e.key][1], 1, dev))
        log(f"round {r + 1}/{rounds} done")
    return _table(entries, memory, dev, show_precision=len(precisions) > 1)


def _entries(specs: list[str], img_size: int, references: bool) -> list[Entry]:
    """Our model of each spec, each followed by its reference model (torchvision's or timm's) when asked for."""
    entries: list[Entry] = []
    for spec in specs:
        name = canonical(spec)
        net = design_for(name).net
        entries.append(Entry(name, build_model(net), count(net, img_size).gflops, [], []))
        if references and name in REFERENCES:
            label, make = REFERENCES[name]
            # the same stochastic depth as ours, so both pay for the same work
            entries.append(Entry(label, make(net.drop_path_rate), count(net, img_size).gflops, [], []))
    return entries


def _table(entries: list[Entry], memory: dict[tuple[str, str], float], dev: torch.device,
           show_precision: bool = False) -> pd.DataFrame:
    """One row per model (and precision): median images/s, the ratio to its reference (in the same precision), GPU
    memory and MFU (on CUDA)."""
    peak = peak_tflops(dev)
    rows, by_key = [], {e.key: e for e in entries}
    for e in entries:
        train, evaluation = statistics.median(e.train), statistics.median(e.eval)
        row = {"model": e.name, **({"precision": e.precision.name} if show_precision else {}),
               "GFLOPs": round(e.gflops, 3), "train img/s": round(train, 1), "eval img/s": round(evaluation, 1)}
        ref = REFERENCES.get(e.name)
        if ref and (ref[0], e.precision.name) in by_key:
            reference = by_key[ref[0], e.precision.name]
            row["train vs ref"] = round(train / statistics.median(reference.train), 3)
            row["eval vs ref"] = round(evaluation / statistics.median(reference.eval), 3)
        if dev.type == "cuda" or memory.get(e.key):  # (memory is only measured on CUDA)
            row["GPU GiB"] = round(memory.get(e.key, 0.0), 2)
            if peak:
                row["MFU %"] = round(mfu_percent(train, e.gflops, peak), 1)
        rows.append(row)
    return pd.DataFrame(rows)


IMAGENETTE_160 = (9469, 3925)  # train / val images


def projected_minutes(df: pd.DataFrame, epochs: int = 100, sizes: tuple[int, int] = IMAGENETTE_160) -> float:
    """Wall time of training every benchmarked roadmap model (references excluded) for `epochs` epochs with one
    evaluation per epoch, from the measured model throughput alone (data loading not included)."""
    ours = df[~df["model"].isin([label for label, _ in REFERENCES.values()])]
    seconds = (epochs * sizes[0] / ours["train img/s"] + epochs * sizes[1] / ours["eval img/s"]).sum()
    return float(seconds / 60)


def _train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                precision: Precision) -> Callable[[], None]:
    scaler = precision.grad_scaler(x.device)  # (fp16; passes through otherwise)

    def step() -> None:
        with precision.autocast(x.device):
            loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    return step


def _eval_step(model: nn.Module, x: torch.Tensor, precision: Precision) -> Callable[[], None]:
    @torch.no_grad()
    def step() -> None:
        with precision.autocast(x.device):
            model(x)

    return step
