"""Trained models leave the result directory (issue #33): `roadmap.load_run` gives a finished run's network in eval
mode, with its weights and evaluation transform, from the run's own records; every mistake is one line.

One tiny result directory is trained once for the module (smoke preset, synthetic data): gelu, seeds 0 and 1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from roadmap import RoadmapError, build_model, load_run
from roadmap.design import Design

ROOT = Path(__file__).resolve().parents[1]
RUN = ["run", "--dataset", "synthetic:train=64,val=32", "--preset", "smoke", "--quiet", "--no-report",
       "--train-batches", "1", "--val-batches", "1", "--epochs", "1"]


def train(out: Path, *argv: str) -> Path:
    from roadmap.cli import main

    assert main([*RUN, *argv, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def result_dir(tmp_path_factory) -> Path:
    return train(tmp_path_factory.mktemp("trained") / "out", "--steps", "gelu", "--seeds", "2")


def run_dirs(out: Path) -> dict[tuple[str, int], Path]:
    plan = json.loads((out / "plan.json").read_text())
    return {(r["step"], r["seed"]): out / r["dir"] for r in plan["runs"]}


def images(n: int = 3, size: int = 32) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def test_a_run_directory_gives_its_network_in_eval_mode_with_its_weights_and_transform(result_dir):
    run_dir = run_dirs(result_dir)[("gelu", 1)]
    run = load_run(run_dir)
    assert run.path == run_dir and not run.model.training
    config = json.loads((run_dir / "config.json").read_text())
    design = Design.from_dict(config["design"])
    expected = build_model(design, num_classes=10)
    expected.load_state_dict(torch.load(run_dir / "model.pt", weights_only=True))
    expected.eval()
    with torch.no_grad():
        assert torch.equal(run.model(images()), expected(images()))
    assert run.data_config == {"input_size": (3, 32, 32), "interpolation": design.recipe.eval_interpolation,
                               "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
                               "crop_pct": design.recipe.eval_crop_pct, "crop_mode": "center"}
    from PIL import Image

    assert run.transform(Image.new("RGB", (48, 40), (10, 200, 30))).shape == (3, 32, 32)
    assert run.model.pretrained_cfg["label_names"] == config["dataset"]["classes"]
    assert run.config.seed == 1 and run.result.status == "done"


def test_a_result_directory_with_a_step_and_seed_gives_the_same_run(result_dir):
    dirs = run_dirs(result_dir)
    assert load_run(result_dir, step="gelu", seed=0).path == dirs[("gelu", 0)]
    assert load_run(result_dir, "gelu", 1).path == dirs[("gelu", 1)]
    top1 = {s: json.loads((dirs[("gelu", s)] / "result.json").read_text())["val_top1"] for s in (0, 1)}
    best = max((0, 1), key=lambda s: (top1[s], -s))
    assert load_run(result_dir, "gelu", "best").path == dirs[("gelu", best)]
    assert load_run(result_dir, "gelu", "median").path == dirs[("gelu", min((0, 1), key=lambda s: (top1[s], s)))]


def one_line(call) -> str:
    with pytest.raises(RoadmapError) as e:
        call()
    message = str(e.value)
    assert "\n" not in message and len(message) < 300, message
    return message


def copy_run(result_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run_dirs(result_dir)[("gelu", 0)], tmp_path / "run"))


def test_an_ambiguous_step_or_a_path_without_runs_says_so_in_one_line(result_dir, tmp_path):
    assert "'gelu' has 2 runs" in one_line(lambda: load_run(result_dir, "gelu"))
    assert "seeds 0, 1" in one_line(lambda: load_run(result_dir))
    assert "no run of 'layer_norm'" in one_line(lambda: load_run(result_dir, "layer_norm", 0))
    assert "no seed 7" in one_line(lambda: load_run(result_dir, "gelu", 7))
    (tmp_path / "empty").mkdir()
    assert "is not a run (no config.json)" in one_line(lambda: load_run(tmp_path / "empty"))
    assert "does not exist" in one_line(lambda: load_run(tmp_path / "nowhere"))


def test_an_unfinished_run_or_missing_or_damaged_weights_say_so_in_one_line(result_dir, tmp_path):
    run = copy_run(result_dir, tmp_path)
    (run / "model.pt").unlink()
    assert "model.pt is missing" in one_line(lambda: load_run(run))
    weights = (run_dirs(result_dir)[("gelu", 0)] / "model.pt").read_bytes()
    (run / "model.pt").write_bytes(weights[: len(weights) // 2])
    assert "model.pt is damaged or not a weight file" in one_line(lambda: load_run(run))
    torch.save(build_model("gelu", num_classes=10).state_dict(), run / "model.pt")  # full size, not the run's
    assert "model.pt does not fit the run's network" in one_line(lambda: load_run(run))
    (run / "result.json").unlink()
    assert "is not finished (no result.json)" in one_line(lambda: load_run(run))


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_weights_carrying_code_are_refused_without_running_it(result_dir, tmp_path):
    run = copy_run(result_dir, tmp_path)
    weights = torch.load(run / "model.pt", weights_only=True)
    torch.save({**weights, "extra": _RunsCode(tmp_path / "code-ran")}, run / "model.pt")
    assert "model.pt is damaged or not a weight file" in one_line(lambda: load_run(run))
    assert not (tmp_path / "code-ran").exists()


def test_a_checkpoint_file_carrying_code_is_refused_by_state_dict_from_file(tmp_path):
    """--init-from and roadmap.weights read with weights_only=True as well."""
    from roadmap.weights import state_dict_from_file

    weights = build_model("gelu", num_classes=3, width_mult=0.125, depth_mult=0.34).state_dict()
    torch.save({"model": weights, "args": _RunsCode(tmp_path / "code-ran")}, tmp_path / "c.pth")
    assert "cannot read checkpoint" in one_line(lambda: state_dict_from_file(tmp_path / "c.pth"))
    assert not (tmp_path / "code-ran").exists()


def test_a_timm_baseline_run_is_refused_in_one_line(result_dir, tmp_path):
    run = copy_run(result_dir, tmp_path)
    config = json.loads((run / "config.json").read_text())
    config["design"] = {"timm_model": "resnet50", "drop_path_rate": 0.0, "recipe": config["design"]["recipe"]}
    (run / "config.json").write_text(json.dumps(config))
    assert "timm reference model 'resnet50'" in one_line(lambda: load_run(run))


def test_importing_load_run_imports_no_runner_and_no_reports():
    code = ("import sys; from roadmap import load_run; import roadmap.trained; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('runner', 'reports')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr
