"""The inventory's read commands on a central store, the same on a SQLite file and on PostgreSQL, and the same as on
a sensor's SQLite inventory: listings and their filters, column widths, JSON objects that name their site, diffs
that make no false alarms, and the report of a central scan. Scans are written through the stores' API (no
network).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import closing
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from otprobe.cli import app
from otprobe.inventory import SqliteStore
from otprobe.inventory.central import CentralStore
from otprobe.inventory.diff import diff_scans, pick_scans
from otprobe.inventory.store import WIDTH_FIELDS, AssetFilter, AssetRecord
from otprobe.model import Identity, Observation, Status

pytest_plugins = ("central_pg",)  # the PostgreSQL fixtures (a conftest.py here would shadow the suite's)

PORTS = {"s7": 102, "modbus": 502, "enip": 44818}
# address -> (pacing class, [(protocol, identity)]); types and a CPU state as the probes report them
Plant = dict[str, tuple[str, list[tuple[str, dict[str, Any]]]]]
PLANT: Plant = {
    "127.0.1.10": ("plc", [("s7", {"vendor": "Siemens", "model": "CPU 315-2 PN/DP", "serial": "S C-B1U393142011",
                                   "firmware": "V3.2.7", "asset_type": "plc", "raw": {"cpu_state": "RUN"}})]),
    "127.0.1.11": ("plc", [("s7", {"vendor": "Siemens", "model": "CPU 1516F-3 PN/DP", "serial": "S C-X4U1",
                                   "firmware": "V2.9.4", "asset_type": "safety_plc"})]),
    "127.0.2.11": ("plc", [("modbus", {"vendor": "Schneider Électrique", "product_code": "BME P58 1020",
                                       "firmware": "v02.70", "asset_type": "plc"}),
                           ("enip", {"vendor": "Schneider Électrique", "model": "BME P58 1020", "serial": "00A1B2C3",
                                     "firmware": "2.70", "vendor_id": 243, "asset_type": "plc"})]),
    "127.0.3.10": ("drive", [("enip", {"vendor": "Rockwell Automation/Allen-Bradley", "model": "PowerFlex 525",
                                       "serial": "6043BF65", "firmware": "5.001", "asset_type": "drive"})]),
    "127.0.4.10": ("meter", [("modbus", {"vendor": "Schneider Électrique", "model": "PM5560",
                                         "serial": "DUP-1", "firmware": "2.1", "asset_type": "meter"})]),
    "127.0.4.11": ("meter", [("modbus", {"vendor": "Schneider Électrique", "model": "PM5560",
                                         "serial": "DUP-1", "firmware": "2.1", "asset_type": "meter"})]),
}
ALL = sorted(PLANT)
BOTH = ["s7", "modbus", "enip"]
# the plant less the meter that repeats a serial, for diffs that should report nothing about serials
DISTINCT = {ip: device for ip, device in PLANT.items() if ip != "127.0.4.11"}


def scan(store: SqliteStore | CentralStore, scan_id: str, targets: list[str] = ALL, protocols: list[str] = BOTH,
         plant: Plant = PLANT, status: str = "complete") -> None:
    """A scan of `targets` with `protocols`: each device of `plant` there answers its own protocols, other pairs are
    refused, and an address without a device times out."""
    store.begin_scan(scan_id, "lab", targets, protocols=protocols)
    for ip in targets:
        device_class, answers = plant.get(ip, ("unknown", []))
        speaks = dict(answers)
        for protocol in protocols:
            if protocol in speaks:
                store.add_observation(scan_id, Observation(ip, protocol, PORTS[protocol], Status.IDENTIFIED,
                                                           Identity(**speaks[protocol]), 0.01, 4, None, device_class))
            else:
                store.add_observation(scan_id, Observation(ip, protocol, PORTS[protocol],
                                                           Status.REFUSED if speaks else Status.TIMEOUT, None, 0.01,
                                                           2, None, device_class))
    store.finish_scan(scan_id, status)


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"NO_COLOR": "1", "COLUMNS": "250", "OTPROBE_DB": "",
                                                       "OTPROBE_SITE": "", **(env or {})})
    return result.exit_code, result.output


@pytest.fixture(autouse=True)
def no_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTPROBE_CONFIG", str(tmp_path / "none.yaml"))


@pytest.fixture
def central(any_url: str) -> Iterator[CentralStore]:
    store = CentralStore(any_url, site="plant-a")
    yield store
    store.close()


@pytest.fixture
def scanned(any_url: str, tmp_path: Path) -> tuple[str, Path]:
    """The plant scanned into the central database (site plant-a) and into a sensor's SQLite file."""
    sensor = tmp_path / "sensor.db"
    for store in (CentralStore(any_url, site="plant-a"), SqliteStore(sensor)):
        with closing(store):
            scan(store, "s1")
    return any_url, sensor


