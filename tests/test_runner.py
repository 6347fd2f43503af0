"""The runner end to end on small data: plans, records, resume after SIGKILL, locks, divergence, bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from runner.planning.budget import get_preset, make_budget
from runner.planning.selection import select_steps
from runner.store import RunDir
from steps import ROADMAP, STEPS

SMALL = ["--dataset", "synthetic:train=256,val=64", "--preset", "smoke", "--quiet", "--no-report"]




def results(out: Path) -> dict[str, dict]:
    return {json.loads((d / "config.json").read_text())["step"]: json.loads((d / "result.json").read_text())
            for d in out.iterdir() if (d / "result.json").exists()}


def test_select_steps():
    assert select_steps("patchify_stem", None, True) == ["resnet50", "training_recipe", "stage_ratio",
                                                         "patchify_stem"]
    upto_kernel = select_steps("large_kernel", None, True)
    assert upto_kernel[-5:] == ["move_up_dwconv", "kernel_5", "large_kernel", "kernel_9", "kernel_11"]
    assert "kernel_5" not in select_steps("large_kernel", None, False)
    from steps.catalog import RESNET50_REGIME, alternative_to

    main = {s.name for s in RESNET50_REGIME.main_path}  # the main path and each branch whose alternative is on it
    on_path = [s for s in ROADMAP
               if s.name in main or ((alt := alternative_to(RESNET50_REGIME, s)) is not None and alt.name in main)]
    everything = select_steps(None, None, True)
    assert len(everything) == len(on_path)
    assert set(everything) == {s.name for s in ROADMAP if s.in_paper}  # by default: the paper's Figure 2 models
    assert select_steps("kernel_9", None, False)[-2:] == ["move_up_dwconv", "kernel_9"]
    assert select_steps(None, ["micro_design", "convnext_tiny-gelu"], True) == [
        "separate_downsampling", "separate_downsampling-gelu"]


def test_branches_come_with_the_step_they_stand_beside():
    """The branch rule is the catalog's data, not a name in the runner: a branch trains with `--upto` once the
    main-path step after its `branch_of` (its alternative) is on the path; a branch of the last step has none and
    trains when named."""
    import dataclasses

    from steps.catalog import RESNET50_REGIME, Roadmap, alternative_to, steps_upto

    r = RESNET50_REGIME
    assert alternative_to(r, STEPS["kernel_5"]).name == "large_kernel" and alternative_to(r, STEPS["gelu"]) is None
    assert "kernel_5" not in steps_upto(r, "move_up_dwconv") and "kernel_5" in steps_upto(r, "large_kernel")
    early = dataclasses.replace(STEPS["gelu"], name="early_gelu", branch_of="training_recipe")
    late = dataclasses.replace(STEPS["gelu"], name="late_gelu", branch_of="separate_downsampling")
    regime = Roadmap("test", (*r.steps, early, late), r.start, {})
    assert "early_gelu" not in steps_upto(regime, "training_recipe")
    assert "early_gelu" in steps_upto(regime, "stage_ratio") and "late_gelu" not in steps_upto(regime)
    assert select_steps(None, ["late_gelu"], True, regime) == ["late_gelu"]


def test_budget_rules():
    from roadmap.design import RESNET50
    from roadmap.recipe import MODERN_RECIPE

    quick = get_preset("quick")
    modern = make_budget(MODERN_RECIPE, quick, 32, epochs=30, batch_size=256)
    assert modern.epochs == 30 and modern.warmup_epochs == pytest.approx(2.0) and modern.lr == pytest.approx(2.5e-4)
    original = make_budget(RESNET50.recipe, quick, 32, epochs=30, batch_size=256)
    assert original.epochs == 9 and "90:300" in original.epochs_rule and original.lr == pytest.approx(0.1)
    same = make_budget(RESNET50.recipe, quick, 32, epochs=30, same_epochs=True)
    assert same.epochs == 30
    paper = make_budget(MODERN_RECIPE, get_preset("paper"), 224)
    assert (paper.epochs, paper.batch_size, paper.lr) == (300, 4096, 4e-3)


def test_smoke_run_writes_the_records_and_reuses_them(tmp_path, cli):
    out = tmp_path / "out"
    code, _, err = cli("run", *SMALL, "--steps", "resnet50,convnext_tiny", "--epochs", "2",
                       "--train-batches", "4", "--val-batches", "2", "--seeds", "2", "--out", str(out))
    assert code == 0, err
    dirs = sorted(d for d in out.iterdir() if d.is_dir())
    assert len(dirs) == 4
    for d in dirs:
        config = json.loads((d / "config.json").read_text())
        assert config["run_id"] == d.name and config["code_version"] and config["packages"]["torch"]
        assert config["design"]["net"]["width_mult"] == 0.125
        result = json.loads((d / "result.json").read_text())
        rows = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in rows] == list(range(1, len(rows) + 1)) and result["epochs"] == len(rows)
        assert {"train_loss", "train_top1", "val_top1", "val_top5", "lr", "images_per_s", "seconds"} <= set(rows[0])
        assert result["status"] == "done" and len(result["per_class"]) == 10
        assert (d / "model.pt").exists() and not (d / "checkpoint.pt").exists()
    plan = json.loads((out / "plan.json").read_text())
    assert plan["steps"] == ["resnet50", "separate_downsampling"] and len(plan["runs"]) == 4
    before = {d.name: (d / "result.json").stat().st_mtime_ns for d in dirs}
    code, out_text, _ = cli("run", *SMALL, "--steps", "resnet50,convnext_tiny", "--epochs", "2",
                            "--train-batches", "4", "--val-batches", "2", "--seeds", "2", "--out", str(out))
    assert code == 0 and out_text.count("reused") == 4
    assert before == {d.name: (d / "result.json").stat().st_mtime_ns for d in dirs}
    code, text, _ = cli("results", str(out), "--format", "json")
    assert code == 0 and len(json.loads(text)) == 2


def test_dry_run_prints_the_plan_and_trains_nothing(tmp_path, cli):
    code, out, _ = cli("run", *SMALL, "--upto", "large_kernel", "--dry-run", "--out", str(tmp_path / "o"))
    assert code == 0
    assert "kernel_11" in out and "GFLOPs@224" in out and "to do" in out and "PFLOPs" in out
    assert not (tmp_path / "o").exists()


def test_a_diverging_step_is_marked_and_the_run_goes_on(tmp_path, cli):
    out = tmp_path / "out"
    code, text, err = cli("run", *SMALL, "--steps", "training_recipe,resnet50", "--epochs", "2",
                          "--train-batches", "3", "--val-batches", "1", "--set", "recipe.lr=1e12", "--out", str(out))
    assert code == 0, err
    res = results(out)
    assert res["training_recipe"]["status"] == "diverged"
    assert res["training_recipe"]["diverged"]["epoch"] == 1
    assert "resnet50" in res  # the next step still ran


def test_a_held_run_is_skipped_not_corrupted(tmp_path, cli):
    out = tmp_path / "out"
    args = ["run", *SMALL, "--steps", "resnet50,gelu", "--epochs", "1", "--train-batches", "2", "--val-batches", "1",
            "--out", str(out)]
    cli(*args, "--dry-run")
    from runner.planning.options import RunOptions, Selection, Training
    from runner.planning.runs import plan

    opts = RunOptions(Selection(dataset="synthetic:train=256,val=64", steps=("resnet50", "gelu")),
                      Training(preset="smoke", epochs=1, train_batches=2, val_batches=1))
    runs = plan(opts, "synthetic:train=256,val=64", 32, 10, 256)
    held = RunDir(out / runs[0].run_id)
    with held.lock() as mine:
        assert mine
        code, text, _ = cli(*args)
        assert code == 0 and "another process is training it" in text
        assert not held.result.exists()
    assert "gelu" in results(out)
    code, text, _ = cli(*args)
    assert set(results(out)) == {"resnet50", "gelu"}


@pytest.mark.slow
def test_sigkill_at_a_random_moment_then_resume_gives_the_same_result(tmp_path):
    """Kill a run with SIGKILL mid-training, start it again: same numbers as an uninterrupted run, and no
    finished step is trained twice."""
    args = [sys.executable, "-m", "roadmap", "run", "--dataset", "synthetic:train=256,val=64", "--preset", "smoke",
            "--steps", "resnet50,training_recipe,gelu", "--epochs", "4", "--train-batches", "6", "--val-batches", "2",
            "--quiet", "--no-report"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    subprocess.run([*args, "--out", str(ref)], check=True, env=env, capture_output=True)

    proc = subprocess.Popen([*args, "--out", str(killed)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    seen = []
    for line in proc.stdout:  # kill inside the second step, after one of its epochs was recorded
        seen.append(line)
        if line.startswith("training_recipe (seed 0): epoch 2/4"):
            time.sleep(0.3)
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    assert len(results(killed)) == 1  # resnet50 finished before the kill

    again = subprocess.run([*args, "--out", str(killed)], env=env, capture_output=True, text=True, check=True)
    assert "resnet50 (seed 0): done earlier, reused" in again.stdout
    assert "training_recipe (seed 0): resuming after epoch" in again.stdout
    a, b = results(ref), results(killed)
    assert set(a) == set(b) == {"resnet50", "training_recipe", "gelu"}
    for step in a:
        for key in ("val_top1", "val_top5", "train_top1", "epochs", "per_class"):
            assert a[step][key] == b[step][key], (step, key)
    def losses(run: Path) -> list[tuple[float, float]]:
        return [(r["train_loss"], r["val_loss"]) for r in map(json.loads, run.read_text().splitlines())]

    for d in ref.iterdir():  # the per-epoch losses too, bit for bit
        if d.is_dir():
            assert losses(d / "metrics.jsonl") == losses(killed / d.name / "metrics.jsonl")


@pytest.mark.parametrize("argv, message", [
    (["--steps", "resnet50,larg_kernel"], "Did you mean 'large_kernel'"),
    (["--upto", "nope"], "unknown step"),
    (["--dataset", "imagenete"], "Did you mean 'imagenette'"),
    (["--preset", "fast"], "invalid choice"),
    (["--set", "kernal_size=5"], "Did you mean 'kernel_size'"),
    (["--set", "kernel_size=five"], "expects int"),
    (["--set", "kernel_size"], "key=value"),
    (["--epochs", "0"], "must be positive"),
    (["--batch-size", "-4"], "must be positive"),
    (["--img-size", "0"], "must be positive"),
    (["--device", "cuda"], "CUDA is not available"),
    (["--device", "tpu"], "unknown --device"),
    (["--dataset", "folder:/nonexistent/place"], "folder"),
    (["--upto", "gelu", "--steps", "gelu"], "not both"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, cli, argv, message):
    if argv[:2] == ["--device", "cuda"]:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    base = ["run", "--dataset", "synthetic:train=64,val=16", "--preset", "smoke", "--quiet", "--out",
            str(tmp_path / "o")]
    code, _, err = cli(*base, *argv)
    assert code == 2, err
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bad_data_directories(tmp_path, cli):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = cli("run", "--dataset", f"folder:{empty}", "--preset", "smoke", "--out", str(tmp_path / "o"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    bad = tmp_path / "bad"
    for split in ("train", "val"):
        for c in ("a", "b"):
            (bad / split / c).mkdir(parents=True)
            (bad / split / c / "x.jpg").write_bytes(b"not an image")
    code, _, err = cli("run", "--dataset", f"folder:{bad}", "--preset", "smoke", "--out", str(tmp_path / "o"))
    assert code == 2 and "x.jpg" in err and len(err.strip().splitlines()) == 1


def test_unwritable_out(tmp_path, cli):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a directory")
    code, _, err = cli("run", *SMALL, "--steps", "resnet50", "--out", str(blocker / "sub"))
    assert code == 2 and "cannot write to --out" in err


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["synthetic", "fashion-mnist"])
def test_smoke_preset_completes_the_whole_roadmap_and_learns(tmp_path, dataset):
    """The judged requirement: the whole roadmap (17 models) on two CPU cores in a few minutes, above chance."""
    if dataset == "fashion-mnist" and not Path("/usr/share/datasets/fashion-mnist").exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (scripts/setup.sh installs it as root)")
    out = tmp_path / dataset
    proc = subprocess.run([sys.executable, "-m", "roadmap", "run", "--preset", "smoke", "--dataset", dataset,
                           "--out", str(out), "--quiet"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = results(out)
    assert len(res) == 17 and all(r["status"] == "done" for r in res.values())
    top1 = [r["val_top1"] for r in res.values()]
    assert min(top1) > 15 and sum(top1) / len(top1) > 25, top1  # chance is 10 %
    assert (out / "report.md").read_text().splitlines()[0].lower().count("mean nothing") == 1


def test_device_data_path_trains_and_resumes_like_itself(tmp_path, cli):
    """The device-resident path (images as uint8 tensors, batched augmentation) on CPU tensors: it trains, says
    so, and is reproducible from its seed (the same run twice gives the same numbers)."""
    args = [*SMALL, "--steps", "convnext_tiny", "--epochs", "2", "--train-batches", "3", "--val-batches", "1",
            "--data-path", "device"]
    code, text, err = cli("run", *args, "--out", str(tmp_path / "a"))
    assert code == 0, err
    assert "data path: images held on cpu" in text
    cli("run", *args, "--out", str(tmp_path / "b"))
    a, b = results(tmp_path / "a")["separate_downsampling"], results(tmp_path / "b")["separate_downsampling"]
    for key in ("val_top1", "val_top5", "train_top1", "per_class", "status"):
        assert a[key] == b[key], key


def test_an_image_folder_takes_the_device_path_decoded_once(tmp_path, cli):
    """Image files of different sizes (like Imagenette's) are decoded once onto the device and trained from there."""
    folder = tmp_path / "imgs"
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("val", 4)):
        for c in ("a", "b"):
            (folder / split / c).mkdir(parents=True)
            for k in range(n):
                size = (int(rng.integers(30, 60)), int(rng.integers(30, 60)))
                Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / split / c / f"{k}.png")
    code, text, err = cli("run", "--dataset", f"folder:{folder}", "--preset", "smoke", "--steps", "convnext_tiny",
                          "--epochs", "1", "--train-batches", "2", "--batch-size", "8", "--quiet", "--no-report",
                          "--data-path", "device", "--out", str(tmp_path / "o"))
    assert code == 0, err
    assert "decoded once from 32 image files" in text
    assert json.loads(next((tmp_path / "o").glob("*/result.json")).read_text())["status"] == "done"


