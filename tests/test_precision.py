"""--precision (issue 32): chosen by the hardware (bf16 from compute capability 8.0, fp16 with loss scaling below it,
fp32 on the CPU and on mps), recorded and part of a run's identity where it differs from what the device trained in
before; fp16's loss scaler in the loop (skipped steps counted, an overflow told from a divergence, unscaled before
clipping, the same scale for every micro-batch of a step), in the checkpoint (a resumed run repeats exactly) and in
the benchmarks. fp16 autocast and the scaler run on CPU tensors, so these are the CUDA path's twins."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from test_gpu_first_run import tiny_job

from roadmap.errors import RoadmapError
from runner.precision import MIN_LOSS_SCALE, Precision, choose_precision, identity_entry, legacy

CPU = torch.device("cpu")
CUDA = torch.device("cuda", 0)
FP16 = Precision("fp16")

# ------------------------------------------------------------------------------------------------ the rule


@pytest.mark.parametrize("capability, auto", [((6, 0), "fp16"), ((7, 0), "fp16"), ((7, 5), "fp16"),
                                              ((8, 0), "bf16"), ((8, 9), "bf16"), ((9, 0), "bf16")])
def test_auto_follows_the_gpus_compute_capability(monkeypatch, capability, auto):
    """P100 (6.0), V100 (7.0), T4 / RTX 20xx (7.5): fp16 with loss scaling; A100 (8.0), RTX 40xx / L4 (8.9),
    H100 (9.0): bf16. `is_bf16_supported()` is not asked: it answers True on 7.5 too (emulation)."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    chosen = choose_precision("auto", CUDA)
    assert chosen.name == auto and f"{capability[0]}.{capability[1]}" in chosen.reason
    assert chosen.scales_loss == (auto == "fp16")
    for forced in ("fp16", "fp32"):
        assert choose_precision(forced, CUDA).name == forced
    if auto == "fp16":
        with pytest.raises(RoadmapError, match="no bf16 hardware.*--precision fp16 or auto"):
            choose_precision("bf16", CUDA)
    else:
        assert choose_precision("bf16", CUDA).name == "bf16"


def test_the_cpu_and_mps_train_in_fp32_unless_asked():
    assert choose_precision("auto", CPU).name == "fp32" and "CPU" in choose_precision("auto", CPU).reason
    mps = choose_precision("auto", torch.device("mps"))
    assert mps.name == "fp32" and "has not been run" in mps.reason
    for forced in ("bf16", "fp16", "fp32"):
        assert choose_precision(forced, CPU).name == forced
    with pytest.raises(RoadmapError, match="unknown --precision 'half'"):
        choose_precision("half", CPU)


def test_the_identity_names_a_precision_only_where_it_changed():
    """Runs that train as their device did before --precision keep their ids; any other precision is new."""
    assert identity_entry(Precision("fp32"), CPU) == {} and identity_entry(Precision("bf16"), CUDA) == {}
    assert identity_entry(FP16, CPU) == {"precision": "fp16"} and identity_entry(FP16, CUDA) == {"precision": "fp16"}
    assert identity_entry(Precision("bf16"), CPU) == {"precision": "bf16"}
    assert (legacy(CPU), legacy(CUDA)) == ("fp32", "bf16")


def test_mps_is_offered_and_refused_in_one_line_where_it_is_not_here(cli, monkeypatch):
    from runner.devices import resolve_device

    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("mps") == torch.device("mps")
    assert resolve_device("auto").type != "mps"  # auto never picks mps until someone has run it
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    code, _, err = cli("run", "--dataset", "synthetic", "--preset", "smoke", "--device", "mps", "--dry-run")
    assert code == 2 and err.count("\n") == 1 and "--device mps: Apple's MPS backend is not available" in err


# -------------------------------------------------------------------------------------------- the command


def test_run_help_lists_the_four_precisions(cli):
    code, text, _ = cli("run", "--help")
    assert code == 0 and "--precision {auto,bf16,fp16,fp32}" in " ".join(text.split())


