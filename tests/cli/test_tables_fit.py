"""Tables that fit: at 80 and 120 columns every table (scan results, inventory list, show, diff, scans list, plan)
stays within the width, and addresses, ids and versions are printed whole on one line; long free text is cut with an
ellipsis and `--wide` shows it whole. Also here: the asset type (shown, filtered, its vocabulary), the S7 CPU state,
planned against actual in `scans list`, counts in singular and plural, `-v` after the command, and read commands
that never create an inventory at a mistyped path.

The inventory is written through the store API; the CLI runs in-process (typer's CliRunner) at a fixed width.
"""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len
from typer.testing import CliRunner

from otprobe import render
from otprobe.cli import app
from otprobe.inventory import SqliteStore
from otprobe.model import ASSET_TYPES, Identity, Observation, Status

LONG_VENDOR = "Siemens Building Technologies Industrial Automation Division"
LONG_MODEL = "SIMATIC S7-1500 CPU 1516F-3 PN/DP with extended safety and motion control"
DEVICES = {
    "127.0.201.10": ("s7", 102, Identity(vendor="Siemens", model="CPU 1516F-3 PN/DP", asset_type="safety_plc",
                                         product_code="6ES7 516-3FN02-0AB0", serial="S V-L4HB12342019",
                                         firmware="V2.9.2", raw={"cpu_state": "RUN"})),
    "127.0.201.11": ("bacnet", 47808, Identity(vendor=LONG_VENDOR, model=LONG_MODEL, asset_type="building_controller",
                                               serial="PXC-0000000000000000001", firmware="EPXC V3.5.2")),
    "127.0.201.12": ("enip", 44818, Identity(vendor="Rockwell Automation/Allen-Bradley", model="PowerFlex 525",
                                             asset_type="drive", product_code="525-EN", serial="6043BF65",
                                             firmware="5.001")),
}
SCAN1, SCAN2 = "20261207T045534Z-bc71", "20261207T055534Z-d2e9"


def observe(scan_id: str, firmware_12: str) -> list[Observation]:
    found = []
    for ip, (protocol, port, identity) in DEVICES.items():
        if ip == "127.0.201.12":
            identity = Identity(**{**identity.__dict__, "firmware": firmware_12})
        found.append(Observation(ip, protocol, port, Status.IDENTIFIED, identity, 0.01, 1, None,
                                 "plc" if protocol == "s7" else "infra"))
    return found


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "inv.db"
    with closing(SqliteStore(path)) as store:
        for scan_id, firmware in ((SCAN1, "5.001"), (SCAN2, "6.002")):
            store.begin_scan(scan_id, "lab", sorted(DEVICES), protocols=["s7", "bacnet", "enip"])
            for observation in observe(scan_id, firmware):
                store.add_observation(scan_id, observation)
            store.finish_scan(scan_id, "complete")
        # the plan's figures, as a scan records them beside its per-status counts
        store.db.execute("UPDATE scans SET counts=json_patch(counts, ?) WHERE id=?",
                         (json.dumps({"plan_worst_s": 34.2, "plan_expected_s": 12.5, "plan_packets": 2280}), SCAN2))
    return path


def cli(width: int, *args: str) -> Any:
    return CliRunner().invoke(app, list(args), prog_name="otprobe",
                              env={"NO_COLOR": "1", "COLUMNS": str(width), "TERM": "dumb"})


def table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line[:1] in "┏┃┡│└"]


def assert_fits(text: str, width: int, whole: list[str]) -> None:
    lines = table_lines(text)
    assert lines, text
    for line in lines:
        assert cell_len(line) <= width, f"{cell_len(line)} > {width}: {line}"
    for value in whole:  # each id, address or version shown is on one line, never cut
        assert value in text, f"{value!r} not whole in:\n{text}"


def asset_ids(db: Path) -> list[str]:
    with closing(SqliteStore(db)) as store:
        return [a.id for a in store.assets()]


WIDTHS = [80, 120]


