"""Beyond the paper's path: leave-one-out studies, fine-tuning from converted weights, experiment trackers."""

import json
import sys
import tempfile

import pytest
import torch

from runner.fitting.checkpoint import load_pretrained


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
    """A timm ConvNeXt with the smoke preset's ConvNeXt-T shape (1/8 width, 1/3 depth): fine-tuning takes the
    full-size network unless --set width_mult/depth_mult say otherwise (tests/test_finetune.py)."""
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
                          "64", "--set", "width_mult=0.125", "--set", "depth_mult=0.3333", "--init-from",
                          str(tmp_path / "ckpt.pth"), "--quiet",
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


# ------------------------------------------------------------------------------------ step orders


def test_an_order_is_a_path_of_specs_that_meets_the_papers_steps_where_the_models_are_equal():
    from runner.planning.selection import order_specs
    from steps import get_regime

    r = get_regime("resnet50")
    assert order_specs(["gelu", "patchify_stem"], r) == ["resnet50", "resnet50+gelu", "resnet50+gelu+patchify_stem"]
    # the paper's own order meets the paper's steps at every node
    assert order_specs([s.name for s in r.main_path[1:]], r) == [s.name for s in r.main_path]
    # the steps in reverse order form a new path, and all of them together are ConvNeXt-T again
    reverse = order_specs([s.name for s in r.main_path[1:]][::-1], r)
    assert reverse[1] == "resnet50+separate_downsampling" and reverse[-1] == "separate_downsampling"
    assert len(set(reverse)) == len(r.main_path)
    # training_recipe then stage_ratio is the paper's path, whichever name the user typed
    assert order_specs(["training_techniques", "stage_ratio", "gelu"], r)[:3] == [
        "resnet50", "training_recipe", "stage_ratio"]


@pytest.mark.parametrize("order, message", [
    ("resnet50", "at least one step"), ("gelu,gelu", "twice"), ("gelu,resnet50", "starting point"),
    ("gelux", "Did you mean 'gelu'"),
])
def test_a_bad_order_is_one_clear_line(cli, order, message):
    code, _, err = cli("run", "--dataset", "synthetic:train=64,val=16", "--preset", "smoke", "--order", order,
                       "--dry-run")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_a_long_spec_gets_a_short_run_directory_name():
    from runner.store import run_id

    long = "resnet50+" + "+".join(["separate_downsampling", "layer_norm", "fewer_norms", "fewer_activations",
                                   "gelu", "large_kernel", "move_up_dwconv", "inverted_bottleneck"])
    a, b = run_id(long, 0, {"x": 1}), run_id(long + "+resnext_width", 0, {"x": 2})
    assert len(a) < 140 and a != b and a.startswith("resnet50+separate_downsampling")


# ------------------------------------------------------------------------------------ baselines


def test_baseline_complexity_matches_the_papers_swin_t():
    """The paper prints Swin-T at 4.5 GFLOPs and 28M params: the FLOP counter on timm's model agrees."""
    from runner.baselines import complexity

    params, gflops = complexity("swin_tiny_patch4_window7_224", 1000, 224)
    assert round(gflops, 1) == 4.5 and round(params / 1e6) == 28
    params, gflops = complexity("resnet50", 1000, 224)  # torchvision's metadata: 4.09 GFLOPs, 25.6M
    assert round(gflops, 2) == 4.09 and params == 25_557_032


def test_an_unknown_baseline_is_one_line_with_suggestions(cli):
    code, _, err = cli("run", "--dataset", "synthetic:train=64,val=16", "--baselines", "swin_tiny", "--dry-run")
    assert code == 2 and "swin_tiny_patch4_window7_224" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("run", "--dataset", "synthetic:train=64,val=16", "--baselines", "resnet50",
                       "--init-from", __file__, "--dry-run")
    assert code == 2 and "baseline" in err


def test_a_baseline_that_cannot_run_at_the_size_fails_before_training(cli):
    code, _, err = cli("run", "--dataset", "synthetic:train=64,val=16", "--steps", "resnet50", "--baselines",
                       "vit_base_patch16_224", "--img-size", "8", "--set", "stem_stride=1", "--dry-run")
    assert code == 2 and "cannot run on 8 px images" in err and len(err.strip().splitlines()) == 1


