"""Shared serials: a serial that several devices report in one scan identifies none of them. Each address is its
own asset, flagged as a duplicate serial, and nothing "moves"; a real move (the old address gone) still is one.

Three levels: the pure matching function, the SQLite store, and `otprobe scan` against eleven simulated
EtherNet/IP adapters that all report one serial (a field case: cloned configurations).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import plain_env, run_otprobe, write_profile

from otprobe.inventory import SqliteStore
from otprobe.inventory.diff import diff_scans
from otprobe.inventory.reconcile import Event, KnownAsset, Sighting, match_assets
from otprobe.model import Identity, Observation, Status
from simulators.plant import running_plant

SERIAL = "6043BF65"
ELEVEN = [f"127.0.212.{10 + i}" for i in range(11)]


# --- the decision, on plain data ----------------------------------------------------------------------------

def test_one_serial_at_eleven_addresses_is_eleven_new_assets_each_flagged() -> None:
    matches = match_assets([Sighting(ip, SERIAL, "1756-ENBT/A") for ip in ELEVEN], [])
    assert [m.asset_id for m in matches.values()] == [None] * 11
    for ip, match in matches.items():
        assert match.events == [Event("duplicate_serial", ", ".join(a for a in ELEVEN if a != ip), SERIAL)]


def test_a_serial_at_a_new_address_whose_old_address_is_gone_is_a_move() -> None:
    known = [KnownAsset("a", "127.0.1.10", SERIAL, "L18ER", None)]
    (match,) = match_assets([Sighting("127.0.1.20", SERIAL, "L18ER")], known).values()
    assert (match.asset_id, match.events) == ("a", [Event("moved", "127.0.1.10", "127.0.1.20")])


def test_a_serial_still_answering_at_its_old_address_is_a_duplicate_not_a_move() -> None:
    known = [KnownAsset("a", "127.0.1.10", SERIAL, "L18ER", None)]
    matches = match_assets([Sighting("127.0.1.10", SERIAL, "L18ER"), Sighting("127.0.1.20", SERIAL, "L18ER")], known)
    old, new = matches["127.0.1.10"], matches["127.0.1.20"]
    assert (old.asset_id, old.events) == ("a", [Event("duplicate_serial", "127.0.1.20", SERIAL)])
    assert (new.asset_id, new.events) == (None, [Event("duplicate_serial", "127.0.1.10", SERIAL)])
    # known duplicates are flagged once: the next scan that sees the same pair adds no event
    again = match_assets([Sighting("127.0.1.10", SERIAL, "L18ER"), Sighting("127.0.1.20", SERIAL, "L18ER")],
                         [*known, KnownAsset("b", "127.0.1.20", SERIAL, "L18ER", None)])
    assert [(m.asset_id, m.events) for m in again.values()] == [("a", []), ("b", [])]


def test_a_serial_seen_once_that_several_assets_share_moves_none_of_them() -> None:
    known = [KnownAsset("a", "127.0.1.10", SERIAL, "L18ER", None), KnownAsset("b", "127.0.1.11", SERIAL, "L18ER", None)]
    (match,) = match_assets([Sighting("127.0.1.30", SERIAL, "L18ER")], known).values()
    assert match.asset_id is None
    assert match.events == [Event("duplicate_serial", "127.0.1.10, 127.0.1.11", SERIAL)]
    # at one of their own addresses it is that asset, already flagged
    (match,) = match_assets([Sighting("127.0.1.11", SERIAL, "L18ER")], known).values()
    assert (match.asset_id, match.events) == ("b", [])


def test_a_newcomer_at_a_moved_devices_old_address_does_not_retire_it() -> None:
    known = [KnownAsset("a", "127.0.1.10", SERIAL, "L18ER", None),
             KnownAsset("c", "127.0.1.20", "C0FFEE", "ENBT", None)]
    matches = match_assets([Sighting("127.0.1.10", "NEW1", "M580"), Sighting("127.0.1.20", SERIAL, "L18ER")], known)
    assert (matches["127.0.1.20"].asset_id, matches["127.0.1.20"].unaddress) == ("a", "c")
    assert matches["127.0.1.10"].asset_id is None
    assert matches["127.0.1.10"].retire is None  # asset a moved away: nothing at .10 is replaced


# --- the store ----------------------------------------------------------------------------------------------

@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "inv.db")
    yield s
    s.close()


def scan(store: SqliteStore, scan_id: str, serial_at: dict[str, str]) -> None:
    store.begin_scan(scan_id, "lab", sorted(serial_at), protocols=["enip"])
    for ip, serial in serial_at.items():
        identity = Identity(vendor="Rockwell Automation/Allen-Bradley", model="1756-ENBT/A", serial=serial,
                            firmware="6.1")
        store.add_observation(scan_id, Observation(ip, "enip", 44818, Status.IDENTIFIED, identity))
    store.finish_scan(scan_id, "complete")


def changes(store: SqliteStore, old: str | None, new: str) -> list[tuple[str, str, str | None, str | None]]:
    diff = diff_scans(store, store.scan(old) if old else None, store.scan(new))
    return sorted((c.kind, c.ip, c.old, c.new) for c in diff.changes)


def events(store: SqliteStore, kind: str) -> list[tuple[str, ...]]:
    return [tuple(r) for r in store.db.execute("SELECT asset_id, scan_id, old, new FROM asset_events WHERE kind=?",
                                               (kind,))]


def test_the_store_keeps_eleven_assets_for_eleven_devices_sharing_a_serial(store: SqliteStore) -> None:
    scan(store, "s1", dict.fromkeys(ELEVEN, SERIAL))
    assets = store.assets()
    assert sorted(a.ip for a in assets) == ELEVEN
    assert all(a.duplicate_serial and a.serial == SERIAL for a in assets)
    assert events(store, "moved") == []
    assert sorted(e[0] for e in events(store, "duplicate_serial")) == sorted(a.id for a in assets)
    assert store.asset(ELEVEN[0]).duplicate_serial
    assert changes(store, None, "s1") == sorted([("duplicate_serial", ip, None, SERIAL) for ip in ELEVEN]
                                                + [("new", ip, None, f"1756-ENBT/A {SERIAL}") for ip in ELEVEN])

    scan(store, "s2", dict.fromkeys(ELEVEN, SERIAL))  # the same plant again: the same assets, nothing new
    assert sorted(a.id for a in store.assets()) == sorted(a.id for a in assets)
    assert events(store, "moved") == [] and len(events(store, "duplicate_serial")) == 11
    assert {e[1] for e in events(store, "new")} == {"s1"}
    assert changes(store, "s1", "s2") == []


def test_the_store_still_sees_a_real_move(store: SqliteStore) -> None:
    scan(store, "s1", {"127.0.1.10": SERIAL, "127.0.1.11": "00000011"})
    moved_id = store.asset("127.0.1.10").id
    scan(store, "s2", {"127.0.1.20": SERIAL, "127.0.1.11": "00000011"})  # .10 no longer answers
    asset = store.asset("127.0.1.20")
    assert asset.id == moved_id and not asset.duplicate_serial
    assert events(store, "moved") == [(moved_id, "s2", "127.0.1.10", "127.0.1.20")]
    assert events(store, "duplicate_serial") == []
    assert len(store.assets()) == 2
    assert changes(store, "s1", "s2") == [("moved", "127.0.1.20", "127.0.1.10", "127.0.1.20")]


# --- end to end -------------------------------------------------------------------------------------------

async def test_eleven_simulated_adapters_with_one_serial_are_eleven_flagged_assets(tmp_path: Path) -> None:
    plant = {"plant": "shared-serial", "devices": [
        {"name": f"enbt-{i}", "class": "plc", "address": ip,
         "enip": {"port": 44818, "vendor_id": 1, "device_type": 12, "product_code": 58, "revision": "6.1",
                  "serial": f"0x{SERIAL}", "product_name": "1756-ENBT/A"}}
        for i, ip in enumerate(ELEVEN)]}
    profile = write_profile(tmp_path / "shared.yaml", ["127.0.212.0/24"])
    env = plain_env(tmp_path)
    db = ["--db", str(tmp_path / "inventory.db")]
    async with running_plant(plant) as running:
        done = await run_otprobe("scan", *ELEVEN, "--profile", str(profile), "--protocol", "enip", *db,
                                 "--audit", str(tmp_path / "audit.jsonl"), "--quiet", env=env)
        assert done.code == 0, done.stderr
        # each device answered its own identity request: eleven distinct receivers, not one
        asked = {d.spec.address for d in running if any(r.protocol == "enip" for r in d.recorder.requests)}
        assert asked == set(ELEVEN)

    assets = (await run_otprobe("inventory", "list", *db, "--format", "json", env=env)).json()
    assert sorted(a["ip"] for a in assets) == ELEVEN
    assert all(a["serial"] == SERIAL and a["duplicate_serial"] for a in assets)
    table = await run_otprobe("inventory", "list", *db, env=env)
    assert table.stdout.count(f"{SERIAL} (duplicate serial)") == 11
    shown = (await run_otprobe("inventory", "show", ELEVEN[3], *db, "--format", "json", env=env)).json()
    assert [(e["kind"], e["new"]) for e in shown["history"]["events"]] == [("new", ELEVEN[3]),
                                                                           ("duplicate_serial", SERIAL)]
    assert [h["ip"] for h in shown["history"]["addresses"]] == [ELEVEN[3]]
    detail = await run_otprobe("inventory", "show", ELEVEN[3], *db, env=env)
    assert f"{SERIAL} (duplicate serial)" in detail.stdout and "duplicate_serial" in detail.stdout
