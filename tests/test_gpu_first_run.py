"""The first GPU run succeeds on the first try (issue 20), checked on CPU: no host read-back in the training and
evaluation loops, the compiled augmentation on CUDA with its eager fallback, `--micro-batch auto`'s probe, the end of
a DDP run, and the benchmark's evaluation warm-up. Each test fails on the code before the fix."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _fresh_augmentations():
    """The runner keeps one GpuAugment per recipe (its compiled graph, or its failure to compile) for the process:
    every test here starts and ends without them."""
    import runner.fitting.training_run

    runner.fitting.training_run._augment.cache_clear()
    yield
    runner.fitting.training_run._augment.cache_clear()


def tiny_job(tmp_path: Path, spec: str, dataset: str = "synthetic:train=64,val=24,size=40", device=CPU,
             batch_size: int = 8, **job):
    """A smoke-preset Job on the device data path (held on `device`), as `roadmap run --data-path device` builds
    it (tests/test_cuda.py builds its own on CUDA)."""
    from runner.data import load_dataset
    from runner.devices import choose_data_path
    from runner.fitting.training_run import Job
    from runner.planning.options import RunOptions, Selection, Training
    from runner.planning.runs import plan
    from runner.store import RunDir

    splits = load_dataset(dataset)
    info = splits.info
    (r,) = plan(RunOptions(Selection(dataset=dataset, steps=(spec,)),
                           Training(preset="smoke", epochs=1, batch_size=batch_size)),
                "synthetic", info.native_size, info.num_classes, info.train_size)
    device_data = choose_data_path("device", splits, device, 0, lambda _: None)
    return Job(run_dir=RunDir(tmp_path / "r"), design=r.design, budget=r.budget, seed=0, num_classes=info.num_classes,
               class_names=tuple(info.classes), train_set=splits.train, val_set=splits.val, device=device,
               progress=False, device_data=device_data, **{"log": lambda _: None, **job})


def _ours(depth: int = 2) -> bool:
    """Whether the caller `depth` frames up is this project's code (runner, roadmap, steps), not torch's or timm's."""
    name = sys._getframe(depth + 1).f_globals.get("__name__", "")
    return name.split(".")[0] in ("runner", "roadmap", "steps")


# -------------------------------------------------------------------------------- no host read-back in the loops


@pytest.mark.parametrize("spec", ["resnet50", "convnext_tiny"])  # pad-and-crop (32 px) + BN; RandAugment + mixing
def test_the_loops_read_nothing_back_but_through_one_counted_function(tmp_path, monkeypatch, spec):
    """Every value the training and evaluation loops read back goes through `loop._to_host` (on CUDA: at the epoch's
    end, and a pinned copy made a check earlier); our code in the loops calls no `.item()`, `.cpu()`, `.tolist()`,
    `.numpy()`, `bool()`/`float()`/`int()` of a tensor, `nonzero`, and builds no tensor from host data
    (`torch.tensor(..., device=...)`: a copy from pageable memory, which waits on CUDA)."""
    import runner.fitting.loop as loop
    from runner.fitting.training_run import loaders, prepare

    job = tiny_job(tmp_path, spec)
    t = prepare(job)
    train_loader, val_loader = loaders(job, t.batch_plan, 0)
    cpu, tolist = torch.Tensor.cpu, torch.Tensor.tolist
    reads = []

    def counted(x):
        reads.append(x.numel())
        return tolist(cpu(x.detach().double().flatten()))

    monkeypatch.setattr(loop, "_to_host", counted, raising=False)
    for name in ("item", "cpu", "tolist", "numpy", "nonzero", "__bool__", "__float__", "__int__"):
        original = getattr(torch.Tensor, name)

        def guarded(self, *a, _name=name, _original=original, **k):
            if _ours():
                raise AssertionError(f"Tensor.{_name} in the loop: a host sync on CUDA")
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, guarded)
    real_tensor = torch.tensor

    def tensor(*a, **k):
        if _ours(1):
            raise AssertionError("torch.tensor from host data in the loop: a copy that waits on CUDA")
        return real_tensor(*a, **k)

    monkeypatch.setattr(torch, "tensor", tensor)
    steps = 3
    stats, bad = loop.train_epoch(t, train_loader, 0, steps=steps)
    assert t.updates == steps and not bad and stats["images_per_s"] > 0
    assert len(reads) == steps + 1  # CPU: one check per step (CUDA: every 25th, lagged), and the epoch's sums
    reads.clear()
    result = loop.evaluate(t.eval_model, val_loader, job.num_classes, CPU, len(val_loader))
    assert len(reads) == 1 and sum(map(sum, result.confusion)) == 24


