"""The README's exit-code table, row by row, through the real CLI; and `scan --resume` from another folder.

Commands that scan against a plant run as a subprocess (the plant serves from this test's event loop); the
others run in-process through typer's CliRunner. Plants and targets live on this file's own addresses,
127.0.213.x; the cases that exit before a scan starts send nothing at all.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cli_helpers import REPO, Completed, plain_env, write_profile
from typer.testing import CliRunner

from otprobe.audit import AuditLog
from otprobe.cli import app
from simulators.plant import running_plant

METERS = [{"name": f"meter-{i}", "address": f"127.0.213.{20 + i}", "class": "meter",
           "modbus": {"port": 5020, "vendor_name": "Schneider Electric", "product_code": "PM5560",
                      "revision": "v2.7"}} for i in range(3)]


async def otprobe_in(cwd: Path, *args: str, env: dict[str, str]) -> Completed:
    """`otprobe ARGS` run from `cwd`, as a user in another folder would, without blocking the plant's loop."""
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "otprobe", *args, cwd=cwd, env=env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return Completed(process.returncode, out.decode(), err.decode())


async def test_resume_from_another_folder_finds_a_profile_given_by_a_relative_path(tmp_path: Path) -> None:
    site, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    site.mkdir()
    elsewhere.mkdir()
    # one device a second: the 1 s deadline leaves devices for the resume
    write_profile(site / "slow.yaml", ["127.0.213.0/24"], global_pps=4, max_devices_in_flight=1,
                  classes={"unknown": {"pps": 4, "burst": 1, "class_pps": 4, "connect_gap_s": 0.2}})
    env = plain_env(tmp_path)
    stores = ["--db", str(tmp_path / "inv.db")]
    common = ["--protocol", "modbus", *stores, "--audit", str(tmp_path / "audit.jsonl"), "--format", "jsonl", "--quiet"]

    async def scans() -> list[dict[str, object]]:
        return json.loads((await otprobe_in(elsewhere, "scans", "list", *stores, "--format", "json", env=env)).stdout)

    async with running_plant({"plant": "resume", "devices": METERS}) as plant:
        first = await otprobe_in(site, "scan", "127.0.213.20-22", "--profile", "slow.yaml", "--deadline", "1s",
                                 *common, env=env)
        assert first.code == 4, first.stderr
        [record] = await scans()
        assert record["not_covered"] and Path(str(record["profile"])) == (site / "slow.yaml").resolve()
        resumed = await otprobe_in(elsewhere, "scan", "--resume", *common, env=env)
        assert resumed.code == 0, resumed.stderr
        assert {o["ip"] for o in resumed.rows()} == set(record["not_covered"])
        # every device was reached in the end: the resume ran with the stored profile, from the other folder
        assert all(device.recorder.packet_count() > 0 for device in plant)
    assert [scan["status"] for scan in await scans()] == ["incomplete", "complete"]


def readme_exit_codes() -> dict[int, str]:
    """The README's exit-code table: code -> meaning."""
    text = (REPO / "README.md").read_text()
    table = text[text.index("**Exit codes**"):].split("\n\n")[1]
    return {int(m[1]): m[2] for m in re.finditer(r"^\| (\d) \| (.+) \|$", table, re.MULTILINE)}


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), prog_name="otprobe",
                                env={"NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb"})
    # an exception that escaped the CLI (CliRunner catches it) would be a traceback for a user
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.stderr
    return result.exit_code, result.stderr


def _edited_audit_log(tmp: Path) -> list[str]:
    path = tmp / "audit.jsonl"
    with AuditLog(path, "s1", fsync=False) as log:
        log.event("note", n=1)
        log.event("note", n=2)
    path.write_text(path.read_text().replace('"n":1', '"n":7'))
    return ["audit", "verify", str(path)]


def _narrow(tmp: Path, **overrides: object) -> str:
    return str(write_profile(tmp / "narrow.yaml", ["127.0.213.0/24"], **overrides))


def _closed_window(tmp: Path) -> str:
    tomorrow = (datetime.now(UTC) + timedelta(days=2)).strftime("%a").lower()
    return _narrow(tmp, windows=[{"days": [tomorrow], "start": "00:00", "end": "00:01", "tz": "UTC"}])


def _garbage_inventory(tmp: Path) -> str:
    (tmp / "garbage.db").write_bytes(b"not a database " * 100)
    return str(tmp / "garbage.db")


