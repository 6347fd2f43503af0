"""Gradient accumulation (`--micro-batch N|auto`, issue 12): the global batch is reached in micro-batches, the lr
follows the global batch, the dry run shows how, config.json records it, run identities do not change."""

import json
from pathlib import Path

import pytest

# a LayerNorm model, no stochastic depth, no mixing, no augmentation: micro-batches compute the batch's gradient
EXACT = ["--dataset", "synthetic:train=256,val=64", "--preset", "smoke", "--steps", "convnext_tiny", "--epochs", "2",
         "--train-batches", "4", "--val-batches", "2", "--batch-size", "16", "--set", "train_augment=false",
         "--set", "mixup=0", "--set", "cutmix=0", "--set", "random_erasing=0", "--set", "drop_path_rate=0",
         "--quiet", "--no-report"]


def run_dir(out: Path) -> Path:
    (d,) = [d for d in out.iterdir() if d.is_dir()]
    return d


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir(out) / "metrics.jsonl").read_text().splitlines()]


def test_accumulation_gives_the_whole_batchs_losses(tmp_path, cli):
    code, _, err = cli("run", *EXACT, "--out", str(tmp_path / "whole"))
    assert code == 0, err
    code, _, err = cli("run", *EXACT, "--micro-batch", "4", "--out", str(tmp_path / "micro"))
    assert code == 0, err
    assert run_dir(tmp_path / "whole").name == run_dir(tmp_path / "micro").name  # the same run identity
    whole, micro = metrics(tmp_path / "whole"), metrics(tmp_path / "micro")
    assert len(whole) == len(micro) == 2
    for a, b in zip(whole, micro, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)  # summation order differs, nothing else
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4)
        assert b["lr"] == a["lr"]  # the lr follows the global batch
        assert (b["train_top1"], b["val_top1"]) == (a["train_top1"], a["val_top1"])
    config = json.loads((run_dir(tmp_path / "micro") / "config.json").read_text())
    assert config["micro_batch"] == {"requested": 4, "batch": 16, "processes": 1, "per_process": 16,
                                     "micro_batch": 4, "accumulation_steps": 4}
    assert "micro_batch" not in json.loads((run_dir(tmp_path / "whole") / "config.json").read_text())


def test_batchnorm_models_see_micro_batch_statistics(tmp_path, cli):
    """What accumulation does not reproduce, as in the official code: BatchNorm normalizes each micro-batch by its
    own statistics (and this shows the micro-batches are really used)."""
    bn = [a if a != "convnext_tiny" else "stage_ratio" for a in EXACT] + ["--epochs", "1"]
    code, _, err = cli("run", *bn, "--out", str(tmp_path / "whole"))
    assert code == 0, err
    code, _, err = cli("run", *bn, "--micro-batch", "4", "--out", str(tmp_path / "micro"))
    assert code == 0, err
    (a,), (b,) = metrics(tmp_path / "whole"), metrics(tmp_path / "micro")
    assert b["train_loss"] != pytest.approx(a["train_loss"], rel=1e-4)


def test_micro_batch_auto_on_cpu_takes_the_whole_batch_and_says_so(tmp_path, cli):
    code, text, err = cli("run", *EXACT, "--epochs", "1", "--micro-batch", "auto", "--out", str(tmp_path / "o"))
    assert code == 0, err
    assert "--micro-batch auto on cpu: the whole batch (16) per step" in text
    config = json.loads((run_dir(tmp_path / "o") / "config.json").read_text())
    assert config["micro_batch"]["micro_batch"] == 16 and config["micro_batch"]["accumulation_steps"] == 1


def test_the_paper_presets_dry_run_shows_how_batch_4096_is_reached(tmp_path, cli):
    base = ["run", "--dataset", "synthetic:train=8192,val=64", "--preset", "paper", "--steps",
            "resnet50,convnext_tiny", "--dry-run", "--out", str(tmp_path / "o")]
    code, text, err = cli(*base)
    assert code == 0, err
    assert "batch 4096 per optimizer step: 4096 images in one forward/backward" in text
    assert "--micro-batch N|auto" in text
    code, text, err = cli(*base, "--micro-batch", "128")
    assert code == 0, err
    assert "batch 4096 per optimizer step = 32 accumulation step(s) x micro-batch 128" in text
    assert "batch 256 per optimizer step = 2 accumulation step(s) x micro-batch 128" in text  # the ResNet recipe
    assert "micro-batch" in text and "accum steps" in text  # the table's columns
    code, text, err = cli(*base, "--micro-batch", "auto")
    assert code == 0, err
    assert "micro-batch auto" in text


@pytest.mark.parametrize(("value", "message"), [("3", "does not divide the per-process batch 16"),
                                                ("0", "must be positive"), ("big", "expected a whole number")])
