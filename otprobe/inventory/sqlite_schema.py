"""The SQLite inventory file on the shared schema (`schema.py`): created, upgraded and adopted through the Alembic
migrations every backend runs, each in one transaction.

A file is up to date when its `PRAGMA user_version` is `SHARED_SCHEMA` and its `alembic_version` is the head
revision (`database.SCHEMA_REVISION`); `is_current` checks that on the store's own connection without loading
SQLAlchemy or Alembic, so opening an up-to-date file costs neither. Anything else is `upgrade`d:

- a new (empty) file is built by the migrations from the first revision;
- a file an older otprobe wrote (`user_version` 1-3, no `alembic_version`) is adopted in place: its version-1 rows
  are first given what version 2 added (below), its tables renamed aside, the migrations build the revision that
  matches it (version 2 is `0001_sites`, version 3 is `0002_asset_kinds`), every row is copied across in its
  recorded order with the sensor's site on its scans and assets, the old tables dropped, and the migrations then run
  on to the head, filling what later revisions add exactly as they do for any database;
- a file at an older revision is migrated to the head.

`user_version` becomes `SHARED_SCHEMA` (4), so an otprobe from before the move refuses the file ("schema version 4
is newer") instead of misreading it. All of it runs in one `BEGIN IMMEDIATE` transaction on SQLite's transactional
DDL: a failure or a crash midway leaves the file as it was, and a second process opening the file at the same time
waits, then finds it done. An adopted file is then vacuumed: the copy left the old rows' pages free, as much again
as the file held.
"""

from __future__ import annotations

import logging
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from otprobe.errors import InventoryError
from otprobe.inventory.database import SCHEMA_REVISION

if TYPE_CHECKING:
    from sqlalchemy import Connection

log = logging.getLogger(__name__)

SHARED_SCHEMA = 4  # the user_version of a file on the shared schema: its revision is in alembic_version
LEGACY_REVISION = {2: "0001_sites", 3: "0002_asset_kinds"}  # the revision that holds what each old version held
# the tables of an old file, parents first (rows are copied in this order and dropped in the reverse one)
LEGACY_TABLES = ("scans", "observations", "assets", "asset_firmware", "asset_addresses", "asset_events",
                 "scan_assets")
SITE_TABLES = ("scans", "assets")  # the old tables that gain a site

# Version 2 of the old file: coverage per (target, protocol) needs each scan's protocols; a scan from version 1
# recorded none, so the ones it observed are the best account of what it ran (the release that added this did so).
_VERSION_1_TO_2 = (
    "ALTER TABLE scans ADD COLUMN protocols TEXT NOT NULL DEFAULT '[]'",
    "ALTER TABLE scans ADD COLUMN resumes TEXT REFERENCES scans(id)",
    "UPDATE scans SET protocols ="
    " (SELECT json_group_array(DISTINCT protocol) FROM observations WHERE observations.scan_id = scans.id)",
)


def is_current(db: sqlite3.Connection) -> bool:
    """Whether the file is on the head revision already (and so needs neither SQLAlchemy nor Alembic)."""
    if db.execute("PRAGMA user_version").fetchone()[0] != SHARED_SCHEMA:
        return False
    try:
        revisions = [row[0] for row in db.execute("SELECT version_num FROM alembic_version")]
    except sqlite3.OperationalError:  # no alembic_version table
        return False
    return revisions == [SCHEMA_REVISION]


