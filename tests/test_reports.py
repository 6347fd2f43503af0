"""Reports render stored records only: tables, figures and report.md from a generated `--out` directory.

`write_fixture` writes the records (built with roadmap.schema) of every step of the roadmap with 2 seeds and
deterministic fake numbers, with one step diverged (layer_norm), one missing (kernel_11) and one run interrupted
(kernel_9, seed 1). The report is built once per module and the tests read it back.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import matplotlib.image
import pytest

from reports import build_report, load_runs, results_table, summarize
from reports.figures import FIGURES
from reports.report import excluded_lines
from reports.what_was_run import header_lines, pipeline_check_only
from roadmap.errors import RoadmapError
from roadmap.schema import (
    CONFIG,
    METRICS,
    PLAN,
    RESULT,
    Budget,
    ClassScore,
    Complexity,
    DatasetInfo,
    Diverged,
    EpochMetrics,
    PaperNumbers,
    Plan,
    PlanEntry,
    RunConfig,
    RunResult,
    Section,
)
from steps import ROADMAP

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
SEEDS = (0, 1)
EPOCHS, RESNET_EPOCHS = 10, 3
DIVERGED, MISSING, INTERRUPTED = "layer_norm", "kernel_11", ("kernel_9", 1)
ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------ the fixture


def fake_top1(index: int, seed: int) -> float:
    """A deterministic final val top-1 for step `index` and `seed`; seeds differ by 0.3-0.7 points."""
    return round(70.0 + 1.1 * index - 2.5 * (index % 5 == 3) + seed * (0.3 + 0.2 * (index % 3)), 2)


def fake_per_class(index: int, seed: int) -> list[dict]:
    return [{"class": name, "precision": round(60 + 3 * c + seed + 0.1 * index, 2),
             "recall": round(58 + 3 * c + 2 * seed, 2), "f1": round(59 + 3 * c + 1.5 * seed, 2), "support": 1000}
            for c, name in enumerate(CLASSES)]


def run_dir_name(step: str, seed: int, preset: str) -> str:
    digest = hashlib.sha256(json.dumps([step, seed, preset]).encode()).hexdigest()[:10]
    return f"{step}-s{seed}-{digest}"


def write_fixture(out: Path, preset: str = "smoke", synthetic: bool = False, seeds: tuple[int, ...] = SEEDS) -> Path:
    """Write plan.json and per-run config.json / metrics.jsonl / result.json for every roadmap step into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    created = "2026-11-24T07:00:00Z"
    command = f"roadmap run --preset {preset} --dataset fashion-mnist --seeds {len(seeds)}"
    planned = []
    for index, step in enumerate(ROADMAP):
        for seed in seeds:
            name = run_dir_name(step.name, seed, preset)
            planned.append(PlanEntry(step=step.name, seed=seed, dir=name))
            if step.name != MISSING:
                write_run(out / name, index, step, seed, preset, synthetic, command, created)
    plan = Plan(steps=[s.name for s in ROADMAP], seeds=len(seeds), dataset="fashion-mnist", img_size=32,
                preset=preset, command=command, created=created, runs=planned)
    (out / PLAN).write_text(plan.to_json())
    return out