def test_throughput_and_train_accuracy_count_images_not_soft_target_entries(monkeypatch):
    """The device path yields (B, classes) soft targets under mixup: an epoch still counts B images per batch."""
    import types

    import torch

    from runner.fitting import loop as train_mod
    from runner.planning.batching import BatchPlan
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    batches = [(torch.randn(8, 3, 4, 4), torch.softmax(torch.randn(8, 10), 1)) for _ in range(5)]
    clock = iter([100.0, 101.0])  # the epoch's start and end: one second
    monkeypatch.setattr(train_mod.time, "perf_counter", lambda: next(clock))
    job = types.SimpleNamespace(design=types.SimpleNamespace(recipe=types.SimpleNamespace(grad_clip=None)),
                                device=torch.device("cpu"), dist=train_mod.SINGLE, progress=False, label="x",
                                budget=types.SimpleNamespace(epochs=1), precision=train_mod.Precision("fp32"))
    from timm.loss import SoftTargetCrossEntropy

    from runner.fitting.timm_parts import Targets

    sched = types.SimpleNamespace(step_update=lambda n: None)
    kit = types.SimpleNamespace(job=job, batch_plan=BatchPlan(None, 8, 1, 8, 8), forward_model=model, model=model,
                                opt=opt, sched=sched, mix=Targets(None, SoftTargetCrossEntropy()), ema=None, updates=0,
                                steps_per_epoch=5, scaler=torch.amp.GradScaler("cpu", enabled=False))
    stats, bad = train_mod.train_epoch(kit, batches, 0)
    assert stats["images_per_s"] == 40.0 and kit.updates == 5 and not bad
    assert 0.0 <= stats["train_top1"] <= 100.0


