"""`roadmap run`: plan the runs (steps x seeds), skip what is done, train the rest, write the report.

The plan is a list of runs, each keyed by what produced it (see runner.store.run_id). Finished runs are
reused, unfinished ones resume from their last checkpoint, and runs another process holds are skipped
(that process finishes them; run the command again to collect them).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from roadmap import schema
from roadmap.complexity import count
from roadmap.design import FINETUNE_RECIPE, Design, Network, Recipe, parse_value, to_dict
from roadmap.errors import RoadmapError
from runner import baselines as timm_baselines
from runner import store
from runner.budget import (
    Budget,
    apply_budget,
    crop_for,
    get_preset,
    make_budget,
    scale_regularization,
    stem_stride_for,
)
from runner.store import RunDir, ensure_writable, run_id
from steps import Roadmap, get_regime, low_resolution, scaled


@dataclass
class RunOptions:
    """What the user asked for (the flags of `roadmap run`)."""

    dataset: str = "fashion-mnist"
    regime: str = "resnet50"
    upto: str | None = None
    steps: list[str] | None = None
    data_dir: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    img_size: int | None = None
    seeds: int | None = None  # None: the preset's
    device: str = "auto"
    out: str | None = None
    preset: str = "quick"
    sets: list[str] = field(default_factory=list)
    branches: bool = True
    dry_run: bool = False
    same_epochs: bool = False
    train_batches: int | None = None
    val_batches: int | None = None
    workers: int | None = None
    compile: bool = False
    progress: bool | None = None  # None: progress bars when stderr is a terminal
    report: bool = True
    write_plan: bool = True  # False for a launcher's child process: the parent owns plan.json
    only_seed: int | None = None  # a launcher's child trains one seed
    init_from: str | None = None  # fine-tune from these weights with the paper's fine-tuning recipe
    tracker: str | None = None  # --log tensorboard|wandb
    data_path: str = "auto"  # auto | loader | device (see runner.gpu_data)
    baselines: list[str] = field(default_factory=list)  # timm model names trained beside the roadmap
    orders: list[list[str]] = field(default_factory=list)  # step orders to train as paths from the start
    micro_batch: int | str | None = None  # --micro-batch N|auto: gradient accumulation (None: the whole batch)
    command: str = ""


@dataclass
class PlannedRun:
    spec: str
    seed: int
    design: Design  # a baseline: the final step's design, of which only the recipe and drop_path_rate apply
    budget: Budget
    run_id: str
    identity: dict[str, Any]
    model: str | None = None  # a baseline's timm model name (spec `timm:NAME`); None for roadmap specs


# -------------------------------------------------------------------------------- choosing steps


def select_steps(upto: str | None, steps: list[str] | None, branches: bool, regime: Roadmap | None = None,
                 orders: list[list[str]] | None = None, baselines: list[str] | None = None) -> list[str]:
    """The specs to train, in order: an explicit list (`timm:NAME` specs included), or the roadmap up to a step
    (branches included once the path passes large_kernel, as in the paper's Figure 2, unless `branches` is False);
    then the nodes of each step order (see `order_specs`), then the baselines as `timm:NAME` specs."""
    r = regime or get_regime("resnet50")
    if steps:
        specs = [timm_baselines.check(s) if timm_baselines.is_baseline(s) else r.canonical(s) for s in steps]
        if len(set(specs)) != len(specs):
            raise RoadmapError("--steps lists a step twice; each spec is trained once per seed")
    else:
        names = [s.name for s in r.path_to(upto or r.main_path[-1].name)]
        if branches and "large_kernel" in names:
            names += [s.name for s in r.steps if s.is_branch and s.name not in names]
        order = [s.name for s in (*r.steps, *r.extras)]
        specs = sorted(names, key=order.index)
    for steps_in_order in orders or []:
        specs += order_specs(steps_in_order, r)
    specs += [timm_baselines.check(b) for b in baselines or []]
    return list(dict.fromkeys(specs))


def order_specs(order: list[str], regime: Roadmap) -> list[str]:
    """The nodes of the path that applies `order`'s steps one at a time to the regime's starting model:
    `resnet50`, `resnet50+a`, `resnet50+a+b`, ... A node whose design equals a main-path step's design takes
    that step's name (the same model, trained once): e.g. applying training_recipe first reaches the paper's
    training_recipe itself."""
    start = regime.main_path[0].name
    paper = {regime.design_for(s.name): s.name for s in regime.main_path}
    specs, spec = [start], start
    for name in order_steps(order, regime):
        spec = f"{spec}+{name}"
        design = regime.design_for(spec)  # validates the spec
        specs.append(paper.get(design, spec))
    return specs


def order_steps(order: list[str], regime: Roadmap) -> list[str]:
    """The step names of an `--order` (aliases resolved, a leading start step dropped), checked: at least one
    step, none twice, the start step only first."""
    start = regime.main_path[0].name
    names = [regime.get_step(s.strip()).name for s in order if s.strip()]
    if names and names[0] == start:
        names = names[1:]
    if not names:
        raise RoadmapError(f"--order needs at least one step after {start}, e.g. --order gelu,patchify_stem")
    if len(set(names)) != len(names):
        raise RoadmapError("--order lists a step twice; a step applies once")
    if start in names:
        raise RoadmapError(f"--order: {start} is the starting point of every path; list only the steps after it")
    return names


def parse_order(text: str) -> list[str]:
    """`--order a,b,c` -> [a, b, c]."""
    return [s.strip() for s in text.split(",") if s.strip()]


# -------------------------------------------------------------------------------- --set key=value


def parse_sets(sets: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`--set key=value` pairs split into (network changes, recipe changes), each value type-checked."""
    net_names = {f.name for f in dataclasses.fields(Network)}
    recipe_names = {f.name for f in dataclasses.fields(Recipe)}
    net, recipe = {}, {}
    for item in sets:
        if "=" not in item:
            raise RoadmapError(f"--set takes key=value, got {item!r} (e.g. --set kernel_size=5 or recipe.lr=0.002)")
        key, value = item.split("=", 1)
        key = key.strip()
        part, _, name = key.rpartition(".")
        if part not in ("", "net", "recipe"):
            raise RoadmapError(f"--set {key}: prefix a field with 'net.' or 'recipe.' (or nothing)")
        if part == "net" or (not part and name in net_names):
            net[name] = parse_value(Network, name, value)
        elif part == "recipe" or (not part and name in recipe_names):
            recipe[name] = parse_value(Recipe, name, value)
        else:
            from roadmap.errors import unknown

            raise unknown("--set field", key, sorted(net_names | recipe_names))
    return net, recipe


# -------------------------------------------------------------------------------- planning


def code_version() -> str:
    from roadmap import __version__

    return __version__


def git_revision() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str]:
    import numpy
    import timm
    import torch
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "timm": timm.__version__, "numpy": numpy.__version__}


