"""When each run finished (result.json's `finished`, schema version 2) and the roadmap's elapsed wall time in the
report's "What was run": shown from records that have it, left out for records written before it (version 1), so
that an older report rebuilds byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_reports import write_fixture

from reports import load_runs
from reports.elapsed import wall_time_line
from reports.table import fmt_duration
from reports.what_was_run import header_lines
from roadmap.schema import RESULT, SCHEMA_VERSION, NotARecord, RunResult, read_result


def finish_runs(out: Path, skip: str | None = None) -> dict[str, str]:
    """Give every result.json of the fixture in `out` a `finished` (the k-th run 7 minutes after the first was
    created, and so on), except the runs whose directory starts with `skip` (left as version-1 records)."""
    finished = {}
    for k, path in enumerate(sorted(out.glob(f"*/{RESULT}"))):
        if skip and path.parent.name.startswith(skip):
            continue
        data = json.loads(path.read_text())
        data.update(schema_version=SCHEMA_VERSION, finished=f"2026-11-24T07:{7 + k:02d}:30Z")
        path.write_text(json.dumps(data))
        finished[path.parent.name] = data["finished"]
    return finished


def counted(out: Path):
    runs = load_runs(out)
    return runs[runs["counted"].astype(bool)]


def test_a_result_records_when_it_finished_and_a_version_1_result_still_reads(tmp_path):
    assert SCHEMA_VERSION == 2
    new = RunResult(status="done", wall_seconds=3.0, finished="2026-12-02T19:46:43Z")
    assert new.to_dict()["schema_version"] == 2 and new.to_dict()["finished"] == "2026-12-02T19:46:43Z"
    path = tmp_path / RESULT
    path.write_text(new.to_json())
    assert read_result(path) == new
    path.write_text(json.dumps({"status": "done", "wall_seconds": 3.0}))  # version 1: no version, no `finished`
    old = read_result(path)
    assert old.schema_version == 1 and old.finished is None and "finished" not in old.to_dict()
    path.write_text(json.dumps({"schema_version": 3, "status": "done", "finished": "2030-01-01T00:00:00Z"}))
    with pytest.raises(NotARecord, match="schema_version 3, newer than this code reads"):
        read_result(path)


def test_elapsed_wall_time_beside_the_sum_of_the_runs(tmp_path):
    out = write_fixture(tmp_path / "runs", preset="short")
    finished = finish_runs(out)
    runs = counted(out)
    ended = runs[runs["status"].isin(["done", "diverged"])]
    assert len(ended) == len(finished) and set(ended["finished"]) == set(finished.values())
    last = max(finished.values())  # minutes after 07:00:00, plus 30 s
    elapsed = fmt_duration(60 * int(last[14:16]) + 30)
    line = (f"- **Wall time**: {elapsed} elapsed, from the first run created to the last run finished; the "
            f"{len(ended)} finished runs' own times sum to {fmt_duration(ended['wall_seconds'].sum())} "
            "(3 planned runs not finished)")  # kernel_11 missing (2 seeds), kernel_9 seed 1 interrupted
    assert wall_time_line(runs) == line
    head = header_lines(runs, None)
    assert head[head.index(line) - 1].startswith("- **When**: runs created")


def test_no_elapsed_line_while_a_finished_run_lacks_its_time(tmp_path):
    """Version-1 results (the committed example's) have no `finished`: no elapsed line, the header as before."""
    out = write_fixture(tmp_path / "old", preset="short")
    before = header_lines(counted(out), None)
    assert wall_time_line(counted(out)) is None and not any("Wall time" in line for line in before)
    finish_runs(out, skip="gelu-s1")  # one finished run still without its time
    assert wall_time_line(counted(out)) is None and header_lines(counted(out), None) == before
    finish_runs(out)
    assert wall_time_line(counted(out)) is not None
