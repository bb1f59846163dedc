"""Inventory store, merge, diff and export on synthetic observations (no network)."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from dataclasses import asdict

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from identities import INVENTORY_PLANT as PLANT

from otprobe.errors import InventoryError
from otprobe.inventory import SqliteStore
from otprobe.inventory.diff import diff_scans, pick_scans
from otprobe.inventory.export import write_csv, write_cyclonedx, write_json
from otprobe.model import Identity, Observation, Status


def obs(ip: str, protocol: str, status: Status = Status.IDENTIFIED, **ident: object) -> Observation:
    identity = Identity(**ident) if status is Status.IDENTIFIED else None  # type: ignore[arg-type]
    port = {"s7": 102, "modbus": 502, "enip": 44818}[protocol]
    return Observation(ip, protocol, port, status, identity, 0.01, 4, None, "plc")




def run_scan(store: SqliteStore, scan_id: str, plant: dict, status: str = "complete",
             targets: list[str] | None = None) -> None:
    store.begin_scan(scan_id, "lab", targets or sorted(plant), protocols=["modbus", "s7", "enip"])
    for ip, entries in plant.items():
        for protocol, ident in entries:
            store.add_observation(scan_id, obs(ip, protocol, **ident))
    store.finish_scan(scan_id, status)


def exported(write, assets) -> str:
    out = io.StringIO()
    write(assets, out)
    return out.getvalue()


def latest_diff(store: SqliteStore, from_id: str | None = None):
    pair = pick_scans(store, from_id, None)
    return diff_scans(store, pair.old, pair.new)


@pytest.fixture
def store(tmp_path):
    s = SqliteStore(tmp_path / "inv.db")
    yield s
    s.close()


def test_one_asset_per_device_and_two_protocol_device_merged(store):
    run_scan(store, "s1", PLANT)
    assets = store.assets()
    assert len(assets) == 3
    m580 = store.asset("127.0.2.11")
    assert m580.protocols == {"enip": 44818, "modbus": 502}
    # the CIP identity outranks Modbus for the firmware string; both parse to 2.70 so no conflict is recorded
    assert m580.firmware == "2.70"
    assert "firmware" not in m580.conflicts
    assert m580.serial == "00A1B2C3"
    assert all(a.firmware for a in assets)


def test_conflicting_fields_are_kept(store):
    plant = {"127.0.2.11": [("modbus", {"vendor": "Schneider", "firmware": "v2.8"}),
                            ("enip", {"vendor": "Schneider Electric", "firmware": "2.90"})]}
    run_scan(store, "s1", plant)
    asset = store.asset("127.0.2.11")
    assert asset.vendor == "Schneider Electric"
    assert asset.conflicts["vendor"] == {"enip": "Schneider Electric", "modbus": "Schneider"}
    assert asset.conflicts["firmware"] == {"enip": "2.90", "modbus": "v2.8"}


def test_diff_reports_firmware_change_move_and_missing_then_clean(store):
    run_scan(store, "s1", PLANT)
    second = json.loads(json.dumps(PLANT))
    second["127.0.1.10"][0][1]["firmware"] = "V3.2.8"
    second["127.0.3.99"] = second.pop("127.0.3.10")  # moved, same serial
    del second["127.0.2.11"]  # stopped
    run_scan(store, "s2", second, targets=[*sorted(PLANT), "127.0.3.99"])
    d = latest_diff(store, "s1")  # other targets: by default s2 would have no earlier scan to compare with
    kinds = sorted((c.kind, c.ip) for c in d.changes)
    assert kinds == [("firmware_changed", "127.0.1.10"), ("missing", "127.0.2.11"), ("moved", "127.0.3.99")]
    fw = next(c for c in d.changes if c.kind == "firmware_changed")
    assert (fw.old, fw.new) == ("V3.2.7", "V3.2.8")
    run_scan(store, "s3", second, targets=[*sorted(PLANT), "127.0.3.99"])
    assert not latest_diff(store)
    moved = store.asset("6043BF65")
    assert [a["ip"] for a in store.history(moved.id)["addresses"]] == ["127.0.3.10", "127.0.3.99"]


@pytest.mark.parametrize("newcomer_first", [True, False], ids=["newcomer-first", "move-first"])
def test_a_move_and_a_newcomer_at_the_old_address_merge_the_same_in_either_order(store, newcomer_first):
    old, new = "127.0.1.10", "127.0.1.20"
    run_scan(store, "s1", {old: PLANT[old]})
    moved_id = store.asset(old).id
    newcomer = {old: [("modbus", {"vendor": "Schneider Electric", "product_code": "PM5560", "firmware": "v2.7"})]}
    moved = {new: PLANT[old]}
    run_scan(store, "s2", {**newcomer, **moved} if newcomer_first else {**moved, **newcomer})
    d = latest_diff(store, "s1")
    assert sorted((c.kind, c.ip) for c in d.changes) == [("moved", new), ("new", old)]
    assert store.asset(new).id == moved_id
    assert [a["ip"] for a in store.history(moved_id)["addresses"]] == [old, new]
    assert len(store.assets(include_retired=True)) == 2  # nothing was retired as replaced


def test_incomplete_scan_marks_nothing_missing(store):
    run_scan(store, "s1", PLANT)
    run_scan(store, "s2", {"127.0.1.10": PLANT["127.0.1.10"]}, status="incomplete", targets=sorted(PLANT))
    d = latest_diff(store)
    assert [c.kind for c in d.changes] == []


def test_replaced_device_is_reported(store):
    run_scan(store, "s1", PLANT)
    swapped = dict(PLANT)
    swapped["127.0.1.10"] = [("s7", {"vendor": "Siemens", "model": "CPU 315-2 PN/DP", "serial": "S C-NEW000000001",
                                     "firmware": "V3.2.7"})]
    run_scan(store, "s2", swapped)
    d = latest_diff(store)
    assert [(c.kind, c.ip) for c in d.changes] == [("replaced", "127.0.1.10")]
    assert len(store.assets()) == 3
    assert len(store.assets(include_retired=True)) == 4


def test_running_scan_of_dead_process_becomes_interrupted(tmp_path):
    path = tmp_path / "inv.db"
    s = SqliteStore(path)
    s.begin_scan("s1", "lab", ["127.0.1.10"], protocols=["s7"])
    s.add_observation("s1", obs("127.0.1.10", "s7", **PLANT["127.0.1.10"][0][1]))
    s.db.execute("UPDATE scans SET pid=? WHERE id='s1'", (2**22 + 12345,))  # a pid that does not exist
    s.close()
    reopened = SqliteStore(path)
    scan = reopened.scan("s1")
    assert scan.status == "interrupted"
    assert scan.not_covered == []  # it observed its only target
    assert reopened.integrity_ok()
    assert [a.ip for a in reopened.assets()] == ["127.0.1.10"]  # what it saw before dying still counts
    reopened.close()


def test_exports(store):
    run_scan(store, "s1", PLANT)
    assets = store.assets()
    bom = exported(write_cyclonedx, assets)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(bom) is None
    doc = json.loads(bom)
    assert {c["type"] for c in doc["components"]} == {"device"}
    assert all(c["components"][0]["type"] == "firmware" for c in doc["components"])
    rows = list(csv.DictReader(io.StringIO(exported(write_csv, assets))))
    assert len(rows) == 3 and {r["ip"] for r in rows} == set(PLANT)
    # the JSON the database builds is the records' own fields, key for key
    assert json.loads(exported(write_json, store.iter_asset_json())) == [asdict(a) for a in assets]


def test_bad_database_file_is_a_domain_error(tmp_path):
    bad = tmp_path / "not.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(InventoryError, match="cannot open inventory"):
        SqliteStore(bad)


def test_unknown_asset_and_scan(store):
    with pytest.raises(InventoryError):
        store.asset("nope")
    with pytest.raises(InventoryError):
        store.scan("nope")
    assert sqlite3.sqlite_version


def test_first_scan_diffs_as_all_new(store):
    run_scan(store, "s1", PLANT)
    pair = pick_scans(store, None, None)
    assert pair.old is None
    d = diff_scans(store, pair.old, pair.new)
    assert sorted((c.kind, c.ip) for c in d.changes) == [("new", ip) for ip in sorted(PLANT)]
    assert d.as_dict()["from"] is None
