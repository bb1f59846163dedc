"""An inventory written by the version-2 schema upgrades in place to version 3 when opened: the asset type and the
CPU state come from each asset's stored identity, each snapshot row gets the protocols that identified it, and
nothing written before is lost."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

from typer.testing import CliRunner

from otprobe.cli import app
from otprobe.inventory import SqliteStore
from otprobe.inventory.sqlite import MIGRATIONS, SCHEMA_VERSION

IDENTITY = {"vendor": "Siemens", "model": "CPU 315-2 PN/DP", "asset_type": "plc", "serial": "S C-B1U393142011",
            "firmware": "V3.2.7", "sources": {"vendor": "s7"},
            "raw": {"s7": {"cpu_state": "RUN"}, "modbus": {"pages": 1}}}


def version_2_inventory(path: Path) -> None:
    """What otprobe wrote before schema 3: the old migrations, then one finished scan's rows as its store wrote them
    (a six-column snapshot row without protocols)."""
    db = sqlite3.connect(path, isolation_level=None)
    for version in (1, 2):
        db.executescript(f"BEGIN; {MIGRATIONS[version]}; PRAGMA user_version={version}; COMMIT;")
    db.execute("INSERT INTO scans (id, profile, started_at, ended_at, status, pid, host, targets, counts, protocols)"
               " VALUES ('s1', 'lab', '2026-01-01T00:00:00+00:00', '2026-01-01T00:01:00+00:00', 'complete', 1, 'h',"
               " '[\"127.0.1.10\"]', '{\"identified\": 2}', '[\"s7\", \"modbus\"]')")
    for protocol, port in (("s7", 102), ("modbus", 502)):
        db.execute("INSERT INTO observations (scan_id, ip, protocol, port, status, device_class, identity, packets,"
                   " observed_at) VALUES ('s1', '127.0.1.10', ?, ?, 'identified', 'plc', '{}', 4, '2026')",
                   (protocol, port))
    db.execute("INSERT INTO observations (scan_id, ip, protocol, port, status, device_class, packets, observed_at)"
               " VALUES ('s1', '127.0.1.10', 'enip', 44818, 'refused', 'plc', 1, '2026')")
    db.execute("INSERT INTO assets (id, ip, device_class, vendor, model, serial, firmware, protocols, identity,"
               " conflicts, first_seen, last_seen) VALUES ('a1', '127.0.1.10', 'plc', 'Siemens', 'CPU 315-2 PN/DP',"
               " 'S C-B1U393142011', 'V3.2.7', '{\"s7\": 102, \"modbus\": 502}', ?, '{}', '2026', '2026')",
               (json.dumps(IDENTITY),))
    db.execute("INSERT INTO scan_assets VALUES ('s1', 'a1', '127.0.1.10', 'V3.2.7', 'CPU 315-2 PN/DP',"
               " 'S C-B1U393142011')")
    db.close()


def test_a_version_2_inventory_upgrades_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    version_2_inventory(path)
    with closing(SqliteStore(path)) as store:
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        [asset] = store.assets()
        assert (asset.id, asset.asset_type, asset.cpu_state, asset.firmware) == ("a1", "plc", "RUN", "V3.2.7")
        [pair] = store.snapshot_pairs(None, "s1")
        assert pair.after is not None and sorted(pair.after.protocols) == ["modbus", "s7"]  # not the refused enip
        assert store.scan("s1").counts == {"identified": 2}
        assert store.integrity_ok()
    listed = CliRunner().invoke(app, ["inventory", "list", "--type", "plc", "--db", str(path), "--format", "json"])
    assert listed.exit_code == 0, listed.output
    assert [a["id"] for a in json.loads(listed.stdout)] == ["a1"]

