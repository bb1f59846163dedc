"""`otprobe report` when something is missing or wrong: one clear line for what cannot be reported, and a report
that says what it lacks (an audit log, a profile) rather than none. Runs in-process on copies of a real scan's
inventory; `report` sends nothing."""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

from report_plant import (
    Scanned,
    scanned_fixture,  # noqa: F401 (the session fixture `scanned`)
)
from typer.testing import CliRunner

from otprobe.cli import app


def report(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["report", *args], prog_name="otprobe", env={"NO_COLOR": "1", "COLUMNS": "200"})
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.stdout, result.stderr


def copied(scanned: Scanned, tmp_path: Path, sql: str = "", *params: object) -> Path:
    db = tmp_path / "inventory.db"
    shutil.copy(scanned.db, db)
    if sql:
        with sqlite3.connect(db) as connection:
            connection.execute(sql, params)
    return db


def one_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    [line] = stderr.splitlines()
    return line


def test_an_unknown_scan_is_one_error_line_and_exit_5(scanned: Scanned, tmp_path: Path) -> None:
    code, out, err = report("20990101T000000Z", "--db", str(copied(scanned, tmp_path)))
    assert (code, out) == (5, "")
    assert one_line(err) == "otprobe: error: no scan '20990101T000000Z'"


def test_an_output_that_cannot_be_written_is_one_error_line_and_exit_5(scanned: Scanned, tmp_path: Path) -> None:
    code, _, err = report(scanned.second_id, "--db", str(copied(scanned, tmp_path)), "--audit", str(scanned.audit),
                          "-o", str(tmp_path / "missing" / "r.html"))
    assert code == 5 and one_line(err).startswith(f"otprobe: error: cannot write {tmp_path / 'missing' / 'r.html'}")


def test_without_its_audit_log_the_report_says_it_has_no_evidence(scanned: Scanned, tmp_path: Path) -> None:
    missing = tmp_path / "gone.jsonl"
    code, out, _ = report(scanned.second_id, "--db", str(copied(scanned, tmp_path)), "--audit", str(missing),
                          "--format", "markdown")
    assert code == 0
    assert f"cannot read audit log {missing}" in out.replace("\\", "")
    assert "hash chain verifies" not in out


def test_an_edited_audit_log_is_named_in_the_report(scanned: Scanned, tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    lines = scanned.audit.read_text().splitlines(keepends=True)
    lines[3] = lines[3].replace('"intent"', '"intent" ', 1)
    audit.write_text("".join(lines))
    code, out, _ = report(scanned.second_id, "--db", str(copied(scanned, tmp_path)), "--audit", str(audit),
                          "--format", "markdown")
    assert code == 0 and "the hash chain breaks at line 4" in out and "hash chain verifies" not in out


def test_a_profile_that_cannot_be_read_leaves_the_caps_unknown(scanned: Scanned, tmp_path: Path) -> None:
    db = copied(scanned, tmp_path, "UPDATE scans SET profile=?", str(tmp_path / "moved.yaml"))
    code, out, _ = report(scanned.second_id, "--db", str(db), "--audit", str(scanned.audit), "--format", "markdown")
    assert code == 0
    assert "cannot be read now" in out and "caps and windows are not shown" in out
    # the safety table: address, class, packets, connections, busiest 1 s, and a cap that is not known
    assert re.search(r"^\| 127\.0\.171\.9 \| unknown \| \d+ \| \d+ \| \d+ \| unknown \|$", out, re.MULTILINE)


def test_the_plan_is_shown_against_what_happened_when_the_scan_recorded_it(scanned: Scanned, tmp_path: Path) -> None:
    code, out, _ = report(scanned.second_id, "--db", str(copied(scanned, tmp_path)), "--audit", str(scanned.audit),
                          "--format", "markdown")
    assert code == 0 and "planned: not recorded" in out
    counts = '{"identified": 3, "plan_packets": 100, "plan_expected_s": 4.5, "plan_worst_s": 12.25}'
    db = copied(scanned, tmp_path, "UPDATE scans SET counts=? WHERE id=?", counts, scanned.second_id)
    code, out, _ = report(scanned.second_id, "--db", str(db), "--audit", str(scanned.audit), "--format", "markdown")
    assert code == 0
    assert "planned: 100 (worst case)" in out and "4.5 s expected, 12.2 s worst case" in out


def test_a_scan_whose_report_cannot_be_written_is_refused_before_it_starts(tmp_path: Path) -> None:
    db = tmp_path / "inventory.db"
    result = CliRunner().invoke(app, ["scan", "127.0.171.9", "--profile", "lab", "--db", str(db),
                                      "--report", str(tmp_path / "missing" / "r.html")],
                                prog_name="otprobe", env={"NO_COLOR": "1", "COLUMNS": "200"})
    assert result.exit_code == 2 and "its folder does not exist or cannot be written" in result.stderr
    assert not db.exists()  # no scan was opened, so nothing was sent
