"""A preset's budget in optimizer steps (issue #34): a small training set trains more epochs to the preset's steps
(the original recipe its 90:300 share), the dry run shows the steps, the schedule follows them, an explicit
--epochs still means epochs, and the runs of a data set that fills the preset's batches keep their ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from roadmap.schema import PLAN, read_plan
from runner.planning.budget import get_preset, make_budget
from runner.planning.options import RunOptions, Selection, Training
from runner.planning.runs import plan
from steps import design_at

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "example-fashion-mnist"
FASHION = ("fashion-mnist", 28, 10, 60000)


def image_folder(root: Path, train: int, val: int = 10) -> Path:
    """A generated folder data set: `train` / `val` tiny PNGs in two classes."""
    for split, n in (("train", train), ("val", val)):
        for c, grey in (("dark", 40), ("light", 220)):
            (root / split / c).mkdir(parents=True)
            for i in range(n // 2):
                Image.new("L", (8, 8), grey + i % 7).save(root / split / c / f"{i}.png")
    return root


def planned_steps(out: str) -> dict[str, int]:
    """The dry run's table: each step's optimizer steps (the `steps` column, right-aligned under its name)."""
    lines = out.splitlines()
    (at,) = [i for i, line in enumerate(lines) if line.lstrip().startswith("step ") and " steps " in line]
    end = lines[at].index(" steps ") + len(" steps")
    steps = {}
    for line in lines[at + 1:]:
        if not line.startswith(" ") and not line.split()[0].isidentifier():
            break
        if len(line) < end or not line[:end].split()[-1].isdigit():
            break
        steps[line.split()[0]] = int(line[:end].split()[-1])
    return steps


def test_a_300_image_folder_plans_every_run_at_no_fewer_steps_than_fashion_mnist(cli, tmp_path):
    """The issue's check: `roadmap run --preset cpu --dry-run` on 300 training images, every step of the roadmap
    (the original recipe's share included), against the same preset on Fashion-MNIST."""
    folder = image_folder(tmp_path / "f300", 300)
    code, small, err = cli("run", "--dataset", f"folder:{folder}", "--preset", "cpu", "--seeds", "1", "--dry-run",
                           "--out", str(tmp_path / "o"))
    assert code == 0, err
    code, fashion, err = cli("run", "--dataset", "fashion-mnist", "--preset", "cpu", "--seeds", "1", "--dry-run",
                             "--out", str(tmp_path / "o"))
    assert code == 0, err
    on_small, on_fashion = planned_steps(small), planned_steps(fashion)
    assert len(on_small) == len(on_fashion) == 17
    assert on_fashion["resnet50"] == 600 and set(on_fashion.values()) == {600, 2000}  # 3 and 10 epochs of 200
    assert all(on_small[s] >= on_fashion[s] for s in on_fashion), (on_small, on_fashion)
    assert on_small["resnet50"] == 600 and on_small["separate_downsampling"] == 2000  # 150 and 500 epochs of 4
    assert "budget: 500 epochs of this training set's 4 batches = 2,000 optimizer steps" in small
    assert "budget: 10 epochs" in fashion.splitlines()  # as before: the set fills the preset's 200 batches


def test_the_examples_run_ids_do_not_change():
    """Fashion-MNIST fills the cpu preset's batches: its plan is the example's, run for run."""
    runs = plan(RunOptions(Selection(dataset="fashion-mnist"), Training(preset="cpu")), *FASHION)
    assert {r.run_id for r in runs} == {e.dir for e in read_plan(EXAMPLE / PLAN).runs}
    assert {r.budget.steps for r in runs} == {600, 2000} and {r.budget.epochs for r in runs} == {3, 10}


@pytest.mark.parametrize("train_size, epochs, original", [(60000, 10, 3), (1500, 87, 27), (300, 500, 150),
                                                         (64, 2000, 600), (12800, 10, 3), (12799, 11, 4)])
def test_a_smaller_set_trains_the_fewest_epochs_that_reach_the_steps(train_size, epochs, original):
    cpu = get_preset("cpu")
    modern = make_budget(design_at("convnext_tiny").recipe, cpu, 28, train_size=train_size)
    resnet = make_budget(design_at("resnet50").recipe, cpu, 28, train_size=train_size)
    assert (modern.epochs, resnet.epochs) == (epochs, original)
    per_epoch = min(200, train_size // 64)
    assert modern.steps == epochs * per_epoch >= 2000 > (epochs - 1) * per_epoch
    assert resnet.steps == original * per_epoch >= 600 > (original - 1) * per_epoch
    assert (modern.budget_epochs, modern.budget_batches, resnet.budget_epochs) == (10, 200, 3)
    assert modern.warmup_epochs == pytest.approx(20 / 300 * epochs)  # the warm-up keeps its share of the steps


def test_explicit_epochs_still_mean_epochs_and_train_batches_sets_the_budgets_batches():
    small = ("folder", 28, 2, 300)  # 4 batches of 64 an epoch
    what = Selection(steps=("resnet50", "convnext_tiny"), seeds=1)
    resnet, convnext = (r.budget for r in plan(RunOptions(what, Training(preset="cpu", epochs=4)), *small))
    assert (resnet.epochs, convnext.epochs) == (1, 4)  # 90:300 of 4, to whole epochs
    assert convnext.steps == 16 and convnext.budget_epochs is None
    every_batch = plan(RunOptions(what, Training(preset="cpu", train_batches=0)), *small)
    assert [r.budget.epochs for r in every_batch] == [3, 10]
    fewer = plan(RunOptions(what, Training(preset="cpu", train_batches=2)), *small)  # fills 2 batches: as before
    assert [(r.budget.epochs, r.budget.steps) for r in fewer] == [(3, 6), (10, 20)]
    more = plan(RunOptions(what, Training(preset="cpu", train_batches=10)), *small)
    assert [(r.budget.epochs, r.budget.steps) for r in more] == [(8, 32), (25, 100)]
    paper = plan(RunOptions(what, Training(preset="paper")), *small)
    assert [r.budget.epochs for r in paper] == [90, 300]  # the paper preset's budget is the paper's epochs
    quick = plan(RunOptions(what, Training(preset="quick")), "folder", 28, 2, 1437)  # 11 batches of 128
    assert [(r.budget.epochs, r.budget.steps) for r in quick] == [(35, 385), (117, 1287)]  # >= 6 and 20 x 64


def test_the_schedule_counts_the_planned_steps():
    """The runner's schedule runs over the stretched epochs: warm-up and cosine end at the planned steps, the step
    decay at a third and two thirds of them."""
    from runner.data import load_dataset
    from runner.fitting.training_run import Job, prepare
    from runner.store import RunDir

    splits = load_dataset("synthetic:train=100,val=8")  # 3 batches of 32 an epoch, against smoke's 40
    info = splits.info
    runs = plan(RunOptions(Selection(dataset="synthetic", steps=("resnet50", "convnext_tiny"), seeds=1),
                           Training(preset="smoke")), "synthetic", info.native_size, info.num_classes, info.train_size)
    for r in runs:
        job = Job(run_dir=RunDir(Path("unused")), design=r.design, budget=r.budget, seed=0,
                  num_classes=info.num_classes, class_names=tuple(info.classes), train_set=splits.train,
                  val_set=splits.val, device=torch.device("cpu"), progress=False, log=lambda _: None)
        run = prepare(job)
        assert run.steps_per_epoch == 3 and r.budget.steps == r.budget.epochs * 3
        sched = run.sched
        if r.spec == "resnet50":
            assert (r.budget.epochs, r.budget.steps) == (27, 81)  # 2 epochs of 40 = 80 steps
            assert sched.decay_t == 27  # x0.1 after a third of the 81 steps
        else:
            assert (r.budget.epochs, r.budget.steps) == (67, 201)  # 5 epochs of 40 = 200 steps
            assert sched.warmup_t + sched.t_initial == 201
            sched.step_update(201)
            assert run.opt.param_groups[0]["lr"] == pytest.approx(r.design.recipe.min_lr)


def test_a_stretched_run_records_its_steps_and_the_report_says_how(cli, tmp_path):
    """Trained end to end on 40 images (1 batch of 32 an epoch) with a budget of 2 batches an epoch: each run
    trains twice the preset's epochs, its last epoch ends the schedule, and the report shows the steps and rule."""
    out = tmp_path / "o"
    code, _, err = cli("run", "--dataset", "synthetic:train=40,val=8", "--preset", "smoke", "--steps",
                       "resnet50,convnext_tiny", "--train-batches", "2", "--val-batches", "1", "--quiet", "--out",
                       str(out))
    assert code == 0, err
    for run in (d for d in out.iterdir() if (d / "config.json").exists()):
        config = json.loads((run / "config.json").read_text())
        budget, lines = config["budget"], (run / "metrics.jsonl").read_text().splitlines()
        resnet = config["step"] == "resnet50"
        assert (budget["epochs"], budget["steps"], budget["budget_epochs"]) == ((4, 4, 2) if resnet else (10, 10, 5))
        assert "steps" not in config["identity"]["budget"] and len(lines) == budget["epochs"]
        if not resnet:  # the cosine ends at min_lr at the last planned step (the step decay: the unit test above)
            assert json.loads(lines[-1])["lr"] == pytest.approx(config["design"]["recipe"]["min_lr"])
    report = (out / "report.md").read_text()
    (steps,) = [line for line in report.splitlines() if line.startswith("- **Optimizer steps**: ")]
    assert steps.startswith("- **Optimizer steps**: 4; separate_downsampling: 10 (the budget in optimizer steps")
    assert "reached on this training set's fewer batches an epoch by more epochs" in steps
    assert "`resnet50`: 4 epochs of this training set's 1 batch = 4 optimizer steps" in report
    assert "has a budget of 2 epochs against 5 for the modern recipe, of 2 batches each" in report
    assert "→ kept (to whole epochs: 5 × 90/300 → 2)." in report
