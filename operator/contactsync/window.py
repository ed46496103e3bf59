"""Secure time windows: syncs only run inside `spec.window`.

A run that starts outside the window is *skipped*, not deferred: it completes
at once with a `skipped` summary and touches neither source nor destination.
Deferring would pile up runs that all fire when the window opens; the next
scheduled run inside the window picks up everything (incremental cursors make
that free of gaps).
"""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

from contactsync.api.spec import Window


def _clock(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def in_window(window: Window | None, when: datetime) -> bool:
    """Whether `when` (timezone-aware) falls in [start, end); end < start wraps midnight."""
    if window is None:
        return True
    local = when.astimezone(ZoneInfo(window.timezone)).time().replace(tzinfo=None)
    start, end = _clock(window.start), _clock(window.end)
    if start == end:
        return True  # a 24-hour window
    if start < end:
        return start <= local < end
    return local >= start or local < end