# -------------------------------------------------------------------------------- roadmap bench: warm-up, rows


def test_bench_warms_a_full_evaluation_pass_of_both_sides_before_timing_either(cli, monkeypatch):
    """The last evaluation batch is smaller: the first pass to meet it pays cuDNN's autotuning, whose cache both
    sides share. Both sides run a whole pass untimed before either is timed."""
    import runner.benchmarks.pipeline_speed as pb

    events = []
    real_eval, real_timed, real_ref = pb.evaluate, pb._timed_eval, pb._reference_eval

    def evaluate(model, loader, num_classes, dev, max_batches, *a, **k):
        events.append(("ours", "full" if max_batches >= len(loader) else "part"))
        return real_eval(model, loader, num_classes, dev, max_batches, *a, **k)

    def reference_eval(model, val, dev, *a):
        full_pass = real_ref(model, val, dev, *a)

        def logged(limit=None):
            events.append(("reference", "full" if limit is None or limit >= len(val) else "part"))
            return full_pass(limit)

        return logged

    monkeypatch.setattr(pb, "evaluate", evaluate)
    monkeypatch.setattr(pb, "_reference_eval", reference_eval)
    monkeypatch.setattr(pb, "_timed_eval", lambda fn, dev: events.append(("timed", "")) or real_timed(fn, dev))
    code, out, err = cli("bench", "--device", "cpu", "--dataset", "synthetic:train=48,val=40", "--preset", "smoke",
                         "--batch-size", "16", "--warmup", "1", "--iters", "1", "--workers", "0", "--steps",
                         "convnext_tiny", "--format", "json")  # evaluation batches of 32: 32 + 8 images
    assert code == 0, err
    first_timed = events.index(("timed", ""))
    assert ("ours", "full") in events[:first_timed] and ("reference", "full") in events[:first_timed]
    assert events.count(("timed", "")) == 2


def test_bench_prints_each_row_as_soon_as_it_is_measured(cli, capsys, monkeypatch):
    """A part of gpu-check cut short keeps the rows it measured: each Markdown row is printed (and flushed) when its
    step is done, before the next step starts."""
    import runner.benchmarks.pipeline_speed as pb

    chunks = []
    real = pb.measure_ours

    def measure_ours(job, *a, **k):
        chunks.append(capsys.readouterr().out)  # what was printed before this step started
        return real(job, *a, **k)

    monkeypatch.setattr(pb, "measure_ours", measure_ours)
    code, out, err = cli("bench", "--device", "cpu", "--dataset", "synthetic:train=32,val=16", "--preset", "smoke",
                         "--batch-size", "16", "--warmup", "1", "--iters", "1", "--workers", "0", "--steps",
                         "resnet50,convnext_tiny", "--no-reference", "--format", "markdown")
    assert code == 0, err
    assert len(chunks) == 2 and "| resnet50" in chunks[1] and "| step" in chunks[1]  # before the second step
    lines = [line for line in "".join(chunks + [out]).splitlines() if line.startswith("|")]
    assert len(lines) == 4 and "separate_downsampling" in lines[3] and "projected:" in out  # one table


# -------------------------------------------------------------------------------- --micro-batch auto, DDP's end


