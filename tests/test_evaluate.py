"""`roadmap evaluate OUT --dataset SPEC` (issue #33 item 6): each trained step of a result directory on a data set with
its classes, beside the top-1 it was trained to. On its own validation split a run gives its recorded top-1 and top-5
exactly (the same images, transform, batches and precision as training's last evaluation, on the CPU), and so do the
same images as a folder of one's own (`folder:PATH`); other classes, or no finished run, are one line and exit 2.

One tiny result directory is trained once for the module (smoke preset, synthetic data): gelu and layer_norm,
2 seeds each.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from test_trained import RUN, train

from roadmap import load_run

DATA = "synthetic:train=64,val=32"
assert RUN[RUN.index("--dataset") + 1] == DATA  # the data set the module's runs train on


@pytest.fixture(scope="module")
def result_dir(tmp_path_factory) -> Path:
    return train(tmp_path_factory.mktemp("evaluate") / "out", "--steps", "gelu,layer_norm", "--seeds", "2")


def rows_of(cli, *argv: str) -> list[dict]:
    code, text, err = cli("evaluate", *argv, "--format", "json")
    assert code == 0, err
    return json.loads(text)


def error_line(code: int, err: str) -> str:
    assert code == 2 and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("roadmap: error:"), err
    return err.strip()


def test_on_its_own_validation_split_each_step_gives_its_trained_accuracy_exactly(result_dir, cli):
    rows = rows_of(cli, str(result_dir), "--dataset", DATA)
    assert [r["step"] for r in rows] == ["gelu", "layer_norm"]  # the roadmap's order (plan.json's)
    for r in rows:
        run = load_run(result_dir, r["step"], "median")  # export's default seed
        assert r["seed"] == run.config.seed and r["run"] == run.path.name
        assert r["trained_on"] == run.config.dataset.name == r["dataset"]
        assert r["top1"] == r["trained_top1"] == run.result.val_top1
        assert r["top5"] == run.result.val_top5 and r["delta_top1"] == 0.0
        assert r["images"] == r["trained_images"] == 32 and r["img_size"] == 32
        assert r["split"] == "val" and r["device"] == "cpu" and r["precision"] == "fp32"


def test_the_same_images_as_a_folder_of_ones_own_give_the_same_numbers(result_dir, cli, cache, tmp_path):
    from runner.data import load_dataset

    splits = load_dataset(DATA)
    names = splits.info.classes
    for i in range(len(splits.val)):  # PNG: lossless; 32 px, smaller than the side a folder is shrunk to
        image, label = splits.val[i]
        (tmp_path / "mine" / names[label]).mkdir(parents=True, exist_ok=True)
        image.save(tmp_path / "mine" / names[label] / f"{i:03d}.png")
    rows = rows_of(cli, str(result_dir), "--dataset", f"folder:{tmp_path / 'mine'}", "--split", "all",
                   "--steps", "gelu", "--seed", "best")
    run = load_run(result_dir, "gelu", "best")
    assert len(rows) == 1 and rows[0]["seed"] == run.config.seed and rows[0]["images"] == 32
    assert rows[0]["top1"] == run.result.val_top1 and rows[0]["top5"] == run.result.val_top5


def test_steps_seed_split_and_size(result_dir, cli):
    rows = rows_of(cli, str(result_dir), "--dataset", DATA, "--steps", "layer_norm", "--seed", "1",
                   "--split", "train", "--img-size", "48", "--batch-size", "16")
    assert [(r["step"], r["seed"], r["split"], r["images"], r["img_size"]) for r in rows] == [
        ("layer_norm", 1, "train", 64, 48)]
    r = rows[0]
    assert r["delta_top1"] == pytest.approx(r["top1"] - r["trained_top1"]) and 0 <= r["top1"] <= r["top5"] <= 100
    assert [r["images"] for r in rows_of(cli, str(result_dir), "--dataset", DATA, "--split", "all")] == [96, 96]


def test_the_table_and_markdown_show_each_step_beside_its_trained_top1(result_dir, cli):
    code, text, err = cli("evaluate", str(result_dir), "--dataset", DATA)
    assert code == 0 and err == "", err  # the progress bar only on a terminal
    lines = text.splitlines()
    assert lines[0].split() == ["step", "seed", "trained", "on", "px", "trained", "top-1", "images", "top-1", "top-5",
                                "Δ", "top-1"]
    top1 = {s: f"{load_run(result_dir, s, 'median').result.val_top1:.2f}" for s in ("gelu", "layer_norm")}
    assert lines[1].split()[0] == "gelu" and lines[1].split()[4] == top1["gelu"] == lines[1].split()[6]
    assert lines[1].split()[-1] == "+0.00" and lines[2].split()[0] == "layer_norm"
    assert f"Evaluated on {DATA} (val split, 32 images) on cpu in fp32" in text
    code, text, err = cli("evaluate", str(result_dir), "--dataset", DATA, "--format", "markdown")
    assert code == 0 and text.startswith("| step ") and "| +0.00 " in text, err


def test_csv_and_json_parse_with_the_same_numbers(result_dir, cli):
    as_json = rows_of(cli, str(result_dir), "--dataset", DATA)
    code, text, err = cli("evaluate", str(result_dir), "--dataset", DATA, "--format", "csv")
    assert code == 0, err
    as_csv = list(csv.DictReader(io.StringIO(text)))
    assert [r["step"] for r in as_csv] == [r["step"] for r in as_json]
    for c, j in zip(as_csv, as_json, strict=True):
        assert set(c) == set(j) and float(c["top1"]) == j["top1"] and int(c["seed"]) == j["seed"]


def test_a_data_set_with_other_classes_is_one_line_and_exit_2(result_dir, cli):
    code, _, err = cli("evaluate", str(result_dir), "--dataset", "synthetic:classes=3,train=6,val=6")
    line = error_line(code, err)
    assert "does not have the classes gelu (seed" in line and "3 classes, the run 10" in line


def test_class_mismatch_says_which_classes_differ():
    from runner.data import DatasetInfo
    from runner.evaluation import class_mismatch

    def info(*classes: str, n: int | None = None) -> DatasetInfo:
        return DatasetInfo("x", n or len(classes), tuple(classes), 1, 1, 32, False)

    assert class_mismatch(["cat", "dog"], 2, info("cat", "dog")) is None
    assert class_mismatch([], 2, info(n=2)) is None and class_mismatch(["cat", "dog"], 2, info(n=2)) is None
    assert class_mismatch([], 2, info(n=3)) == "3 classes, the run 2"
    assert "class 0 is 'dog' here, 'cat' in the run" in class_mismatch(["cat", "dog"], 2, info("dog", "cat"))
    assert class_mismatch(["cat", "dog"], 2, info("cat", "fox")) == "2 classes, the run 2: the data set lacks dog " \
        "and has fox besides"


def test_a_result_directory_without_finished_runs_is_one_line(result_dir, tmp_path, cli):
    out = tmp_path / "out"
    out.mkdir()
    run = load_run(result_dir, "gelu", 0).path
    shutil.copytree(run, out / run.name)
    (out / run.name / "result.json").unlink()  # unfinished
    code, _, err = cli("evaluate", str(out), "--dataset", DATA)
    assert "holds no finished run of the roadmap's steps: nothing to evaluate" in error_line(code, err)
    code, _, err = cli("evaluate", str(tmp_path / "nowhere"), "--dataset", DATA)
    assert "does not exist" in error_line(code, err)
    code, _, err = cli("evaluate", str(out), "--dataset", DATA, "--steps", "gelu")
    assert "'gelu' has no finished run" in error_line(code, err)


def test_roadmap_help_lists_evaluate(cli):
    code, text, _ = cli("--help")
    assert code == 0 and "evaluate" in text and "same classes" in text
    code, text, _ = cli("evaluate", "--help")
    assert code == 0 and "--dataset" in text and "folder:PATH" in text and "--img-size" in text


def test_a_run_on_a_folder_is_evaluated_on_the_split_it_trained_on(tmp_path, cli, cache):
    from test_folder_data import class_folder

    root = class_folder(tmp_path / "animals", per_class=(6, 6, 6))
    out = tmp_path / "out"
    budget = ["--preset", "smoke", "--epochs", "1", "--train-batches", "2", "--batch-size", "4", "--quiet",
              "--no-report", "--steps", "gelu"]
    code, _, err = cli("run", "--dataset", f"folder:{root}", *budget, "--val-fraction", "0.5", "--out", str(out))
    assert code == 0, err
    run = load_run(out, "gelu")
    (row,) = rows_of(cli, str(out), "--dataset", f"folder:{root}")  # the run's 0.5, not the default 0.2
    assert row["images"] == run.config.dataset.val_size == 9 and row["top1"] == run.result.val_top1
    (row,) = rows_of(cli, str(out), "--dataset", f"folder:{root}", "--val-fraction", "0.2")
    assert row["images"] == 3
    code, text, err = cli("evaluate", str(out), "--dataset", f"folder:{root}")
    assert code == 0 and "0.5 of each class held out for validation (seed 0;" in text, err
