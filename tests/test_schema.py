"""The record schema (roadmap.schema): every record written so far loads, reading is tolerant, versions are checked.

docs/example-fashion-mnist holds real records of the current version (51 runs and their plan.json); each must load
through the schema and convert back to exactly what is on disk, so that the schema neither loses nor invents a field.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from roadmap.record_files import Unreadable
from roadmap.schema import (
    CONFIG,
    METRICS,
    PLAN,
    RESULT,
    SCHEMA_VERSION,
    Budget,
    EpochMetrics,
    NotARecord,
    RunConfig,
    RunResult,
    read_config,
    read_metrics,
    read_plan,
    read_result,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "example-fashion-mnist"


def on_disk(path: Path) -> dict:
    """A record file as JSON, with the version the files written before it was recorded have."""
    return {"schema_version": 1, **json.loads(path.read_text())}


def test_every_example_record_loads_and_round_trips():
    runs = sorted(p.parent for p in EXAMPLE.glob(f"*/{CONFIG}"))
    plan = read_plan(EXAMPLE / PLAN)
    assert len(runs) == len(plan.runs) == 51
    assert {r.dir for r in plan.runs} == {r.name for r in runs}
    assert plan.to_dict() == on_disk(EXAMPLE / PLAN)
    for run in runs:
        config = read_config(run / CONFIG)
        assert config.run_id == run.name and isinstance(config.budget, Budget) and config.budget.epochs >= 1
        assert config.to_dict() == on_disk(run / CONFIG)
        result = read_result(run / RESULT)
        assert result.status == "done" and len(result.per_class) == config.dataset.num_classes
        assert result.to_dict() == on_disk(run / RESULT)
        metrics = read_metrics(run / METRICS)
        assert [m.epoch for m in metrics] == list(range(1, result.epochs + 1))
        assert [m.to_line() for m in metrics] == (run / METRICS).read_text().splitlines()


def test_new_records_carry_the_version_and_old_ones_read_as_version_1(tmp_path):
    assert RunResult().to_dict()["schema_version"] == SCHEMA_VERSION
    path = tmp_path / RESULT
    path.write_text(json.dumps({"status": "done", "epochs": 3}))
    assert read_result(path).schema_version == 1
    path.write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1, "status": "done"}))
    with pytest.raises(NotARecord, match="newer than this code reads"):
        read_result(path)


def test_reading_is_tolerant_of_partial_and_odd_records(tmp_path):
    path = tmp_path / CONFIG
    path.write_text(json.dumps({"step": "gelu", "seed": "zero", "budget": {"epochs": 3}, "paper": None,
                                "dataset": {"classes": ["a", 1, {"b": 2}]}, "future_field": 1}))
    config = read_config(path)
    assert config.step == "gelu" and config.seed is None and config.paper is None
    assert config.budget.epochs == 3 and config.budget.preset is None  # a field the file lacks reads as None
    assert config.dataset.classes == ["a", "1"]
    assert "future_field" not in config.to_dict()
    path.write_text(json.dumps({"seed": 0}))
    with pytest.raises(NotARecord, match="no 'step'"):
        read_config(path)
    path.write_text("{")
    with pytest.raises(Unreadable, match="malformed JSON"):
        read_config(path)


def test_optional_fields_are_written_only_when_set():
    assert "compile_seconds" not in EpochMetrics(epoch=1).to_dict()
    assert EpochMetrics(epoch=1, compile_seconds=2.0).to_dict()["compile_seconds"] == 2.0
    assert "baseline" not in RunConfig(step="gelu").to_dict() and "micro_batch" not in RunConfig(step="gelu").to_dict()
    assert RunConfig(step="timm:x", baseline="x").to_dict()["baseline"] == "x"


def test_a_torn_last_metrics_line_is_dropped(tmp_path, capsys):
    path = tmp_path / METRICS
    path.write_text(EpochMetrics(epoch=1, val_top1=50.0).to_line() + "\n" + '{"epoch": 2, "val_')
    assert [m.epoch for m in read_metrics(path)] == [1]
    assert "torn last line 2" in capsys.readouterr().err