def test_launcher_children_take_one_spec_without_the_baselines_or_orders():
    from runner.launchers.children import child_argv

    argv = ["run", "--dataset", "cifar10", "--baselines", "resnet50", "--order", "gelu,layer_norm", "--seeds", "2"]
    child = child_argv(argv, "timm:resnet50", 1)
    assert "--baselines" not in child and "--order" not in child and "gelu,layer_norm" not in child
    assert child[child.index("--steps") + 1] == "timm:resnet50" and "--seeds" in child


def test_baselines_and_an_order_train_in_smoke_mode_and_the_report_shows_them(tmp_path, cli):
    import timm

    out = tmp_path / "o"
    args = ["run", "--dataset", "synthetic:train=64,val=16", "--preset", "smoke", "--steps", "resnet50,patchify_stem",
            "--order", "gelu,patchify_stem", "--baselines", "test_vit,test_resnet", "--epochs", "1",
            "--train-batches", "2", "--val-batches", "1", "--quiet", "--out", str(out)]
    code, text, err = cli(*args)
    assert code == 0, err
    configs = {json.loads(p.read_text())["step"]: json.loads(p.read_text()) for p in out.glob("*/config.json")}
    assert set(configs) == {"resnet50", "patchify_stem", "resnet50+gelu", "resnet50+gelu+patchify_stem",
                            "timm:test_vit", "timm:test_resnet"}
    vit = configs["timm:test_vit"]
    assert vit["baseline"] == "test_vit" and vit["design"]["timm_model"] == "test_vit"
    assert vit["design"]["recipe"]["name"] == configs["patchify_stem"]["design"]["recipe"]["name"]  # same recipe
    model = timm.create_model("test_vit", num_classes=10, img_size=32)
    assert vit["complexity"]["params"] == sum(p.numel() for p in model.parameters())
    assert all(json.loads(p.read_text())["status"] == "done" for p in out.glob("*/result.json"))
    plan = json.loads((out / "plan.json").read_text())
    assert plan["orders"] == [{"steps": ["gelu", "patchify_stem"],
                               "specs": ["resnet50", "resnet50+gelu", "resnet50+gelu+patchify_stem"]}]

    report = (out / "report.md").read_text()
    refs = report.split("## Reference models")[1].split("##")[0]
    assert "`timm:test_vit`" in refs and "`timm:test_resnet`" in refs and "Δ vs patchify_stem" in refs
    orders = report.split("## The same steps in other orders")[1]
    assert "**A: the paper's order**" in orders and "**B: --order #1**" in orders
    assert "| B2 | `patchify_stem` | `resnet50+gelu+patchify_stem` |" in orders
    assert (out / "fig_orders.png").stat().st_size > 20_000 and "![" in report.split("fig_orders.png")[0][-300:]

    # a planned baseline with no record yet shows as missing, in its section
    vit_dir = next(p.parent for p in out.glob("*/config.json") if "test_vit" in p.parent.name)
    import shutil

    shutil.rmtree(vit_dir)
    code, _, err = cli("report", str(out))
    assert code == 0, err
    refs = (out / "report.md").read_text().split("## Reference models")[1].split("##")[0]
    assert "| `timm:test_vit` |" in refs and "missing" in refs


def test_an_ablation_in_smoke_mode_reports_the_cost_of_each_step(tmp_path, cli):
    out = tmp_path / "ab"
    code, _, err = cli("ablate", "--final", "patchify_stem", "--dataset", "synthetic:train=64,val=16", "--preset",
                       "smoke", "--epochs", "1", "--train-batches", "2", "--val-batches", "1", "--quiet", "--out",
                       str(out))
    assert code == 0, err
    section = (out / "report.md").read_text().split("## Leave-one-out")[1].split("\n## ")[0]
    rows = [line.split("|") for line in section.splitlines() if line.startswith("| `")]
    assert sorted(r[1].strip() for r in rows) == ["`stage_ratio`", "`training_recipe`"]
    top1 = {json.loads((p.parent / "config.json").read_text())["step"]: json.loads(p.read_text())["val_top1"]
            for p in out.glob("*/result.json")}
    deltas = [float(r[4].split()[0]) for r in rows]
    assert deltas == sorted(deltas)  # most costly first
    for r, delta in zip(rows, deltas, strict=True):
        left_out = r[1].strip().strip("`")
        assert delta == pytest.approx(top1[f"patchify_stem-{left_out}"] - top1["patchify_stem"], abs=0.006)
        assert "(spread unknown (1 seed))" in r[4]