def plan(opts: RunOptions, dataset_key: str, native_size: int, num_classes: int) -> list[PlannedRun]:
    """Every run the options ask for, with its effective design and budget."""
    preset = get_preset(opts.preset)
    seeds = seeds_of(opts)
    if seeds <= 0:
        raise RoadmapError(f"--seeds must be positive, got {seeds}")
    img_size = opts.img_size or preset.img_size or native_size
    if img_size <= 0:
        raise RoadmapError(f"--img-size must be positive, got {img_size}")
    net_sets, recipe_sets = parse_sets(opts.sets)
    regime = get_regime(opts.regime)
    init = _init_identity(opts.init_from)
    runs = []
    for spec in select_steps(opts.upto, opts.steps, opts.branches, regime, opts.orders, opts.baselines):
        model = timm_baselines.model_name(spec) if timm_baselines.is_baseline(spec) else None
        if model and init:
            raise RoadmapError(f"--init-from fine-tunes roadmap steps; {spec} is a timm baseline (leave it out)")
        # a baseline trains with the recipe of the regime's final model (ConvNeXt-T), as the paper's Swin-T did
        design = regime.compose(regime.main_path if model else regime.parse_spec(spec))
        if init:  # paper Table 6: the fine-tuning recipe, and a head that starts near zero
            design = dataclasses.replace(design, recipe=FINETUNE_RECIPE,
                                         net=dataclasses.replace(design.net, head_init_scale=0.001))
        design = _adapt(design, preset, img_size, net_sets, recipe_sets)
        budget = make_budget(design.recipe, preset, img_size, opts.epochs, opts.batch_size, opts.same_epochs,
                             opts.train_batches, opts.val_batches)
        design = apply_budget(design, budget)
        if model is None:
            count(design.net, img_size, num_classes)  # fails early, with a clear message, if the images are too small
        else:
            timm_baselines.complexity(model, num_classes, img_size)  # likewise for a timm model
        for seed in range(seeds) if opts.only_seed is None else [opts.only_seed]:
            budget_id = {k: v for k, v in dataclasses.asdict(budget).items() if k not in ("preset", "epochs_rule")}
            identity = {"design": described(design, model), "dataset": dataset_key, "img_size": img_size,
                        "seed": seed, "budget": budget_id, "code_version": code_version(),
                        **({"init_from": init} if init else {})}
            runs.append(PlannedRun(spec, seed, design, budget, run_id(spec, seed, identity), identity, model))
    return runs


