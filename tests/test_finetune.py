"""Fine-tuning takes the checkpoint's network (issue #21 item 3): with --init-from, the preset's width/depth scaling
and the small-image stem are not applied, the input size defaults to the checkpoint's training size (224 px), the
dry run says so, and a checkpoint that fits no step names the nearest step and the first mismatched tensor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from roadmap import build_model


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """State_dicts saved from the roadmap's own networks: ConvNeXt-T, large_kernel, ConvNeXt-T with one odd kernel,
    and ConvNeXt-T at the smoke preset's scale."""
    d = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    convnext = build_model("convnext_tiny").state_dict()
    odd = dict(convnext, **{"stages.0.blocks.0.branch.conv_spatial.weight": torch.zeros(96, 1, 9, 9)})
    small = build_model("convnext_tiny", width_mult=1 / 8, depth_mult=1 / 3).state_dict()
    files = {"convnext_tiny": convnext, "large_kernel": build_model("large_kernel").state_dict(), "odd": odd,
             "small": small}
    for name, sd in files.items():
        torch.save(sd, d / f"{name}.pth")
    return {name: d / f"{name}.pth" for name in files}


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """A generated folder data set: 2 classes, 2 training and 1 validation image each, 20 px."""
    root = tmp_path / "pets"
    for split, n in (("train", 2), ("val", 1)):
        for c, colour in (("cat", (200, 120, 0)), ("dog", (0, 90, 200))):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (20, 20), colour).save(root / split / c / f"{i}.png")
    return root


def _dry_run(cli, ckpt: Path, folder: Path, *extra: str) -> tuple[int, str, str]:
    return cli("run", "--steps", "convnext_tiny", "--dataset", f"folder:{folder}", "--preset", "smoke",
               "--init-from", str(ckpt), "--dry-run", *extra)


def test_the_dry_run_plans_the_checkpoints_network_at_224_px_and_says_so(cli, checkpoints, image_folder):
    code, out, err = _dry_run(cli, checkpoints["convnext_tiny"], image_folder)
    assert code == 0, err
    header, table = out.splitlines()[0], out.splitlines()[2]
    assert "224 px, preset smoke" in header  # not the preset's 32 px, nor the folder's 20 px
    assert table.split()[:5] == ["separate_downsampling", "0", "4.456", "27.822", "4.4548"]  # full size, 2 classes
    (note,) = [line for line in out.splitlines() if line.startswith("fine-tuning from")]
    assert "no preset width/depth scaling, no small-image stem" in note and "224 px, the size the weights" in note
    code, out, err = _dry_run(cli, checkpoints["convnext_tiny"], image_folder, "--img-size", "64")
    assert code == 0 and "64 px, preset smoke" in out and "64 px (--img-size)" in out


def test_a_checkpoint_of_another_step_names_that_step(cli, checkpoints, image_folder):
    code, _, err = _dry_run(cli, checkpoints["large_kernel"], image_folder)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "holds the weights of large_kernel, not of separate_downsampling" in err and "--steps large_kernel" in err


def test_a_checkpoint_that_fits_no_step_names_the_nearest_and_the_first_mismatch(cli, checkpoints, image_folder):
    code, _, err = _dry_run(cli, checkpoints["odd"], image_folder)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "fits no step of the roadmap: the nearest is separate_downsampling (1 of 182 tensors differ" in err
    assert "stages.0.blocks.0.branch.conv_spatial.weight is (96, 1, 9, 9) in the checkpoint, (96, 1, 7, 7) in " \
           "separate_downsampling" in err


def test_a_checkpoint_at_the_presets_scale_says_which_sets_fit_it(cli, checkpoints, image_folder):
    code, _, err = _dry_run(cli, checkpoints["small"], image_folder)
    assert code == 2 and "at the smoke preset's scale" in err and len(err.strip().splitlines()) == 1
    assert "--set width_mult=0.125 --set depth_mult=0.3333" in err
    code, out, err = _dry_run(cli, checkpoints["small"], image_folder, "--set", "width_mult=0.125", "--set",
                              "depth_mult=0.3333")
    assert code == 0, err


@pytest.mark.slow
def test_fine_tuning_under_the_smoke_preset_trains_the_checkpoints_network(cli, checkpoints, image_folder, tmp_path):
    """ConvNeXt-T's own state_dict, fine-tuned on 20 px images under --preset smoke: it loads strictly (the
    classifier aside) and trains at 224 px; one step of two images keeps it short."""
    out = tmp_path / "ft"
    code, text, err = cli("run", "--steps", "convnext_tiny", "--dataset", f"folder:{image_folder}", "--preset",
                          "smoke", "--init-from", str(checkpoints["convnext_tiny"]), "--epochs", "1", "--batch-size",
                          "2", "--train-batches", "1", "--val-batches", "1", "--quiet", "--no-report", "--out",
                          str(out))
    assert code == 0, err
    assert "loaded 180 tensors" in text and "classifier re-initialized for 2 classes" in text  # 182 less head.fc
    (run,) = [d for d in out.iterdir() if d.is_dir()]
    config = json.loads((run / "config.json").read_text())
    assert config["dataset"]["img_size"] == 224 and config["design"]["net"]["stem_stride"] == 4
    assert config["design"]["net"]["width_mult"] == 1 and config["design"]["net"]["depth_mult"] == 1
    assert json.loads((run / "result.json").read_text())["status"] == "done"