@pytest.mark.parametrize("width", WIDTHS)
def test_inventory_list_fits_and_keeps_ids_addresses_and_versions_whole(db: Path, width: int) -> None:
    done = cli(width, "inventory", "list", "--db", str(db))
    assert done.exit_code == 0, done.output
    assert_fits(done.stdout, width, [*asset_ids(db), *DEVICES, "V2.9.2", "EPXC V3.5.2", "6.002"])
    assert LONG_VENDOR not in done.stdout and LONG_MODEL not in done.stdout  # free text cut ...
    assert "…" in done.stdout  # ... with an ellipsis
    assert "--wide shows every column" in done.stderr or width >= 120
    assert "Inventory (3 assets)" in done.stdout


def test_wide_shows_every_column_and_every_value_whole(db: Path) -> None:
    done = cli(80, "inventory", "list", "--wide", "--db", str(db))
    assert done.exit_code == 0, done.output
    header = table_lines(done.stdout)[1]
    for column in ("asset", "ip", "type", "class", "state", "vendor", "model", "product code", "firmware", "serial",
                   "protocols", "last seen"):
        assert f" {column} " in header
    assert LONG_VENDOR in done.stdout and LONG_MODEL in done.stdout and "…" not in done.stdout
    assert "left out" not in done.stderr


@pytest.mark.parametrize("width", WIDTHS)
def test_show_diff_and_scans_list_fit(db: Path, width: int) -> None:
    shown = cli(width, "inventory", "show", "127.0.201.12", "--db", str(db))
    assert shown.exit_code == 0, shown.output
    assert_fits(shown.stdout, width, [SCAN1, SCAN2, "127.0.201.12", "5.001", "6.002", "6043BF65"])
    diff = cli(width, "inventory", "diff", "--db", str(db))
    assert diff.exit_code == 1, diff.output
    assert_fits(diff.stdout, width, [SCAN1, SCAN2, "127.0.201.12", "firmware_changed", "5.001", "6.002"])
    assert "1 change: 1 firmware_changed" in diff.stderr
    scans = cli(width, "scans", "list", "--db", str(db))
    assert scans.exit_code == 0, scans.output
    assert_fits(scans.stdout, width, [SCAN1, SCAN2, "complete"])
    assert "Scans (2 scans)" in scans.stdout


@pytest.mark.parametrize("width", WIDTHS)
def test_plan_fits(width: int) -> None:
    done = cli(width, "plan", "127.0.201.1-4", "--profile", "lab")
    assert done.exit_code == 0, done.output
    assert_fits(done.stdout, width, ["total"])