def test_a_bad_micro_batch_is_one_line_and_exit_2(tmp_path, cli, value, message):
    code, _, err = cli("run", *EXACT, "--micro-batch", value, "--dry-run", "--out", str(tmp_path / "o"))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_an_odd_micro_batch_with_mixing_is_refused(tmp_path, cli):
    code, _, err = cli("run", "--dataset", "synthetic:train=256,val=64", "--preset", "smoke", "--steps",
                       "convnext_tiny", "--batch-size", "6", "--micro-batch", "3", "--dry-run")
    assert code == 2 and "even micro-batch" in err


def test_a_micro_batch_larger_than_the_batch_takes_the_whole_batch(tmp_path, cli):
    code, text, err = cli("run", *EXACT, "--epochs", "1", "--micro-batch", "64", "--out", str(tmp_path / "o"))
    assert code == 0, err
    config = json.loads((run_dir(tmp_path / "o") / "config.json").read_text())
    assert config["micro_batch"]["micro_batch"] == 16 and config["micro_batch"]["accumulation_steps"] == 1


def test_the_batch_plan_is_computed_once_with_its_record():
    """One `BatchPlan` per run: the global batch (at most the training set, even when mixing), its split over the
    processes, the micro-batch and the accumulation steps; config.json's record is derived from it."""
    from roadmap.errors import RoadmapError
    from runner.planning.batching import BatchPlan

    plan = BatchPlan.decide(64, 1000, True, 2, 8)
    numbers = (plan.batch, plan.processes, plan.per_process, plan.micro_batch, plan.accumulation_steps)
    assert numbers == (64, 2, 32, 8, 4)
    assert plan.split == 8 and plan.resolved
    assert plan.record() == {"requested": 8, "batch": 64, "processes": 2, "per_process": 32, "micro_batch": 8,
                             "accumulation_steps": 4}
    whole = BatchPlan.decide(64, 1000, True, 2)
    assert whole.split is None and whole.accumulation_steps == 1 and whole.record() is None
    assert BatchPlan.decide(64, 1000, False, 1, 128).micro_batch == 64  # larger than the batch: the whole batch
    auto = BatchPlan.decide(64, 1000, False, 1, "auto")
    assert not auto.resolved and auto.record()["micro_batch"] is None and auto.accumulation_steps is None
    resolved = auto.with_micro_batch(16)
    assert resolved.record() == {"requested": "auto", "batch": 64, "processes": 1, "per_process": 64,
                                 "micro_batch": 16, "accumulation_steps": 4}
    assert type(resolved).from_record(resolved.record()) == resolved
    with pytest.raises(RoadmapError, match="does not divide"):
        BatchPlan.decide(64, 1000, False, 1, 24)


def _auto_as(micro: int, monkeypatch, calls: list):
    """--micro-batch auto resolved to `micro` as if measured on a GPU; `calls` counts the measurements."""
    import runner.fitting.training_run as training_run

    def measured(model, plan, *_):
        if plan.resolved:
            return plan
        calls.append(plan)
        return plan.with_micro_batch(micro)

    monkeypatch.setattr(training_run, "micro_batch_for", measured)


def test_auto_is_resolved_before_config_json_is_written_once(tmp_path, cli, monkeypatch):
    """"auto" is decided once, before config.json is written, which is never rewritten; the run trains with it (its
    losses are the whole batch's, as with --micro-batch 4); a run that starts again keeps the recorded choice."""
    from runner.store import RunDir

    writes, calls = [], []
    real = RunDir.write_config
    monkeypatch.setattr(RunDir, "write_config", lambda self, c: (writes.append(c.micro_batch), real(self, c))[1])
    _auto_as(4, monkeypatch, calls)
    code, _, err = cli("run", *EXACT, "--micro-batch", "auto", "--out", str(tmp_path / "o"))
    assert code == 0, err
    assert writes == [{"requested": "auto", "batch": 16, "processes": 1, "per_process": 16, "micro_batch": 4,
                       "accumulation_steps": 4}] and len(calls) == 1
    code, _, err = cli("run", *EXACT, "--micro-batch", "4", "--out", str(tmp_path / "micro"))
    assert code == 0, err
    for a, b in zip(metrics(tmp_path / "micro"), metrics(tmp_path / "o"), strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-6)
    (run_dir(tmp_path / "o") / "result.json").unlink()  # not finished: trained again, its config.json kept
    writes.clear()
    _auto_as(8, monkeypatch, calls)
    code, _, err = cli("run", *EXACT, "--micro-batch", "auto", "--out", str(tmp_path / "o"))
    assert code == 0, err
    assert writes == [] and len(calls) == 1  # no new measurement, no rewrite
    assert json.loads((run_dir(tmp_path / "o") / "config.json").read_text())["micro_batch"]["micro_batch"] == 4
