"""How the project writes a span of time for people: one rule for the report's wall times and the launcher's ETA."""

from __future__ import annotations


def duration(seconds: float, decimals: int = 1) -> str:
    """'25.0 s' (`decimals` places under a minute), '12m 05s', '3h 02m'."""
    if seconds < 60:
        return f"{seconds:.{decimals}f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"
