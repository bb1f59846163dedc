"""A sensor's inventory file names the site of every scan and asset, as a central database does: the scan's
(`--site`, the profile's `site:`, $OTPROBE_SITE, else `default`), and reconciliation keeps sites apart."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from cli_helpers import plain_env, run_otprobe, write_profile
from test_inventory import obs

from otprobe.inventory import SqliteStore

IDENT = {"vendor": "Siemens", "model": "CPU 315-2 PN/DP", "serial": "S C-1", "firmware": "V3.2.7"}


def sites_of(path: Path, table: str) -> list[str]:
    with closing(sqlite3.connect(path)) as db:
        return [site for (site,) in db.execute(f"SELECT site FROM {table} ORDER BY rowid")]


def test_one_address_at_two_sites_is_two_assets_each_reconciled_within_its_site(tmp_path: Path) -> None:
    path = tmp_path / "inv.db"
    with closing(SqliteStore(path)) as store:
        for scan_id, site, firmware in (("a1", "plant-a", "V3.2.7"), ("b1", "plant-b", "V3.2.9"),
                                        ("a2", "plant-a", "V3.2.7")):
            store.write_site = site
            store.begin_scan(scan_id, "lab", ["127.0.99.10"], protocols=["s7"])
            store.add_observation(scan_id, obs("127.0.99.10", "s7", **{**IDENT, "firmware": firmware}))
            store.finish_scan(scan_id, "complete")
        assets = store.assets()
        # plant B's device at the same address is its own asset, not plant A's with new firmware; plant A's second
        # scan finds its own asset unchanged
        assert sorted(a.firmware for a in assets) == ["V3.2.7", "V3.2.9"]
        assert [e["kind"] for a in assets for e in store.history(a.id)["events"]] == ["new", "new"]
    assert sites_of(path, "scans") == ["plant-a", "plant-b", "plant-a"]
    assert sorted(sites_of(path, "assets")) == ["plant-a", "plant-b"]


async def test_a_scan_into_a_file_records_the_site_of_the_option_else_of_its_profile(tmp_path: Path) -> None:
    db = tmp_path / "inv.db"
    env = plain_env(tmp_path)
    # one protocol at an address where nothing listens: a scan row, quickly, and no packet beyond the loopback
    for profile_site, option in (("plant-p", ["--site", "plant-o"]), ("plant-p", [])):
        profile = write_profile(tmp_path / "p.yaml", ["127.0.221.0/24"], site=profile_site,
                                protocols={"modbus": {"port": 15020, "unit_ids": [1]}})
        done = await run_otprobe("scan", "127.0.221.5", "--profile", str(profile), "--db", str(db), *option,
                                 "--quiet", env=env)
        assert done.code == 0, done.stderr
    assert sites_of(db, "scans") == ["plant-o", "plant-p"]


@pytest.mark.parametrize("configured", [None, "plant-e"])
def test_a_store_opened_without_a_site_writes_the_sensors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          configured: str | None) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("OTPROBE_CONFIG", raising=False)
    if configured is None:
        monkeypatch.delenv("OTPROBE_SITE", raising=False)
    else:
        monkeypatch.setenv("OTPROBE_SITE", configured)
    with closing(SqliteStore(tmp_path / "inv.db")) as store:
        store.begin_scan("s1", "lab", ["127.0.99.10"], protocols=["s7"])
    assert sites_of(tmp_path / "inv.db", "scans") == [configured or "default"]
