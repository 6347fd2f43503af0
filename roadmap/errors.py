"""The one exception type for mistakes a user can make, and the helper that names valid choices."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class RoadmapError(ValueError):
    """A mistake in user input (unknown name, bad size, bad path...).

    The message is one line that says what to do; the CLI prints it and exits with code 2.
    """


def first_line(e: BaseException) -> str:
    """What an exception says, in one line: its message's first line, or its type's name when it says nothing (for
    wrapping a library's error into a RoadmapError)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def unknown(kind: str, name: str, choices: Iterable[str]) -> RoadmapError:
    """An error for an unknown `name` that lists the valid `choices` and suggests the closest one."""
    choices = list(choices)
    close = difflib.get_close_matches(str(name), choices, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return RoadmapError(f"unknown {kind} {name!r}.{hint} Valid: {', '.join(choices)}")