def listed(db: str, *filters: str) -> list[dict[str, Any]]:
    code, output = cli("inventory", "list", "--db", db, "--format", "json", *filters)
    assert code == 0, output
    return json.loads(output)


def comparable(asset: dict[str, Any]) -> tuple[Any, ...]:
    """What two stores that scanned the same plant agree on (ids and times are each store's own)."""
    return (asset["ip"], asset["device_class"], asset["asset_type"], asset["cpu_state"], asset["vendor"],
            asset["model"], asset["serial"], asset["firmware"], asset["protocols"], asset["duplicate_serial"],
            asset["retired"])


@pytest.mark.parametrize(("filters", "expected"), [
    ((), ALL),
    (("--type", "plc"), ["127.0.1.10", "127.0.2.11"]),
    (("--type", "safety_plc"), ["127.0.1.11"]),
    (("--vendor", "schneider Électrique"), ["127.0.2.11", "127.0.4.10", "127.0.4.11"]),
    (("--vendor", "o_a"), []),  # meant literally, not as a pattern
    (("--vendor", "SIEMENS"), ["127.0.1.10", "127.0.1.11"]),
    (("--vendor", "%"), []),  # meant literally, not as a pattern
    (("--class", "meter"), ["127.0.4.10", "127.0.4.11"]),
    (("--protocol", "enip"), ["127.0.2.11", "127.0.3.10"]),
    (("--protocol", "modbus", "--type", "plc"), ["127.0.2.11"]),
    (("--protocol", "bacnet"), []),
])
def test_listing_filters_select_what_the_sqlite_store_selects(scanned: tuple[str, Path], filters: tuple[str, ...],
                                                              expected: list[str]) -> None:
    url, sensor = scanned
    assets = listed(url, *filters)
    assert [a["ip"] for a in assets] == expected
    assert sorted(map(comparable, assets)) == sorted(map(comparable, listed(str(sensor), *filters)))


def test_type_cpu_state_and_snapshot_protocols_are_stored_as_decided(central: CentralStore) -> None:
    scan(central, "s1")
    by_ip = {a.ip: a for a in central.iter_assets()}
    assert (by_ip["127.0.1.10"].asset_type, by_ip["127.0.1.10"].cpu_state) == ("plc", "RUN")
    assert (by_ip["127.0.3.10"].asset_type, by_ip["127.0.3.10"].cpu_state) == ("drive", None)
    assert by_ip["127.0.2.11"].identity["vendor_id"] == 243
    # a state is a moment's: a later scan that did not read it leaves none
    scan(central, "s2", plant={**PLANT, "127.0.1.10": ("plc", [("s7", {**PLANT["127.0.1.10"][1][0][1], "raw": {}})])})
    assert central.asset("127.0.1.10").cpu_state is None
    pairs = {p.after.ip: p.after for p in central.snapshot_pairs(None, "s2") if p.after is not None}
    assert pairs["127.0.2.11"].protocols == ["enip", "modbus"]
    assert pairs["127.0.3.10"].protocols == ["enip"]


def test_a_table_without_details_leaves_identity_empty(central: CentralStore) -> None:
    scan(central, "s1")
    plain = list(central.iter_assets(details=False))
    assert [a.ip for a in plain] == ALL and all(a.identity == {} and a.conflicts == {} for a in plain)
    assert all(a.identity for a in central.iter_assets())


def test_widths_count_bytes_and_match_the_sqlite_store(scanned: tuple[str, Path]) -> None:
    url, sensor = scanned
    with closing(CentralStore(url, site="plant-a")) as central, closing(SqliteStore(sensor)) as local:
        widths, expected = central.asset_widths(), local.asset_widths()
        meters = central.asset_widths(AssetFilter(device_class="meter"))
    assert widths == expected
    assert (widths["vendor"], widths["count"], widths["duplicate_serial"]) == (
        len("Rockwell Automation/Allen-Bradley"), len(ALL), 1)
    # bytes, not characters: É takes two
    assert meters["vendor"] == len("Schneider Électrique".encode()) == len("Schneider Électrique") + 1
    assert (meters["count"], meters["asset_type"], meters["cpu_state"]) == (2, len("meter"), 0)
    assert set(WIDTH_FIELDS) <= set(widths)


def test_json_objects_are_asset_records_that_name_their_site(scanned: tuple[str, Path]) -> None:
    url, _ = scanned
    assets = listed(url)
    assert list(assets[0]) == [f.name for f in fields(AssetRecord)]
    assert {a["site"] for a in assets} == {"plant-a"}
    duplicates = {a["ip"] for a in assets if a["duplicate_serial"]}
    assert duplicates == {"127.0.4.10", "127.0.4.11"}
    with closing(CentralStore(url, site="plant-a")) as central:
        records = {a.ip: a for a in central.iter_assets()}
    for asset in assets:  # the JSON says what the record says
        assert asset == asdict(records[asset["ip"]])


