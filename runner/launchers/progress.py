"""One progress line for a whole roadmap trained by child processes (runner.launchers.children): runs done of all
planned, runs running, runs failed, and the time left (`eta_seconds`).

On a terminal the line is redrawn in place on stderr, and the launcher's other lines are printed above it; without
one (--quiet, a log file) it is printed as a line of its own each time a run ends.

The time left is projected from what is known of each run before it runs, its work (`run_work`: GFLOPs x images
trained), at the pace measured so far (work of the runs finished here / the seconds they took). Counting runs
instead would take a roadmap's first, shortest runs (ResNet-50's 3 epochs to the others' 10) for all the others:
the recorded example (tests/test_eta.py) said 13 to 26 minutes after its first runs, of 44.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from roadmap.durations import duration
from roadmap.schema import Budget


def run_work(gflops: float, budget: Budget, train_size: int) -> float:
    """A run's work before it runs: its GFLOPs at the trained size x the images it trains (epochs x batches x batch
    size). Evaluation (forward passes over validation images) is left out: a small share of every run's work, 7 to
    11 % on the cpu preset, counting an evaluated image as a third of a trained one."""
    batches = train_size // budget.batch_size
    if budget.train_batches:
        batches = min(batches, budget.train_batches)
    return gflops * budget.epochs * batches * budget.batch_size


def eta_seconds(waiting: Sequence[float], running: Sequence[tuple[float, float]],
                finished: Sequence[tuple[float, float]], jobs: int = 1) -> float | None:
    """Seconds until a roadmap ends, `jobs` runs at a time: `waiting`, the work of each run not started; `running`
    and `finished`, (work, seconds since it started / it took) of the runs started here. None before a run has
    finished (no pace yet).

    One job's pace is the finished runs' work / their seconds (runs side by side slow each other down, and that is
    in it); a running run has its work less what that pace did of it since it started left. The runs left then take
    their work / (jobs x pace), and never less than the longest of them alone."""
    work, seconds = sum(w for w, _ in finished), sum(s for _, s in finished)
    if work <= 0 or seconds <= 0:
        return None
    pace = work / seconds
    left = [*waiting, *(max(w - pace * s, 0.0) for w, s in running)]
    return max(sum(left) / jobs, max(left, default=0.0)) / pace


class RoadmapProgress:
    """Counts the runs of one launch and shows where the roadmap stands.

    `total`: the runs planned; `work`: the work (`run_work`) of each run this launch trains, by run id; the others
    are done (finished before this launch, or held by another process, which finishes them). `jobs`: how many runs
    it trains at a time. Runs finished before this launch took no time of it: only the runs it trains give the
    pace. A run it resumes from a checkpoint counts its whole work, not what it has left: a launch that resumes
    runs has a rough ETA until they have ended."""

    def __init__(self, total: int, work: dict[str, float], jobs: int = 1, log: Callable[[str], None] = print,
                 live: bool = False, stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic):
        self.total, self.done, self.failed = total, total - len(work), 0
        self._waiting, self._jobs = dict(work), jobs  # the runs not started yet: their work
        self._began: dict[str, tuple[float, float]] = {}  # the runs running: their work, when each started
        self._finished: list[tuple[float, float]] = []  # (work, seconds) of each run finished here
        self._log, self._live, self._stream, self._clock = log, live, stream or sys.stderr, clock
        self._shown = ""

    @property
    def running(self) -> int:
        return len(self._began)

    def seconds_left(self) -> float | None:
        """The ETA in seconds (`eta_seconds`), None before a run has finished here."""
        now = self._clock()
        running = [(w, now - t) for w, t in self._began.values()]
        return eta_seconds(list(self._waiting.values()), running, self._finished, self._jobs)

    def line(self) -> str:
        """'roadmap: 12/51 runs done, 2 running, ETA 23m 10s' (and the failed runs, when there are any)."""
        failed = f", {self.failed} failed" if self.failed else ""
        left = self.total - self.done - self.failed
        if not left:
            eta = "all ended"
        elif (seconds := self.seconds_left()) is None:
            eta = "ETA after the first run"
        else:
            eta = f"ETA {duration(seconds, decimals=0)}"
        return f"roadmap: {self.done}/{self.total} runs done, {self.running} running{failed}, {eta}"

    def started(self, run_id: str) -> None:
        self._began[run_id] = (self._waiting.pop(run_id), self._clock())
        self.show()

    def ended(self, run_id: str, ok: bool, message: str) -> None:
        """Run `run_id` ended (`ok`: it wrote its result): count it, say `message` (above the line on a terminal),
        show the new line."""
        work, began = self._began.pop(run_id)
        if ok:
            self.done += 1
            self._finished.append((work, self._clock() - began))
        else:
            self.failed += 1  # it did an unknown part of its work: no pace from it
        self._clear()
        self._log(message)
        if not self._live:
            self._log(self.line())
        self.show()

    def show(self) -> None:
        """Redraw the progress line on a terminal (the ETA moves with the clock)."""
        if self._live:
            self._shown = self.line()
            self._stream.write(f"\r{self._shown}\033[K")
            self._stream.flush()

    def close(self) -> None:
        """Leave the last progress line on the terminal."""
        if self._live and self._shown:
            self._stream.write("\n")
            self._stream.flush()
            self._shown = ""

    def _clear(self) -> None:
        if self._live and self._shown:
            self._stream.write("\r\033[K")
            self._stream.flush()
