"""Raise the project's `RoadmapError` without importing torch until an error actually happens.

`roadmap/__init__.py` imports the model code (torch, timm), so `from roadmap.errors import RoadmapError` at
module level would make every report pull torch in. Reports render stored records only, so the import is
deferred to the moment a user mistake is found; the CLI, which catches `RoadmapError`, has it loaded already.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NoReturn


def fail(message: str) -> NoReturn:
    """Raise `roadmap.errors.RoadmapError(message)`; `message` is one line that says what to do."""
    from roadmap.errors import RoadmapError

    raise RoadmapError(message)


def fail_unknown(kind: str, name: str, choices: Iterable[str]) -> NoReturn:
    """Raise the project's "unknown NAME, valid: ..." error, with a did-you-mean hint."""
    from roadmap.errors import unknown

    raise unknown(kind, name, choices)