def test_reads_keep_to_the_site_asked_for_and_span_all_sites_otherwise(any_url: str) -> None:
    for site, targets in (("plant-a", ALL[:2]), ("plant-b", ALL[:3])):
        with closing(CentralStore(any_url, site=site)) as store:
            scan(store, f"scan-{site}", targets)
    every = listed(any_url)
    assert sorted((a["site"], a["ip"]) for a in every) == sorted(
        [("plant-a", ip) for ip in ALL[:2]] + [("plant-b", ip) for ip in ALL[:3]])
    plcs = listed(any_url, "--type", "plc")
    assert {a["site"] for a in plcs} == {"plant-a", "plant-b"}
    code, output = cli("inventory", "list", "--db", any_url, "--format", "json", env={"OTPROBE_SITE": "plant-b"})
    assert code == 0, output
    assert [(a["site"], a["ip"]) for a in json.loads(output)] == [("plant-b", ip) for ip in ALL[:3]]
    with closing(CentralStore(any_url, site="plant-a")) as store:
        assert store.asset_widths()["count"] == 2
        assert [a.ip for a in store.iter_assets()] == ALL[:2]
    code, output = cli("inventory", "list", "--db", any_url, env={"OTPROBE_SITE": "plant-b"})
    assert code == 0 and "127.0.2.11" in output and "Inventory (3 assets)" in output, output


# -- diffs: the cases of the SQLite store's coverage tests, on the central store ---------------------------------

def changes(store: CentralStore, from_id: str | None = None, to_id: str | None = None) -> list[tuple[str, str]]:
    pair = pick_scans(store, from_id, to_id)
    return sorted((c.kind, c.ip) for c in diff_scans(store, pair.old, pair.new).changes)


def test_a_scan_of_one_protocol_reports_no_device_of_another_missing(central: CentralStore) -> None:
    scan(central, "s1-full", sorted(DISTINCT), plant=DISTINCT)
    scan(central, "s2-s7only", sorted(DISTINCT), protocols=["s7"], plant=DISTINCT)
    assert changes(central, "s1-full", "s2-s7only") == []
    assert changes(central) == []


def test_a_device_asked_over_its_own_protocol_that_does_not_answer_is_missing(central: CentralStore) -> None:
    scan(central, "s1")
    gone = "127.0.3.10"
    scan(central, "s2", plant={ip: device for ip, device in PLANT.items() if ip != gone})
    assert changes(central) == [("missing", gone)]


def test_an_incomplete_scan_marks_nothing_missing(central: CentralStore) -> None:
    scan(central, "s1")
    scan(central, "s2", plant={}, status="incomplete")
    assert changes(central, "s1", "s2") == []


def test_a_known_device_outside_the_earlier_scan_is_not_new(central: CentralStore) -> None:
    scan(central, "s1-full", sorted(DISTINCT), plant=DISTINCT)
    scan(central, "s2-one", targets=["127.0.1.10"], plant=DISTINCT)
    scan(central, "s3-full", sorted(DISTINCT), plant=DISTINCT)
    pair = pick_scans(central, None, None)
    assert (pair.old and pair.old.id, pair.new.id) == ("s1-full", "s3-full")
    assert changes(central) == []
    assert changes(central, "s2-one", "s3-full") == []


def test_without_an_earlier_scan_of_the_same_targets_only_never_seen_assets_are_new(central: CentralStore) -> None:
    scan(central, "s1-one", targets=["127.0.1.10"], plant=DISTINCT)
    scan(central, "s2-full", sorted(DISTINCT), plant=DISTINCT)
    assert changes(central) == [("new", ip) for ip in sorted(DISTINCT) if ip != "127.0.1.10"]


def test_firmware_moves_replacements_and_newly_shared_serials(central: CentralStore, tmp_path: Path) -> None:
    later = dict(PLANT)
    later["127.0.1.10"] = ("plc", [("s7", {**PLANT["127.0.1.10"][1][0][1], "firmware": "V3.2.8"})])
    later["127.0.3.99"] = later.pop("127.0.3.10")  # the drive moved
    later["127.0.1.11"] = ("plc", [("s7", {**PLANT["127.0.1.11"][1][0][1], "serial": "S C-NEW9"})])  # replaced
    later["127.0.2.11"] = ("plc", [(p, {**ident, "serial": "DUP-2"}) for p, ident in PLANT["127.0.2.11"][1]])
    later["127.0.5.10"] = ("plc", [("enip", {"vendor": "Rockwell", "model": "1769-L18ER", "serial": "DUP-2"})])
    targets = sorted({*ALL, *later})
    sensor = SqliteStore(tmp_path / "sensor.db")
    for store in (central, sensor):
        scan(store, "s1", targets)
        scan(store, "s2", targets, plant=later)
    found, sensor_found = changes(central), changes(sensor)  # type: ignore[arg-type]
    sensor.close()
    # a serial that changed at an address is another device there; DUP-2 is now on two assets, so it identifies
    # neither; DUP-1, shared by both meters all along, is no news
    assert found == [("duplicate_serial", "127.0.2.11"), ("duplicate_serial", "127.0.5.10"),
                     ("firmware_changed", "127.0.1.10"), ("moved", "127.0.3.99"), ("new", "127.0.5.10"),
                     ("replaced", "127.0.1.11"), ("replaced", "127.0.2.11")]
    assert found == sensor_found


