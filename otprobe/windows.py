"""Maintenance windows: the profile's `windows:` entries and when a scan may run.

A window is weekly: `{days: [sat, sun], start: "02:00", end: "06:00", tz: Europe/Berlin}`. Times are wall-clock
times in `tz`. A window whose end is not after its start crosses midnight and belongs to its start day
(`{days: [fri], start: "22:00", end: "04:00"}` runs Friday 22:00 to Saturday 04:00); `end: "24:00"` means
midnight at the end of the day. Windows that overlap or touch are merged into one.

Daylight-saving days follow one rule: a window opens (or closes) at the first instant at which the local clock
reads at least its start (or end) time. So a time skipped by the spring change opens at the change itself
(02:30 on 2026-03-29 in Europe/Berlin becomes 03:00 CEST = 01:00 UTC), and a time that occurs twice in autumn
means its first occurrence (02:30 on 2026-10-25 is 02:30 CEST = 00:30 UTC).

Nothing here reads the real clock: every function takes `now_utc`, an aware datetime.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from otprobe.errors import WindowError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})$")
# How far ahead current_window looks when merging touching windows; a window chain that never closes
# (every day 00:00-24:00) is reported as ending at this horizon.
_CHAIN_DAYS = 8


def _minutes(text: str) -> int:
    match = _CLOCK.match(text)
    if match is None:
        raise ValueError(f"invalid time {text!r}: write HH:MM, e.g. \"02:00\"")
    hours, minutes = int(match[1]), int(match[2])
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise ValueError(f"invalid time {text!r}: HH:MM from 00:00 to 23:59 (an end may be 24:00)")
    return hours * 60 + minutes


class Window(BaseModel):
    """One weekly maintenance window. `days`, `start`, `end` and `tz` are all required: no guessed time zone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    days: tuple[str, ...]
    start: str
    end: str
    tz: str

    @field_validator("days", mode="before")
    @classmethod
    def _days(cls, value: object) -> object:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not value:
            raise ValueError(f"days must be a non-empty list of {', '.join(DAYS)}")
        names: list[str] = []
        for day in value:
            name = day.strip().lower() if isinstance(day, str) else day
            if name not in DAYS:
                raise ValueError(f"unknown day {day!r} (use {', '.join(DAYS)})")
            if name not in names:
                names.append(name)
        return tuple(names)

    @field_validator("start")
    @classmethod
    def _start(cls, value: str) -> str:
        if _minutes(value) == 24 * 60:
            raise ValueError("a window cannot start at 24:00; use 00:00 of the next day")
        return value

    @field_validator("end")
    @classmethod
    def _end(cls, value: str) -> str:
        _minutes(value)
        return value

    @field_validator("tz")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as Europe/Berlin or UTC)") from None
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> Window:
        if _minutes(self.start) == _minutes(self.end):
            raise ValueError(f"start and end are both {self.start}: use start \"00:00\", end \"24:00\" for a whole day")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def interval_on(self, day: date) -> tuple[datetime, datetime] | None:
        """The UTC interval of this window if it starts on local date `day`, else None."""
        if DAYS[day.weekday()] not in self.days:
            return None
        start, end = _minutes(self.start), _minutes(self.end)
        end_day = day if end > start else day + timedelta(days=1)
        return _instant(day, start, self.zone), _instant(end_day, end, self.zone)


def _instant(day: date, minutes: int, zone: ZoneInfo) -> datetime:
    """First UTC instant at which the local clock in `zone` reads at least `minutes` past midnight of `day`."""
    if minutes == 24 * 60:
        day, minutes = day + timedelta(days=1), 0
    local = datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=zone)  # fold=0: first occurrence
    after = local.astimezone(UTC)
    if after.astimezone(zone).replace(tzinfo=None) == local.replace(tzinfo=None):
        return after
    # The time was skipped by a DST change: fold=1 maps it with the offset after the change (an instant before
    # the change), fold=0 with the offset before (an instant after it). Bisect to the change itself.
    lo, hi = int(local.replace(fold=1).timestamp()), int(after.timestamp())
    before_offset = datetime.fromtimestamp(lo, zone).utcoffset()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, zone).utcoffset() == before_offset:
            lo = mid
        else:
            hi = mid
    return datetime.fromtimestamp(hi, UTC)


@dataclass(frozen=True)
class _Span:
    start: datetime
    end: datetime
    zone: ZoneInfo  # the zone of the window that opened it, for messages


def _spans(windows: Sequence[Window], now_utc: datetime, days_ahead: int) -> list[_Span]:
    """Merged windows starting from the day before `now_utc` (local) up to `days_ahead` days after it."""
    raw: list[_Span] = []
    for window in windows:
        today = now_utc.astimezone(window.zone).date()
        for offset in range(-1, days_ahead + 1):
            interval = window.interval_on(today + timedelta(days=offset))
            # A window lying wholly inside a skipped DST hour is empty on that day.
            if interval is not None and interval[0] < interval[1]:
                raw.append(_Span(interval[0], interval[1], window.zone))
    raw.sort(key=lambda s: (s.start, s.end))
    merged: list[_Span] = []
    for span in raw:
        if merged and span.start <= merged[-1].end:
            last = merged[-1]
            merged[-1] = _Span(last.start, max(last.end, span.end), last.zone)
        else:
            merged.append(span)
    return merged


def _require_aware(now_utc: datetime) -> None:
    if now_utc.tzinfo is None or now_utc.utcoffset() is None:
        raise ValueError("now_utc must be an aware datetime (e.g. datetime.now(UTC))")


def current_window(windows: Sequence[Window], now_utc: datetime) -> tuple[datetime, datetime] | None:
    """The (start, end) in UTC of the (merged) window containing `now_utc`, or None when outside every window."""
    _require_aware(now_utc)
    for span in _spans(windows, now_utc, _CHAIN_DAYS):
        if span.start <= now_utc < span.end:
            return span.start, span.end
    return None


def _upcoming(windows: Sequence[Window], now_utc: datetime, count: int) -> Iterator[_Span]:
    # Each window opens at least once a week, so count + 1 weeks hold at least count windows.
    spans = _spans(windows, now_utc, 7 * (count + 1))
    return (s for s in spans if s.end > now_utc)


def next_windows(windows: Sequence[Window], now_utc: datetime, count: int) -> list[tuple[datetime, datetime]]:
    """The next `count` windows as UTC (start, end), earliest first; the current one first when inside a window."""
    _require_aware(now_utc)
    if count <= 0 or not windows:
        return []
    return [(s.start, s.end) for s in _upcoming(windows, now_utc, count)][:count]


def require_window(windows: Sequence[Window], now_utc: datetime) -> datetime | None:
    """Deadline a scan must respect: the current window's end, or None when the profile has no windows.

    Raises WindowError, naming when the next window opens, when the profile has windows and `now_utc` is outside
    all of them.
    """
    if not windows:
        return None
    current = current_window(windows, now_utc)
    if current is not None:
        return current[1]
    upcoming = next(_upcoming(windows, now_utc, 1))
    local = upcoming.start.astimezone(upcoming.zone)
    raise WindowError(
        f"outside every maintenance window of the profile; the next window opens "
        f"{local:%a %Y-%m-%d %H:%M} {local.tzname()} ({upcoming.start:%Y-%m-%d %H:%M} UTC)"
    )