def write_run(run: Path, index: int, step, seed: int, preset: str, synthetic: bool, command: str,
              created: str) -> None:
    """One run's records: finished, or diverged (DIVERGED), or interrupted after 4 epochs (INTERRUPTED)."""
    run.mkdir()
    original = step.name == "resnet50"
    epochs = RESNET_EPOCHS if original else EPOCHS
    gflops = {"layer_norm": 4.146, "separate_downsampling": 4.456}.get(step.name, step.paper_gflops)
    if gflops is None:  # a step off the paper (no paper numbers): a made-up count from its index
        gflops = round(4.5 + 0.01 * index, 3)
    recipe = ({"name": "resnet", "optimizer": "sgd", "schedule": "step", "ema": False, "epochs": epochs}
              if original else
              {"name": "convnext", "optimizer": "adamw", "schedule": "cosine", "ema": False, "epochs": epochs})
    config = RunConfig(
        run_id=run.name, step=step.name, step_name=step.name,
        section=Section(step.section.key, step.section.number, step.section.title), branch_of=step.branch_of,
        seed=seed, paper=PaperNumbers(step.paper_top1, step.paper_gflops, step.footnote),
        complexity=Complexity(params=1_500_000 + 10_000 * index, img_size=32,
                              gflops_run=round(gflops * (32 / 224) ** 2 / 16, 5),
                              gflops_224=gflops, params_224=25_557_032 + 150_000 * index),
        dataset=DatasetInfo(name="fashion-mnist", num_classes=10, classes=CLASSES, train_size=60000,
                            val_size=10000, img_size=32, synthetic=synthetic),
        budget=Budget(preset=preset, epochs=epochs, batch_size=64, lr=0.025, warmup_epochs=0.5, img_size=32,
                      train_batches=20, val_batches=10,
                      epochs_rule="modern recipe: preset epochs; original recipe: 90/300 of that, at least 1"),
        design={"net": {"kernel_size": 3}, "recipe": recipe},
        device="cpu", code_version="0.1.0", git_revision="03a31ec", packages={"torch": "2.9.0", "timm": "1.0.20"},
        command=command, created=created,
    )
    (run / CONFIG).write_text(config.to_json())
    final = fake_top1(index, seed)
    diverged = step.name == DIVERGED
    interrupted = (step.name, seed) == INTERRUPTED
    finished = 2 if diverged else 4 if interrupted else epochs
    lines = []
    for epoch in range(1, finished + 1):
        # converged curves: val top-1 levels off, the loss flattens (see test_verdict.py for underfit ones)
        val = final if epoch == epochs else round(final * (1 - 0.45 * math.exp(-5 * epoch / epochs)), 2)
        lines.append(EpochMetrics(
            epoch=epoch, train_loss=round(2.2 * math.exp(-6 * epoch / epochs) + 0.3 + 0.02 * index, 4),
            train_top1=round(val - 4, 2), val_loss=round(1.5 * math.exp(-0.2 * epoch), 4),
            val_top1=val, val_top5=95.0, lr=0.004, images_per_s=800.0 + 10 * index, seconds=12.0 + 0.5 * index,
        ).to_line())
    (run / METRICS).write_text("\n".join(lines) + "\n")
    (run / "lock").touch()
    if interrupted:
        return
    result = RunResult(status="done", epochs=epochs, val_top1=final, val_top5=99.0, train_top1=round(final - 4, 2),
                       best_val_top1=final, wall_seconds=epochs * (12.0 + 0.5 * index),
                       images_per_s=800.0 + 10 * index + seed,
                       per_class=[ClassScore.from_dict(c) for c in fake_per_class(index, seed)])
    if diverged:
        result = replace(result, status="diverged", epochs=2, val_top1=10.0, train_top1=10.0, best_val_top1=31.0,
                         diverged=Diverged(epoch=3, lr=0.004), per_class=[])
    (run / RESULT).write_text(result.to_json())


def index_of(step: str) -> int:
    return [s.name for s in ROADMAP].index(step)


def expected_top1(step: str) -> tuple[float, float]:
    values = [fake_top1(index_of(step), s) for s in SEEDS]
    return statistics.mean(values), statistics.stdev(values)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A fixture directory with report.md and figures built once (with per-class results for ConvNeXt-T)."""
    out = write_fixture(tmp_path_factory.mktemp("runs") / "fashion-mnist")
    build_report(out, classes_step="convnext_tiny")
    return out


@pytest.fixture(scope="module")
def report_text(built) -> str:
    return (built / "report.md").read_text(encoding="utf-8")


def table_rows(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """The per-step table of report.md: its header cells and each row's cells by step label."""
    block = text.split("## Results per step", 1)[1].split("\n\n", 2)[1]
    lines = [line for line in block.splitlines() if line.startswith("|")]

    def cells(line: str) -> list[str]:
        return [c.strip() for c in line.strip().strip("|").split(" | ")]

    header = cells(lines[0])
    rows = {cells(line)[0]: cells(line) for line in lines[2:]}
    return header, rows


# ------------------------------------------------------------------------------------------------ the table