@pytest.mark.parametrize("width", WIDTHS)
def test_scan_results_fit(width: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    observations = [*observe(SCAN1, "5.001"), Observation("127.0.201.99", "s7", 102, Status.TIMEOUT, None, None, 2,
                                                          "no answer in 3.0 s (twice)", "plc")]
    render.observations_table(observations)
    text = capsys.readouterr().out
    assert_fits(text, width, [*DEVICES, "127.0.201.99", "identified", "timeout", "V2.9.2", "EPXC V3.5.2"])
    assert "Devices (4 devices)" in text


def test_asset_type_and_pacing_class_are_both_shown_and_the_type_filters(db: Path) -> None:
    listed = json.loads(cli(200, "inventory", "list", "--type", "drive", "--db", str(db), "--format", "json").stdout)
    assert [(a["ip"], a["asset_type"], a["device_class"]) for a in listed] == [("127.0.201.12", "drive", "infra")]
    table = cli(200, "inventory", "list", "--type", "safety_plc", "--db", str(db))
    assert table.exit_code == 0, table.output
    [row] = [line for line in table_lines(table.stdout) if line.startswith("│")]
    assert "127.0.201.10" in row and "safety_plc" in row and " plc " in row
    assert "Inventory (1 asset)" in table.stdout
    shown = cli(200, "inventory", "show", "127.0.201.12", "--db", str(db)).stdout
    assert "│ type " in shown and "drive" in shown and "infra (pacing)" in shown
    nothing = cli(200, "inventory", "list", "--type", "meter", "--db", str(db))
    assert nothing.exit_code == 0 and "no assets" in nothing.stderr and "match" in nothing.stderr


def test_an_unknown_asset_type_is_refused_with_the_vocabulary(db: Path) -> None:
    done = cli(200, "inventory", "list", "--type", "robot", "--db", str(db))
    assert done.exit_code == 2
    assert "unknown asset type 'robot'" in done.stderr
    for known in ASSET_TYPES:
        assert known in " ".join(done.stderr.split()).replace("│", "")


def test_the_cpu_state_is_shown_only_where_it_was_read(db: Path, tmp_path: Path) -> None:
    table = cli(200, "inventory", "list", "--db", str(db)).stdout
    assert " state " in table_lines(table)[1]
    [plc] = [line for line in table_lines(table) if "127.0.201.10" in line]
    assert " RUN " in plc
    assert "│ CPU state    │ RUN" in cli(200, "inventory", "show", "127.0.201.10", "--db", str(db)).stdout
    assert "CPU state" not in cli(200, "inventory", "show", "127.0.201.12", "--db", str(db)).stdout
    other = tmp_path / "other.db"
    with closing(SqliteStore(other)) as store:
        store.begin_scan("s", "lab", ["127.0.201.12"], protocols=["enip"])
        store.add_observation("s", observe("s", "5.001")[2])
        store.finish_scan("s", "complete")
    assert " state " not in table_lines(cli(200, "inventory", "list", "--db", str(other)).stdout)[1]


def test_scans_list_shows_planned_against_actual_where_a_plan_was_recorded(db: Path) -> None:
    done = cli(200, "scans", "list", "--db", str(db))
    assert done.exit_code == 0, done.output
    header = table_lines(done.stdout)[1]
    assert "took / planned" in header and "packets / planned" in header
    [first] = [line for line in table_lines(done.stdout) if SCAN1 in line]
    [second] = [line for line in table_lines(done.stdout) if SCAN2 in line]
    assert "/ 12.5 s (worst 34.2 s)" in second and "3 / 2280" in second  # 3 observations of one packet each
    assert "/ 12.5" not in first and "2280" not in first  # no plan recorded: the actual figures alone
    assert "plan_" not in done.stdout
    listed = json.loads(cli(200, "scans", "list", "--db", str(db), "--format", "json").stdout)
    assert listed[1]["counts"]["plan_packets"] == 2280 and listed[1]["packets"] == 3


def test_counts_agree_with_their_nouns() -> None:
    assert [render.plural(n, "packet") for n in (0, 1, 2)] == ["0 packets", "1 packet", "2 packets"]
    assert render.plural(1, "change") == "1 change"


@pytest.mark.parametrize("args", [("inventory", "list"), ("inventory", "show", "127.0.201.10"),
                                  ("inventory", "diff"), ("inventory", "export"), ("scans", "list")], ids=" ".join)
def test_read_commands_at_a_mistyped_db_path_exit_5_and_create_nothing(tmp_path: Path, args: tuple[str, ...]) -> None:
    typo = tmp_path / "invetnory.db"
    done = cli(200, *args, "--db", str(typo))
    assert done.exit_code == 5, done.output
    assert done.stderr.startswith(f"otprobe: error: {typo}: no inventory there")
    assert not typo.exists()


@pytest.mark.parametrize("flag", ["-v", "-vv", "--verbose"])
def test_verbose_works_after_the_command_too(db: Path, flag: str) -> None:
    for args in (("inventory", "list", "--db", str(db), flag), ("scans", "list", flag, "--db", str(db)),
                 ("plan", "127.0.201.1", "-p", "lab", flag)):
        done = cli(200, *args)
        assert done.exit_code == 0, done.output
    assert cli(200, "inventory", "list", "--db", str(db), "-x").exit_code == 2  # other options are still checked
