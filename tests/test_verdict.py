"""The report judges its own run: convergence warnings and the "Does it reproduce the paper?" section."""

import json
import math

import pandas as pd
import pytest
from test_reports import SEEDS, run_dir_name, write_fixture

from reports import build_report
from reports.verdict import reproduction_section, run_convergence


def curve(val: list[float], loss: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"epoch": range(1, len(val) + 1), "val_top1": val, "train_loss": loss})


def test_convergence_checks():
    flat = curve([70, 80, 84, 85, 85.5, 85.8], [1.0, 0.6, 0.5, 0.46, 0.45, 0.44])
    assert run_convergence("r", "s", 0, flat, 84.0).reasons == ()
    rising = curve([50, 58, 64, 70, 75, 80], [1.0, 0.6, 0.5, 0.46, 0.45, 0.44])  # epoch 4 (70) to 6
    assert "val top-1 +10.0 over the last 2 epochs" in run_convergence("r", "s", 0, rising, 78.0).reasons
    falling = curve([70, 80, 84, 85, 85.5, 85.8], [2.0, 1.6, 1.3, 1.0, 0.8, 0.6])
    assert any("train loss" in r for r in run_convergence("r", "s", 0, falling, 84.0).reasons)
    gap = run_convergence("r", "s", 0, flat, 40.0).reasons
    assert gap == ("train top-1 40.0 vs val 85.8",)


def test_an_underfit_run_is_warned_about_first_and_its_row_marked(tmp_path):
    out = write_fixture(tmp_path / "runs", preset="cpu")
    metrics = out / run_dir_name("gelu", SEEDS[0], "cpu") / "metrics.jsonl"
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    final = rows[-1]["val_top1"]
    for i, row in enumerate(rows):  # still climbing steeply at the end
        row["val_top1"] = round(final * (0.5 + 0.5 * (i + 1) / len(rows)), 2)
    metrics.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = build_report(out).read_text()
    assert text.startswith("> **⚠ 1 of ")
    assert "`gelu`" in text.splitlines()[0]
    assert "| gelu ⚠ |" in text and "| fewer_activations |" in text  # only that step is marked
    assert "## Did the runs converge?" in text and "- `gelu` seed 0: val top-1 +" in text


def test_a_converged_run_gets_no_warning(tmp_path):
    text = build_report(write_fixture(tmp_path / "runs", preset="cpu")).read_text()
    assert "⚠" not in text and "No run is flagged." in text


def summary(rows: list[tuple[str, float, float, int, float]]) -> pd.DataFrame:
    """A main-path summary: (step, mean, std, n, paper top-1), deltas against the previous row."""
    frame = pd.DataFrame(rows, columns=["step", "top1_mean", "top1_std", "n", "paper_top1"])
    frame["edited"] = frame["is_branch"] = frame["is_baseline"] = False
    frame["delta"] = frame["top1_mean"].diff()
    frame["paper_delta"] = frame["paper_top1"].diff()
    pooled = [math.nan]
    for a, b in zip(rows, rows[1:], strict=False):
        pooled.append(math.nan if min(a[3], b[3]) < 2 else
                      math.sqrt(((a[3] - 1) * a[2] ** 2 + (b[3] - 1) * b[2] ** 2) / (a[3] + b[3] - 2)))
    frame["pooled_std"] = pooled
    return frame


def test_reproduction_verdicts_spearman_and_end_minus_start():
    text = "\n".join(reproduction_section(summary([
        ("resnet50", 85.0, 0.2, 3, 76.13),
        ("training_recipe", 86.0, 0.2, 3, 78.82),  # +1.0 > 2 x 0.2, paper +2.69: same direction
        ("stage_ratio", 85.0, 0.2, 3, 79.36),  # -1.0, paper +0.54: opposite
        ("patchify_stem", 85.2, 0.2, 3, 79.51),  # +0.2 <= 0.4: within noise
        ("convnext_tiny", 87.0, 0.2, 3, 81.97),  # +1.8: same direction
    ])))
    assert "| `training_recipe` | +2.69 | +1.00 ± 0.40 | same direction |" in text
    assert "| `stage_ratio` | +0.54 | -1.00 ± 0.40 | opposite |" in text
    assert "| `patchify_stem` | +0.15 | +0.20 ± 0.40 | within noise |" in text
    assert "Same direction: 2; opposite: 1; within noise: 1 (of 4 steps)." in text
    # ranks: ours 1.5, 4, 1.5, 3, 5 against the paper's 1..5 -> rho = 0.616, p = 0.27 (scipy)
    assert "**ρ = +0.62** (p = 0.27;" in text
    assert "`convnext_tiny` − `resnet50` = **+2.00** ± 0.40 (2σ) points (paper: +5.84): same direction." in text


@pytest.mark.parametrize(("large_kernel_top1", "noted"), [(84.0, True), (85.2, False), (86.0, False)])
def test_an_opposite_large_kernel_step_points_to_the_small_image_finding(large_kernel_top1, noted):
    # move_up_dwconv -> large_kernel: paper +0.66; ours -1.0 (opposite), +0.2 (within noise), +1.0 (same direction)
    text = "\n".join(reproduction_section(summary([
        ("move_up_dwconv", 85.0, 0.2, 3, 79.86), ("large_kernel", large_kernel_top1, 0.2, 3, 80.52)])))
    assert ("`large_kernel` goes against the paper here" in text) is noted
    assert ('"Large kernels at 28 px"' in text) is noted


def test_an_opposite_step_without_a_finding_gets_no_note():
    text = "\n".join(reproduction_section(summary([
        ("resnet50", 85.0, 0.2, 3, 76.13), ("training_recipe", 84.0, 0.2, 3, 78.82)])))
    assert "| opposite |" in text and "cpu-preset-sweep" not in text


def test_one_seed_leaves_the_spread_unknown():
    text = "\n".join(reproduction_section(summary([
        ("resnet50", 85.0, math.nan, 1, 76.13), ("training_recipe", 86.0, math.nan, 1, 78.82)])))
    assert "spread unknown (1 seed)" in text and "Spearman" in text and "not defined" in text


@pytest.mark.parametrize("preset", ["smoke"])
def test_a_pipeline_check_keeps_its_warning_first(tmp_path, preset):
    out = write_fixture(tmp_path / "runs", preset=preset)
    metrics = out / run_dir_name("gelu", SEEDS[0], preset) / "metrics.jsonl"
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    for i, row in enumerate(rows):
        row["val_top1"] = 40.0 + 5 * i
    metrics.write_text("".join(json.dumps(r) + "\n" for r in rows))
    lines = build_report(out).read_text().splitlines()
    assert lines[0].startswith("> **Pipeline check only") and lines[2].startswith("> **⚠ 1 of")