# -- the report of a central scan ---------------------------------------------------------------------------------

def test_report_of_a_central_scan(any_url: str, tmp_path: Path) -> None:
    with closing(CentralStore(any_url, site="plant-a")) as store:
        scan(store, "s1")
        scan(store, "s2", plant={ip: device for ip, device in PLANT.items() if ip != "127.0.3.10"})
    audit = tmp_path / "audit.jsonl"
    code, output = cli("report", "s2", "--db", any_url, "--format", "json", "--audit", str(audit))
    assert code == 0, output
    document = json.loads(output)
    text = json.dumps(document)
    assert "s2" in text and "127.0.3.10" in text
    markdown = tmp_path / "s2.md"
    code, output = cli("report", "s2", "--db", any_url, "-o", str(markdown), "--audit", str(audit))
    assert code == 0, output
    written = markdown.read_text()
    assert "missing" in written and "127.0.3.10" in written


def test_scans_count_their_packets_and_exports_read_the_central_store(any_url: str, tmp_path: Path) -> None:
    with closing(CentralStore(any_url, site="plant-a")) as store:
        scan(store, "s1")
        assert store.scan("s1").packets == sum(4 if ip != "127.0.2.11" else 8 for ip in ALL) + 2 * (
            len(ALL) * len(BOTH) - len(ALL) - 1)
    out = tmp_path / "assets.csv"
    code, output = cli("inventory", "export", "--format", "csv", "-o", str(out), "--db", any_url)
    assert code == 0, output
    lines = out.read_text().splitlines()
    assert len(lines) == 1 + len(ALL) and "asset_type" in lines[0] and any('"RUN"' in line for line in lines)
    code, output = cli("inventory", "export", "--format", "json", "--db", any_url)
    assert code == 0, output
    assert sorted(a["ip"] for a in json.loads(output)) == ALL


def test_the_migration_fills_type_cpu_state_and_snapshot_protocols_of_older_rows(any_url: str) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import insert, inspect, select

    from otprobe.inventory import database
    from otprobe.inventory.schema import assets, observations, scan_assets, scans, sites

    engine = database.create(any_url)
    config = Config()
    config.set_main_option("script_location", str(Path(database.__file__).with_name("migrations")))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001_sites")
        # rows as revision 0001 held them: no type, state or snapshot protocols columns
        connection.execute(insert(sites).values(name="plant-a", created_at="t"))
        connection.exec_driver_sql(
            "INSERT INTO scans (id, site, profile, started_at, status, targets) VALUES "
            "('s1', 'plant-a', 'lab', '2026-12-07T00:00:00+00:00', 'complete', '[\"127.0.1.10\"]')")
        for protocol, status in (("s7", "identified"), ("modbus", "refused"), ("enip", "identified")):
            connection.exec_driver_sql(
                "INSERT INTO observations (scan_id, ip, protocol, port, status, device_class, packets, observed_at) "
                f"VALUES ('s1', '127.0.1.10', '{protocol}', 1, '{status}', 'plc', 1, 't')")
        identity = json.dumps({"asset_type": "plc", "raw": {"enip": {}, "s7": {"cpu_state": "STOP"}}})
        connection.exec_driver_sql(
            "INSERT INTO assets (id, site, ip, device_class, protocols, identity, conflicts, first_seen, last_seen) "
            f"VALUES ('a1', 'plant-a', '127.0.1.10', 'plc', '{{}}', '{identity}', '{{}}', 't', 't')")
        connection.exec_driver_sql("INSERT INTO scan_assets (scan_id, asset_id, ip) VALUES ('s1', 'a1', '127.0.1.10')")
    assert not {"asset_type", "cpu_state"} & {c["name"] for c in inspect(engine).get_columns("assets")}
    database.upgrade(engine)
    with engine.connect() as connection:
        assert connection.execute(select(assets.c.asset_type, assets.c.cpu_state)).one() == ("plc", "STOP")
        assert connection.execute(select(scan_assets.c.protocols)).scalar_one() == '["enip", "s7"]'
        assert connection.execute(select(scans.c.id)).scalar_one() == "s1"
        assert len(connection.execute(select(observations.c.id)).all()) == 3
    engine.dispose()
