"""The roadmap's elapsed wall time, from the records' own times: the first run's `created` (config.json) to the last
run's `finished` (result.json, schema version 2), beside the sum of the runs' own wall times. Runs trained side by
side (`roadmap run --jobs N`) make the elapsed time shorter than the sum; runs trained at different times make it
longer."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from reports.table import fmt_duration

ENDED = ("done", "diverged")
"""The statuses of a run that wrote its result.json."""


def _time(text: object) -> dt.datetime | None:
    """A record's UTC time ("2026-12-02T19:46:43Z"), or None when it is missing or malformed."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return None


def wall_time_line(runs: pd.DataFrame) -> str | None:
    """'What was run''s line on time, or None when the records cannot say: no run ended, or a run lacks its
    `created` or (ended) its `finished` (records written before version 2), so that older reports rebuild as
    they were."""
    present = runs[~runs["status"].isin(["missing", "unreadable"])]
    ended = present[present["status"].isin(ENDED)]
    created = [_time(t) for t in present["created"]]
    finished = [_time(t) for t in ended["finished"]]
    if not len(ended) or None in created or None in finished:
        return None
    elapsed = (max(finished) - min(created)).total_seconds()
    runs_sum = float(ended["wall_seconds"].sum())
    line = (f"- **Wall time**: {fmt_duration(elapsed)} elapsed, from the first run created to the last run "
            f"finished; the {len(ended)} finished runs' own times sum to {fmt_duration(runs_sum)}")
    waiting = len(runs) - len(ended)
    if waiting:
        line += f" ({waiting} planned run{'s' if waiting != 1 else ''} not finished)"
    return line
