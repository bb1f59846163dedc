"""The embedded SQLite inventory: crash-safe writes, and writing the asset changes a scan's end brings (decided in
`reconcile.py`, not here), on the shared schema of `schema.py` (created and upgraded by `sqlite_schema.py`).

Every scan and asset names its site, as in a central database: a sensor's file holds the scans of the site it runs
as (`sites.sensor_site`), and reconciliation matches a scan's devices against its own site's assets only.

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
from otprobe.inventory import records, snapshots, sqlite_schema
from otprobe.inventory.owners import pid_alive
from otprobe.inventory.reconcile import Decision, KnownAsset, devices_seen, reconcile
from otprobe.inventory.sites import sensor_site
from otprobe.inventory.store import (
    ALL_ASSETS,
    WIDTH_FIELDS,
    AssetFilter,
    AssetRecord,
    ScanRecord,
    SnapshotPair,
)
from otprobe.model import Observation, Status


def default_db_path() -> Path:
    """$OTPROBE_DB when it names a file, else $XDG_DATA_HOME/otprobe/inventory.db (~/.local/share/otprobe/
    inventory.db): a sensor that scans into a central database by URL still has its file there, for a push."""
    env = os.environ.get("OTPROBE_DB")
    if env and "://" not in env:
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

    def __init__(self, path: str | Path, *, create: bool = True, site: str | None = None) -> None:
        """Open the inventory at `path`; with `create` false (the read commands), a missing file is an error, so a
        mistyped path is said as such instead of showing an empty inventory it just created. `site`, as for a
        central store: the only site read (None: every site the file holds), and the one new scans belong to (and
        rows of a file an older otprobe wrote, when it is upgraded), else the sensor's site (`sites.sensor_site`)."""
        self.path = Path(path)
        self.site = site
        self._write_site = site
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

    @property
    def write_site(self) -> str:
        """The site new scans belong to: given, else the sensor's (read once, when first needed)."""
        if self._write_site is None:
            self._write_site = sensor_site(None)
        return self._write_site

    @write_site.setter
    def write_site(self, site: str) -> None:
        self._write_site = site

    def _migrate(self) -> None:
        if not sqlite_schema.is_current(self.db):  # only then SQLAlchemy and Alembic are loaded
            try:
                sqlite_schema.upgrade(self.path, self.write_site)
            except InventoryError as exc:
                raise InventoryError(f"{self.path}: {exc}") from None

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
        site = self.write_site
        with self._tx():
            self.db.execute("INSERT OR IGNORE INTO sites (name, created_at) VALUES (?,?)", (site, _now()))
            self.db.execute(
                "INSERT INTO scans (id, site, profile, started_at, status, pid, host, targets, protocols, resumes)"
                " VALUES (?,?,?,?,?,?,?,?,?,?)",
                (scan_id, site, profile, _now(), "running", os.getpid(), socket.gethostname(),
                 json.dumps(list(targets)), json.dumps(list(protocols)), resumes),
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
            site = self.db.execute("SELECT site FROM scans WHERE id=?", (scan_id,)).fetchone()[0]
            seen = devices_seen(observations, self._observations(*self._chain(scan_id)[1:]))
            known = [KnownAsset(r["id"], r["ip"], r["serial"], r["model"], r["firmware"]) for r in self.db.execute(
                "SELECT id, ip, serial, model, firmware FROM assets WHERE site=? AND retired=0", (site,))]
            for decision in reconcile(seen, known):
                self._apply(scan_id, site, decision)
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

    def _apply(self, scan_id: str, site: str, d: Decision) -> None:
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
                "INSERT INTO assets (id, site, ip, device_class, protocols, identity, conflicts, first_seen, last_seen)"
                " VALUES (?,?,?,?,?,?,?,?,?)", (asset_id, site, seen.ip, seen.device_class, "{}", "{}", "{}", now, now),
            )
        for event in d.events:
            self._event(event.asset_id or asset_id, scan_id, event.kind, event.old, event.new)
        if d.firmware_recorded:
            self.db.execute("INSERT INTO asset_firmware (asset_id, scan_id, firmware, observed_at) VALUES (?,?,?,?)",
                            (asset_id, scan_id, d.firmware, now))
        if d.address_recorded:
            self.db.execute("INSERT INTO asset_addresses (asset_id, ip, scan_id, observed_at) VALUES (?,?,?,?)",
                            (asset_id, seen.ip, scan_id, now))
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
        self.db.execute("INSERT INTO asset_events (asset_id, scan_id, kind, old, new, at) VALUES (?,?,?,?,?,?)",
                        (asset_id, scan_id, kind, old, new, _now()))

    # -- reading ---------------------------------------------------------------------------------

    @_domain_errors
    def scans(self) -> list[ScanRecord]:
        in_site, params = self._in_site()
        rows = self.db.execute(f"SELECT *, {_PACKETS} FROM scans WHERE {in_site} ORDER BY started_at, rowid",
                               params).fetchall()
        return [_row_to_scan(r) for r in rows]

    @_domain_errors
    def scan(self, scan_id: str) -> ScanRecord:
        in_site, params = self._in_site()
        rows = self.db.execute(f"SELECT *, {_PACKETS} FROM scans WHERE id LIKE ? AND {in_site} ORDER BY rowid",
                               (scan_id + "%", *params)).fetchall()
        if len(rows) != 1:
            raise InventoryError(f"no scan {scan_id!r}" if not rows else f"scan id {scan_id!r} is ambiguous")
        return _row_to_scan(rows[0])

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
        clause, params = self._where(where)
        shared = self._shared_serials()
        try:
            # the cursor is read as the caller consumes it: a listing of 100,000 assets never holds them all
            plain = self.db.cursor()
            plain.row_factory = None  # tuples, read by position: a Row's lookup by name costs per field and row
            columns = _ASSET_COLUMNS + (", identity, conflicts" if details else "")
            # by site, then address: the order of the (site, ip) index, and of a central store's listing
            for row in plain.execute(f"SELECT {columns} FROM assets{clause} ORDER BY site, ip", params):
                yield _row_to_asset(row, shared)
        except sqlite3.DatabaseError as exc:
            raise InventoryError(f"{self.path}: {exc}") from exc

    def iter_asset_json(self, where: AssetFilter = ALL_ASSETS) -> Iterator[str]:
        clause, params = self._where(where)
        try:
            for (text,) in self.db.execute(f"{_ASSET_JSON} FROM assets{clause} ORDER BY site, ip", params):
                yield text
        except sqlite3.DatabaseError as exc:
            raise InventoryError(f"{self.path}: {exc}") from exc

    @_domain_errors
    def asset_widths(self, where: AssetFilter = ALL_ASSETS) -> dict[str, int]:
        clause, params = self._where(where)
        # bytes, not characters: SQLite's length() stops at a NUL a device may have sent, and one aggregate is all
        # 100,000 assets cost (checking each value for unusual characters took ten times longer)
        fields = (*WIDTH_FIELDS, "site")
        columns = ", ".join(f"coalesce(max(length(CAST({name} AS BLOB))), 0)" for name in fields)
        row = self.db.execute(f"SELECT count(*), count(DISTINCT site), {columns} FROM assets{clause}",
                              params).fetchone()
        return {**dict(zip(fields, row[2:], strict=True)), "count": row[0], "sites": row[1],
                "duplicate_serial": len(self._shared_serials())}

    @_domain_errors
    def asset(self, key: str) -> AssetRecord:
        in_site, params = self._in_site()
        rows = self.db.execute(
            f"SELECT {_ASSET_COLUMNS}, identity, conflicts FROM assets WHERE (id LIKE ? OR ip=? OR serial=?)"
            f" AND {in_site} ORDER BY retired", (key + "%", key, key, *params)
        ).fetchall()
        if not rows:
            raise InventoryError(f"no asset matches {key!r} (give an asset id, an address or a serial)")
        return _row_to_asset(tuple(rows[0]), self._shared_serials())

    def _in_site(self) -> tuple[str, list[Any]]:
        """The condition a row of this store's site meets (every row, when it reads every site)."""
        return ("site=?", [self.site]) if self.site is not None else ("1", [])

    def _where(self, where: AssetFilter) -> tuple[str, list[Any]]:
        return _where(where, self.site)

    def sites(self) -> list[str]:
        """The sites this file holds scans of, by name."""
        return [name for (name,) in self.db.execute("SELECT DISTINCT site FROM scans ORDER BY site")]

    def _shared_serials(self) -> set[str]:
        """Serials that several active assets of one site carry: each of them is flagged as a duplicate serial (in a
        file holding several sites, wherever it is carried)."""
        return {r[0] for r in self.db.execute(_SHARED_SERIALS)}

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
            "events": rows("SELECT scan_id, kind, old, new, at FROM asset_events WHERE asset_id=? ORDER BY id"),
        }

    def integrity_ok(self) -> bool:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _where(where: AssetFilter, site: str | None) -> tuple[str, list[Any]]:
    conditions: list[str] = [] if where.include_retired else ["retired=0"]
    params: list[Any] = []
    if site is not None:
        conditions.append("site=?")
        params.append(site)
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


