"""Secure time windows: syncs only run inside `spec.window`.

A run that starts outside the window is *skipped*, not deferred: it completes
at once with a `skipped` summary and touches neither source nor destination.
Deferring would pile up runs that all fire when the window opens; the next
scheduled run inside the window picks up everything (incremental cursors make
that free of gaps).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, time, timedelta
from functools import lru_cache
from itertools import pairwise, takewhile
from zoneinfo import ZoneInfo

from croniter import croniter

from contactsync.api.spec import Schedule, Window

HORIZON = timedelta(days=62)  # two months: weekly and monthly patterns show
MAX_FIRES = 5_000  # bounds the work for a minutely schedule (about 3.5 days of it)


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


def _fires(schedule: Schedule, start: datetime) -> Iterator[datetime]:
    if schedule.interval_seconds is not None:
        step = timedelta(seconds=schedule.interval_seconds)
        return (start + n * step for n in range(1, MAX_FIRES + 1))
    local = start.astimezone(ZoneInfo(schedule.timezone))
    cron = croniter(schedule.cron or "", local)  # the spec sets exactly one of the two
    return (cron.get_next(datetime) for _ in range(MAX_FIRES))


@lru_cache(maxsize=1024)
def longest_gap(schedule: Schedule | None, window: Window | None, start: datetime) -> float | None:
    """Seconds of the longest wait between two consecutive runs that sync (scheduled
    and inside the window), over the next two months from `start`: how stale a
    healthy sync can be. None when fewer than two such runs are scheduled.

    Memoised (specs are frozen, so hashable): walking thousands of cron fires
    costs about 0.1 s, and ContactSyncs share schedules. Callers that pass a
    start rounded to the hour share the work within that hour."""
    if schedule is None:
        return None
    end = start + HORIZON
    fires = takewhile(lambda when: when <= end, _fires(schedule, start))
    syncing = [when for when in fires if in_window(window, when)]
    if len(syncing) < 2:
        return None
    return max((later - earlier).total_seconds() for earlier, later in pairwise(syncing))
