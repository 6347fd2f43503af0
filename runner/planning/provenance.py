"""Where a result came from: the code version (part of every run's identity), the git revision, the versions of
the packages that trained it, and the time, as config.json and plan.json record them."""

from __future__ import annotations

import datetime as dt
import platform
import subprocess
from pathlib import Path

from roadmap import __version__


def code_version() -> str:
    """The package version, part of every run's identity: a new version trains afresh."""
    return __version__


def git_revision() -> str | None:
    """The short git revision of this checkout, or None outside git."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str]:
    """The versions of what trains (imported here, when a config is written, not when a plan is made)."""
    import numpy
    import timm
    import torch
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "timm": timm.__version__, "numpy": numpy.__version__}


def now() -> str:
    """The time in UTC, as records write it."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