class _FakeGpu:
    """torch.cuda's memory accounting for `_fitting_micro_batch` on CPU: a model's forward of more than `fits`
    images fails as cuDNN does when its workspace cannot be allocated (a plain RuntimeError), and the first forward
    of each batch size adds the autotuner's trial workspaces to the peak."""

    def __init__(self, monkeypatch, fits: int):
        import contextlib

        self.fits, self.seen, self.peak = fits, set(), 0
        for name, fn in {"mem_get_info": lambda dev: (10**6, 10**6), "synchronize": lambda dev=None: None,
                         "memory_allocated": lambda dev=None: 0, "max_memory_allocated": lambda dev=None: self.peak,
                         "reset_peak_memory_stats": lambda dev=None: None, "empty_cache": lambda: None}.items():
            monkeypatch.setattr(torch.cuda, name, fn)
        monkeypatch.setattr(torch.random, "fork_rng", lambda **k: contextlib.nullcontext())

    def model(self):
        gpu = self

        class Model(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = torch.nn.Linear(3, 2)

            def forward(self, x):
                m = x.shape[0]
                if m > gpu.fits:
                    raise RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED")
                gpu.peak = 10**9 if m not in gpu.seen else 1000 * m  # autotuning's first pass, then the step's own
                gpu.seen.add(m)
                return self.fc(x.mean((2, 3)))

        return Model()


def test_micro_batch_auto_survives_cudnn_allocation_failures_and_measures_after_autotuning(tmp_path, monkeypatch):
    import warnings

    from runner.fitting.micro_batch import _fitting_micro_batch

    gpu = _FakeGpu(monkeypatch, fits=4)
    job = tiny_job(tmp_path, "convnext_tiny")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # autocast for "cuda" on a machine without one
        # 8 fails to allocate; 4 fits once warm
        assert _fitting_micro_batch(gpu.model(), 8, job.design.recipe, job.budget.img_size, job.device,
                                    job.precision) == 4


@pytest.mark.filterwarnings("ignore:CUDA is not available")
def test_micro_batch_auto_lets_other_errors_through(tmp_path, monkeypatch):
    from runner.fitting.micro_batch import _fitting_micro_batch

    gpu = _FakeGpu(monkeypatch, fits=8)
    model = gpu.model()
    model.forward = lambda x: (_ for _ in ()).throw(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    with pytest.raises(RuntimeError, match="shapes"):
        job = tiny_job(tmp_path, "convnext_tiny")
        _fitting_micro_batch(model, 8, job.design.recipe, job.budget.img_size, job.device, job.precision)


def test_a_run_leaves_its_process_group_at_the_end(tmp_path, cli, monkeypatch):
    import runner.dist as dist
    import runner.launchers.local as run

    ended = []
    monkeypatch.setattr(run, "finish", lambda d: ended.append(d), raising=False)
    code, _, err = cli("run", "--dataset", "synthetic:train=32,val=8", "--preset", "smoke", "--steps", "resnet50",
                       "--epochs", "1", "--train-batches", "1", "--val-batches", "1", "--batch-size", "8", "--quiet",
                       "--no-report", "--out", str(tmp_path / "o"))
    assert code == 0, err
    assert ended == [dist.SINGLE]
    calls = []  # and under DDP, `finish` destroys the group torchrun's processes joined
    monkeypatch.setattr(dist.torch_dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist.torch_dist, "destroy_process_group", lambda *a: calls.append(a), raising=False)
    dist.finish(dist.SINGLE)
    assert calls == []
    dist.finish(dist.Dist(1, 2, 1))
    assert calls == [()]


# -------------------------------------------------------------------------------- the compiled augmentation on CUDA


def test_cuda_runs_compile_the_augmentation_without_compile_for_the_model(tmp_path):
    from runner.fitting.training_run import compiles_augment

    job = tiny_job(tmp_path, "convnext_tiny")
    assert not compiles_augment(job)  # CPU without --compile: eager, as before
    assert compiles_augment(dataclasses.replace(job, compile=True))
    assert compiles_augment(dataclasses.replace(job, device=torch.device("cuda", 0)))  # whatever --compile says


def test_a_failing_compile_falls_back_to_the_eager_augmentation_with_one_warning(tmp_path, monkeypatch, capsys):
    from runner.device_data import DeviceLoader
    from runner.fitting.training_run import _augment

    def broken(fn, **kw):
        def call(*a, **k):
            raise RuntimeError("InductorError: no working C compiler found\nmore lines")
        return call

    monkeypatch.setattr(torch, "compile", broken)
    job = tiny_job(tmp_path, "convnext_tiny")
    augment = _augment(job.design.recipe, job.budget.img_size, job.num_classes, CPU)
    train, _ = job.device_data
    batches = list(DeviceLoader(train, 8, augment, shuffle=True, drop_last=True, seed=0, compiled=True))
    eager = list(DeviceLoader(train, 8, augment, shuffle=True, drop_last=True, seed=0, compiled=False))
    assert len(batches) == 8 and all(torch.equal(a[0], b[0]) for a, b in zip(batches, eager, strict=True))
    err = capsys.readouterr().err
    assert err.count("warning: the compiled augmentation failed") == 1 and "no working C compiler" in err
    assert "more lines" not in err and augment.compile_failed.startswith("RuntimeError")


def _config(out: Path) -> dict:
    (config,) = [json.loads((d / "config.json").read_text()) for d in out.iterdir() if d.is_dir()]
    return config


def test_config_records_which_augmentation_ran_and_cpu_records_keep_their_format(tmp_path, cli, monkeypatch):
    args = ["run", "--dataset", "synthetic:train=32,val=8,size=40", "--preset", "smoke", "--steps", "convnext_tiny",
            "--epochs", "1", "--train-batches", "1", "--val-batches", "1", "--batch-size", "8", "--quiet",
            "--no-report", "--data-path", "device"]
    code, _, err = cli(*args, "--out", str(tmp_path / "eager"))
    assert code == 0, err
    plain = _config(tmp_path / "eager")
    assert "augment" not in plain  # a CPU run without --compile writes what it wrote before
    monkeypatch.setattr(torch, "compile", lambda fn=None, **kw: fn)  # (eager stands in for inductor)
    code, text, err = cli(*args, "--compile", "--out", str(tmp_path / "compiled"))
    assert code == 0, err
    compiled = _config(tmp_path / "compiled")
    assert compiled["augment"] == "compiled" and "augmentation compiled" in text
    assert compiled["run_id"] == plain["run_id"] and compiled["identity"] == plain["identity"]

    def broken(fn=None, **kw):  # the model compiles; the augmentation (fullgraph) does not
        if not kw.get("fullgraph"):
            return fn
        return lambda *a, **k: (_ for _ in ()).throw(RuntimeError("Cannot find a working triton installation"))

    monkeypatch.setattr(torch, "compile", broken)
    __import__("runner.fitting.training_run", fromlist=["_augment"])._augment.cache_clear()
    code, _, err = cli(*args, "--compile", "--out", str(tmp_path / "fallback"))
    assert code == 0, err
    assert _config(tmp_path / "fallback")["augment"] == "eager"
    assert err.count("warning: the compiled augmentation failed") == 1


def test_bench_shows_the_augmentation_compiled_and_eager(cli, monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda fn=None, **kw: fn)  # (eager stands in for inductor)
    code, out, err = cli("bench", "--device", "cpu", "--dataset", "synthetic:train=96,val=16", "--preset", "smoke",
                         "--batch-size", "16", "--warmup", "1", "--iters", "1", "--workers", "0", "--steps",
                         "convnext_tiny", "--no-reference", "--data-path", "device", "--compile", "--format", "json")
    assert code == 0, err
    (row,) = json.loads(out[out.index("["):])
    assert row["augment ms/batch"] > 0 and row["eager augment ms/batch"] > 0


def test_a_compile_error_on_a_later_batch_shape_falls_back_too_and_a_runtime_error_does_not(tmp_path, monkeypatch,
                                                                                              capsys):
    """Every batch shape is a graph of its own (static shapes); across the runs of one process dynamo's recompile
    limit can be met on a later shape: that falls back to eager as well. An error of running is raised."""
    import torch._dynamo.exc as dynamo_exc

    from runner.fitting.training_run import _augment

    job = tiny_job(tmp_path, "convnext_tiny")
    x, y = job.device_data[0].images[:8], job.device_data[0].targets[:8]
    errors = iter([None, dynamo_exc.FailOnRecompileLimitHit("recompile_limit reached")])

    def compile_(fn, **kw):
        def call(*a, **k):
            error = next(errors)
            if error is not None:
                raise error
            return fn(*a, **k)
        return call

    monkeypatch.setattr(torch, "compile", compile_)
    augment = _augment(job.design.recipe, job.budget.img_size, job.num_classes, CPU)
    augment.run(x, y, None, compiled=True)
    out, _ = augment.run(x[:4], y[:4], None, compiled=True)  # a new shape: the limit, then eager
    assert out.shape[0] == 4 and augment.compile_failed.startswith("FailOnRecompileLimitHit")
    assert capsys.readouterr().err.count("warning: the compiled augmentation failed") == 1
    fresh = type(augment)(job.design.recipe, job.budget.img_size, job.num_classes, CPU)
    errors = iter([None, RuntimeError("CUDA error: an illegal memory access was encountered")])
    fresh.run(x, y, None, compiled=True)
    with pytest.raises(RuntimeError, match="illegal memory access"):
        fresh.run(x, y, None, compiled=True)


# -------------------------------------------------------------------------------- one evaluation graph when compiled


class _Batches(list):
    batch_size = 4


def test_a_compiled_model_evaluates_the_last_smaller_batch_without_a_second_graph():
    import torch._dynamo

    from runner.fitting.loop import evaluate

    torch._dynamo.reset()
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.Flatten(), torch.nn.Linear(16, 5)).eval()
    batches = _Batches((torch.randn(n, 3, 2, 2), torch.randint(0, 5, (n,))) for n in (4, 4, 3))
    expected = evaluate(model, batches, 5, CPU, 3)
    compiled = torch.compile(model, backend="eager")
    try:
        evaluate(compiled, batches[:1], 5, CPU, 1)  # the first graph
        torch._dynamo.config.error_on_recompile = True
        result = evaluate(compiled, batches, 5, CPU, 3)  # the 3-image batch must not compile another
    finally:
        torch._dynamo.config.error_on_recompile = False
        torch._dynamo.reset()
    assert result.confusion == expected.confusion and sum(map(sum, result.confusion)) == 11
    assert result.val_loss == pytest.approx(expected.val_loss, rel=1e-5)


def test_the_reference_loops_timed_steps_go_on_with_the_warm_pass(monkeypatch):
    """Restarting the DataLoader between the warm-up and the timed steps put the workers' refill into the timing."""
    import runner.benchmarks.pipeline_speed as pb

    passes = []

    class Loader(list):
        def __iter__(self):
            passes.append(1)
            return super().__iter__()

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mix = __import__("runner.fitting.timm_parts", fromlist=["Targets"]).Targets(None, torch.nn.functional.cross_entropy)
    steps = pb._reference_steps(model, opt, mix, Loader((torch.randn(2, 3, 2, 2), torch.tensor([0, 1]))
                                                       for _ in range(5)), CPU)
    steps(2)  # warm-up
    steps(3)  # timed: the same pass
    assert passes == [1]
    steps(2)  # past its end: a new pass
    assert passes == [1, 1]


def test_bench_lets_each_steps_model_go_before_the_next_is_measured(cli, monkeypatch):
    """Each model's GPU memory is its own: the evaluation pass kept for timing must not keep the previous step's
    model (and its gradients) alive while the next one is measured."""
    import gc
    import weakref

    import runner.benchmarks.pipeline_speed as pb

    models, alive = [], []
    real = pb.prepare

    def prepare(job):
        gc.collect()
        alive.append([ref() is not None for ref in models])
        t = real(job)
        models.append(weakref.ref(t.model))
        return t

    monkeypatch.setattr(pb, "prepare", prepare)
    code, _, err = cli("bench", "--device", "cpu", "--dataset", "synthetic:train=32,val=16", "--preset", "smoke",
                       "--batch-size", "16", "--warmup", "1", "--iters", "1", "--workers", "0", "--steps",
                       "resnet50,convnext_tiny", "--format", "json")
    assert code == 0, err
    assert alive == [[], [False]]


def test_on_cuda_the_divergence_check_reads_the_copy_made_a_check_earlier(monkeypatch):
    """CUDA's divergence check without a host sync (torch.cuda's event and pinned memory stood in for): a check
    queues a copy of its flag and loss and reads the previous check's, so a NaN is seen one check later; the
    epoch's last check reads its own values."""
    import runner.fitting.loop as loop
    from runner.dist import SINGLE

    class Event:
        def record(self):
            pass

        def synchronize(self):
            waits.append(1)

    waits, reads = [], []
    real_empty, real_read = torch.empty, loop._to_host
    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch, "empty", lambda *a, pin_memory=False, **k: real_empty(*a, **k))
    monkeypatch.setattr(loop, "_to_host", lambda t: reads.append(t.numel()) or real_read(t))
    sums = loop._Sums(CPU)
    sums.dev = torch.device("cuda", 0)
    sums.loss += 50.0
    assert not sums.diverged(SINGLE, 25) and reads == [] and waits == []  # nothing earlier to read
    sums.loss += float("nan")
    assert not sums.diverged(SINGLE, 50) and sums.mean_loss == 2.0  # the copy of step 25: finite, loss 50 / 25
    assert sums.diverged(SINGLE, 75) and len(waits) == 2  # the copy of step 50: NaN
    fresh = loop._Sums(CPU)
    fresh.dev = torch.device("cuda", 0)
    fresh.loss += float("inf")
    assert fresh.diverged(SINGLE, 10, final=True)  # the epoch's end reads its own values
