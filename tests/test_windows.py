"""Maintenance windows: weekly windows, midnight crossing, 24:00, time zones and both DST days of 2026."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from otprobe.errors import WindowError
from otprobe.windows import DAYS, Window, current_window, next_windows, require_window


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def window(days: list[str], start: str, end: str, tz: str = "UTC") -> Window:
    return Window(days=days, start=start, end=end, tz=tz)


BERLIN_WEEKEND = window(["sat", "sun"], "02:00", "06:00", "Europe/Berlin")


def test_winter_window_in_berlin_is_one_hour_ahead_of_utc() -> None:
    # 2026-01-03 is a Saturday; CET is UTC+1.
    assert current_window([BERLIN_WEEKEND], utc(2026, 1, 3, 3, 0)) == (utc(2026, 1, 3, 1, 0), utc(2026, 1, 3, 5, 0))
    assert current_window([BERLIN_WEEKEND], utc(2026, 1, 3, 0, 59)) is None
    assert current_window([BERLIN_WEEKEND], utc(2026, 1, 3, 5, 0)) is None  # the end is exclusive
    assert current_window([BERLIN_WEEKEND], utc(2026, 1, 5, 3, 0)) is None  # Monday


def test_next_windows_lists_the_coming_windows_in_order() -> None:
    friday = utc(2026, 1, 2, 12, 0)
    assert next_windows([BERLIN_WEEKEND], friday, 3) == [
        (utc(2026, 1, 3, 1, 0), utc(2026, 1, 3, 5, 0)),
        (utc(2026, 1, 4, 1, 0), utc(2026, 1, 4, 5, 0)),
        (utc(2026, 1, 10, 1, 0), utc(2026, 1, 10, 5, 0)),
    ]


def test_next_windows_starts_with_the_current_window_when_inside_one() -> None:
    inside = utc(2026, 1, 3, 2, 0)
    assert next_windows([BERLIN_WEEKEND], inside, 1) == [(utc(2026, 1, 3, 1, 0), utc(2026, 1, 3, 5, 0))]


def test_window_crossing_midnight_belongs_to_its_start_day() -> None:
    night = window(["fri"], "22:00", "04:00")
    assert current_window([night], utc(2026, 1, 3, 2, 0)) == (utc(2026, 1, 2, 22, 0), utc(2026, 1, 3, 4, 0))
    assert current_window([night], utc(2026, 1, 2, 21, 59)) is None
    assert current_window([night], utc(2026, 1, 3, 23, 0)) is None  # Saturday night is not a Friday window
    assert current_window([night], utc(2026, 1, 2, 3, 0)) is None  # Thursday's night does not exist


def test_end_2400_is_midnight_at_the_end_of_the_day() -> None:
    evening = window(["sun"], "20:00", "24:00")
    assert current_window([evening], utc(2026, 1, 4, 23, 59)) == (utc(2026, 1, 4, 20, 0), utc(2026, 1, 5, 0, 0))
    assert current_window([evening], utc(2026, 1, 5, 0, 0)) is None


def test_touching_windows_merge_into_one() -> None:
    weekend = [window(["sat"], "00:00", "24:00"), window(["sun"], "00:00", "24:00")]
    assert current_window(weekend, utc(2026, 1, 3, 10, 0)) == (utc(2026, 1, 3, 0, 0), utc(2026, 1, 5, 0, 0))


def test_windows_in_different_time_zones_merge_on_the_utc_line() -> None:
    berlin = window(["sat"], "02:00", "04:00", "Europe/Berlin")  # 01:00-03:00 UTC in winter
    new_york = window(["fri"], "22:00", "23:00", "America/New_York")  # Sat 03:00-04:00 UTC in winter
    assert current_window([berlin, new_york], utc(2026, 1, 3, 2, 0)) == (utc(2026, 1, 3, 1, 0), utc(2026, 1, 3, 4, 0))


def test_spring_dst_day_skipped_start_opens_at_the_change() -> None:
    # 2026-03-29 (Sunday): Berlin clocks jump from 02:00 CET to 03:00 CEST at 01:00 UTC.
    start, end = next_windows([BERLIN_WEEKEND], utc(2026, 3, 29, 0, 0), 1)[0]
    assert start == utc(2026, 3, 29, 1, 0)
    assert end == utc(2026, 3, 29, 4, 0)  # 06:00 CEST
    inside_gap = window(["sun"], "02:30", "05:00", "Europe/Berlin")
    assert next_windows([inside_gap], utc(2026, 3, 29, 0, 0), 1)[0] == (utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 3, 0))


def test_spring_dst_day_window_wholly_inside_the_skipped_hour_is_empty() -> None:
    ghost = window(["sun"], "02:10", "02:50", "Europe/Berlin")
    assert current_window([ghost], utc(2026, 3, 29, 1, 0)) is None
    # The next one is a week later, after the change (CEST, UTC+2).
    assert next_windows([ghost], utc(2026, 3, 29, 0, 0), 1) == [(utc(2026, 4, 5, 0, 10), utc(2026, 4, 5, 0, 50))]


def test_autumn_dst_day_repeated_times_mean_their_first_occurrence() -> None:
    # 2026-10-25 (Sunday): Berlin clocks go back from 03:00 CEST to 02:00 CET at 01:00 UTC.
    assert next_windows([BERLIN_WEEKEND], utc(2026, 10, 25, 0, 0), 1)[0] == (
        utc(2026, 10, 25, 0, 0),  # 02:00 CEST, the first 02:00
        utc(2026, 10, 25, 5, 0),  # 06:00 CET: a five-hour window that night
    )
    early = window(["sun"], "01:00", "02:30", "Europe/Berlin")
    assert current_window([early], utc(2026, 10, 25, 0, 0)) == (utc(2026, 10, 24, 23, 0), utc(2026, 10, 25, 0, 30))
    assert current_window([early], utc(2026, 10, 25, 1, 0)) is None  # the second 02:00-02:30 is outside


def test_midnight_crossing_on_the_spring_dst_night() -> None:
    saturday_night = window(["sat"], "22:00", "04:00", "Europe/Berlin")
    assert current_window([saturday_night], utc(2026, 3, 28, 23, 0)) == (
        utc(2026, 3, 28, 21, 0),  # 22:00 CET
        utc(2026, 3, 29, 2, 0),  # 04:00 CEST
    )


def test_require_window_gives_the_deadline_or_refuses_with_the_next_opening() -> None:
    assert require_window([], utc(2026, 1, 5, 12, 0)) is None
    assert require_window([BERLIN_WEEKEND], utc(2026, 1, 3, 3, 0)) == utc(2026, 1, 3, 5, 0)
    with pytest.raises(WindowError) as refused:
        require_window([BERLIN_WEEKEND], utc(2026, 1, 5, 12, 0))
    assert "Sat 2026-01-10 02:00 CET" in str(refused.value)
    assert "2026-01-10 01:00 UTC" in str(refused.value)


def test_naive_now_is_rejected() -> None:
    with pytest.raises(ValueError, match="aware"):
        current_window([BERLIN_WEEKEND], datetime(2026, 1, 3, 3, 0))


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"start": "25:00"}, "invalid time '25:00'"),
        ({"start": "24:00"}, "cannot start at 24:00"),
        ({"end": "6am"}, "invalid time '6am'"),
        ({"end": "02:00"}, "start and end are both 02:00"),
        ({"days": ["sonday"]}, "unknown day 'sonday'"),
        ({"days": []}, "non-empty list"),
        ({"tz": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
    ],
)
def test_bad_windows_are_refused_with_a_clear_reason(fields: dict[str, object], fragment: str) -> None:
    base: dict[str, object] = {"days": ["sat"], "start": "02:00", "end": "06:00", "tz": "UTC"}
    with pytest.raises(ValidationError, match=fragment):
        Window.model_validate(base | fields)


_clock = st.integers(0, 23 * 60 + 59).map(lambda m: f"{m // 60:02d}:{m % 60:02d}")
@settings(max_examples=60, deadline=None)
@given(
    specs=st.lists(
        st.tuples(st.lists(st.sampled_from(DAYS), min_size=1, max_size=3, unique=True), _clock, _clock),
        min_size=1,
        max_size=3,
    ),
    tz=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]),
    minutes=st.integers(0, 366 * 24 * 60),
)
def test_current_and_next_windows_agree(specs: list[tuple[list[str], str, str]], tz: str, minutes: int) -> None:
    windows = [window(days, start, end, tz) for days, start, end in specs if start != end]
    if not windows:
        return
    now = utc(2026, 1, 1) + timedelta(minutes=minutes)
    current = current_window(windows, now)
    coming = next_windows(windows, now, 3)
    assert coming, "every window opens at least once a week"
    assert all(start < end and end > now for start, end in coming)
    assert all(a[1] < b[0] for a, b in pairwise(coming)), "merged windows never touch"
    if current is None:
        assert coming[0][0] > now
    else:
        assert current[0] <= now < current[1]
        assert coming[0][0] == current[0]
