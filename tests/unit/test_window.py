from __future__ import annotations

from datetime import UTC, datetime

import pytest

from contactsync.api.spec import Window
from contactsync.window import in_window


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
