"""The central store on SQLite and on PostgreSQL: the same scans give the same inventory as the SQLite store, sites
keep equal addresses apart, a serial seen at another site is a cross-site move, and the fleet's firmware counts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from central_plant import PORTS, later, obs, run_scan
from identities import INVENTORY_PLANT as PLANT

from otprobe.errors import InventoryError
from otprobe.inventory import SqliteStore
from otprobe.inventory.central import CentralStore
from otprobe.inventory.diff import diff_scans, pick_scans
from otprobe.inventory.fleet import firmware_summary
from otprobe.inventory.schema import scans
from otprobe.inventory.sites import check_site

pytest_plugins = ("central_pg",)  # the PostgreSQL fixtures (a conftest.py here would shadow the suite's)


def test_the_same_scans_give_the_same_inventory_as_the_sqlite_store(any_url: str, tmp_path: Path) -> None:
    local = SqliteStore(tmp_path / "local.db")
    central = CentralStore(any_url, site="plant-a")
    try:
        for store in (local, central):
            run_scan(store, "s1", PLANT)
            run_scan(store, "s2", later(PLANT), targets=[*sorted(PLANT), "127.0.3.99"])

        def view(store: SqliteStore | CentralStore) -> list[tuple]:
            return sorted((a.ip, a.vendor, a.model, a.serial, a.firmware, json.dumps(a.protocols, sort_keys=True),
                           json.dumps(a.conflicts, sort_keys=True), a.retired, a.duplicate_serial,
                           [(e["kind"], e["old"], e["new"]) for e in store.history(a.id)["events"]],
                           [f["firmware"] for f in store.history(a.id)["firmware"]],
                           [h["ip"] for h in store.history(a.id)["addresses"]])
                          for a in store.assets(include_retired=True))

        assert view(central) == view(local)
        assert [(s.id, s.status, s.counts) for s in central.scans()] == [(s.id, s.status, s.counts)
                                                                          for s in local.scans()]

        def changes(store: SqliteStore | CentralStore) -> list[dict]:
            pair = pick_scans(store, "s1", "s2")  # s2 asked one more address: not the default comparison
            found = diff_scans(store, pair.old, pair.new).as_dict()["changes"]
            return [{k: v for k, v in change.items() if k != "asset_id"} for change in found]  # ids are random

        assert changes(central) == changes(local)
        assert {c["kind"] for c in changes(central)} == {"firmware_changed", "moved", "missing"}
        assert central.observations("s1") == local.observations("s1")
    finally:
        local.close()
        central.close()


def test_equal_addresses_at_two_sites_stay_two_assets_and_a_serial_seen_elsewhere_is_a_cross_site_move(
    any_url: str,
) -> None:
    a, b = CentralStore(any_url, site="plant-a"), CentralStore(any_url, site="plant-b")
    everything = CentralStore(any_url)
    try:
        run_scan(a, "a1", PLANT)
        other = {"127.0.1.10": [("s7", {"vendor": "Siemens", "model": "CPU 1515-2 PN", "serial": "S V-L2RD17650093",
                                        "firmware": "V2.9.4"})],
                 "127.0.3.40": PLANT["127.0.3.10"]}  # the L18ER, taken from plant A to plant B
        run_scan(b, "b1", other)
        assert len(everything.assets()) == 5
        assert [x.model for x in everything.assets() if x.ip == "127.0.1.10"] == ["CPU 315-2 PN/DP", "CPU 1515-2 PN"]
        assert {x.site for x in everything.assets()} == {"plant-a", "plant-b"}
        assert not a.asset("127.0.1.10").retired and a.asset("127.0.1.10").model == "CPU 315-2 PN/DP"
        assert b.asset("127.0.1.10").model == "CPU 1515-2 PN"
        with pytest.raises(InventoryError, match="sites plant-a, plant-b"):
            everything.asset("127.0.1.10")
        moved_here, left_there = b.asset("127.0.3.40"), a.asset("127.0.3.10")
        assert moved_here.id != left_there.id
        move = ("moved_site", "plant-a 127.0.3.10", "plant-b 127.0.3.40")
        for asset in (moved_here, left_there):
            assert [(e["kind"], e["old"], e["new"]) for e in everything.history(asset.id)["events"]][-1] == move
        assert [s.id for s in a.scans()] == ["a1"] and [s.id for s in everything.scans()] == ["a1", "b1"]
        # a duplicate serial is a matter of one site: the L18ER at two sites is no duplicate at either
        assert not any(x.duplicate_serial for x in everything.assets())
    finally:
        for store in (a, b, everything):
            store.close()


def test_the_firmware_summary_counts_devices_per_firmware_and_site(any_url: str) -> None:
    a, b = CentralStore(any_url, site="plant-a"), CentralStore(any_url, site="plant-b")
    try:
        run_scan(a, "a1", PLANT)
        run_scan(b, "b1", later(PLANT), targets=[*sorted(PLANT), "127.0.3.99"])
        summary = firmware_summary(CentralStore(any_url).firmware_counts())
        siemens = [row for row in summary if row.model == "CPU 315-2 PN/DP"]
        assert [(r.firmware, r.devices, r.sites) for r in siemens] == [
            ("V3.2.7", 1, {"plant-a": 1}), ("V3.2.8", 1, {"plant-b": 1})]
        rockwell = next(r for r in summary if r.vendor.startswith("Rockwell"))
        assert (rockwell.firmware, rockwell.devices, rockwell.sites) == ("21.11", 2, {"plant-a": 1, "plant-b": 1})
        assert sum(r.devices for r in summary) == 5
        only_b = firmware_summary(b.firmware_counts())
        assert sum(r.devices for r in only_b) == 2 and all(r.sites.keys() == {"plant-b"} for r in only_b)
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("name", ["", "-a", "a b", "x" * 65, "plant/1", "ä"])
def test_a_bad_site_name_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="site"):
        check_site(name)


def test_a_password_never_appears_in_an_error(tmp_path: Path) -> None:
    url = "postgresql://sensor:s3cr3t-Pw@127.0.0.1:1/inventory?connect_timeout=2"
    with pytest.raises(InventoryError) as caught:
        CentralStore(url)
    assert "s3cr3t-Pw" not in str(caught.value)
    assert "postgresql://sensor:***@127.0.0.1:1/inventory" in str(caught.value)


def test_a_killed_scan_is_closed_as_interrupted_once_however_many_open_the_store(any_url: str) -> None:
    store = CentralStore(any_url, site="plant-a")
    run_scan(store, "s1", PLANT)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    store.begin_scan("s2", "lab", sorted(PLANT), protocols=list(PORTS))
    store.add_observation("s2", obs("127.0.1.10", "s7", **dict(PLANT["127.0.1.10"][0][1], firmware="V3.2.8")))
    with store.engine.begin() as c:  # as if its process had been killed: its pid no longer runs
        c.execute(scans.update().where(scans.c.id == "s2").values(pid=int(dead.stdout)))
    store.close()
    first, second = CentralStore(any_url), CentralStore(any_url)  # the first closes it, the second finds it closed
    try:
        assert [(s.id, s.status) for s in second.scans()] == [("s1", "complete"), ("s2", "interrupted")]
        assert sorted(second.missing("s2")) == ["127.0.1.10", "127.0.2.11", "127.0.3.10"]
        siemens = second.asset("127.0.1.10")
        assert siemens.firmware == "V3.2.8"  # what the killed scan saw still counts
        assert [e["kind"] for e in second.history(siemens.id)["events"]] == ["new", "firmware_changed"]
    finally:
        first.close()
        second.close()
