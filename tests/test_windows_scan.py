"""Maintenance windows as a scan meets them: refused outside, overridden with a recorded reason,
and inside a window the deadline is the window's end unless --deadline is earlier.

`prepare()` takes the clock as `now`, so the window rules are checked at fixed instants. The CLI reads the real
clock; its tests use windows placed relative to the real time (one that opened an hour ago, one that opens in
two hours), which holds for any run that takes less than an hour. Nothing listens on this file's addresses
(127.0.112.x): Modbus is refused at once, which is all a scan needs to finish.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import write_profile
from typer.testing import CliRunner

from otprobe.cli import app
from otprobe.errors import WindowError
from otprobe.profile import load_profile
from otprobe.scan import prepare

TARGET = "127.0.112.10"
WEEKEND_BERLIN = [{"days": ["sat", "sun"], "start": "02:00", "end": "06:00", "tz": "Europe/Berlin"}]


def profile_with(tmp_path: Path, windows: list[dict[str, Any]]) -> Path:
    return write_profile(tmp_path / "windowed.yaml", ["127.0.112.0/24"], windows=windows)


def prepared_at(tmp_path: Path, now: datetime, **kw: Any) -> Any:
    path = profile_with(tmp_path, WEEKEND_BERLIN)
    return prepare(load_profile(path), str(path), [TARGET], now=now, **kw)


def test_outside_the_window_the_scan_is_refused_naming_the_next_opening(tmp_path: Path) -> None:
    friday_noon = datetime(2026, 1, 9, 12, 0, tzinfo=UTC)
    with pytest.raises(WindowError, match=r"opens Sat 2026-01-10 02:00 CET \(2026-01-10 01:00 UTC\)"):
        prepared_at(tmp_path, friday_noon)


@pytest.mark.parametrize(("now", "window_end"), [
    (datetime(2026, 1, 10, 2, 0, tzinfo=UTC), datetime(2026, 1, 10, 5, 0, tzinfo=UTC)),  # winter: CET = UTC+1
    (datetime(2026, 7, 12, 0, 30, tzinfo=UTC), datetime(2026, 7, 12, 4, 0, tzinfo=UTC)),  # summer: CEST = UTC+2
])
def test_inside_the_window_the_deadline_is_the_window_end(tmp_path: Path, now: datetime,
                                                          window_end: datetime) -> None:
    prepared = prepared_at(tmp_path, now)
    assert prepared.window_end == window_end
    assert prepared.deadline == window_end


def test_an_earlier_deadline_wins_and_a_later_one_is_cut_to_the_window_end(tmp_path: Path) -> None:
    now, window_end = datetime(2026, 1, 10, 2, 0, tzinfo=UTC), datetime(2026, 1, 10, 5, 0, tzinfo=UTC)
    assert prepared_at(tmp_path, now, deadline=now + timedelta(minutes=30)).deadline == now + timedelta(minutes=30)
    assert prepared_at(tmp_path, now, deadline=now + timedelta(hours=8)).deadline == window_end


def test_an_override_with_a_reason_runs_outside_the_window_without_a_window_deadline(tmp_path: Path) -> None:
    friday_noon = datetime(2026, 1, 9, 12, 0, tzinfo=UTC)
    prepared = prepared_at(tmp_path, friday_noon, ignore_window_reason="vendor advisory: firmware audit")
    assert prepared.ignore_window_reason == "vendor advisory: firmware audit"
    assert prepared.window_end is None and prepared.deadline is None
    later = friday_noon + timedelta(hours=1)
    assert prepared_at(tmp_path, friday_noon, ignore_window_reason="x", deadline=later).deadline == later


# --- through the command line, against the real clock ---------------------------------------------------------

def daily_utc_window(opens: datetime, hours: int) -> list[dict[str, Any]]:
    opens = opens.replace(second=0, microsecond=0)
    closes = opens + timedelta(hours=hours)
    return [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": f"{opens:%H:%M}",
             "end": f"{closes:%H:%M}", "tz": "UTC"}]


def scan(tmp_path: Path, profile: Path, *extra: str) -> Any:
    args = ["scan", TARGET, "--profile", str(profile), "--protocol", "modbus", "--db", str(tmp_path / "inv.db"),
            "--audit", str(tmp_path / "audit.jsonl"), "--quiet", *extra]
    return CliRunner().invoke(app, args, env={"NO_COLOR": "1", "COLUMNS": "200"})


def audit_events(tmp_path: Path) -> dict[str, dict[str, Any]]:
    records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    return {r["event"]: r for r in records if r["type"] == "event"}


def test_cli_outside_the_window_exits_3_with_one_line_and_sends_nothing(tmp_path: Path) -> None:
    opens = datetime.now(UTC) + timedelta(hours=2)
    result = scan(tmp_path, profile_with(tmp_path, daily_utc_window(opens, 1)))
    assert result.exit_code == 3
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "outside every maintenance window" in result.stderr
    assert f"({opens:%Y-%m-%d %H:%M} UTC)" in result.stderr
    assert not (tmp_path / "audit.jsonl").exists()  # refused before a socket or a log line exists


def test_cli_override_needs_a_reason_and_records_it_in_the_audit_log(tmp_path: Path) -> None:
    profile = profile_with(tmp_path, daily_utc_window(datetime.now(UTC) + timedelta(hours=2), 1))
    assert scan(tmp_path, profile, "--ignore-window").exit_code == 2
    reason = "vendor advisory ICSA-00-000: firmware audit approved by J. Doe"
    result = scan(tmp_path, profile, "--ignore-window", "--reason", reason)
    assert result.exit_code == 0, result.output
    events = audit_events(tmp_path)
    assert events["window_override"]["reason"] == reason
    assert events["scan_start"]["deadline"] is None
    assert events["scan_end"]["status"] == "complete"


def test_cli_inside_the_window_the_scan_deadline_is_the_window_end_unless_deadline_is_earlier(tmp_path: Path) -> None:
    opened = (datetime.now(UTC) - timedelta(hours=1)).replace(second=0, microsecond=0)
    profile = profile_with(tmp_path, daily_utc_window(opened, 2))
    assert scan(tmp_path, profile).exit_code == 0
    window_end = opened + timedelta(hours=2)
    assert datetime.fromisoformat(audit_events(tmp_path)["scan_start"]["deadline"]) == window_end

    before = datetime.now(UTC)
    assert scan(tmp_path, profile, "--deadline", "10m").exit_code == 0
    deadline = datetime.fromisoformat(audit_events(tmp_path)["scan_start"]["deadline"])
    assert before + timedelta(minutes=10) <= deadline <= datetime.now(UTC) + timedelta(minutes=10)