def test_every_column_is_present(report_text):
    header, rows = table_rows(report_text)
    assert header == ["step", "section", "params (M, full size)", "GFLOPs (224 px)", "params (M, as trained)",
                      "GFLOPs (32 px)", "paper GFLOPs",
                      "top-1 % (mean ± std, n)", "Δ top-1", "Δ vs seed spread", "paper top-1", "paper Δ",
                      "train top-1", "images/s", "wall time / run", "status"]
    assert list(rows) == [f"↳ {s.name} (branch)" if s.branch_of else s.name for s in ROADMAP]
    assert all(len(r) == len(header) for r in rows.values())


def test_numbers_equal_the_records(report_text):
    header, rows = table_rows(report_text)
    col = {name: i for i, name in enumerate(header)}
    for step in ("stage_ratio", "gelu", "separate_downsampling"):
        mean, std = expected_top1(step)
        assert rows[step][col["top-1 % (mean ± std, n)"]] == f"{mean:.2f} ± {std:.2f} (n=2)"
    mean, _ = expected_top1("stage_ratio")
    prev, _ = expected_top1("training_recipe")
    assert rows["stage_ratio"][col["Δ top-1"]] == f"{mean - prev:+.2f}"
    assert rows["stage_ratio"][col["paper top-1"]] == "79.36"
    assert rows["stage_ratio"][col["paper Δ"]] == "+0.54"
    assert rows["stage_ratio"][col["section"]] == "2.2 Macro design"
    assert rows["stage_ratio"][col["params (M, full size)"]] == f"{(25_557_032 + 300_000) / 1e6:.2f}"
    assert rows["stage_ratio"][col["params (M, as trained)"]] == f"{(1_500_000 + 20_000) / 1e6:.2f}"
    assert rows["resnet50"][col["Δ top-1"]] == "—"
    # a branch compares with the step it branches from, in our numbers and in the paper's
    branch = rows["↳ kernel_5 (branch)"]
    assert branch[col["Δ top-1"]] == f"{expected_top1('kernel_5')[0] - expected_top1('move_up_dwconv')[0]:+.2f}"
    assert branch[col["paper Δ"]] == f"{80.35 - 79.92:+.2f}"
    assert rows["large_kernel"][col["paper Δ"]] == f"{80.57 - 79.92:+.2f}"  # main path skips the branch
    assert rows["gelu"][col["images/s"]] == f"{800 + 10 * index_of('gelu') + 0.5:,.0f}"
    assert rows["gelu"][col["status"]] == "done"


def test_significance_against_seed_spread(built, report_text):
    summary = summarize(load_runs(built)).set_index("step")
    row, prev = summary.loc["stage_ratio"], summary.loc["training_recipe"]
    pooled = math.sqrt((row["top1_std"] ** 2 + prev["top1_std"] ** 2) / 2)  # equal n: the plain average
    assert row["pooled_std"] == pytest.approx(pooled)
    assert row["significance"] == ("significant" if abs(row["delta"]) > 2 * pooled else "within noise")
    assert summary.loc["kernel_9", "significance"] == "spread unknown (1 seed)"  # one of its seeds finished
    assert "## Is each change bigger than the seed-to-seed spread?" in report_text
    assert f"`stage_ratio` {row['delta']:+.2f} (2σ = {2 * pooled:.2f})" in report_text


def test_diverged_missing_and_interrupted_are_shown_not_dropped(report_text):
    header, rows = table_rows(report_text)
    col = {name: i for i, name in enumerate(header)}
    status, top1 = col["status"], col["top-1 % (mean ± std, n)"]
    assert rows[DIVERGED][status] == "diverged at epoch 3"
    assert rows[DIVERGED][top1] == "—"
    assert rows[f"↳ {MISSING} (branch)"][status] == "missing"  # described by the catalog: still a branch
    assert rows["↳ kernel_9 (branch)"][status] == "s0: done; s1: interrupted after epoch 4/10"
    assert rows["↳ kernel_9 (branch)"][top1] == f"{fake_top1(index_of('kernel_9'), 0):.2f} (n=1)"
    # the step after a diverged one compares with the last step that has an accuracy, and says so
    mean, prev = expected_top1("separate_downsampling")[0], expected_top1("fewer_norms")[0]
    assert rows["separate_downsampling"][col["Δ top-1"]] == f"{mean - prev:+.2f} (vs fewer_norms)"
    assert rows["separate_downsampling"][col["paper Δ"]] == f"{81.97 - 81.41:+.2f}"
    assert rows["gelu"][col["Δ top-1"]] == f"{expected_top1('gelu')[0] - expected_top1('large_kernel')[0]:+.2f}"
    assert "- `layer_norm`: diverged at epoch 3 (0 of 2 runs finished)" in report_text


