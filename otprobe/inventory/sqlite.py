"""The embedded SQLite inventory: schema, migrations, crash-safe writes, and writing the asset changes a scan's end
brings (decided in `reconcile.py`, not here).

Observations are committed one by one as they arrive (WAL mode), so a crash loses at most the one in
flight. A scan row is `running` while its process lives; a reader that finds a running scan whose
process is gone marks it `interrupted` (that is how a `kill -9` shows up), merges what it observed and
lists the targets it left without a result as not covered.

Coverage is counted per (target, protocol) pair over a resume chain: a scan started by `scan --resume` names the
scan it continues (`resumes`), and the chain's first scan fixes what is owed: each of its targets, probed with each
of its protocols. A pair is covered once any scan of the chain recorded a result for it (any status but aborted);
a target is not covered while one of its pairs is not. Assets are merged from a scan's observations in one
transaction when the scan finishes (complete, incomplete or interrupted), and each finished scan keeps a
snapshot of the assets it saw: diffs compare snapshots.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from otprobe.errors import InventoryError
from otprobe.inventory import records, snapshots
from otprobe.inventory.owners import pid_alive
from otprobe.inventory.reconcile import Decision, KnownAsset, devices_seen, reconcile
from otprobe.inventory.sites import DEFAULT_SITE
from otprobe.inventory.store import (
    ALL_ASSETS,
    WIDTH_FIELDS,
    AssetFilter,
    AssetRecord,
    ScanRecord,
    SnapshotPair,
)
from otprobe.model import Observation, Status

SCHEMA_VERSION = 3

MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE scans (
        id TEXT PRIMARY KEY, profile TEXT NOT NULL, started_at TEXT NOT NULL, ended_at TEXT,
        status TEXT NOT NULL CHECK (status IN ('running', 'complete', 'incomplete', 'interrupted')),
        pid INTEGER, host TEXT, targets TEXT NOT NULL, not_covered TEXT NOT NULL DEFAULT '[]',
        counts TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE observations (
        id INTEGER PRIMARY KEY, scan_id TEXT NOT NULL REFERENCES scans(id), ip TEXT NOT NULL,
        protocol TEXT NOT NULL, port INTEGER NOT NULL, status TEXT NOT NULL, device_class TEXT NOT NULL,
        identity TEXT, latency_s REAL, packets INTEGER NOT NULL, error TEXT, observed_at TEXT NOT NULL
    );
    CREATE INDEX observations_scan ON observations(scan_id, ip);
    CREATE TABLE assets (
        id TEXT PRIMARY KEY, ip TEXT, device_class TEXT NOT NULL, vendor TEXT, model TEXT, product_code TEXT,
        serial TEXT, firmware TEXT, hardware_version TEXT, protocols TEXT NOT NULL, identity TEXT NOT NULL,
        conflicts TEXT NOT NULL, first_seen TEXT NOT NULL, last_seen TEXT NOT NULL, retired INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX assets_ip ON assets(ip);
    CREATE INDEX assets_serial ON assets(serial);
    CREATE TABLE asset_firmware (
        asset_id TEXT NOT NULL REFERENCES assets(id), scan_id TEXT NOT NULL, firmware TEXT, observed_at TEXT NOT NULL
    );
    CREATE TABLE asset_addresses (
        asset_id TEXT NOT NULL REFERENCES assets(id), ip TEXT NOT NULL, scan_id TEXT NOT NULL, observed_at TEXT NOT NULL
    );
    CREATE TABLE asset_events (
        asset_id TEXT NOT NULL, scan_id TEXT NOT NULL, kind TEXT NOT NULL, old TEXT, new TEXT, at TEXT NOT NULL
    );
    CREATE TABLE scan_assets (
        scan_id TEXT NOT NULL REFERENCES scans(id), asset_id TEXT NOT NULL, ip TEXT NOT NULL,
        firmware TEXT, model TEXT, serial TEXT, PRIMARY KEY (scan_id, asset_id)
    );
    """,
    # Coverage per (target, protocol): a scan records its protocols and the scan it resumes. A scan from before this
    # recorded no protocols: the ones it observed are the best account of what it ran.
    2: """
    ALTER TABLE scans ADD COLUMN protocols TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE scans ADD COLUMN resumes TEXT REFERENCES scans(id);
    UPDATE scans SET protocols =
        (SELECT json_group_array(DISTINCT protocol) FROM observations WHERE observations.scan_id = scans.id);
    """,
    # What a device is (`ASSET_TYPES`) and the S7 CPU's RUN/STOP as last read, per asset; per snapshot row the
    # protocols that identified it, so a diff calls a device missing only where a later scan asked it over one of
    # them. Rows from before this carry the protocols their scan identified at their address. The indexes serve
    # the diff's keyed lookups (by address and by serial within a scan, by asset across scans).
    3: """
    ALTER TABLE assets ADD COLUMN asset_type TEXT;
    ALTER TABLE assets ADD COLUMN cpu_state TEXT;
    UPDATE assets SET asset_type = json_extract(identity, '$.asset_type'),
                      cpu_state = (SELECT json_extract(raw.value, '$.cpu_state') FROM json_each(identity, '$.raw') raw
                                   WHERE json_extract(raw.value, '$.cpu_state') IS NOT NULL LIMIT 1);
    CREATE INDEX assets_asset_type ON assets(asset_type);
    ALTER TABLE scan_assets ADD COLUMN protocols TEXT NOT NULL DEFAULT '[]';
    UPDATE scan_assets SET protocols = (SELECT json_group_array(DISTINCT protocol) FROM observations
        WHERE observations.scan_id = scan_assets.scan_id AND observations.ip = scan_assets.ip
        AND observations.status = 'identified');
    CREATE INDEX scan_assets_ip ON scan_assets(scan_id, ip);
    CREATE INDEX scan_assets_serial ON scan_assets(scan_id, serial);
    CREATE INDEX scan_assets_asset ON scan_assets(asset_id);
    """,
}