def seeds_of(opts: RunOptions) -> int:
    """How many seeds each step trains with: `--seeds`, else the preset's default (3 on the CPU preset)."""
    return opts.seeds if opts.seeds is not None else get_preset(opts.preset).seeds


def described(design: Design, model: str | None) -> dict[str, Any]:
    """What a run trains, as stored: the design; for a timm baseline its name, drop-path rate and recipe."""
    if model is None:
        return design.to_dict()
    return {"timm_model": model, "drop_path_rate": design.net.drop_path_rate, "recipe": to_dict(design.recipe)}


@dataclass(frozen=True)
class Complexity:
    params: int  # as trained: the preset's scaling, this data set's classes
    gflops_run: float  # ... at the run's resolution
    params_224: int  # full size, 1000 classes: the paper's columns
    gflops_224: float


def complexity_of(run: PlannedRun, num_classes: int, regime: Roadmap) -> Complexity:
    """Params and GFLOPs (multiply-accumulates) of a run's network as trained and at full size at 224 px."""
    img = run.budget.img_size
    if run.model is not None:
        params, gflops = timm_baselines.complexity(run.model, num_classes, img)
        params_224, gflops_224 = timm_baselines.complexity(run.model, 1000, 224)
        return Complexity(params, gflops, params_224, gflops_224)
    trained, full = count(run.design.net, img, num_classes), count(regime.design_for(run.spec).net, 224)
    return Complexity(trained.params, trained.gflops, full.params, full.gflops)


def _init_identity(path: str | None) -> dict[str, Any] | None:
    """What identifies the weights a fine-tuning run starts from: their path and size."""
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise RoadmapError(f"--init-from {path!r} does not exist: pass a torchvision ResNet-50 or timm/official "
                           "ConvNeXt checkpoint file")
    return {"path": str(p.resolve()), "bytes": p.stat().st_size}


def _adapt(design: Design, preset, img_size: int, net_sets: dict, recipe_sets: dict) -> Design:
    if preset.width_mult != 1.0 or preset.depth_mult != 1.0:
        design = scaled(design, preset.width_mult, preset.depth_mult)
    design = scale_regularization(design, preset.regularization)
    stem_stride = preset.stem_stride or stem_stride_for(img_size)
    if design.net.stem_stride == 4 and stem_stride != 4:
        design = low_resolution(design, stem_stride)
    if design.recipe.crop is not crop_for(img_size):  # small images: pad-and-crop, evaluated on the whole image
        design = dataclasses.replace(design, recipe=dataclasses.replace(design.recipe, crop=crop_for(img_size),
                                                                        eval_crop_pct=1.0))
    if net_sets:
        design = dataclasses.replace(design, net=dataclasses.replace(design.net, **net_sets))
    if recipe_sets:
        design = dataclasses.replace(design, recipe=dataclasses.replace(design.recipe, **recipe_sets))
    return design


def config_for(run: PlannedRun, info, device: str, opts: RunOptions, world: int = 1) -> schema.RunConfig:
    """config.json: everything needed to reproduce the run and to report on it without the code."""
    regime = get_regime(opts.regime)
    img = run.budget.img_size
    c = complexity_of(run, info.num_classes, regime)
    if run.model is not None:
        paper = timm_baselines.PAPER_NUMBERS.get(run.model)
        step_fields = {"step_name": run.spec, "section": schema.BASELINE_SECTION, "branch_of": None,
                       "baseline": run.model, "paper": schema.PaperNumbers(**paper) if paper else None}
    else:
        step = regime.parse_spec(run.spec)[-1]
        is_paper_step = run.spec == step.name  # a composed spec (leave-one-out, reordered) is not the paper's model
        step_fields = {
            "step_name": step.name, "branch_of": step.branch_of,
            "section": schema.Section(step.section.key, step.section.number, step.section.title),
            "paper": schema.PaperNumbers(step.paper_top1, step.paper_gflops, step.footnote) if is_paper_step else None,
        }
    return schema.RunConfig(
        run_id=run.run_id, step=run.spec, **step_fields, seed=run.seed, regime=regime.name,
        complexity=schema.Complexity(params=c.params, gflops_run=round(c.gflops_run, 5), img_size=img,
                                     gflops_224=round(c.gflops_224, 4), params_224=c.params_224),
        dataset=schema.DatasetInfo(name=info.name, num_classes=info.num_classes, classes=list(info.classes),
                                   train_size=info.train_size, val_size=info.val_size, img_size=img,
                                   synthetic=info.synthetic),
        budget=run.budget, design=described(run.design, run.model), identity=run.identity, device=device,
        code_version=code_version(), git_revision=git_revision(), packages=package_versions(), command=opts.command,
        created=_now(),
        # only when asked for: how each optimizer step is computed (not part of the run's identity, like --nproc)
        micro_batch=micro_batch_record(run, info.train_size, opts.micro_batch, world)
        if opts.micro_batch is not None else None,
    )