# code -> (why, arguments built in a fresh folder); `scan` gets its own inventory and audit log in that folder
CASES: dict[int, list[tuple[str, Callable[[Path], list[str]]]]] = {
    0: [("profiles list", lambda tmp: ["profiles", "list"]),
        ("plan inside the scope", lambda tmp: ["plan", "127.0.213.1-20", "--profile", _narrow(tmp)])],
    1: [("audit verify, an edited line", _edited_audit_log)],
    2: [("reversed range", lambda tmp: ["scan", "127.0.213.9-127.0.213.1", "--profile", "lab"]),
        ("bad CIDR", lambda tmp: ["scan", "127.0.213.0/33", "--profile", "lab"]),
        ("CIDR with host bits", lambda tmp: ["plan", "127.0.213.5/24", "--profile", "lab"]),
        ("hostname", lambda tmp: ["scan", "plc-07.plant.local", "--profile", "lab"]),
        ("IPv6", lambda tmp: ["plan", "::1", "--profile", "lab"]),
        ("bad --scope CIDR", lambda tmp: ["plan", "127.0.213.1", "--scope", "127.0.213.0/99"]),
        ("more than 65,536 addresses", lambda tmp: ["plan", "127.0.0.0/15", "--profile", "lab"]),
        ("missing target file", lambda tmp: ["plan", f"@{tmp / 'missing.txt'}", "--profile", "lab"]),
        ("deadline overflow", lambda tmp: ["scan", "127.0.213.1", "--profile", "lab",
                                           "--deadline", "99999999999999999999h"]),
        ("deadline before year 1 in UTC", lambda tmp: ["scan", "127.0.213.1", "--profile", "lab",
                                                       "--deadline", "0001-01-01T00:00:00+01:00"]),
        ("deadline in the past", lambda tmp: ["scan", "127.0.213.1", "--profile", "lab", "--deadline",
                                              "2020-01-01T00:00:00+00:00"]),
        ("unknown option", lambda tmp: ["scan", "127.0.213.1", "--fast"]),
        ("unknown protocol", lambda tmp: ["plan", "127.0.213.1", "--profile", "lab", "--protocol", "profinet"]),
        ("bad --port", lambda tmp: ["plan", "127.0.213.1", "--profile", "lab", "--port", "modbus=99999"]),
        ("unknown profile", lambda tmp: ["plan", "127.0.213.1", "--profile", "nosuch"]),
        ("profile that does not validate", lambda tmp: ["profiles", "check", str(REPO / "tests" / "profiles_bad" /
                                                                                  "negative_rate.yaml")]),
        ("scan without a target", lambda tmp: ["scan", "--profile", "lab"])],
    3: [("target outside the scope", lambda tmp: ["scan", "127.0.214.1", "--profile", _narrow(tmp)]),
        ("broadcast address of the scope", lambda tmp: ["scan", "127.0.213.255", "--profile", _narrow(tmp)]),
        ("multicast", lambda tmp: ["plan", "224.0.0.1", "--profile", "lab", "--scope", "0.0.0.0/0"]),
        ("outside every window", lambda tmp: ["scan", "127.0.213.1", "--profile", _closed_window(tmp)])],
    4: [("deadline reached", lambda tmp: ["scan", "127.0.213.30-40", "--protocol", "modbus", "--deadline", "1s",
                                          "--profile", _narrow(tmp, global_pps=2, max_devices_in_flight=1)])],
    5: [("unreadable inventory", lambda tmp: ["inventory", "list", "--db", _garbage_inventory(tmp)]),
        ("export to a folder that cannot exist", lambda tmp: ["inventory", "export", "-o",
                                                              str(tmp / "missing" / "x.json"), "--db",
                                                              str(tmp / "i.db")])],
}
ROWS = [(code, why, make) for code, cases in CASES.items() for why, make in cases]


def test_every_row_of_the_readme_table_has_cases() -> None:
    assert set(readme_exit_codes()) == set(CASES) == {0, 1, 2, 3, 4, 5}


@pytest.mark.parametrize(("code", "why", "make"), ROWS, ids=[f"{code}-{why}" for code, why, _ in ROWS])
def test_the_exit_code_of_each_case_is_its_row(tmp_path: Path, code: int, why: str,
                                               make: Callable[[Path], list[str]]) -> None:
    args = make(tmp_path)
    if args[0] == "scan":
        args += ["--db", str(tmp_path / "inv.db"), "--audit", str(tmp_path / "audit.jsonl"), "--quiet"]
    got, stderr = invoke(*args)
    assert got == code, f"{why}: {stderr}"
    if code not in (0, 4):
        lines = stderr.strip().splitlines()
        # one line from otprobe, or typer's boxed usage error (a few lines, no traceback)
        assert lines and (lines[0].startswith("otprobe: error: ") or "Usage:" in stderr), stderr


@contextmanager
def held_lock(audit: Path) -> Iterator[None]:
    """Hold the audit log's scan lock as a running scan would."""
    with open(audit.with_name(audit.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write("4242")
        lock.flush()
        yield


def test_another_scan_running_with_the_same_audit_log_exits_3(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    with held_lock(audit):
        code, stderr = invoke("scan", "127.0.213.1", "--profile", _narrow(tmp_path), "--db", str(tmp_path / "i.db"),
                              "--audit", str(audit))
    assert code == 3
    assert "another otprobe scan (pid 4242)" in stderr