def default_db_path() -> Path:
    """$OTPROBE_DB, else $XDG_DATA_HOME/otprobe/inventory.db (~/.local/share/otprobe/inventory.db)."""
    env = os.environ.get("OTPROBE_DB")
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "otprobe" / "inventory.db"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _domain_errors(method: Callable[Concatenate[SqliteStore, _P], _R]) -> Callable[Concatenate[SqliteStore, _P], _R]:
    """SQLite failures after opening ("database is locked", a full disk) become InventoryError naming the file."""

    @wraps(method)
    def wrapper(self: SqliteStore, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            raise InventoryError(f"{self.path}: {exc}") from exc

    return wrapper


class SqliteStore:
    """One inventory file. Safe to open while another process writes it (WAL)."""

    def __init__(self, path: str | Path, *, create: bool = True, site: str = DEFAULT_SITE) -> None:
        """Open the inventory at `path`; with `create` false (the read commands), a missing file is an error, so a
        mistyped path is said as such instead of showing an empty inventory it just created. The file is one
        sensor's, of one site: `site` names it in the assets read (`sites.sensor_site`, as a push names it)."""
        self.path = Path(path)
        self.site = site
        if not create and not self.path.is_file():
            raise InventoryError(f"{self.path}: no inventory there (check --db; `otprobe scan` creates one)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, isolation_level=None, timeout=10)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
            self._mark_interrupted()
        except sqlite3.DatabaseError as exc:
            raise InventoryError(f"{self.path}: cannot open inventory: {exc}") from exc
        except OSError as exc:  # the folder cannot be created
            detail = f"{exc.strerror}: {exc.filename}" if exc.strerror and exc.filename else str(exc)
            raise InventoryError(f"{self.path}: cannot open inventory: {detail}") from exc

    def close(self) -> None:
        self.db.close()

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise InventoryError(f"{self.path}: schema version {version} is newer than this otprobe ({SCHEMA_VERSION})")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            # executescript commits on its own; the script carries its own transaction so a migration is atomic
            self.db.executescript(f"BEGIN IMMEDIATE; {MIGRATIONS[target]}; PRAGMA user_version={target}; COMMIT;")

    def _tx(self) -> sqlite3.Connection:
        return _Transaction(self.db)  # type: ignore[return-value]

    def _mark_interrupted(self) -> None:
        """Close the books of scans whose process died (kill -9, power loss): what they saw still counts."""
        here = socket.gethostname()
        for row in self.db.execute("SELECT id, pid, host FROM scans WHERE status='running'").fetchall():
            if row["host"] == here and not pid_alive(row["pid"]):
                # `scan --resume` skips what such a scan observed, so its observations must reach the assets
                self.finish_scan(row["id"], "interrupted", list(self._missing(row["id"])))

    # -- writing a scan --------------------------------------------------------------------------

    @_domain_errors
    def begin_scan(self, scan_id: str, profile: str, targets: Iterable[str], *, protocols: Iterable[str],
                   resumes: str | None = None) -> None:
        self.db.execute(
            "INSERT INTO scans (id, profile, started_at, status, pid, host, targets, protocols, resumes)"
            " VALUES (?,?,?,?,?,?,?,?,?)",
            (scan_id, profile, _now(), "running", os.getpid(), socket.gethostname(), json.dumps(list(targets)),
             json.dumps(list(protocols)), resumes),
        )

    @_domain_errors
    def add_observation(self, scan_id: str, obs: Observation) -> None:
        self.db.execute(_INSERT_OBSERVATION, _observation_row(scan_id, obs, _now()))

    @_domain_errors
    def add_observations(self, scan_id: str, observations: Iterable[Observation]) -> None:
        now = _now()
        with self._tx():
            self.db.executemany(_INSERT_OBSERVATION, (_observation_row(scan_id, obs, now) for obs in observations))

    @_domain_errors
    def finish_scan(self, scan_id: str, status: str, not_covered: Iterable[str] = (),
                    figures: Mapping[str, float] | None = None) -> None:
        """Merge the scan's observations into assets and close the scan row, in one transaction."""
        observations = self._observations(scan_id)
        counts: dict[str, float] = defaultdict(int)
        for obs in observations:
            counts[str(obs.status)] += 1
        counts.update(figures or {})
        with self._tx():
            seen = devices_seen(observations, self._observations(*self._chain(scan_id)[1:]))
            known = [KnownAsset(r["id"], r["ip"], r["serial"], r["model"], r["firmware"]) for r in
                     self.db.execute("SELECT id, ip, serial, model, firmware FROM assets WHERE retired=0")]
            for decision in reconcile(seen, known):
                self._apply(scan_id, decision)
            self.db.execute(
                "UPDATE scans SET status=?, ended_at=?, not_covered=?, counts=? WHERE id=?",
                (status, _now(), json.dumps(list(not_covered)), json.dumps(counts), scan_id),
            )

    def _missing(self, scan_id: str) -> dict[str, list[str]]:
        """The pairs of `scan_id`'s resume chain (up to it) that have no result yet: target -> protocols."""
        chain = self._chain(scan_id)
        marks = ",".join("?" * len(chain))
        first = self.db.execute("SELECT targets, protocols FROM scans WHERE id=?", (chain[-1],)).fetchone()
        done = {(row["ip"], row["protocol"]) for row in self.db.execute(
            f"SELECT DISTINCT ip, protocol FROM observations WHERE status<>? AND scan_id IN ({marks})",
            (str(Status.ABORTED), *chain),
        )}
        owed = json.loads(first["protocols"])
        missing = {ip: [p for p in owed if (ip, p) not in done] for ip in json.loads(first["targets"])}
        return {ip: protocols for ip, protocols in missing.items() if protocols}

    def _chain(self, scan_id: str) -> list[str]:
        """`scan_id`, the scan it resumes, and so on back to the first of its chain."""
        return [row["id"] for row in self.db.execute(_CHAIN, (scan_id,))]

    def _observations(self, *scan_ids: str) -> list[Observation]:
        marks = ",".join("?" * len(scan_ids))
        rows = self.db.execute(f"SELECT * FROM observations WHERE scan_id IN ({marks}) ORDER BY id", scan_ids)
        return [records.observation(r) for r in rows.fetchall()]

    def _apply(self, scan_id: str, d: Decision) -> None:
        """Write one decision of `reconcile` and what this scan saw of the asset; nothing is decided here."""
        now = _now()
        seen = d.seen
        if d.retire is not None:
            self.db.execute("UPDATE assets SET retired=1, ip=NULL WHERE id=?", (d.retire,))
        if d.unaddress is not None:
            self.db.execute("UPDATE assets SET ip=NULL WHERE id=?", (d.unaddress,))
        asset_id = d.asset_id
        if asset_id is None:
            asset_id = uuid.uuid4().hex[:12]
            self.db.execute(
                "INSERT INTO assets (id, ip, device_class, protocols, identity, conflicts, first_seen, last_seen)"
                " VALUES (?,?,?,?,?,?,?,?)", (asset_id, seen.ip, seen.device_class, "{}", "{}", "{}", now, now),
            )
        for event in d.events:
            self._event(event.asset_id or asset_id, scan_id, event.kind, event.old, event.new)
        if d.firmware_recorded:
            self.db.execute("INSERT INTO asset_firmware VALUES (?,?,?,?)", (asset_id, scan_id, d.firmware, now))
        if d.address_recorded:
            self.db.execute("INSERT INTO asset_addresses VALUES (?,?,?,?)", (asset_id, seen.ip, scan_id, now))
        columns = {**records.asset_columns(d), "last_seen": now, "id": asset_id}
        self.db.execute(
            "UPDATE assets SET ip=:ip, device_class=:device_class, vendor=:vendor, model=:model,"
            " product_code=:product_code, serial=:serial, firmware=:firmware, hardware_version=:hardware_version,"
            " protocols=:protocols, identity=:identity, conflicts=:conflicts, last_seen=:last_seen,"
            " asset_type=:asset_type, cpu_state=:cpu_state WHERE id=:id", columns,
        )
        self.db.execute(
            "INSERT OR REPLACE INTO scan_assets (scan_id, asset_id, ip, firmware, model, serial, protocols)"
            " VALUES (:scan_id, :asset_id, :ip, :firmware, :model, :serial, :protocols)",
            {**records.snapshot_columns(d), "scan_id": scan_id, "asset_id": asset_id},
        )

    def _event(self, asset_id: str, scan_id: str, kind: str, old: Any, new: Any) -> None:
        self.db.execute("INSERT INTO asset_events VALUES (?,?,?,?,?,?)", (asset_id, scan_id, kind, old, new, _now()))

    # -- reading ---------------------------------------------------------------------------------

    @_domain_errors
    def scans(self) -> list[ScanRecord]:
        rows = self.db.execute(f"SELECT *, {_PACKETS} FROM scans ORDER BY started_at, rowid").fetchall()
        return [_row_to_scan(r, self.site) for r in rows]

    @_domain_errors
    def scan(self, scan_id: str) -> ScanRecord:
        rows = self.db.execute(f"SELECT *, {_PACKETS} FROM scans WHERE id LIKE ? ORDER BY rowid",
                               (scan_id + "%",)).fetchall()
        if len(rows) != 1:
            raise InventoryError(f"no scan {scan_id!r}" if not rows else f"scan id {scan_id!r} is ambiguous")
        return _row_to_scan(rows[0], self.site)

    @_domain_errors
    def observations(self, scan_id: str) -> list[Observation]:
        return self._observations(scan_id)

    @_domain_errors
    def missing(self, scan_id: str) -> dict[str, list[str]]:
        return self._missing(scan_id)

    @_domain_errors
    def assets(self, include_retired: bool = False) -> list[AssetRecord]:
        return list(self.iter_assets(AssetFilter(include_retired=include_retired)))

    def iter_assets(self, where: AssetFilter = ALL_ASSETS, *, details: bool = True) -> Iterator[AssetRecord]:
        clause, params = _where(where)
        shared = self._shared_serials()
        try:
            # the cursor is read as the caller consumes it: a listing of 100,000 assets never holds them all
            plain = self.db.cursor()
            plain.row_factory = None  # tuples, read by position: a Row's lookup by name costs per field and row
            columns = _ASSET_COLUMNS + (", identity, conflicts" if details else "")
            for row in plain.execute(f"SELECT {columns} FROM assets{clause} ORDER BY ip", params):
                yield _row_to_asset(row, shared, self.site)
        except sqlite3.DatabaseError as exc:
            raise InventoryError(f"{self.path}: {exc}") from exc

    def iter_asset_json(self, where: AssetFilter = ALL_ASSETS) -> Iterator[str]:
        clause, params = _where(where)
        try:
            for (text,) in self.db.execute(f"{_ASSET_JSON} FROM assets{clause} ORDER BY ip", [self.site, *params]):
                yield text
        except sqlite3.DatabaseError as exc:
            raise InventoryError(f"{self.path}: {exc}") from exc

    @_domain_errors
    def asset_widths(self, where: AssetFilter = ALL_ASSETS) -> dict[str, int]:
        clause, params = _where(where)
        # bytes, not characters: SQLite's length() stops at a NUL a device may have sent, and one aggregate is all
        # 100,000 assets cost (checking each value for unusual characters took ten times longer)
        columns = ", ".join(f"coalesce(max(length(CAST({name} AS BLOB))), 0)" for name in WIDTH_FIELDS)
        row = self.db.execute(f"SELECT count(*), {columns} FROM assets{clause}", params).fetchone()
        return {**dict(zip(WIDTH_FIELDS, row[1:], strict=True)), "count": row[0],
                "duplicate_serial": len(self._shared_serials()),
                "site": len(self.site.encode()) if row[0] else 0, "sites": min(row[0], 1)}  # one site: its own

    @_domain_errors
    def asset(self, key: str) -> AssetRecord:
        rows = self.db.execute(
            f"SELECT {_ASSET_COLUMNS}, identity, conflicts FROM assets WHERE id LIKE ? OR ip=? OR serial=?"
            " ORDER BY retired", (key + "%", key, key)
        ).fetchall()
        if not rows:
            raise InventoryError(f"no asset matches {key!r} (give an asset id, an address or a serial)")
        return _row_to_asset(tuple(rows[0]), self._shared_serials(), self.site)

    def _shared_serials(self) -> set[str]:
        """Serials that several active assets carry: each of them is flagged as a duplicate serial."""
        return {r[0] for r in self.db.execute(
            "SELECT serial FROM assets WHERE retired=0 AND serial<>'' GROUP BY serial HAVING count(*) > 1")}

    def snapshot_pairs(self, old_id: str | None, new_id: str) -> Iterator[SnapshotPair]:
        new_rowid = self.db.execute("SELECT rowid FROM scans WHERE id=?", (new_id,)).fetchone()
        params = {"old": old_id, "new": new_id, "new_rowid": new_rowid[0]}
        plain = self.db.cursor()
        plain.row_factory = None  # tuples: a Row's lookup by name costs more than the rest of a pair
        try:
            yield from snapshots.pairs(plain.execute(_AFTER_PAIRS, params),
                                       None if old_id is None else lambda: plain.execute(_BEFORE_ONLY, params))
        except sqlite3.DatabaseError as exc:
            raise InventoryError(f"{self.path}: {exc}") from exc

    @_domain_errors
    def history(self, asset_id: str) -> dict[str, list[dict[str, Any]]]:
        def rows(sql: str) -> list[dict[str, Any]]:
            return [dict(r) for r in self.db.execute(sql, (asset_id,)).fetchall()]

        return {
            "firmware": rows(
                "SELECT scan_id, firmware, observed_at FROM asset_firmware WHERE asset_id=? ORDER BY rowid"
            ),
            "addresses": rows("SELECT scan_id, ip, observed_at FROM asset_addresses WHERE asset_id=? ORDER BY rowid"),
            "events": rows("SELECT scan_id, kind, old, new, at FROM asset_events WHERE asset_id=? ORDER BY rowid"),
        }

    def integrity_ok(self) -> bool:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _where(where: AssetFilter) -> tuple[str, list[Any]]:
    conditions: list[str] = [] if where.include_retired else ["retired=0"]
    params: list[Any] = []
    if where.vendor is not None:  # instr, not LIKE: a % or _ in the text is meant literally
        conditions.append("instr(lower(coalesce(vendor, '')), lower(?)) > 0")
        params.append(where.vendor)
    for column, value in (("device_class", where.device_class), ("asset_type", where.asset_type)):
        if value is not None:
            conditions.append(f"{column}=?")
            params.append(value)
    if where.protocol is not None:
        conditions.append("EXISTS (SELECT 1 FROM json_each(assets.protocols) WHERE json_each.key=?)")
        params.append(where.protocol)
    return (" WHERE " + " AND ".join(conditions) if conditions else ""), params


# the scans recorded before the later one saw the asset: the file keeps the order scans were recorded in
_AFTER_PAIRS = snapshots.after_pairs_sql("s.rowid < :new_rowid")
_BEFORE_ONLY = snapshots.before_only_sql()


# A scan resumes an earlier one, so following `resumes` ends at the chain's first scan.
_CHAIN = """
WITH RECURSIVE chain(id, resumes, depth) AS (
    SELECT id, resumes, 0 FROM scans WHERE id=?
    UNION ALL SELECT scans.id, scans.resumes, chain.depth + 1 FROM scans JOIN chain ON scans.id = chain.resumes
) SELECT id FROM chain ORDER BY depth
"""


_INSERT_OBSERVATION = (
    "INSERT INTO observations (scan_id, ip, protocol, port, status, device_class, identity, latency_s, packets, error,"
    " observed_at) VALUES (:scan_id, :ip, :protocol, :port, :status, :device_class, :identity, :latency_s, :packets,"
    " :error, :observed_at)"
)


def _observation_row(scan_id: str, obs: Observation, now: str) -> dict[str, Any]:
    return {**records.observation_row(obs), "scan_id": scan_id, "observed_at": now}


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception (Ctrl-C included)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")


_PACKETS = "(SELECT sum(packets) FROM observations WHERE observations.scan_id = scans.id) AS packets_sent"


def _row_to_scan(r: sqlite3.Row, site: str) -> ScanRecord:
    return ScanRecord(r["id"], r["profile"], r["started_at"], r["ended_at"], r["status"], json.loads(r["targets"]),
                      json.loads(r["not_covered"]), json.loads(r["counts"]), json.loads(r["protocols"]), r["resumes"],
                      r["packets_sent"], site)


# An asset's columns in AssetRecord's order, but for identity and conflicts, which follow when asked for (a table or
# CSV shows neither)
_ASSET_COLUMNS = ("id, ip, device_class, vendor, model, product_code, serial, firmware, hardware_version, protocols,"
                  " first_seen, last_seen, retired, asset_type, cpu_state")


def _row_to_asset(r: tuple[Any, ...], shared: set[str], site: str) -> AssetRecord:
    """An AssetRecord from `_ASSET_COLUMNS` (and identity and conflicts, when the row has them), its JSON columns
    decoded only when read."""
    (asset_id, ip, device_class, vendor, model, product_code, serial, firmware, hardware_version, protocols,
     first_seen, last_seen, retired, asset_type, cpu_state) = r[:15]
    details = len(r) > 15
    return AssetRecord(asset_id, ip, device_class, vendor, model, product_code, serial, firmware, hardware_version,
                       protocols, r[15] if details else {}, r[16] if details else {}, first_seen, last_seen,
                       bool(retired), not retired and serial in shared, asset_type, cpu_state, site)


# An AssetRecord as JSON, built by SQLite itself (no parse and dump of each asset's identity in Python): the same
# keys in the same order, the stored JSON columns embedded as they are.
_ASSET_JSON = """SELECT json_object('id', id, 'ip', ip, 'device_class', device_class, 'vendor', vendor, 'model', model,
    'product_code', product_code, 'serial', serial, 'firmware', firmware, 'hardware_version', hardware_version,
    'protocols', json(protocols), 'identity', json(identity), 'conflicts', json(conflicts), 'first_seen', first_seen,
    'last_seen', last_seen, 'retired', json(CASE WHEN retired THEN 'true' ELSE 'false' END),
    'duplicate_serial', json(CASE WHEN retired = 0 AND serial IN (SELECT serial FROM assets WHERE retired = 0
        AND serial <> '' GROUP BY serial HAVING count(*) > 1) THEN 'true' ELSE 'false' END),
    'asset_type', asset_type, 'cpu_state', cpu_state, 'site', ?)"""
