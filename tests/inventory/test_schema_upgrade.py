"""Inventory files an older otprobe wrote (kept in `data/`, made by that release) upgrade in place onto the shared
schema of schema.py when opened: every row kept, scans and assets given the sensor's site, the read commands
answering as they did, in one transaction that a failure midway leaves undone. An up-to-date file opens without
SQLAlchemy or Alembic."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine
from typer.testing import CliRunner

from otprobe.cli import app
from otprobe.errors import InventoryError
from otprobe.inventory import SqliteStore, sqlite_schema
from otprobe.inventory.database import SCHEMA_REVISION, head_revision
from otprobe.inventory.schema import metadata

DATA = Path(__file__).with_name("data")
SITE = "plant-a"


@pytest.fixture(autouse=True)
def sensor_site(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The sensor runs as SITE (its environment), with no configuration file of the machine's."""
    monkeypatch.setenv("OTPROBE_SITE", SITE)
    monkeypatch.delenv("OTPROBE_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


def old_file(tmp_path: Path, version: int) -> Path:
    path = tmp_path / f"schema{version}.db"
    shutil.copyfile(DATA / f"inventory-schema{version}.sqlite", path)
    return path


def rows(path: Path, table: str, columns: list[str] | None = None) -> list[tuple[Any, ...]]:
    """A table's rows in the order the file recorded them; `columns`: only those (default: all)."""
    with closing(sqlite3.connect(path)) as db:
        names = ", ".join(columns) if columns else "*"
        return db.execute(f"SELECT {names} FROM {table} ORDER BY rowid").fetchall()


def columns(path: Path, table: str) -> list[str]:
    with closing(sqlite3.connect(path)) as db:
        return [row[1] for row in db.execute(f"PRAGMA table_info({table})")]


def dump(path: Path) -> list[str]:
    """Every statement that rebuilds the file: its schema and its rows."""
    with closing(sqlite3.connect(path)) as db:
        return list(db.iterdump())


def differences_from_schema_py(path: Path) -> list[Any]:
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            return compare_metadata(MigrationContext.configure(connection), metadata)
    finally:
        engine.dispose()


def cli(*args: str) -> Any:
    result = CliRunner().invoke(app, [*args, "--format", "json"], env={"NO_COLOR": "1", "COLUMNS": "200"})
    assert result.exit_code in (0, 1), result.output  # diff exits 1 when it finds changes
    return json.loads(result.stdout)


def test_a_schema_3_file_from_the_last_release_upgrades_in_place_and_reads_as_before(tmp_path: Path) -> None:
    path = old_file(tmp_path, 3)
    tables = sqlite_schema.LEGACY_TABLES
    before = {table: (columns(path, table), rows(path, table)) for table in tables}
    assert all(found for _, found in before.values()), "the kept file holds rows in every table"
    scans = [dict(zip(before["scans"][0], row, strict=True)) for row in before["scans"][1]]
    assets = [dict(zip(before["assets"][0], row, strict=True)) for row in before["assets"][1]]
    packets: dict[str, int | None] = dict.fromkeys((scan["id"] for scan in scans), None)  # None: no observation
    for scan_id, sent in rows(path, "observations", ["scan_id", "packets"]):
        packets[scan_id] = (packets[scan_id] or 0) + sent

    # the first command on the file upgrades it, as the user runs it
    listed_scans = cli("scans", "list", "--db", str(path))
    assert [(s["id"], s["profile"], s["started_at"], s["ended_at"], s["status"], s["targets"], s["not_covered"],
             s["counts"], s["protocols"], s["resumes"], s["packets"]) for s in listed_scans] == [
        (s["id"], s["profile"], s["started_at"], s["ended_at"], s["status"], json.loads(s["targets"]),
         json.loads(s["not_covered"]), json.loads(s["counts"]), json.loads(s["protocols"]), s["resumes"],
         packets[s["id"]]) for s in scans]

    # every row of every table is still there, in its order, beside the new columns
    for table, (old_columns, old_rows) in before.items():
        assert rows(path, table, old_columns) == old_rows, table
    assert {site for (site,) in rows(path, "scans", ["site"]) + rows(path, "assets", ["site"])} == {SITE}
    assert rows(path, "sites", ["name"]) == [(SITE,)]
    assert rows(path, "alembic_version") == [(SCHEMA_REVISION,)]
    assert differences_from_schema_py(path) == []  # the tables are exactly schema.py's
    assert rows(path, "pragma_freelist_count") == [(0,)]  # vacuumed: the old tables' pages are given back

    listed = cli("inventory", "list", "--db", str(path))
    fields = ("id", "ip", "device_class", "vendor", "model", "product_code", "serial", "firmware", "hardware_version",
              "first_seen", "last_seen", "asset_type", "cpu_state")
    active = sorted((a for a in assets if not a["retired"]), key=lambda a: a["ip"])
    assert [[a[f] for f in fields] for a in listed] == [[a[f] for f in fields] for a in active]
    assert [(a["protocols"], a["identity"], a["conflicts"]) for a in listed] == [
        (json.loads(a["protocols"]), json.loads(a["identity"]), json.loads(a["conflicts"])) for a in active]

    history_columns = {"firmware": ["scan_id", "firmware", "observed_at"],
                       "addresses": ["scan_id", "ip", "observed_at"], "events": ["scan_id", "kind", "old", "new", "at"]}
    for asset in assets:
        shown = cli("inventory", "show", asset["id"], "--db", str(path))
        for kind, names in history_columns.items():
            table = f"asset_{kind}"
            recorded = [dict(zip(names, row[1:], strict=True))
                        for row in rows(path, table, ["asset_id", *names]) if row[0] == asset["id"]]
            assert shown["history"][kind] == recorded, (asset["id"], kind)

    # the diff of the two scans: what their snapshot rows say changed, as before
    snapshot = {scan["id"]: {r[1]: r for r in rows(path, "scan_assets", ["scan_id", "asset_id", "ip", "firmware"])
                             if r[0] == scan["id"]} for scan in scans}
    old, new = (snapshot[scan["id"]] for scan in scans)
    expected = {("missing", a, old[a][2]) for a in old.keys() - new.keys()}
    for a in old.keys() & new.keys():
        if old[a][3] != new[a][3]:
            expected.add(("firmware_changed", a, new[a][2]))
        if old[a][2] != new[a][2]:
            expected.add(("moved", a, new[a][2]))
    assert {kind for kind, _, _ in expected} == {"missing", "firmware_changed", "moved"}  # the kept file has each
    diff = cli("inventory", "diff", "--db", str(path))
    assert (diff["from"], diff["to"]) == tuple(scan["id"] for scan in scans)
    assert {(c["kind"], c["asset_id"], c["ip"]) for c in diff["changes"]} == expected


def test_a_schema_2_file_upgrades_through_the_revision_that_adds_asset_kinds(tmp_path: Path) -> None:
    """Version 2 lacks what schema 3 added: revision 0002 fills it from the stored identities and observations."""
    path = old_file(tmp_path, 2)
    [(scan_id,)] = rows(path, "scans", ["id"])
    [(asset_id,)] = rows(path, "assets", ["id"])
    with closing(SqliteStore(path)) as store:
        [asset] = store.assets()
        identity = json.loads(rows(path, "assets", ["identity"])[0][0])
        assert (asset.id, asset.asset_type, asset.cpu_state) == (asset_id, identity["asset_type"],
                                                                 identity["raw"]["s7"]["cpu_state"])
        [pair] = store.snapshot_pairs(None, scan_id)
        identified = sorted({p for (p, status) in rows(path, "observations", ["protocol", "status"])
                             if status == "identified"})
        assert pair.after is not None and sorted(pair.after.protocols) == identified  # not the refused one
        assert store.integrity_ok()
    assert differences_from_schema_py(path) == []


@pytest.mark.parametrize("where", ["copying rows", "migrating to the head"])
def test_a_failure_midway_through_the_upgrade_leaves_the_file_as_it_was(tmp_path: Path, where: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = old_file(tmp_path, 3)
    unchanged = dump(path)
    migrate, columns_of = sqlite_schema.migrate, sqlite_schema._columns

    def migrate_then_fail(connection: Any, revision: str) -> None:
        migrate(connection, revision)
        if revision == "head":  # everything is done but the commit
            raise RuntimeError("power cut")

    def fail_at_assets(connection: Any, table: str) -> list[str]:
        if table == "old_assets":  # scans and observations are copied already
            raise RuntimeError("power cut")
        return columns_of(connection, table)

    if where == "copying rows":
        monkeypatch.setattr(sqlite_schema, "_columns", fail_at_assets)
    else:
        monkeypatch.setattr(sqlite_schema, "migrate", migrate_then_fail)
    with pytest.raises(RuntimeError, match="power cut"):
        SqliteStore(path)
    assert dump(path) == unchanged
    monkeypatch.undo()
    with closing(SqliteStore(path)) as store:  # and the next open upgrades it
        assert len(store.scans()) == len(rows(tmp_path / "schema3.db", "scans"))


def test_a_database_error_during_the_upgrade_is_said_as_such_and_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = old_file(tmp_path, 3)
    unchanged = dump(path)
    adopt = sqlite_schema.adopt

    def adopt_then_fail(connection: Any, version: int, site: str) -> None:
        adopt(connection, version, site)
        connection.exec_driver_sql("INSERT INTO no_such_table VALUES (1)")  # what a full disk would raise here

    monkeypatch.setattr(sqlite_schema, "adopt", adopt_then_fail)
    with pytest.raises(InventoryError, match=r"schema3\.db: cannot upgrade .*nothing was changed.*no such table"):
        SqliteStore(path)
    assert dump(path) == unchanged


def test_two_processes_opening_an_old_file_at_once_upgrade_it_once(tmp_path: Path) -> None:
    path = old_file(tmp_path, 3)
    observations = len(rows(path, "observations"))
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            SqliteStore(path).close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(rows(path, "observations")) == observations
    assert rows(path, "sites", ["name"]) == [(SITE,)]


def test_a_new_file_is_built_by_the_migrations_and_later_opens_without_sqlalchemy_or_alembic(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    SqliteStore(path).close()
    assert differences_from_schema_py(path) == []
    assert head_revision() == SCHEMA_REVISION  # else an up-to-date file would be migrated on every open
    opened = subprocess.run([sys.executable, "-c", (
        "import sys; from otprobe.inventory import SqliteStore; store = SqliteStore(sys.argv[1]); store.assets(); "
        "store.scans(); print(sorted(m for m in ('sqlalchemy', 'alembic') if m in sys.modules))"), str(path)],
        capture_output=True, text=True, check=True)
    assert opened.stdout.strip() == "[]"


def test_a_file_from_a_newer_otprobe_is_refused_not_misread(tmp_path: Path) -> None:
    newer_version, newer_revision = tmp_path / "newer-version.db", tmp_path / "newer-revision.db"
    for path in (newer_version, newer_revision):
        SqliteStore(path).close()
    with closing(sqlite3.connect(newer_version)) as db:
        db.execute(f"PRAGMA user_version={sqlite_schema.SHARED_SCHEMA + 1}")
    with closing(sqlite3.connect(newer_revision)) as db, db:
        db.execute("UPDATE alembic_version SET version_num='9999_later'")
    with pytest.raises(InventoryError, match="newer"):
        SqliteStore(newer_version)
    with pytest.raises(InventoryError, match="newer otprobe"):
        SqliteStore(newer_revision)

