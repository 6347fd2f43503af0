"""Beyond the paper's path: leave-one-out studies, fine-tuning from converted weights, experiment trackers."""

import json
import sys
import tempfile

import pytest
import torch

from runner.train import load_pretrained


def test_ablate_plans_the_full_model_and_each_step_left_out(tmp_path, cli):
    code, out, _ = cli("ablate", "--dataset", "synthetic:train=64,val=16", "--preset", "smoke", "--dry-run",
                       "--out", str(tmp_path / "o"))
    assert code == 0
    rows = [line.split()[0] for line in out.splitlines() if line.startswith(("separate_downsampling", " "))]
    specs = {r for r in rows if r.startswith("separate_downsampling")}
    assert "separate_downsampling" in specs and "separate_downsampling-layer_norm" in specs
    assert len(specs) == 13  # the full model + 12 steps of its path left out, one at a time
    assert "separate_downsampling-resnet50" not in specs  # the starting point cannot be left out


def tiny_timm_convnext(path):
    """A timm ConvNeXt with the smoke preset's ConvNeXt-T shape (1/8 width, 1/3 depth)."""
    from timm.models.convnext import ConvNeXt

    torch.manual_seed(1)
    model = ConvNeXt(depths=(1, 1, 3, 1), dims=(16, 24, 48, 96), num_classes=1000)
    torch.save({"model": model.state_dict()}, path)
    return model


def test_fine_tuning_from_a_converted_checkpoint_loads_strictly_and_trains(tmp_path, cli):
    ref = tiny_timm_convnext(tmp_path / "ckpt.pth")
    out = tmp_path / "ft"
    code, text, err = cli("run", "--dataset", "synthetic:train=128,val=32", "--preset", "smoke", "--steps",
                          "convnext_tiny", "--epochs", "1", "--train-batches", "3", "--val-batches", "1", "--img-size",
                          "64", "--set", "stem_stride=4", "--init-from", str(tmp_path / "ckpt.pth"), "--quiet",
                          "--no-report", "--out", str(out))
    assert code == 0, err
    assert "loaded 72 tensors" in text and "classifier re-initialized for 10 classes" in text
    (run,) = [d for d in out.iterdir() if d.is_dir()]
    config = json.loads((run / "config.json").read_text())
    recipe = config["design"]["recipe"]
    assert (recipe["name"], recipe["layer_decay"], recipe["mixup"], recipe["cutmix"]) == ("finetune", 0.8, 0, 0)
    assert config["design"]["net"]["head_init_scale"] == 0.001 and config["identity"]["init_from"]["bytes"] > 0
    assert json.loads((run / "result.json").read_text())["status"] == "done"
    # and the weights really are the checkpoint's: the trained stem moved away from them only a little
    trained = torch.load(run / "model.pt")
    assert torch.allclose(trained["stem.conv.weight"], ref.stem[0].weight.detach(), atol=1e-3)


def test_fine_tuning_a_mismatched_step_is_a_clear_error(tmp_path, cli):
    tiny_timm_convnext(tmp_path / "ckpt.pth")
    code, _, err = cli("run", "--dataset", "synthetic:train=64,val=16", "--preset", "smoke", "--steps",
                       "resnet50", "--init-from", str(tmp_path / "ckpt.pth"), "--out", str(tmp_path / "o"))
    assert code == 2 and "--init-from" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("run", "--dataset", "synthetic:train=64,val=16", "--preset", "smoke", "--steps",
                       "resnet50", "--init-from", str(tmp_path / "none.pth"), "--out", str(tmp_path / "o"))
    assert code == 2 and "does not exist" in err


def test_load_pretrained_keeps_a_matching_classifier():
    from roadmap import build_model

    model = build_model("convnext_tiny", num_classes=1000, width_mult=1 / 8, depth_mult=1 / 3)
    messages = []
    with tempfile.TemporaryDirectory() as d:
        ref = tiny_timm_convnext(f"{d}/c.pth")
        load_pretrained(model, f"{d}/c.pth", messages.append, "x")
    assert "re-initialized" not in messages[0]
    torch.testing.assert_close(model.head.fc.weight, ref.head.fc.weight)


@pytest.mark.parametrize("kind", ["tensorboard", "wandb"])
def test_trackers_are_optional_and_imported_only_when_asked(tmp_path, cli, kind, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    code, _, err = cli("run", "--dataset", "synthetic:train=64,val=16", "--preset", "smoke", "--steps",
                       "resnet50", "--epochs", "1", "--train-batches", "1", "--val-batches", "1", "--log", kind,
                       "--quiet", "--no-report", "--out", str(tmp_path / "o"))
    assert code == 2 and f"pip install {kind}" in err


def test_a_tracker_receives_every_epoch(tmp_path, cli, monkeypatch):
    import types

    logged, finished = [], []

    class FakeRun:
        def log(self, data, step):
            logged.append((step, data))

        def finish(self):
            finished.append(True)

    fake = types.SimpleNamespace(init=lambda **kw: FakeRun())
    monkeypatch.setitem(sys.modules, "wandb", fake)
    code, _, err = cli("run", "--dataset", "synthetic:train=64,val=16", "--preset", "smoke", "--steps",
                       "convnext_tiny", "--epochs", "2", "--train-batches", "1", "--val-batches", "1", "--log",
                       "wandb", "--quiet", "--no-report", "--out", str(tmp_path / "o"))
    assert code == 0, err
    assert [step for step, _ in logged] == [1, 2] and "val_top1" in logged[0][1] and finished == [True]