def _row_to_scan(r: sqlite3.Row) -> ScanRecord:
    return ScanRecord(r["id"], r["profile"], r["started_at"], r["ended_at"], r["status"], json.loads(r["targets"]),
                      json.loads(r["not_covered"]), json.loads(r["counts"]), json.loads(r["protocols"]), r["resumes"],
                      r["packets_sent"], r["site"])


# An asset's columns in AssetRecord's order, but for identity and conflicts, which follow when asked for (a table or
# CSV shows neither)
_ASSET_COLUMNS = ("id, ip, device_class, vendor, model, product_code, serial, firmware, hardware_version, protocols,"
                  " first_seen, last_seen, retired, asset_type, cpu_state, site")


def _row_to_asset(r: tuple[Any, ...], shared: set[str]) -> AssetRecord:
    """An AssetRecord from `_ASSET_COLUMNS` (and identity and conflicts, when the row has them), its JSON columns
    decoded only when read."""
    (asset_id, ip, device_class, vendor, model, product_code, serial, firmware, hardware_version, protocols,
     first_seen, last_seen, retired, asset_type, cpu_state, site) = r[:16]
    details = len(r) > 16
    return AssetRecord(asset_id, ip, device_class, vendor, model, product_code, serial, firmware, hardware_version,
                       protocols, r[16] if details else {}, r[17] if details else {}, first_seen, last_seen,
                       bool(retired), not retired and serial in shared, asset_type, cpu_state, site)


_SHARED_SERIALS = "SELECT serial FROM assets WHERE retired=0 AND serial<>'' GROUP BY site, serial HAVING count(*) > 1"

# An AssetRecord as JSON, built by SQLite itself (no parse and dump of each asset's identity in Python): the same
# keys in the same order, the stored JSON columns embedded as they are.
_ASSET_JSON = f"""SELECT json_object('id', id, 'ip', ip, 'device_class', device_class, 'vendor', vendor, 'model', model,
    'product_code', product_code, 'serial', serial, 'firmware', firmware, 'hardware_version', hardware_version,
    'protocols', json(protocols), 'identity', json(identity), 'conflicts', json(conflicts), 'first_seen', first_seen,
    'last_seen', last_seen, 'retired', json(CASE WHEN retired THEN 'true' ELSE 'false' END),
    'duplicate_serial', json(CASE WHEN retired = 0 AND serial IN ({_SHARED_SERIALS}) THEN 'true' ELSE 'false' END),
    'asset_type', asset_type, 'cpu_state', cpu_state, 'site', site)"""