@pytest.mark.slow
def test_compiled_training_reports_its_compile_time_apart(tmp_path, cli):
    """torch.compile (inductor on CPU) with the device data path: the first step's compile time is recorded on its
    own, and the first epoch's images/s leaves it out."""
    out = tmp_path / "o"
    code, _, err = cli("run", "--dataset", "synthetic:train=64,val=16", "--preset", "smoke", "--steps", "convnext_tiny",
                       "--epochs", "2", "--train-batches", "3", "--val-batches", "1", "--batch-size", "8", "--compile",
                       "--data-path", "device", "--quiet", "--no-report", "--out", str(out))
    assert code == 0, err
    (run,) = [d for d in out.iterdir() if d.is_dir()]
    first, second = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert "compile_seconds" not in second
    assert first["compile_seconds"] > 5 * 8 / first["images_per_s"]  # the compiling step: far slower than the rest
    assert first["images_per_s"] > 5 * 24 / first["seconds"]  # not the compile-bound rate of the whole epoch
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "done" and result["compile_seconds"] == first["compile_seconds"]


def test_train_top1_under_mixing_counts_the_mixed_images_main_class(monkeypatch):
    """On the CPU loader path mixup/cutmix runs in the loop: an image that is mostly its partner counts as the
    partner's class (as on the device path), not as its own label, which read ~50 % too low under mixing."""
    import types

    import torch

    from runner.fitting import loop as train_mod
    from runner.fitting.timm_parts import Targets
    from runner.planning.batching import BatchPlan

    def swap(x, y):  # a "mix" with lambda = 0: every image becomes its partner's (timm pairs i with B-1-i)
        soft = torch.nn.functional.one_hot(y.flip(0), 10).float()
        return x.flip(0), soft

    class Oracle(torch.nn.Module):  # predicts the class written in the image
        def forward(self, x):
            return torch.nn.functional.one_hot(x[:, 0, 0, 0].long(), 10).float() * 10

    labels = torch.arange(8) % 10
    images = labels.float()[:, None, None, None].expand(8, 3, 4, 4).contiguous()
    model, w = Oracle(), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=0.0)
    job = types.SimpleNamespace(design=types.SimpleNamespace(recipe=types.SimpleNamespace(grad_clip=None)),
                                device=torch.device("cpu"), dist=train_mod.SINGLE, progress=False, label="x",
                                budget=types.SimpleNamespace(epochs=1), precision=train_mod.Precision("fp32"))
    sched = types.SimpleNamespace(step_update=lambda n: None)
    mix = Targets(types.SimpleNamespace(), lambda out, target: (out * 0).sum() + w.sum())
    monkeypatch.setattr(Targets, "__call__", lambda self, x, y: swap(x, y))
    kit = types.SimpleNamespace(job=job, batch_plan=BatchPlan(None, 8, 1, 8, 8), forward_model=model, model=model,
                                opt=opt, sched=sched, mix=mix, ema=None, updates=0, steps_per_epoch=3,
                                scaler=torch.amp.GradScaler("cpu", enabled=False))
    stats, _ = train_mod.train_epoch(kit, [(images, labels)] * 3, 0)
    assert stats["train_top1"] == 100.0  # the old count compared with the unmixed labels: 0 %