def upgrade(path: Path, site: str) -> None:
    """Bring the file at `path` to the head revision in one transaction; rows an older otprobe wrote get `site`."""
    from alembic.util import CommandError
    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.pool import NullPool

    def connect() -> sqlite3.Connection:
        # isolation_level None: the driver leaves transactions to the BEGIN below, so that DDL runs inside one too
        raw = sqlite3.connect(path, isolation_level=None, timeout=10)
        raw.execute("PRAGMA foreign_keys=ON")
        return raw

    engine = create_engine("sqlite://", creator=connect, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock first: a concurrent opener waits here
            try:
                adopted = _upgrade(connection, site)
            except BaseException:
                connection.rollback()
                raise
            connection.commit()
    except CommandError as exc:  # a revision this otprobe does not know: the file is from a newer one
        raise InventoryError(f"{exc}; is the file from a newer otprobe?") from None
    except SQLAlchemyError as exc:  # locked by a long write elsewhere, a read-only file, a full disk
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise InventoryError(f"cannot upgrade the inventory to this otprobe's schema (nothing was changed): "
                             f"{detail}") from None
    finally:
        engine.dispose()
    if adopted:
        _vacuum(path)


def _vacuum(path: Path) -> None:
    """Give back the pages the old tables held; the upgrade stands without it (later writes reuse them)."""
    try:
        with closing(sqlite3.connect(path, isolation_level=None, timeout=10)) as raw:
            raw.execute("VACUUM")
    except sqlite3.OperationalError as exc:  # a full disk, another process reading the file
        log.warning("%s: upgraded, but not compacted (%s): it keeps its size until scans reuse the space", path, exc)


def _upgrade(connection: Connection, site: str) -> bool:
    """Upgrade within the caller's transaction; whether an old file was adopted."""
    version = connection.exec_driver_sql("PRAGMA user_version").scalar_one()
    if version > SHARED_SCHEMA:
        raise InventoryError(f"schema version {version} is newer than this otprobe ({SHARED_SCHEMA})")
    tables = {name for (name,) in connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='table'")}
    adopting = "alembic_version" not in tables and "scans" in tables
    if adopting:
        adopt(connection, version, site)
    migrate(connection, "head")
    connection.exec_driver_sql(f"PRAGMA user_version={SHARED_SCHEMA}")
    return adopting


def migrate(connection: Connection, revision: str) -> None:
    """Run the migrations up to `revision` on `connection`, inside the transaction it is in."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def adopt(connection: Connection, version: int, site: str) -> None:
    """Move an old file's rows (`user_version` `version`) onto the revision that matches it, scans and assets
    given `site`; the caller's transaction makes it all or nothing."""
    if version == 1:
        for statement in _VERSION_1_TO_2:
            connection.exec_driver_sql(statement)
        version = 2
    if version not in LEGACY_REVISION:
        raise InventoryError(f"schema version {version} is not one otprobe wrote; cannot upgrade it")
    # the old indexes go with their tables; their names are the new tables' (the migrations create them afresh)
    for (index,) in connection.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type='index' AND sql IS NOT NULL").all():
        connection.exec_driver_sql(f'DROP INDEX "{index}"')
    for table in LEGACY_TABLES:
        connection.exec_driver_sql(f'ALTER TABLE "{table}" RENAME TO "old_{table}"')
    migrate(connection, LEGACY_REVISION[version])
    # deferred: the old tables still point at each other until they are dropped; checked at commit
    connection.exec_driver_sql("PRAGMA defer_foreign_keys=ON")
    connection.exec_driver_sql("INSERT INTO sites (name, created_at) VALUES (?, ?)",
                               (site, datetime.now(UTC).isoformat(timespec="seconds")))
    for table in LEGACY_TABLES:
        old = _columns(connection, f"old_{table}")
        copied = [name for name in _columns(connection, table) if name in old]
        names = ", ".join(f'"{name}"' for name in copied)
        if table in SITE_TABLES:
            # rowid order: the order the file recorded scans in is what "earlier" means in a diff
            connection.exec_driver_sql(f'INSERT INTO "{table}" ({names}, site) SELECT {names}, ? '
                                       f'FROM "old_{table}" ORDER BY rowid', (site,))
        else:
            connection.exec_driver_sql(f'INSERT INTO "{table}" ({names}) SELECT {names} FROM "old_{table}" '
                                       "ORDER BY rowid")
    for table in reversed(LEGACY_TABLES):
        connection.exec_driver_sql(f'DROP TABLE "old_{table}"')


def _columns(connection: Connection, table: str) -> list[str]:
    return [row[1] for row in connection.exec_driver_sql(f'PRAGMA table_info("{table}")')]