def _run_ids(precision: str) -> set[str]:
    """The run directories `roadmap run --preset cpu --dataset fashion-mnist --upto patchify_stem` plans on the CPU
    with `--precision precision`."""
    from runner.planning.options import Machine, RunOptions, Selection, Training
    from runner.planning.runs import plan

    opts = RunOptions(Selection(dataset="fashion-mnist", upto="patchify_stem"), Training(preset="cpu"),
                      Machine(device="cpu", precision=precision))
    entry = identity_entry(choose_precision(precision, CPU), CPU)
    return {r.run_id for r in plan(opts, "fashion-mnist", 28, 10, 60000, entry)}


def test_the_default_precision_keeps_the_examples_run_ids(cli, tmp_path):
    """On the CPU, auto and fp32 plan the example's run directories; fp16 plans new ones. The dry run says which
    precision and why."""
    example = {p.name for p in (Path(__file__).resolve().parents[1] / "docs" / "example-fashion-mnist").iterdir()}
    auto = _run_ids("auto")
    assert len(auto) == 12 and auto <= example
    assert _run_ids("fp32") == auto
    fp16 = _run_ids("fp16")
    assert len(fp16) == 12 and not fp16 & example
    code, text, err = cli("run", "--dataset", "synthetic", "--preset", "smoke", "--device", "cpu", "--dry-run",
                          "--out", str(tmp_path / "plan"))
    assert code == 0 and "precision: fp32 (auto: the CPU trains fastest in fp32" in text, err


# --------------------------------------------------------------------------------------- the loop in fp16


def _fp16_run(tmp_path, grad_clip=None, precision=FP16, init_scale: float | None = None):
    from runner.fitting.training_run import loaders, prepare

    job = tiny_job(tmp_path, "resnet50", precision=precision)
    if grad_clip is not None:
        recipe = dataclasses.replace(job.design.recipe, grad_clip=grad_clip)
        job = dataclasses.replace(job, design=dataclasses.replace(job.design, recipe=recipe))
    t = prepare(job)
    if init_scale is not None:
        t.scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
    return t, loaders(job, t.batch_plan, 0)[0]


def test_an_overflowed_step_is_skipped_counted_and_not_a_divergence(tmp_path):
    """A loss scale so large that the first step's fp16 gradients overflow: the scaler skips it and halves the
    scale; the epoch counts the skipped steps and goes on (the old check stopped at the first non-finite value)."""
    from runner.fitting.loop import train_epoch

    t, train = _fp16_run(tmp_path, init_scale=2.0**40)
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    stats, bad = train_epoch(t, train, 0, steps=3)
    assert not bad and t.updates == 3
    assert stats["skipped_steps"] >= 1 and t.scaler.get_scale() < 2.0**40
    assert any(not torch.equal(before[k], v) for k, v in t.model.state_dict().items())  # later steps did step


def test_an_fp16_run_diverges_when_its_scale_keeps_falling(tmp_path, monkeypatch):
    """Every step overflowing (an infinite loss) drives the scale below MIN_LOSS_SCALE: a divergence."""
    from runner.fitting.loop import train_epoch

    t, train = _fp16_run(tmp_path, init_scale=2.0**-11)
    loss = t.mix.loss
    monkeypatch.setattr(t.mix, "loss", lambda out, y: loss(out, y) * float("inf"))
    stats, bad = train_epoch(t, train, 0, steps=4)
    assert bad and t.scaler.get_scale() < MIN_LOSS_SCALE and stats["skipped_steps"] >= 3


def test_gradients_are_unscaled_before_clipping(tmp_path, monkeypatch):
    """clip_grad_norm_ sees the true gradients' norm in fp16 (as in fp32), not the scaled ones (x 256 here: a scale
    at which this step's fp16 gradients do not overflow)."""
    import runner.fitting.loop as loop

    norms = {}
    real = torch.nn.utils.clip_grad_norm_
    for precision in (Precision("fp32"), FP16):
        seen = norms.setdefault(precision.name, [])
        monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_",
                            lambda params, clip, _seen=seen: _seen.append(float(real(params, clip))) or _seen[-1])
        t, train = _fp16_run(tmp_path / precision.name, grad_clip=1e9, precision=precision,
                             init_scale=256.0 if precision.scales_loss else None)
        loop.train_epoch(t, train, 0, steps=1)
    assert norms["fp16"][0] == pytest.approx(norms["fp32"][0], rel=0.05)