def micro_batch_record(run: PlannedRun, train_size: int, micro: int | str | None, world: int = 1) -> dict[str, Any]:
    """How a step's batch is reached: the global batch, processes, images per process, the micro-batch and the
    accumulation steps (None for `auto` until the run measures the GPU; then config.json gets the chosen value)."""
    from runner.recipes import mixes
    from runner.train import split_batch

    per_process = split_batch(run.budget.batch_size, train_size, mixes(run.design.recipe), world)
    m = None if micro in (None, "auto") else min(int(micro), per_process)
    return {"requested": micro, "batch": per_process * world, "processes": world, "per_process": per_process,
            "micro_batch": m if micro != "auto" else None,
            "accumulation_steps": (per_process // m if m else 1) if micro != "auto" else None}


def batch_line(run: PlannedRun, train_size: int, micro: int | str | None, world: int, device) -> str:
    """One line of the dry run: how the batch of one optimizer step is reached."""
    rec = micro_batch_record(run, train_size, micro, world)
    procs = f" on each of {world} processes" if world > 1 else ""
    head = f"batch {rec['batch']} per optimizer step"
    if micro is None:
        return (f"{head}: {rec['per_process']} images in one forward/backward{procs} (--micro-batch N|auto "
                "accumulates the gradients of smaller micro-batches instead)")
    if micro == "auto":
        where = ("the largest divisor of it whose step fits in the GPU's free memory, measured when the run starts"
                 if device.type == "cuda" else f"on {device}: the whole batch in one forward/backward")
        return f"{head}: {rec['per_process']} images{procs}, micro-batch auto ({where})"
    if rec["accumulation_steps"] == 1:
        return f"{head}: {rec['per_process']} images in one forward/backward{procs} (micro-batch {micro} >= batch)"
    return (f"{head} = {rec['accumulation_steps']} accumulation step(s) x micro-batch {rec['micro_batch']}{procs}; "
            "the lr follows the batch, BatchNorm sees micro-batch statistics")


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -------------------------------------------------------------------------------- devices


def resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
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
    raise RoadmapError(f"unknown --device {name!r}: use auto, cpu, cuda or cuda:INDEX")


# -------------------------------------------------------------------------------- running


def default_out(dataset: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset)
    return Path("runs") / safe


def status_of(rd: RunDir) -> str:
    if rd.done:
        try:
            return rd.read_result().status
        except RoadmapError:
            return "unreadable result.json"
    if rd.checkpoints():
        epochs = len(rd.read_metrics())
        return "held by another process" if rd.is_locked() else f"partial ({epochs} epochs)"
    return "held by another process" if rd.is_locked() else "to do"


def run(opts: RunOptions, log: Callable[[str], None] = print) -> Path:
    """Plan, skip what is done, train the rest; returns the output directory.

    Under torchrun every process runs this; rank 0 alone plans on disk, writes and reports."""
    from runner.data import load_dataset
    from runner.dist import from_env

    device = resolve_device(opts.device)
    dist = from_env("nccl" if device.type == "cuda" else "gloo", device)  # binds this process to its GPU
    if dist.active and device.type == "cuda":
        device = resolve_device(f"cuda:{dist.local_rank}")
    if not dist.is_main:
        log = _silent
    out = Path(opts.out) if opts.out else default_out(opts.dataset)
    splits = load_dataset(opts.dataset, opts.data_dir)
    info = splits.info
    runs = plan(opts, info.name if not info.synthetic else opts.dataset, info.native_size, info.num_classes)
    preset = get_preset(opts.preset)
    procs = f" x {dist.world} processes" if dist.active else ""
    header = (f"{len(runs)} runs ({len({r.spec for r in runs})} steps x {seeds_of(opts)} seed(s)) on {opts.dataset} "
              f"({info.train_size} train / {info.val_size} val, {info.num_classes} classes), "
              f"{runs[0].budget.img_size} px, preset {preset.name}: {preset.note}, device {device}{procs}")
    if opts.micro_batch not in (None, "auto"):
        from runner.recipes import mixes
        from runner.train import check_micro_batch

        for r in runs:  # a micro-batch that cannot split a step's batch fails now, not after hours of other steps
            per_process = micro_batch_record(r, info.train_size, opts.micro_batch, dist.world)["per_process"]
            check_micro_batch(min(int(opts.micro_batch), per_process), per_process, mixes(r.design.recipe))
    if opts.dry_run:
        _print_plan(runs, out, info, header, get_regime(opts.regime), log, opts.micro_batch, dist.world, device)
        return out
    if dist.is_main:
        ensure_writable(out)
        if opts.write_plan:
            write_plan(out, runs, opts)
    log(header)
    if preset.name == "smoke" or info.synthetic:
        log("note: this is a pipeline check (smoke preset or synthetic data); its accuracies mean nothing")
    progress = sys.stderr.isatty() if opts.progress is None else opts.progress
    held = _train_all(opts, runs, splits, info, device, dist, out, progress, log)
    if held:
        log(f"{len(held)} run(s) are being trained by another process: {', '.join(held)}; "
            "run the same command again later to collect them")
    if opts.report and dist.is_main:
        from reports import build_report

        log(f"report: {build_report(out)}")
    return out


def choose_data_path(mode: str, splits, device, workers: int, log, dist=None, progress: bool = False
                     ) -> tuple | None:
    """The device-resident data path (images on the device, augmented there) or the CPU DataLoader (None).

    auto: on CUDA, the device path for data sets that take at most half the GPU's free memory (and, for image
    files decoded on the host first, of the available RAM), whether held in memory (Fashion-MNIST, CIFAR,
    synthetic) or image files (Imagenette, Tiny-ImageNet, folder:), which are then decoded once; on CPU the
    DataLoader, which is faster there (docs/bench-cpu.md). Under DDP rank 0 decides and every process holds the
    whole set on its own device, taking its share of each batch. loader: always the DataLoader; device: the
    device path, whatever its size (on CPU too)."""
    from runner.device_data import DeviceDataset
    from runner.dist import SINGLE, broadcast

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
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        if nbytes > free / 2:
            return "free GPU memory"
        if not host:
            return None
    ram = _available_ram()
    return "available RAM" if ram is not None and nbytes > ram / 2 else None


def _available_ram() -> int | None:
    """MemAvailable from /proc/meminfo in bytes (Linux); None elsewhere."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def default_workers(device) -> int:
    """DataLoader processes: up to 8 feeding a GPU; none on CPU, where they would take cores from training."""
    return min(8, os.cpu_count() or 1) if device.type == "cuda" else 0


def _silent(_: str) -> None:
    """The log of ranks other than 0."""


def write_plan(out: Path, runs: list[PlannedRun], opts: RunOptions) -> None:
    store.write_plan(out, schema.Plan(
        steps=list(dict.fromkeys(r.spec for r in runs)), seeds=seeds_of(opts), dataset=opts.dataset,
        regime=opts.regime, img_size=runs[0].budget.img_size, preset=runs[0].budget.preset,
        command=opts.command, created=_now(),
        orders=[_order_record(steps, get_regime(opts.regime)) for steps in opts.orders],
        runs=[schema.PlanEntry(step=r.spec, seed=r.seed, dir=r.run_id) for r in runs],
    ))


def _order_record(order: list[str], regime: Roadmap) -> schema.OrderRecord:
    """plan.json's record of one step order: the steps added, in order, and the spec of each node (the first
    node is the starting model, which adds no step)."""
    return schema.OrderRecord(steps=order_steps(order, regime), specs=order_specs(order, regime))


def _train_all(opts, runs, splits, info, device, dist, out: Path, progress: bool, log) -> list[str]:
    from contextlib import ExitStack

    from tqdm.auto import tqdm

    from runner.dist import barrier, broadcast
    from runner.train import Job, train

    workers = opts.workers if opts.workers is not None else default_workers(device)
    device_data = choose_data_path(opts.data_path, splits, device, workers, log, dist, progress)
    held = []
    bar = tqdm(runs, desc="roadmap", unit="run", disable=not (progress and dist.is_main), file=sys.stderr,
               dynamic_ncols=True)
    for r in bar:
        rd = RunDir(out / r.run_id)
        label = f"{r.spec} (seed {r.seed})"
        bar.set_postfix_str(label, refresh=True)
        with ExitStack() as stack:
            decision = "train"
            if dist.is_main:  # rank 0 decides, under the run's lock, and every rank follows
                if rd.done:
                    decision = "done"
                elif not stack.enter_context(rd.lock()):
                    decision = "held"
                elif rd.done:  # finished by another process between our check and the lock
                    decision = "done"
                elif not rd.config.exists():
                    rd.write_config(config_for(r, info, str(device), opts, dist.world))
            decision = broadcast(dist, decision)
            if decision == "done":
                if dist.is_main and not rd.config.exists():  # lost; the same (the directory is its hash)
                    rd.write_config(config_for(r, info, str(device), opts, dist.world))
                    log(f"{label}: config.json was missing; written again")
                log(_reused(rd, label))
                continue
            if decision == "held":
                held.append(label)
                log(f"{label}: another process is training it; skipped")
                continue
            barrier(dist)
            job = Job(run_dir=rd, design=r.design, budget=r.budget, seed=r.seed, num_classes=info.num_classes,
                      class_names=tuple(info.classes), train_set=splits.train, val_set=splits.val, device=device,
                      workers=workers, compile=opts.compile, progress=progress, log=log, label=label, dist=dist,
                      init_from=opts.init_from, tracker=opts.tracker, device_data=device_data, model_name=r.model,
                      micro_batch=opts.micro_batch)
            result = train(job)
            status = result["status"] if result["status"] != "diverged" else \
                f"diverged at epoch {result['diverged']['epoch']}"
            log(f"{label}: {status}, val top-1 {result['val_top1']}, {result['wall_seconds']:.1f} s")
    return held


def _reused(rd: RunDir, label: str) -> str:
    """What to say of a finished run, which is never trained again (not even when its result.json is damaged:
    that is left for the user to look at)."""
    try:
        return f"{label}: done earlier, reused ({rd.read_result().val_top1} top-1)"
    except RoadmapError as e:
        return f"warning: {label}: {e}; kept as it is, not retrained"


def _micro_columns(record: dict[str, Any]) -> dict[str, Any]:
    """The dry run's micro-batch columns of one step ("auto" until the run measures the GPU)."""
    return {"micro-batch": record["micro_batch"] or "auto", "accum steps": record["accumulation_steps"] or "auto"}


def _print_plan(runs: list[PlannedRun], out: Path, info, header: str, regime: Roadmap, log,
                micro: int | str | None, world: int, device) -> None:
    import pandas as pd

    rows = []
    for r in runs:
        c = complexity_of(r, info.num_classes, regime)
        images = r.budget.epochs * (min(info.train_size, r.budget.train_batches * r.budget.batch_size)
                                    if r.budget.train_batches else info.train_size)
        rows.append({
            "step": r.spec, "seed": r.seed, "GFLOPs@224 (full size)": round(c.gflops_224, 3),
            "params (M, as trained)": round(c.params / 1e6, 3),
            f"GFLOPs@{r.budget.img_size} (as trained)": round(c.gflops_run, 4),
            "epochs": r.budget.epochs, "batch": r.budget.batch_size,
            **(_micro_columns(micro_batch_record(r, info.train_size, micro, world)) if micro is not None else {}),
            "lr": f"{r.budget.lr:.3g}",
            "train PFLOPs": round(3 * c.gflops_run * images / 1e6, 3),  # forward + backward ~ 3x forward
            "status": status_of(RunDir(out / r.run_id)),
        })
    log(header)
    log(pd.DataFrame(rows).to_string(index=False))
    total = sum(row["train PFLOPs"] for row in rows)
    log(f"estimated training compute: {total:.3f} PFLOPs (3 x forward GFLOPs x images x epochs); out: {out}")
    for rule in dict.fromkeys(r.budget.epochs_rule for r in runs):
        log(f"budget: {rule}")
    for line in dict.fromkeys(batch_line(r, info.train_size, micro, world, device) for r in runs):
        log(line)


def command_line(argv: list[str]) -> str:
    return "roadmap " + " ".join(shlex.quote(a) for a in argv)
