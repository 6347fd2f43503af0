"""One progress line for a whole roadmap trained by child processes (runner.launchers.children): runs done of all
planned, runs running, runs failed, and the time left at the pace of the runs finished so far.

On a terminal the line is redrawn in place on stderr, and the launcher's other lines are printed above it; without
one (--quiet, a log file) it is printed as a line of its own each time a run ends.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from roadmap.durations import duration


class RoadmapProgress:
    """Counts the runs of one launch and shows where the roadmap stands.

    `total`: the runs planned; `done`: those finished before this launch (or held by another process, which
    finishes them). The time left is the runs not done yet at the pace of this launch: runs ended / seconds since
    it started, so runs trained side by side count as such."""

    def __init__(self, total: int, done: int, log: Callable[[str], None] = print, live: bool = False,
                 stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic):
        self.total, self.done, self.failed, self.running = total, done, 0, 0
        self.ended_here = 0
        self._log, self._live, self._stream, self._clock = log, live, stream or sys.stderr, clock
        self._start = clock()
        self._shown = ""

    def line(self) -> str:
        """'roadmap: 12/51 runs done, 2 running, ETA 23m 10s' (and the failed runs, when there are any)."""
        failed = f", {self.failed} failed" if self.failed else ""
        left = self.total - self.done - self.failed
        if not left:
            eta = "all ended"
        elif self.ended_here:
            eta = f"ETA {duration(left * (self._clock() - self._start) / self.ended_here, decimals=0)}"
        else:
            eta = "ETA after the first run"
        return f"roadmap: {self.done}/{self.total} runs done, {self.running} running{failed}, {eta}"

    def started(self) -> None:
        self.running += 1
        self.show()

    def ended(self, ok: bool, message: str) -> None:
        """A run ended (`ok`: it wrote its result): count it, say `message` (above the line on a terminal), show the
        new line."""
        self.running -= 1
        self.ended_here += 1
        if ok:
            self.done += 1
        else:
            self.failed += 1
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
