from __future__ import annotations

from datetime import UTC, datetime

import pytest

from contactsync.api.spec import Schedule, Window
from contactsync.window import in_window, longest_gap


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, 1, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "end", "when", "inside"),
    [
        ("01:00", "05:00", at(1), True),
        ("01:00", "05:00", at(4, 59), True),
        ("01:00", "05:00", at(5), False),  # the end is exclusive
        ("01:00", "05:00", at(0, 59), False),
        ("22:00", "02:00", at(23), True),  # wraps midnight
        ("22:00", "02:00", at(1, 30), True),
        ("22:00", "02:00", at(12), False),
        ("00:00", "00:00", at(12), True),  # start == end: all day
    ],
)
def test_window_bounds(start: str, end: str, when: datetime, inside: bool) -> None:
    assert in_window(Window(start=start, end=end), when) is inside


def test_window_uses_its_own_timezone() -> None:
    window = Window(start="09:00", end="17:00", timezone="America/New_York")
    assert in_window(window, at(14))  # 09:00 in New York (EST, UTC-5)
    assert not in_window(window, at(13))


def test_no_window_means_always() -> None:
    assert in_window(None, at(3))


FRIDAY_NOON = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("schedule", "window", "hours"),
    [
        (Schedule(interval_seconds=600), None, 600 / 3600),
        (Schedule(cron="0 * * * *"), None, 1),
        # Hourly, but only 09:00-16:00 sync: from 16:00 to the next 09:00.
        (Schedule(cron="0 * * * *"), Window(start="09:00", end="17:00"), 17),
        # A window across midnight: runs at 22, 23, 0, 1; then 21 hours until 22.
        (Schedule(cron="0 * * * *"), Window(start="22:00", end="02:00"), 21),
        # Weekdays only: Friday 09:00 to Monday 09:00.
        (Schedule(cron="0 9 * * 1-5"), None, 72),
        # The cron is read in its own timezone, the window in its own.
        (
            Schedule(cron="0 9 * * *", timezone="America/New_York"),
            Window(start="13:00", end="15:00", timezone="UTC"),
            24,
        ),
    ],
)
def test_longest_gap_follows_schedule_and_window(
    schedule: Schedule, window: Window | None, hours: float
) -> None:
    gap = longest_gap(schedule, window, FRIDAY_NOON)
    assert gap is not None
    assert gap == pytest.approx(hours * 3600)


def test_longest_gap_is_none_when_nothing_would_sync() -> None:
    assert longest_gap(None, None, FRIDAY_NOON) is None
    # Runs at 09:00, window 10:00-11:00: no run ever syncs.
    never = longest_gap(Schedule(cron="0 9 * * *"), Window(start="10:00", end="11:00"), FRIDAY_NOON)
    assert never is None


def test_longest_gap_work_is_bounded_for_a_minutely_schedule() -> None:
    # 5,000 fires (about 3.5 days) are enough to see a daily window.
    gap = longest_gap(Schedule(cron="* * * * *"), Window(start="09:00", end="17:00"), FRIDAY_NOON)
    assert gap == pytest.approx(16 * 3600 + 60)


def test_equal_schedules_share_one_walk() -> None:
    # Specs are frozen models: two objects built apart with the same schedule
    # and window hit the same memo entry, so a burst of ContactSyncs with one
    # schedule pays for walking its fires once.
    longest_gap.cache_clear()
    first, again = (
        longest_gap(Schedule(cron="*/15 * * * *"), Window(start="01:00", end="05:00"), FRIDAY_NOON)
        for _ in range(2)
    )
    assert again == first == pytest.approx(20.25 * 3600)  # 04:45 to 01:00
    assert longest_gap.cache_info().hits == 1