# ----------------------------------------------------------------------------- accumulation, resume, records


ACCUMULATE = ["--dataset", "synthetic:train=64,val=16", "--preset", "smoke", "--steps", "convnext_tiny", "--epochs",
              "1", "--train-batches", "2", "--val-batches", "1", "--batch-size", "16", "--set", "train_augment=false",
              "--set", "mixup=0", "--set", "cutmix=0", "--set", "random_erasing=0", "--set", "drop_path_rate=0",
              "--quiet", "--no-report", "--precision", "fp16"]


def _metrics(out: Path) -> list[dict]:
    (d,) = [d for d in out.iterdir() if d.is_dir()]
    return [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_fp16_accumulation_gives_the_whole_batchs_losses(tmp_path, cli):
    """Micro-batches of one step share its loss scale (unscaled once, stepped once): the same losses as the whole
    batch in fp16, within fp16's rounding."""
    code, _, err = cli("run", *ACCUMULATE, "--out", str(tmp_path / "whole"))
    assert code == 0, err
    code, _, err = cli("run", *ACCUMULATE, "--micro-batch", "4", "--out", str(tmp_path / "micro"))
    assert code == 0, err
    (a,), (b,) = _metrics(tmp_path / "whole"), _metrics(tmp_path / "micro")
    assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-3)
    assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-3)
    assert a["skipped_steps"] == b["skipped_steps"] == 0


RESUME = ["--dataset", "synthetic:train=64,val=16", "--preset", "smoke", "--steps", "training_recipe", "--epochs", "2",
          "--train-batches", "2", "--val-batches", "1", "--batch-size", "16", "--quiet", "--no-report",
          "--precision", "fp16"]


@pytest.mark.slow
def test_a_killed_fp16_run_resumes_to_the_same_numbers(tmp_path, cli, monkeypatch):
    """Interrupted after its first epoch, an fp16 run resumes with its loss scale from the checkpoint and ends with
    exactly the uninterrupted run's metrics; config.json records fp16, the identity names it."""
    import runner.fitting.fit as fit

    code, text, err = cli("run", *RESUME, "--out", str(tmp_path / "ref"))
    assert code == 0, err
    assert "precision: fp16 (--precision fp16 on cpu)" in text
    saved = []
    real_save = fit.CheckpointWriter.save
    monkeypatch.setattr(fit.CheckpointWriter, "save", lambda self, state: saved.append(state) or real_save(self, state))
    real, calls = fit.evaluate, []

    def interrupt_second_epoch(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(fit, "evaluate", interrupt_second_epoch)
    code, _, _ = cli("run", *RESUME, "--out", str(tmp_path / "cut"))
    assert code == 130
    assert saved and saved[0]["scaler"]["scale"] > 0  # the scaler's state is in the checkpoint
    monkeypatch.setattr(fit, "evaluate", real)
    code, text, err = cli("run", *RESUME, "--out", str(tmp_path / "cut"))
    assert code == 0 and "resuming after epoch 1/2" in text, err
    ref, cut = _metrics(tmp_path / "ref"), _metrics(tmp_path / "cut")
    keep = ("train_loss", "train_top1", "val_loss", "val_top1", "lr", "skipped_steps")
    assert [{k: r[k] for k in keep} for r in cut] == [{k: r[k] for k in keep} for r in ref]
    (d,) = [d for d in (tmp_path / "ref").iterdir() if d.is_dir()]
    config = json.loads((d / "config.json").read_text())
    assert config["precision"] == "fp16" and config["identity"]["precision"] == "fp16"
    code, table, _ = cli("results", str(tmp_path / "ref"))
    assert code == 0 and "Trained on cpu in fp16." in table


def test_records_before_the_option_read_as_their_devices_precision():
    from roadmap.schema import precision_of

    assert precision_of("cpu") == "fp32" and precision_of("cuda:0") == "bf16" and precision_of(None) == "fp32"
    assert precision_of("cuda", "fp16") == "fp16"
