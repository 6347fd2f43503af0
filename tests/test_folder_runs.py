"""`roadmap run` on a user's own folder (issue #31), end to end at the tiniest sizes: class folders only, Kaggle's
layout as it ships, a folder with 3 damaged files (exit 2, then --skip-unreadable), the end-of-run line rounded,
and the catalog's data sets keeping their run ids. The reader-level cases are in tests/test_folder_data.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_folder_data import class_folder, damaged_folder, kaggle_folder

BUDGET = ["--preset", "smoke", "--epochs", "1", "--train-batches", "2", "--val-batches", "1", "--batch-size", "4",
          "--quiet"]
TINY = [*BUDGET, "--steps", "convnext_tiny"]


def configs(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("*/config.json"))]


def test_a_folder_of_class_folders_trains_and_records_its_split(tmp_path, cli, cache):
    root = class_folder(tmp_path / "animals", per_class=(6, 6, 6))
    out = tmp_path / "out"
    code, text, err = cli("run", "--dataset", f"folder:{root}", *TINY, "--out", str(out))
    assert code == 0, err
    assert "0.2 of each class held out for validation (a fixed split, seed 0" in text
    assert re.search(r"done, val top-1 \d+\.\d\d, ", text), text  # rounded as the tables are (#31 item 5)
    (config,) = configs(out)
    assert config["dataset"]["split"] == {"val_fraction": 0.2, "seed": 0}
    assert config["dataset"]["layout"] == "class folders" and "skipped" not in config["dataset"]
    assert config["identity"]["dataset"]["split"] == {"val_fraction": 0.2, "seed": 0}
    assert (config["dataset"]["train_size"], config["dataset"]["val_size"]) == (15, 3)
    report = (out / "report.md").read_text()
    assert "validation split made here: 0.2 of each class held out, a fixed split (seed 0)" in report
    code, text, _ = cli("run", "--dataset", f"folder:{root}", *TINY, "--out", str(out))
    assert "done earlier, reused" in text and "decoded earlier" in text  # the same split: the same run
    code, text, _ = cli("run", "--dataset", f"folder:{root}", *TINY, "--val-fraction", "0.5", "--out", str(out))
    assert code == 0 and len(configs(out)) == 2  # another split: another run


def test_kaggles_layout_as_it_ships_trains_with_no_other_flag(tmp_path, cli, cache):
    root = kaggle_folder(tmp_path / "dog-breed-identification")
    out = tmp_path / "out"
    code, text, err = cli("run", "--dataset", f"folder:{root}", *TINY, "--out", str(out))
    assert code == 0, err
    (config,) = configs(out)
    assert config["dataset"]["classes"] == ["beagle", "pug", "shiba"]
    assert config["dataset"]["layout"] == "labels.csv (id,breed) with train/"
    assert config["dataset"]["split"] == {"val_fraction": 0.2, "seed": 0}


def test_three_damaged_files_one_command_one_line_then_skipped(tmp_path, cli, cache):
    root = damaged_folder(tmp_path / "ds")
    out = tmp_path / "out"
    code, _, err = cli("run", "--dataset", f"folder:{root}", *TINY, "--out", str(out))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    listed = out / "unreadable-images.txt"
    assert "3 of 21" in err and str(listed) in err
    assert len(listed.read_text().splitlines()) == 1 + 3
    code, text, err = cli("run", "--dataset", f"folder:{root}", *BUDGET, "--upto", "stage_ratio", "--skip-unreadable",
                          "--out", str(out))  # a roadmap: every step reads the same split of the same images
    assert code == 0, err
    assert "3 unreadable image file(s) left out (--skip-unreadable)" in text
    done = configs(out)
    assert len(done) >= 2 and all(c["dataset"]["skipped"] == 3 for c in done)
    assert all(json.loads((out / c["run_id"] / "result.json").read_text())["status"] == "done" for c in done)
    assert "3 unreadable image file(s) left out (--skip-unreadable)" in (out / "report.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["--val-fraction", "0.2"], "--val-fraction is for a folder:PATH data set, and --dataset synthetic"),
    (["--skip-unreadable"], "--skip-unreadable is for a folder:PATH data set"),
    (["--label-columns", "a"], "--label-columns takes two column names"),
    (["--val-fraction", "1.5"], "must be between 0 and 1"),
])
def test_folder_options_elsewhere_are_one_line(tmp_path, cli, argv, message):
    code, _, err = cli("run", "--dataset", "synthetic:train=64,val=16", *TINY, *argv, "--out", str(tmp_path / "o"))
    assert code == 2 and message in err and "Traceback" not in err


def test_catalog_data_sets_keep_their_run_ids():
    """The example's 51 run ids (docs/example-fashion-mnist) are what the plan gives now: a folder's identity
    changed, no catalog data set's did."""
    from runner.data import catalog
    from runner.launchers.local import dataset_key
    from runner.planning.options import RunOptions, Selection, Training
    from runner.planning.runs import plan

    example = Path(__file__).resolve().parents[1] / "docs" / "example-fashion-mnist"
    info = catalog.lookup("fashion-mnist").info()
    opts = RunOptions(Selection(dataset="fashion-mnist"), Training(preset="cpu"))
    runs = plan(opts, dataset_key(info, "fashion-mnist"), info.native_size, info.num_classes, info.train_size)
    assert dataset_key(info, "fashion-mnist") == "fashion-mnist"
    assert sorted(r.run_id for r in runs) == sorted(e["dir"] for e in json.loads((example / "plan.json").read_text())
                                                    ["runs"])