def test_header_says_what_was_run(report_text):
    lines = report_text.splitlines()
    assert "mean nothing" in lines[0] and "smoke" in lines[0]
    head = report_text.split("## Results per step")[0]
    for text in ("fashion-mnist: 10 classes, 60,000 training / 10,000 validation images", "**Resolution**: 32 px",
                 "**Epochs**: 10; resnet50: 3", "**Batch size**: 64", "`resnet` (sgd", "`convnext` (adamw",
                 "**Preset**: smoke", "**Seeds**: 2 per step planned; 2 recorded (0, 1)", "**Device**: cpu",
                 "**Code version**: 0.1.0 (git 03a31ec)",
                 "roadmap run --preset smoke --dataset fashion-mnist --seeds 2",
                 "90/300 of that, at least 1", "ratio 0.30, the paper's 90:300 = 0.30 → kept",
                 "plan written 2026-11-24T07:00:00Z"):
        assert text in head, text
    assert str(Path.cwd()) not in report_text and "/tmp" not in report_text


def test_footnotes_and_conventions(report_text):
    header, rows = table_rows(report_text)
    col = {name: i for i, name in enumerate(header)}
    assert rows["layer_norm"][col["paper GFLOPs"]] == "4.46[^1]"
    assert rows["layer_norm"][col["GFLOPs (224 px)"]] == "4.15"
    assert rows["separate_downsampling"][col["paper GFLOPs"]] == "4.49[^2]"
    assert "[^1]: `layer_norm`: The paper prints 4.46" in report_text
    assert "[^2]: `separate_downsampling`: ConvNeXt-T counts 4.456" in report_text
    assert "paper's convention" in report_text and "1 MAC = 1 FLOP" in report_text


def test_spearman_is_the_rank_correlation(built, report_text):
    summary = summarize(load_runs(built))
    both = summary.dropna(subset=["delta", "paper_delta"])
    ours, paper = both["delta"].rank().tolist(), both["paper_delta"].rank().tolist()
    mo, mp = statistics.mean(ours), statistics.mean(paper)
    cov = sum((a - mo) * (b - mp) for a, b in zip(ours, paper, strict=True))
    rho = cov / math.sqrt(sum((a - mo) ** 2 for a in ours) * sum((b - mp) ** 2 for b in paper))
    assert f"over {len(both)} steps: **ρ = {rho:+.2f}**" in report_text


def test_per_class_section(report_text):
    section = report_text.split("## Per-class results: separate_downsampling", 1)[1]
    index = index_of("separate_downsampling")
    for c, name in enumerate(CLASSES):
        precision = statistics.mean(p[c]["precision"] for p in (fake_per_class(index, s) for s in SEEDS))
        recall = statistics.mean(p[c]["recall"] for p in (fake_per_class(index, s) for s in SEEDS))
        assert f"| {name} | {precision:.2f} | {recall:.2f} |" in section
    assert "mean over 2 seeds" in section and "| **macro average** |" in section and "| 10,000 |" in section


def test_figures_are_real_pngs(built, report_text):
    for name in FIGURES:
        path = built / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        height, width = matplotlib.image.imread(path).shape[:2]
        assert 600 <= width <= 4000 and 400 <= height <= 4000, (name, width, height)
        assert f"]({name})" in report_text  # referenced by relative path


def test_copied_directory_rebuilds_byte_identical(built, tmp_path):
    copy = tmp_path / "elsewhere" / "renamed"
    shutil.copytree(built, copy)
    for name in ("report.md", *FIGURES):
        (copy / name).unlink()
    build_report(copy, classes_step="convnext_tiny")
    for name in ("report.md", *FIGURES):
        assert (copy / name).read_bytes() == (built / name).read_bytes(), name


