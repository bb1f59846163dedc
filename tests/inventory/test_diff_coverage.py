"""Diffs without false alarms: a device is missing only after a complete scan asked its address over a protocol
that identified it, a known device outside the earlier scan is not new, the default comparison is the last two
scans of the same targets and protocols (and says so), and `--from`/`--to` take id prefixes.

Each reported case is a test here, on the SQLite store written through its API (no network).
"""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from otprobe.cli import app
from otprobe.inventory import SqliteStore
from otprobe.inventory.diff import diff_scans, pick_scans
from otprobe.model import Identity, Observation, Status

PORTS = {"s7": 102, "modbus": 502, "enip": 44818}
S7 = {f"127.0.1.{10 + i}": ("s7", {"vendor": "Siemens", "model": "CPU 315-2 PN/DP", "serial": f"S C-{i:012d}",
                                   "firmware": "V3.2.7"}) for i in range(3)}
ENIP = {f"127.0.3.{10 + i}": ("enip", {"vendor": "Rockwell Automation/Allen-Bradley", "model": "1756-ENBT/A",
                                       "serial": f"6043BF{i:02X}", "firmware": "6.1"}) for i in range(5)}
PLANT = {**S7, **ENIP}


def scan(store: SqliteStore, scan_id: str, targets: list[str], protocols: list[str],
         plant: dict[str, tuple[str, dict[str, str]]] = PLANT) -> None:
    """A complete scan of `targets` with `protocols`: each device of `plant` there answers its own protocol, and an
    address without a device times out."""
    store.begin_scan(scan_id, "lab", targets, protocols=protocols)
    for ip in targets:
        for protocol in protocols:
            speaks, identity = plant.get(ip, ("", {}))
            observed = Status.IDENTIFIED if protocol == speaks else Status.REFUSED if speaks else Status.TIMEOUT
            store.add_observation(scan_id, Observation(
                ip, protocol, PORTS[protocol], observed, Identity(**identity) if observed is Status.IDENTIFIED
                else None, 0.01, 3, None, "plc"))
    store.finish_scan(scan_id, "complete")


def changes(store: SqliteStore, from_id: str | None = None, to_id: str | None = None) -> list[tuple[str, str]]:
    pair = pick_scans(store, from_id, to_id)
    return sorted((c.kind, c.ip) for c in diff_scans(store, pair.old, pair.new).changes)


@pytest.fixture
def store(tmp_path: Path):
    s = SqliteStore(tmp_path / "inv.db")
    yield s
    s.close()


ALL = sorted(PLANT)


def test_an_s7_only_scan_reports_no_ethernet_ip_device_missing(store: SqliteStore) -> None:
    scan(store, "full", ALL, ["s7", "enip"])
    scan(store, "s7only", ALL, ["s7"])
    # compared with the full scan as asked: the five EtherNet/IP devices were not asked over EtherNet/IP
    assert changes(store, "full", "s7only") == []
    # and with the default comparison: the s7-only scan has no earlier scan of its targets and protocols
    assert changes(store) == []


def test_a_device_asked_over_its_own_protocol_that_does_not_answer_is_missing(store: SqliteStore) -> None:
    scan(store, "full", ALL, ["s7", "enip"])
    gone = "127.0.3.12"
    scan(store, "again", ALL, ["s7", "enip"], {ip: device for ip, device in PLANT.items() if ip != gone})
    assert changes(store) == [("missing", gone)]


def test_after_a_one_host_scan_the_next_full_scan_reports_no_known_asset_new(store: SqliteStore) -> None:
    scan(store, "full1", ALL, ["s7", "enip"])
    scan(store, "one", ["127.0.1.10"], ["s7", "enip"])
    scan(store, "full2", ALL, ["s7", "enip"])
    pair = pick_scans(store, None, None)
    # the default comparison skips the one-host scan and says which two it compared, and why
    assert (pair.old and pair.old.id, pair.new.id) == ("full1", "full2")
    assert "same site, targets and protocols" in pair.basis
    assert changes(store) == []
    # compared with the one-host scan on purpose: the other devices were outside it, so they are not new
    assert changes(store, "one", "full2") == []


def test_without_an_earlier_scan_of_the_same_targets_only_never_seen_assets_are_new(store: SqliteStore) -> None:
    scan(store, "one", ["127.0.1.10"], ["s7", "enip"])
    scan(store, "full", ALL, ["s7", "enip"])
    pair = pick_scans(store, None, None)
    assert pair.old is None and "only assets no scan saw before are new" in pair.basis
    assert changes(store) == [("new", ip) for ip in ALL if ip != "127.0.1.10"]


def test_an_incomplete_scan_marks_nothing_missing_even_when_it_asked(store: SqliteStore) -> None:
    scan(store, "full", ALL, ["s7", "enip"])
    store.begin_scan("cut", "lab", ALL, protocols=["s7", "enip"])
    store.finish_scan("cut", "incomplete")
    assert changes(store, "full", "cut") == []


def test_diff_from_and_to_take_id_prefixes_and_name_the_scans_compared(tmp_path: Path) -> None:
    db = tmp_path / "inv.db"
    upgraded = {**PLANT, "127.0.1.10": ("s7", {**S7["127.0.1.10"][1], "firmware": "V3.2.8"})}
    with closing(SqliteStore(db)) as store:
        scan(store, "20261207T045534Z-aaaa", ALL, ["s7", "enip"])
        scan(store, "20261207T055534Z-bbbb", ALL, ["s7", "enip"], upgraded)
        scan(store, "20261207T065534Z-cccc", ALL, ["s7", "enip"], upgraded)
    runner = CliRunner()
    env = {"NO_COLOR": "1", "COLUMNS": "100", "TERM": "dumb"}
    done = runner.invoke(app, ["inventory", "diff", "--from", "20261207T04", "--to", "20261207T05", "--db", str(db),
                               "--format", "json"], env=env)
    assert done.exit_code == 1, done.output
    result = json.loads(done.stdout)
    assert (result["from"], result["to"]) == ("20261207T045534Z-aaaa", "20261207T055534Z-bbbb")
    assert [(c["kind"], c["old"], c["new"]) for c in result["changes"]] == [("firmware_changed", "V3.2.7", "V3.2.8")]
    table = runner.invoke(app, ["inventory", "diff", "--from", "20261207T05", "--db", str(db)], env=env)
    assert table.exit_code == 0, table.output
    assert "Changes from scan 20261207T055534Z-bbbb to scan 20261207T065534Z-cccc" in table.stdout
    assert "no changes" in table.stdout
    ambiguous = runner.invoke(app, ["inventory", "diff", "--from", "2026", "--db", str(db)], env=env)
    assert ambiguous.exit_code == 5 and "ambiguous" in ambiguous.stderr
