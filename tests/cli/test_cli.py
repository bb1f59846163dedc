"""The command line as a user meets it: help with an example everywhere, the documented exit codes,
machine output on stdout only, NO_COLOR and --quiet.

Exit codes (otprobe/cli.py): 0 success, 1 changes found or a broken audit chain, 2 usage or profile error,
3 refused, 4 incomplete, 5 any other error. `inventory diff` exiting 1 with changes and 0 without is tested
end to end in test_inventory_e2e.py; the rest is here. Commands that scan run as a subprocess against a
plant on this file's own addresses (127.0.111.x); the others run in-process through typer's CliRunner.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import REPO, plain_env, reference_generator, run_otprobe, start_otprobe, write_profile
from typer.testing import CliRunner

from otprobe import cli
from otprobe.audit import AuditLog
from otprobe.cli import app
from otprobe.inventory import SqliteStore
from simulators.plant import running_plant

ESCAPE = "\x1b["
PATHS = reference_generator().command_paths(app)
BAD_PROFILES = REPO / "tests" / "profiles_bad"
METER = {"name": "meter", "address": "127.0.111.10", "class": "meter",
         "modbus": {"port": 5020, "vendor_name": "Schneider Electric", "product_code": "PM5560", "revision": "v2.7"}}


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), prog_name="otprobe",
                              env={"NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb"})


def one_error_line(stderr: str) -> str:
    """The single `otprobe: error: ...` line a failing command prints, with no traceback."""
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("otprobe: error: "), stderr
    return lines[0]


# --- help -------------------------------------------------------------------------------------------------

def test_the_commands_are_those_the_issue_names() -> None:
    assert {path[0] for path in PATHS if len(path) == 1} == {
        "scan", "plan", "inventory", "scans", "audit", "profiles", "windows", "sim", "demo", "report"}


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "otprobe")
def test_every_command_has_help_with_an_example(path: tuple[str, ...]) -> None:
    result = invoke(*path, "--help")
    assert result.exit_code == 0, result.output
    assert f"Usage: otprobe {' '.join(path)}".rstrip() in result.stdout
    assert re.search(r"Examples?: otprobe ", result.stdout), result.stdout
    assert invoke(*path, "-h").stdout == result.stdout


# --- exit codes -------------------------------------------------------------------------------------------

def test_the_exit_codes_are_documented_where_the_cli_defines_them() -> None:
    doc = " ".join((cli.__doc__ or "").split())
    for code, words in ((0, "success"), (1, "changes found"), (2, "usage or profile error"), (3, "refused"),
                        (4, "incomplete"), (5, "any other error")):
        assert f"{code} {words}" in doc
        assert int(cli.Exit(code)) == code


def test_usage_errors_exit_2() -> None:
    assert invoke("scan", "--no-such-option").exit_code == 2
    assert invoke("scan", "--profile", "lab").exit_code == 2  # no target and no --resume
    assert invoke("scan", "127.0.111.1", "--port", "modbus=99999").exit_code == 2


def test_a_port_for_an_unknown_protocol_is_a_usage_error(tmp_path: Path) -> None:
    common = ("127.0.111.1", "--profile", "lab", "--port", "modbsu=5020")
    for args in (("plan", *common), ("scan", *common, "--db", str(tmp_path / "i.db"))):
        result = invoke(*args)
        assert result.exit_code == 2
        assert "unknown protocol 'modbsu' (known: s7, enip, modbus, " in " ".join(result.stderr.split())


def test_a_deadline_in_the_past_is_a_usage_error_before_any_scan(tmp_path: Path) -> None:
    db = tmp_path / "i.db"
    result = invoke("scan", "127.0.111.1", "--profile", "lab", "--deadline", "2020-01-01T00:00:00+00:00",
                    "--db", str(db))
    assert result.exit_code == 2
    assert "--deadline 2020-01-01T00:00:00+00:00 is in the past" in " ".join(result.stderr.split())
    assert not db.exists()


@pytest.mark.parametrize(("file", "where"), [
    ("negative_rate.yaml", ":7 classes.plc.pps"),
    ("unknown_key.yaml", " "),
    ("bad_cidr.yaml", " scope."),
    ("bad_timezone.yaml", " windows[0].tz"),
])
@pytest.mark.parametrize("command", [("profiles", "check"), ("scan", "127.0.111.1", "--profile"),
                                     ("plan", "127.0.111.1", "--profile")], ids=lambda c: c[0])
def test_a_bad_profile_exits_2_with_one_line_naming_file_line_and_key(file: str, where: str,
                                                                      command: tuple[str, ...]) -> None:
    path = BAD_PROFILES / file
    result = invoke(*command, str(path))
    assert result.exit_code == 2
    line = one_error_line(result.stderr)
    assert re.match(rf"otprobe: error: {re.escape(str(path))}:\d+ ", line), line
    assert where in line


def test_a_target_outside_the_scope_is_refused_with_exit_3_before_any_packet(tmp_path: Path) -> None:
    profile = write_profile(tmp_path / "narrow.yaml", ["127.0.111.0/28"])
    db = tmp_path / "inv.db"
    for command in (("plan",), ("scan", "--db", str(db), "--audit", str(tmp_path / "audit.jsonl"))):
        result = invoke(*command, "127.0.111.10", "127.0.111.200", "--profile", str(profile))
        assert result.exit_code == 3
        assert "127.0.111.200" in one_error_line(result.stderr)
    assert json.loads(invoke("scans", "list", "--db", str(db), "--format", "json").stdout) == []
    assert not (tmp_path / "audit.jsonl").exists()


def test_audit_verify_exits_0_on_an_intact_log_and_1_naming_an_edited_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, "s1", fsync=False) as log:
        for n in range(3):
            log.event("note", n=n)
    assert invoke("audit", "verify", str(path)).exit_code == 0
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace('"n":1', '"n":7')
    path.write_text("".join(lines))
    result = invoke("audit", "verify", str(path))
    assert result.exit_code == 1
    assert one_error_line(result.stderr).startswith(f"otprobe: error: {path}:2: ")


def test_an_audit_log_that_cannot_be_used_exits_5_not_the_changes_code(tmp_path: Path) -> None:
    missing, folder = tmp_path / "missing.jsonl", tmp_path / "folder"
    folder.mkdir()
    for path in (missing, folder):
        result = invoke("audit", "verify", str(path))
        assert result.exit_code == 5
        assert str(path) in one_error_line(result.stderr)
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(b'{"seq":0,"t":')  # a log whose last line was cut off: a scan refuses to extend it
    profile = write_profile(tmp_path / "narrow.yaml", ["127.0.111.0/28"])
    result = invoke("scan", "127.0.111.3", "--profile", str(profile), "--db", str(tmp_path / "inv.db"),
                    "--audit", str(cut))
    assert result.exit_code == 5
    assert "does not end with a complete line" in one_error_line(result.stderr)


def test_an_unreadable_inventory_exits_5_with_one_line(tmp_path: Path) -> None:
    garbage = tmp_path / "inventory.db"
    garbage.write_bytes(b"not a database " * 100)
    result = invoke("inventory", "list", "--db", str(garbage))
    assert result.exit_code == 5
    assert "cannot open inventory" in one_error_line(result.stderr)


def test_unusable_paths_are_one_error_line_and_exit_5(tmp_path: Path) -> None:
    nowhere = tmp_path / "file"
    nowhere.write_text("")  # a file where a folder should be: nothing can be created below it
    SqliteStore(tmp_path / "i.db").close()
    for args, words in ((("scan", "127.0.111.1", "--db", str(nowhere / "inv.db")), "cannot open inventory"),
                        (("inventory", "export", "-o", str(nowhere / "x.json"), "--db", str(tmp_path / "i.db")),
                         f"cannot write {nowhere / 'x.json'}")):
        result = invoke(*args)
        assert result.exit_code == 5
        assert words in one_error_line(result.stderr)


def test_a_target_file_that_is_not_utf8_is_refused_naming_it(tmp_path: Path) -> None:
    targets = tmp_path / "targets.txt"
    targets.write_bytes(b"127.0.111.1\n# caf\xe9\n")
    result = invoke("plan", f"@{targets}", "--profile", "lab")
    assert result.exit_code == 2  # a target file that cannot be read is a usage error
    assert f"cannot read target file {str(targets)!r}: not UTF-8" in one_error_line(result.stderr)


def test_a_locked_inventory_is_one_error_line_and_exit_5(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "inv.db"
    SqliteStore(db).close()
    real_connect = sqlite3.connect
    # no 10 s busy wait in a test: the lock is reported at once
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: real_connect(*a, **{**k, "timeout": 0}))
    holder = real_connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the inventory
    try:
        profile = write_profile(tmp_path / "narrow.yaml", ["127.0.111.0/28"])
        result = invoke("scan", "127.0.111.3", "--profile", str(profile), "--db", str(db),
                        "--audit", str(tmp_path / "audit.jsonl"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.exit_code == 5
    assert one_error_line(result.stderr) == f"otprobe: error: {db}: database is locked"


def test_an_unexpected_exception_is_one_error_line_and_exit_5(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    db = str(tmp_path / "inv.db")
    SqliteStore(db).close()
    monkeypatch.setattr(SqliteStore, "asset_widths", broken)
    result = invoke("inventory", "list", "--db", db)
    assert result.exit_code == 5
    assert one_error_line(result.stderr) == "otprobe: error: RuntimeError: disk on fire"

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(SqliteStore, "asset_widths", interrupted)  # Ctrl-C is not an error: typer's 130 stays
    assert invoke("inventory", "list", "--db", db).exit_code == 130


async def test_a_scan_stopped_by_its_deadline_exits_4_and_is_recorded_incomplete(tmp_path: Path) -> None:
    plant = {"plant": "slow", "devices": [{**METER, "name": f"meter-{i}", "address": f"127.0.111.{20 + i}"}
                                          for i in range(4)]}
    slow = write_profile(tmp_path / "slow.yaml", ["127.0.111.0/24"], global_pps=1, max_devices_in_flight=1,
                         classes={"unknown": {"pps": 1, "burst": 1, "class_pps": 1, "max_session_s": 12}})
    db = tmp_path / "inv.db"
    async with running_plant(plant):
        done = await run_otprobe("scan", "127.0.111.20-23", "--profile", str(slow), "--protocol", "modbus",
                                 "--deadline", "1s", "--db", str(db), "--audit", str(tmp_path / "audit.jsonl"),
                                 env=plain_env(tmp_path))
    assert done.code == 4, done.stderr
    assert "incomplete" in done.stderr
    [record] = json.loads(invoke("scans", "list", "--db", str(db), "--format", "json").stdout)
    assert record["status"] == "incomplete" and record["not_covered"]


# --- output streams, NO_COLOR, --quiet ---------------------------------------------------------------------

def test_plan_json_is_the_only_thing_on_stdout() -> None:
    result = invoke("plan", "127.0.111.1-4", "--profile", "lab", "--format", "json")
    assert result.exit_code == 0
    plan = json.loads(result.stdout)
    assert plan["devices"] == 4 and plan["total_packets"] > 0


async def test_scan_json_goes_to_stdout_and_the_summary_to_stderr_unless_quiet(tmp_path: Path) -> None:
    env = plain_env(tmp_path)
    common = ["scan", METER["address"], "--profile", "lab", "--protocol", "modbus", "--db", str(tmp_path / "i.db")]
    async with running_plant({"plant": "one", "devices": [METER]}):
        loud = await run_otprobe(*common, "--format", "jsonl", env=env)
        quiet = await run_otprobe(*common, "--format", "jsonl", "--quiet", env=env)
        quiet_table = await run_otprobe(*common, "--quiet", env=env)
    for done in (loud, quiet, quiet_table):
        assert done.code == 0, done.stderr
    [observation] = loud.rows()
    assert (observation["ip"], observation["status"], observation["firmware"]) == (METER["address"], "identified",
                                                                                   "v2.7")
    assert re.search(r"^scan \S+: complete; \d+ packets", loud.stderr, re.MULTILINE)
    assert quiet.rows() == [{**observation, "latency_s": quiet.rows()[0]["latency_s"]}]
    assert quiet.stderr == "" and quiet_table.stderr == ""
    assert "PM5560" in quiet_table.stdout  # --quiet drops progress and summary, not the result


async def test_verbose_adds_log_lines_on_stderr_only(tmp_path: Path) -> None:
    env = plain_env(tmp_path)
    common = ["scan", METER["address"], "--profile", "lab", "--protocol", "modbus", "--format", "jsonl"]
    async with running_plant({"plant": "one", "devices": [METER]}):
        runs = {flags: await run_otprobe(*flags, *common, "--db", str(tmp_path / f"{len(flags)}{flags}.db"), env=env)
                for flags in ((), ("-v",), ("-vv",))}
    for done in runs.values():
        assert done.code == 0, done.stderr
        assert [o["status"] for o in done.rows()] == ["identified"]  # stdout stays JSON whatever the verbosity
    assert "INFO" not in runs[()].stderr and "DEBUG" not in runs[()].stderr
    assert "INFO otprobe.scan: scan " in runs[("-v",)].stderr and "DEBUG" not in runs[("-v",)].stderr
    assert f"DEBUG otprobe.scan: {METER['address']} modbus/" in runs[("-vv",)].stderr
    async with running_plant({"plant": "one", "devices": [METER]}):  # after the command, as users type it too
        after = await run_otprobe(*common, "--db", str(tmp_path / "after.db"), "-vv", env=env)
    assert after.code == 0, after.stderr
    assert f"DEBUG otprobe.scan: {METER['address']} modbus/" in after.stderr


async def test_device_text_that_looks_like_rich_markup_prints_as_written(tmp_path: Path) -> None:
    # a device names itself: brackets and colons are its text, never styling or emoji (nor a MarkupError)
    hostile = {**METER, "name": "hostile", "address": "127.0.111.30",
               "modbus": {**METER["modbus"], "vendor_name": "ACME [/x] Corp", "product_code": "[red]PM1[/red]",
                          "model_name": "[bold]M :warning:"}}
    db = tmp_path / "i.db"
    async with running_plant({"plant": "hostile", "devices": [hostile]}):
        done = await run_otprobe("scan", hostile["address"], "--profile", "lab", "--protocol", "modbus",
                                 "--db", str(db), "--quiet", env=plain_env(tmp_path))
    assert done.code == 0, done.stderr
    listed, shown = invoke("inventory", "list", "--db", str(db)), invoke("inventory", "show", "127.0.111.30",
                                                                          "--db", str(db))
    assert listed.exit_code == 0 and shown.exit_code == 0
    for result in (done, listed, shown):
        assert result.stderr == ""
        for text in ("ACME [/x] Corp", "[red]PM1[/red]", "[bold]M :warning:"):
            assert text in result.stdout, result.stdout


@pytest.mark.parametrize("args", [("profiles", "list"), ("scan", "--help"), ("plan", "127.0.111.1", "-p", "lab")],
                         ids=" ".join)
async def test_no_color_means_no_escape_codes_even_on_a_terminal(tmp_path: Path, args: tuple[str, ...]) -> None:
    # FORCE_COLOR makes rich and typer behave as on a terminal, where styling would otherwise be emitted
    terminal = {"FORCE_COLOR": "1", "TERM": "xterm-256color"}
    coloured = await run_otprobe(*args, env=plain_env(tmp_path, NO_COLOR="", **terminal))
    plain = await run_otprobe(*args, env=plain_env(tmp_path, **terminal))
    assert ESCAPE in coloured.stdout + coloured.stderr
    assert ESCAPE not in plain.stdout + plain.stderr
    assert plain.code == coloured.code


async def test_scan_jsonl_prints_each_result_while_the_scan_still_runs(tmp_path: Path) -> None:
    """A pipeline follows the scan: the first device's line arrives long before the last device is even asked."""
    env = plain_env(tmp_path)
    meters = [{**METER, "name": f"meter{n}", "address": f"127.0.111.{20 + n}"} for n in range(3)]
    # 0.5 pps per device and one device at a time: three Modbus sessions take several seconds each
    profile = write_profile(tmp_path / "slow.yaml", ["127.0.111.0/24"], assign=[],
                            protocols={"modbus": {"port": METER["modbus"]["port"], "unit_ids": [1]}},
                            classes={"unknown": {"pps": 0.5, "burst": 1, "connect_gap_s": 0, "max_session_s": 30}},
                            max_devices_in_flight=1, max_addresses_in_flight=1, retries=0)
    async with running_plant({"plant": "three", "devices": meters}):
        process = await start_otprobe("scan", *(m["address"] for m in meters), "--profile", str(profile),
                                      "--db", str(tmp_path / "i.db"), "--format", "jsonl", "--quiet", env=env)
        assert process.stdout is not None
        first = json.loads(await asyncio.wait_for(process.stdout.readline(), 60))
        still_running = process.returncode is None
        rest, _ = await asyncio.wait_for(process.communicate(), 60)
    assert still_running, "the first line came only when the scan had ended"
    lines = [first, *map(json.loads, rest.decode().splitlines())]
    assert sorted(line["ip"] for line in lines) == [m["address"] for m in meters]
    assert process.returncode == 0