def test_reports_never_import_torch(built, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    code = (
        "import sys, reports\n"
        f"reports.build_report({str(copy)!r}, classes_step='convnext_tiny')\n"
        f"reports.results_table({str(copy)!r}, 'json')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'timm', 'runner', 'torchvision')"
        " or m == 'roadmap.model')\n"
        "assert not bad, bad\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------------------------------------- results_table


def test_results_table_formats(built):
    data = json.loads(results_table(built, "json"))
    assert [d["step"] for d in data] == [s.name for s in ROADMAP]
    gelu = next(d for d in data if d["step"] == "gelu")
    mean, std = expected_top1("gelu")
    assert gelu["top1_mean"] == pytest.approx(mean) and gelu["top1_std"] == pytest.approx(std)
    assert gelu["n"] == 2 and gelu["paper_top1"] == 80.62 and gelu["status"] == "done"
    assert next(d for d in data if d["step"] == DIVERGED)["top1_mean"] is None

    csv = results_table(built, "csv").splitlines()
    assert csv[0].startswith("step,label,section,branch_of,params_224_m,gflops_224,params_m,gflops_run")
    assert len(csv) == 1 + len(ROADMAP)

    markdown = results_table(built, "markdown")
    assert markdown.startswith("| step | section |") and "[^1]: `layer_norm`" in markdown

    text = results_table(built, "table")
    first = text.splitlines()[0]
    assert first.startswith("step") and "top-1 % (mean ± std, n)" in first and "|" not in first
    assert "diverged at epoch 3" in text and "[1] `layer_norm`" in text

    with pytest.raises(RoadmapError, match="unknown results format 'xml'"):
        results_table(built, "xml")


# ------------------------------------------------------------------------------------------ status and order


def test_held_lock_means_running(built, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    lock = copy / run_dir_name(*INTERRUPTED, "smoke") / "lock"
    with open(lock) as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        runs = load_runs(copy)
        fcntl.flock(held, fcntl.LOCK_UN)
    row = runs[(runs["step"] == INTERRUPTED[0]) & (runs["seed"] == INTERRUPTED[1])].iloc[0]
    assert row["status"] == "running" and row["status_text"] == "running (epoch 4/10 done)"
    assert load_runs(copy).set_index("run_id").loc[lock.parent.name, "status"] == "interrupted"


def test_without_plan_steps_follow_the_roadmap(built, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    (copy / "plan.json").unlink()
    extra = copy / "resnet50-s0-leftover00"  # a run of a spec outside the roadmap goes last
    shutil.copytree(copy / run_dir_name("resnet50", 0, "smoke"), extra)
    config = json.loads((extra / "config.json").read_text())
    config.update(step="convnext_tiny-layer_norm", step_name="separate_downsampling", paper=None)
    (extra / "config.json").write_text(json.dumps(config))
    composed = copy / "resnet50+gelu-s0-leftover01"
    shutil.copytree(extra, composed)
    config.update(step="resnet50+gelu", step_name="gelu", created="2026-11-24T08:00:00Z")
    (composed / "config.json").write_text(json.dumps(config))
    summary = summarize(load_runs(copy)).set_index("step")
    expected = [s.name for s in ROADMAP if s.name != MISSING] + ["convnext_tiny-layer_norm", "resnet50+gelu"]
    assert list(summary.index) == expected  # kernel_11 has no record and no plan: nothing says it is missing
    # a composed spec compares with the step it starts from; the paper never trained it
    assert summary.loc["convnext_tiny-layer_norm", "delta_vs"] == "separate_downsampling"
    assert summary.loc["resnet50+gelu", "delta_vs"] == "resnet50"
    assert math.isnan(summary.loc["resnet50+gelu", "paper_top1"])
    assert math.isnan(summary.loc["resnet50+gelu", "paper_delta"])


def test_runs_outside_the_plan_are_listed_not_counted(built, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    stale = copy / "gelu-s7-0000000000"
    shutil.copytree(copy / run_dir_name("gelu", 0, "smoke"), stale)
    runs = load_runs(copy)
    assert not runs.set_index("run_id").loc[stale.name, "counted"]
    assert summarize(runs).set_index("step").loc["gelu", "n"] == 2
    assert f"- `{stale.name}` (done): not in plan.json (an earlier plan)" in excluded_lines(runs)


def test_plan_with_nothing_started_yet(built, tmp_path):
    """A new plan whose runs have not started, beside runs of an earlier plan: every step reads 'missing'."""
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    plan = json.loads((copy / "plan.json").read_text())
    plan["runs"] = [dict(r, dir=r["dir"] + "x") for r in plan["runs"]]
    (copy / "plan.json").write_text(json.dumps(plan))
    summary = summarize(load_runs(copy))
    assert set(summary["status"]) == {"missing"} and len(summary) == len(ROADMAP)
    text = build_report(copy).read_text()
    assert "## Run directories not counted" in text and "- `gelu`: missing (0 of 2 runs finished)" in text


def test_single_seed_says_spread_unknown(tmp_path):
    out = write_fixture(tmp_path / "one-seed", preset="short", seeds=(0,))
    summary = summarize(load_runs(out))
    assert set(summary.loc[summary["delta"].notna(), "significance"]) == {"spread unknown (1 seed)"}
    assert summary.set_index("step").loc["gelu", "top1_std"] != summary.set_index("step").loc["gelu", "top1_std"]


def test_warning_line_only_for_smoke_or_synthetic(tmp_path):
    real = load_runs(write_fixture(tmp_path / "real", preset="short"))
    assert not pipeline_check_only(real)
    assert header_lines(real, None)[0].startswith("# ConvNeXt roadmap on fashion-mnist")
    synthetic = load_runs(write_fixture(tmp_path / "synthetic", preset="short", synthetic=True))
    first = header_lines(synthetic, None)[0]
    assert "mean nothing" in first and "synthetic" in first


def test_report_from_a_single_unfinished_run(tmp_path):
    """No plan, one interrupted run, no finished epoch: the report and its figures still render."""
    out = tmp_path / "runs"
    run = out / "resnet50-s0-abcdef0123"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"step": "resnet50", "seed": 0, "dataset": {"name": "x"}}))
    text = build_report(out).read_text()
    assert "interrupted before epoch 1" in text
    assert all((out / name).is_file() for name in FIGURES)


# ------------------------------------------------------------------------------------------------ errors


def test_errors_are_one_line_roadmap_errors(built, tmp_path):
    with pytest.raises(RoadmapError, match="no such directory"):
        load_runs(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RoadmapError, match="contains no run records"):
        build_report(tmp_path / "empty")
    with pytest.raises(RoadmapError, match=r"no results for step 'kernel_13'.*choose one of resnet50, "):
        build_report(built, classes_step="kernel_13")

    cases = {
        "config.json": run_dir_name("gelu", 0, "smoke") + "/config.json",
        "result.json": run_dir_name("gelu", 1, "smoke") + "/result.json",
        "metrics.jsonl": run_dir_name("stage_ratio", 0, "smoke") + "/metrics.jsonl",
        "plan.json": "plan.json",
    }
    for kind, relative in cases.items():
        copy = tmp_path / f"bad-{kind}"
        shutil.copytree(built, copy)
        path = copy / relative
        if kind == "metrics.jsonl":
            path.write_text('{"epoch": 1}\n{"epoch": 2,\n{"epoch": 3}\n')
        else:
            path.write_text(path.read_text()[:-5])
        if kind == "plan.json":
            with pytest.raises(RoadmapError) as err:
                build_report(copy)
            message = str(err.value)
        else:  # a damaged run is listed as unreadable, with the reason; the others are reported
            text = build_report(copy).read_text()
            row = load_runs(copy).set_index("run_id").loc[path.parent.name]
            assert row["status"] == "unreadable" and "unreadable" in text, kind
            message = row["unreadable"]
            assert message in text
        assert "malformed JSON" in message and str(path) in message and "\n" not in message, message


def test_half_written_last_metrics_line_of_an_unfinished_run_is_skipped(built, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    metrics = copy / run_dir_name(*INTERRUPTED, "smoke") / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + '{"epoch": 5, "train_lo')
    row = load_runs(copy).set_index("run_id").loc[metrics.parent.name]
    assert row["status_text"] == "interrupted after epoch 4/10"
