"""Which device trains, which data path feeds it (the images held on the device and augmented there, or the CPU
DataLoader, decided from their size against the free GPU memory and the available RAM), and the memory layout of
models and batches on it."""

from __future__ import annotations

import os

import numpy as np
import torch

from roadmap.errors import RoadmapError
from runner.data.decoded import available_ram
from runner.device_data import DeviceDataset
from runner.dist import SINGLE, broadcast


def resolve_device(name: str) -> torch.device:
    """The torch device `--device` names (auto: CUDA when there is one, else the CPU: Apple's MPS only when asked
    for, until someone has run the project there); a clear error for one that is not here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise RoadmapError("--device mps: Apple's MPS backend is not available here (it needs Apple silicon and a "
                               "macOS build of PyTorch); use --device cpu or auto")
        return torch.device("mps")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise RoadmapError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
        _, _, suffix = name.partition(":")
        if suffix and not suffix.isdigit():
            raise RoadmapError(f"--device {name}: write cuda or cuda:INDEX")
        index = int(suffix or 0)
        if index >= torch.cuda.device_count():
            raise RoadmapError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
        return torch.device("cuda", index)
    raise RoadmapError(f"unknown --device {name!r}: use auto, cpu, cuda, cuda:INDEX or mps")


def choose_data_path(mode: str, splits, device, workers: int, log, dist=None, progress: bool = False
                     ) -> tuple | None:
    """The device-resident data path (images on the device, augmented there) or the CPU DataLoader (None).

    auto: on CUDA, the device path for data sets that take at most half the GPU's free memory (and, for image
    files decoded on the host first, of the available RAM), whether held in memory (Fashion-MNIST, CIFAR,
    synthetic) or image files (Imagenette, Tiny-ImageNet, folder:), which are then decoded once; on CPU the
    DataLoader, which is faster there (docs/bench-cpu.md). Under DDP rank 0 decides and every process holds the
    whole set on its own device, taking its share of each batch. loader: always the DataLoader; device: the
    device path, whatever its size (on CPU too)."""
    dist = dist or SINGLE
    if mode not in ("auto", "loader", "device"):
        raise RoadmapError(f"unknown --data-path {mode!r}: use auto, loader or device")
    loader = f"data path: CPU DataLoader ({workers} worker processes)"
    if mode == "loader" or (mode == "auto" and device.type != "cuda"):
        log(loader)
        return None
    need = [DeviceDataset.array_bytes(splits.train), DeviceDataset.array_bytes(splits.val)]
    sizes = None
    if None in need:  # image files: how big they would be on the device, read from their headers
        sizes = DeviceDataset.file_sizes(splits.train), DeviceDataset.file_sizes(splits.val)
        if sizes[0] is None or sizes[1] is None:
            if mode == "device":
                raise RoadmapError(f"{splits.info.name} has neither arrays nor image files; use --data-path loader")
            log(loader)
            return None
        need = [len(s) * (3 * int(np.prod(s.max(0))) + 8) for s in sizes]
    why = _too_big(sum(need), device, host=sizes is not None) if mode == "auto" and dist.is_main else None
    if broadcast(dist, why is not None):  # every process takes the path rank 0 chose
        log(f"{loader} (the images, {sum(need) / 2**30:.1f} GiB, would take over half the {why})")
        return None
    if sizes is None:
        train, val = DeviceDataset.from_dataset(splits.train, device), DeviceDataset.from_dataset(splits.val, device)
        how = ""
    else:
        train, val = (DeviceDataset.from_files(ds, device, s, workers=workers, progress=progress and dist.is_main)
                      for ds, s in zip((splits.train, splits.val), sizes, strict=True))
        h, w = train.images.shape[-2:]
        how = f", decoded once from {len(train) + len(val):,} image files into {h}x{w} canvases"
    size = train.nbytes() + val.nbytes()
    log(f"data path: images held on {device} ({size / 2**20:.0f} MiB as uint8{how}) and augmented there, batched")
    return train, val


def _too_big(nbytes: int, device, host: bool) -> str | None:
    """Why `nbytes` of images may not go on `device` (over half its free memory), or None when they may.

    On CUDA the GPU's free memory counts, and the available RAM too when the images are built on the host first
    (decoded files); on CPU the available RAM. RAM is MemAvailable (page cache counts as free); where it cannot
    be read, RAM is not checked."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if nbytes > free / 2:
            return "free GPU memory"
        if not host:
            return None
    ram = available_ram()
    return "available RAM" if ram is not None and nbytes > ram / 2 else None


def default_workers(device) -> int:
    """DataLoader processes: up to 8 feeding a GPU; none on CPU, where they would take cores from training."""
    return min(8, os.cpu_count() or 1) if device.type == "cuda" else 0


def cpu_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_jobs(run_per_core: bool, device: str) -> int:
    """--jobs when not given: one run per core (each at 1 thread) where the preset asks for it (`cpu`) and the runs
    train on the CPU; else 1. On two cores two 1-thread runs trained 1.26 times the images per second of one
    2-thread run (docs/bench-cpu.md)."""
    return cpu_cores() if run_per_core and resolve_device(device).type == "cpu" else 1


def threads_per_job(jobs: int, asked: int | None) -> int:
    """The torch threads of each of `jobs` CPU runs at once: as asked, else the cores shared out (at least 1)."""
    return asked if asked is not None else max(1, cpu_cores() // jobs)


def jobs_line(jobs: int, threads: int) -> str:
    """What `--jobs N` chose, in one line (the launcher and the dry run print it)."""
    cores = cpu_cores()
    line = (f"jobs: {jobs} runs at a time on the CPU (--jobs {jobs}), {threads} torch thread(s) each "
            f"(--threads-per-job {threads}), {cores} CPU cores here; each run is a `roadmap run` process of its own, "
            "its log in OUT/logs/; --jobs 1 trains one run at a time")
    if jobs * threads > cores:
        line += f"; note: {jobs} x {threads} threads on {cores} cores oversubscribe them"
    return line


def set_threads(threads: int | None) -> None:
    """This process's torch threads (--threads-per-job); None leaves torch's default."""
    if threads is not None:
        torch.set_num_threads(threads)


def channels_last(dev: torch.device) -> bool:
    """Whether models and images use channels-last memory on `dev`: on CUDA (cuDNN's fastest kernels) and on CPU
    (oneDNN's; 1.0-1.5x the model's training speed of the contiguous layout, docs/bench-cpu.md)."""
    return dev.type in ("cuda", "cpu")


def to_device(x: torch.Tensor, y: torch.Tensor, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch on the device, in channels-last memory where `channels_last` says so."""
    x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
    return (x.contiguous(memory_format=torch.channels_last) if channels_last(dev) else x), y

