"""The central inventory: the `Store` of many sensors and sites on one database (PostgreSQL; SQLite for tests and
for the SQLite store's move onto the shared schema), through SQLAlchemy Core on `otprobe.inventory.schema`.

A store is opened for one site or for all: it writes scans to its site (`DEFAULT_SITE` when opened for all) and
reads its site only, or every site. Assets are keyed by (site, address) and reconciled per site by
`otprobe.inventory.reconcile`, exactly as the SQLite store does; what only a central store sees is added here: a
new asset whose serial one active asset of another site carries is a cross-site move, recorded as a `moved_site`
event on both (neither is retired: plants that reuse a configuration reuse its placeholder serials too, and a
device's old site retires it by its own scans).

Scans arrive two ways, both reconciled under the site's transaction lock, in the order they arrive: directly
(`begin_scan` ... `finish_scan`, a sensor that reaches the database) or pushed whole from a sensor's SQLite file
(`receive_scan`, one transaction per scan, so an interrupted push loses nothing and sends the rest next time).
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, LargeBinary, bindparam, cast, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import JSONB

from otprobe.errors import InventoryError
from otprobe.inventory import records, snapshots
from otprobe.inventory.database import create, domain_errors, guarded, redact, upgrade
from otprobe.inventory.fleet import Count
from otprobe.inventory.owners import pid_alive
from otprobe.inventory.reconcile import Decision, KnownAsset, devices_seen, reconcile
from otprobe.inventory.schema import (
    asset_addresses,
    asset_events,
    asset_firmware,
    assets,
    audit_heads,
    observations,
    scan_assets,
    scans,
    sites,
)
from otprobe.inventory.sites import DEFAULT_SITE, check_site
from otprobe.inventory.store import ALL_ASSETS, WIDTH_FIELDS, AssetFilter, AssetRecord, ScanRecord, SnapshotPair
from otprobe.model import Observation, Status

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine, Result

    from otprobe.inventory.central_leases import CentralLeases
    from otprobe.leases import Leases

def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class CentralStore:
    """The inventory of every site on one database; implements `otprobe.inventory.store.Store`."""

    def __init__(self, url: str, *, site: str | None = None, engine: Engine | None = None,
                 now: Callable[[], str] = _now) -> None:
        self.url = url  # never shown: messages name `database.redact(url)`
        self.site = check_site(site) if site is not None else None
        self._now = now
        with domain_errors(url):
            self.engine = engine or create(url)
            upgrade(self.engine)
            self._mark_interrupted()

    @property
    def label(self) -> str:
        """The database as it may be shown: its URL without the password."""
        return redact(self.url)

    @property
    def write_site(self) -> str:
        return self.site or DEFAULT_SITE

    def sites(self) -> list[str]:
        """The sites this database holds scans of, by name."""
        with domain_errors(self.url), self.engine.connect() as c:
            return list(c.execute(select(scans.c.site).distinct().order_by(scans.c.site)).scalars())

    def close(self) -> None:
        self.engine.dispose()

    def device_leases(self, host: Leases | None = None) -> CentralLeases:
        """Leases across sensors for the devices of the site this store writes to, each on top of `host`'s."""
        from otprobe.inventory.central_leases import CentralLeases

        return CentralLeases(self.engine, self.url, self.write_site, host=host)

    def _in_site(self, column: Any) -> Any:
        return column == self.site if self.site is not None else True

    # -- writing a scan ------------------------------------------------------------------------------------------

    @guarded
    def begin_scan(self, scan_id: str, profile: str, targets: Iterable[str], *, protocols: Iterable[str],
                   resumes: str | None = None) -> None:
        with self.engine.begin() as c:
            self._ensure_site(c, self.write_site)
            c.execute(insert(scans).values(
                id=scan_id, site=self.write_site, profile=profile, started_at=self._now(), status="running",
                pid=os.getpid(), host=socket.gethostname(), targets=json.dumps(list(targets)),
                protocols=json.dumps(list(protocols)), resumes=resumes,
            ))

    @guarded
    def add_observation(self, scan_id: str, observation: Observation) -> None:
        # committed one by one, as in the SQLite store: a crash loses at most the one in flight
        with self.engine.begin() as c:
            c.execute(insert(observations).values(scan_id=scan_id, observed_at=self._now(),
                                                  **records.observation_row(observation)))

    @guarded
    def add_observations(self, scan_id: str, batch: Iterable[Observation]) -> None:
        # one transaction for many rows (excluded hosts at a scan's start): all of them or none
        at = self._now()
        rows = [{"scan_id": scan_id, "observed_at": at, **records.observation_row(o)} for o in batch]
        if rows:
            with self.engine.begin() as c:
                c.execute(insert(observations), rows)

    @guarded
    def finish_scan(self, scan_id: str, status: str, not_covered: Iterable[str] = (),
                    figures: Mapping[str, float] | None = None) -> None:
        with self.engine.begin() as c:
            site = c.execute(select(scans.c.site).where(scans.c.id == scan_id)).scalar_one()
            self._lock_site(c, site)
            if c.execute(select(scans.c.status).where(scans.c.id == scan_id)).scalar_one() != "running":
                return  # two commands closing a killed scan at once: the first did
            self._reconcile(c, scan_id, site, self._now())
            counts: dict[str, float] = dict(Counter(row.status for row in c.execute(
                select(observations.c.status).where(observations.c.scan_id == scan_id))))
            counts.update(figures or {})
            c.execute(update(scans).where(scans.c.id == scan_id).values(
                status=status, ended_at=self._now(), not_covered=json.dumps(list(not_covered)),
                counts=json.dumps(counts),
            ))

    def _mark_interrupted(self) -> None:
        """Close the books of this host's scans whose process died: what they saw still counts (as in SQLite)."""
        here = socket.gethostname()
        with self.engine.connect() as c:
            running = c.execute(select(scans.c.id, scans.c.pid).where(
                scans.c.status == "running", scans.c.host == here)).all()
        for scan_id, pid in running:
            if not pid_alive(pid):
                self.finish_scan(scan_id, "interrupted", list(self.missing(scan_id)))

    @guarded
    def receive_scan(self, scan: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
                     head: tuple[int, str] | None, site: str | None = None) -> bool:
        """Take one finished scan of a sensor's inventory, with its observations and the audit line that closed
        it, reconciled at once, in one transaction, for `site` (else this store's). False if the database has it
        already (a repeated push)."""
        site = site or self.write_site
        with self.engine.begin() as c:
            self._lock_site(c, site)  # a concurrent push of the same scan waits here, then skips it
            present = c.execute(select(scans.c.site).where(scans.c.id == scan["id"])).scalar_one_or_none()
            if present is not None:
                if present != site:
                    raise InventoryError(f"scan {scan['id']} is already in the database for site {present!r}, "
                                         f"not {site!r}: was this inventory pushed under another site?")
                return False
            self._ensure_site(c, site)
            c.execute(insert(scans).values(
                site=site, **{k: scan[k] for k in (
                    "id", "profile", "started_at", "ended_at", "status", "pid", "host", "targets", "not_covered",
                    "counts", "protocols", "resumes")}))
            columns = ("ip", "protocol", "port", "status", "device_class", "identity", "latency_s", "packets",
                       "error", "observed_at")
            if rows:  # an error a sensor wrote before NULs were stored as U+2400 would not fit PostgreSQL's TEXT
                c.execute(insert(observations), [{"scan_id": scan["id"], **{k: row[k] for k in columns},
                                                  "error": records.without_nul(row["error"])} for row in rows])
            # the asset history says when the sensor saw a device, not when it was pushed
            self._reconcile(c, scan["id"], site, scan["ended_at"] or scan["started_at"])
            if head is not None:
                c.execute(insert(audit_heads).values(scan_id=scan["id"], seq=head[0], hash=head[1],
                                                     pushed_at=self._now()))
        return True

    def _ensure_site(self, c: Connection, site: str) -> None:
        if c.execute(select(sites.c.name).where(sites.c.name == site)).first() is None:
            if c.dialect.name == "postgresql":
                # two sensors of a new site may arrive together; neither may fail for it
                from sqlalchemy.dialects.postgresql import insert as pg_insert

                c.execute(pg_insert(sites).values(name=site, created_at=self._now()).on_conflict_do_nothing())
            else:
                c.execute(insert(sites).values(name=site, created_at=self._now()))

    def _lock_site(self, c: Connection, site: str) -> None:
        """One reconciliation per site at a time, until the transaction ends (SQLite writers are serial anyway)."""
        if c.dialect.name == "postgresql":
            c.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"otprobe site {site}"})

    # -- reconciliation ------------------------------------------------------------------------------------------

    def _reconcile(self, c: Connection, scan_id: str, site: str, now: str) -> None:
        """Write `reconcile`'s decisions for what the scan's resume chain saw against the site's active assets."""
        seen = devices_seen(self._observations(c, [scan_id]), self._observations(c, self._chain(c, scan_id)[1:]))
        known = [KnownAsset(*row) for row in c.execute(
            select(assets.c.id, assets.c.ip, assets.c.serial, assets.c.model, assets.c.firmware)
            .where(assets.c.site == site, assets.c.retired.is_(False)))]
        decisions = reconcile(seen, known)
        ids = {id(d): d.asset_id or uuid.uuid4().hex[:12] for d in decisions}
        moves = self._cross_site_moves(c, site, [d for d in decisions if d.asset_id is None and d.seen.serial])
        events, firmware, addresses, snapshot = [], [], [], {}
        new_rows, updated_rows = [], []
        for d in decisions:
            asset_id = ids[id(d)]
            columns = {**records.asset_columns(d), "last_seen": now}
            if d.asset_id is None:
                new_rows.append({**columns, "id": asset_id, "site": site, "first_seen": now, "retired": False})
            else:
                updated_rows.append({**columns, "key": asset_id})
            events += [{"asset_id": e.asset_id or asset_id, "kind": e.kind, "old": e.old, "new": e.new}
                       for e in d.events]
            for other_id, other_site, other_ip in moves.get(d.seen.serial or "", ()) if d.asset_id is None else ():
                event = {"kind": "moved_site", "old": f"{other_site} {other_ip}", "new": f"{site} {d.seen.ip}"}
                events += [{"asset_id": asset_id, **event}, {"asset_id": other_id, **event}]
            if d.firmware_recorded:
                firmware.append({"asset_id": asset_id, "firmware": d.firmware})
            if d.address_recorded:
                addresses.append({"asset_id": asset_id, "ip": d.seen.ip})
            snapshot[asset_id] = {"asset_id": asset_id, **records.snapshot_columns(d)}
        self._unlink(c, decisions)
        stamp = {"scan_id": scan_id, "observed_at": now}
        if new_rows:
            c.execute(insert(assets), new_rows)
        if updated_rows:
            c.execute(update(assets).where(assets.c.id == bindparam("key")), updated_rows)
        for table, rows in ((asset_events, [{**e, "scan_id": scan_id, "at": now} for e in events]),
                            (asset_firmware, [{**r, **stamp} for r in firmware]),
                            (asset_addresses, [{**r, **stamp} for r in addresses]),
                            (scan_assets, [{**r, "scan_id": scan_id} for r in snapshot.values()])):
            if rows:
                c.execute(insert(table), rows)

    def _unlink(self, c: Connection, decisions: Sequence[Decision]) -> None:
        """Retire the assets another device replaced and take the address from those a moved device took it from."""
        retire = [{"key": d.retire} for d in decisions if d.retire is not None]
        unaddress = [{"key": d.unaddress} for d in decisions if d.unaddress is not None]
        if retire:
            c.execute(update(assets).where(assets.c.id == bindparam("key")).values(retired=True, ip=None), retire)
        if unaddress:
            c.execute(update(assets).where(assets.c.id == bindparam("key")).values(ip=None), unaddress)

    def _cross_site_moves(self, c: Connection, site: str,
                          new: Sequence[Decision]) -> dict[str, list[tuple[str, str, str | None]]]:
        """Serial -> the one active asset of another site carrying it; a serial several other assets carry
        identifies none of them (`reconcile.match_assets` reads serials the same way within a site)."""
        serials = sorted({d.seen.serial for d in new if d.seen.serial})
        found: dict[str, list[tuple[str, str, str | None]]] = defaultdict(list)
        for chunk in _chunks(serials, 500):
            for row in c.execute(select(assets.c.serial, assets.c.id, assets.c.site, assets.c.ip).where(
                    assets.c.serial.in_(chunk), assets.c.site != site, assets.c.retired.is_(False))):
                found[row.serial].append((row.id, row.site, row.ip))
        return {serial: others for serial, others in found.items() if len(others) == 1}

    def _chain(self, c: Connection, scan_id: str) -> list[str]:
        """`scan_id`, the scan it resumes, and so on back to the first of its chain."""
        chain = [scan_id]
        while (previous := c.execute(select(scans.c.resumes).where(scans.c.id == chain[-1])).scalar()) \
                and previous not in chain:
            chain.append(previous)
        return chain

    def _observations(self, c: Connection, scan_ids: Sequence[str]) -> list[Observation]:
        if not scan_ids:
            return []
        rows = _dicts(c.execute(select(observations).where(observations.c.scan_id.in_(scan_ids))
                                .order_by(observations.c.id)))
        return [records.observation(r) for r in rows]

    # -- reading -------------------------------------------------------------------------------------------------

    @guarded
    def scans(self) -> list[ScanRecord]:
        with self.engine.connect() as c:
            rows = _dicts(c.execute(select(scans, _PACKETS).where(self._in_site(scans.c.site))
                                    .order_by(scans.c.started_at, scans.c.id)))
            return [records.scan_record(r) for r in rows]

    @guarded
    def scan_sites(self) -> dict[str, str]:
        """Scan id -> its site, for every scan in the database."""
        with self.engine.connect() as c:
            return {row.id: row.site for row in c.execute(select(scans.c.id, scans.c.site))}

    @guarded
    def scan(self, scan_id: str) -> ScanRecord:
        with self.engine.connect() as c:
            rows = _dicts(c.execute(select(scans, _PACKETS).where(scans.c.id.startswith(scan_id, autoescape=True),
                                                        self._in_site(scans.c.site))))
        if len(rows) != 1:
            raise InventoryError(f"no scan {scan_id!r}" if not rows else f"scan id {scan_id!r} is ambiguous")
        return records.scan_record(rows[0])

    @guarded
    def observations(self, scan_id: str) -> list[Observation]:
        with self.engine.connect() as c:
            return self._observations(c, [scan_id])

    @guarded
    def missing(self, scan_id: str) -> dict[str, list[str]]:
        """The pairs of `scan_id`'s resume chain (up to it) that have no result yet: target -> protocols."""
        with self.engine.connect() as c:
            chain = self._chain(c, scan_id)
            first = c.execute(select(scans.c.targets, scans.c.protocols).where(scans.c.id == chain[-1])).one()
            done = {(row.ip, row.protocol) for row in c.execute(
                select(observations.c.ip, observations.c.protocol).distinct().where(
                    observations.c.scan_id.in_(chain), observations.c.status != str(Status.ABORTED)))}
        owed = json.loads(first.protocols)
        missing = {ip: [p for p in owed if (ip, p) not in done] for ip in json.loads(first.targets)}
        return {ip: protocols for ip, protocols in missing.items() if protocols}

    @guarded
    def assets(self, include_retired: bool = False) -> list[AssetRecord]:
        return list(self.iter_assets(AssetFilter(include_retired=include_retired)))

    def iter_assets(self, where: AssetFilter = ALL_ASSETS, *,
                    details: bool = True) -> Iterator[AssetRecord]:
        return (records.asset_record(r, shared) for r, shared in self._asset_rows(where, details))

    def iter_asset_json(self, where: AssetFilter = ALL_ASSETS) -> Iterator[str]:
        return (records.asset_json(r, shared) for r, shared in self._asset_rows(where, True))

    def _asset_rows(self, where: AssetFilter, details: bool) -> Iterator[tuple[Mapping[str, Any], bool]]:
        """The rows `where` selects, by site and address, streamed, each with whether its serial is shared."""
        columns = [assets.c[name] for name in _ASSET_COLUMNS if details or name not in ("identity", "conflicts")]
        with domain_errors(self.url), self.engine.connect() as c:
            shared = self._shared_serials(c)
            keys = [column.name for column in columns]
            for row in self._stream(c, select(*columns).where(*self._where(c, where))
                                    .order_by(assets.c.site, _bytewise(c, assets.c.ip))):
                r = dict(zip(keys, row, strict=True))  # a plain dict: a row mapping's lookups cost twice as much
                yield r, (r["site"], r["serial"]) in shared

    @guarded
    def asset_widths(self, where: AssetFilter = ALL_ASSETS) -> dict[str, int]:
        with self.engine.connect() as c:
            # bytes, as the SQLite store counts them: as wide as a value shows, or wider
            width = (func.octet_length if c.dialect.name == "postgresql"
                     else lambda column: func.length(cast(column, LargeBinary)))
            fields = (*WIDTH_FIELDS, "site")
            row = c.execute(select(func.count(), func.count(assets.c.site.distinct()),
                                   *(func.coalesce(func.max(width(assets.c[name])), 0) for name in fields))
                            .where(*self._where(c, where))).one()
            shared = self._shared_serials(c)
        return {**dict(zip(fields, (int(n) for n in row[2:]), strict=True)), "count": int(row[0]),
                "sites": int(row[1]), "duplicate_serial": len(shared)}

    def _where(self, c: Connection, where: AssetFilter) -> list[Any]:
        """The conditions of `where`, as the SQLite store reads them, within this store's site."""
        conditions: list[Any] = [self._in_site(assets.c.site)]
        if not where.include_retired:
            conditions.append(assets.c.retired.is_(False))
        if where.vendor is not None:  # contained, any case (as the database folds it); a % or _ is meant literally
            literal = where.vendor.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            conditions.append(func.lower(func.coalesce(assets.c.vendor, "")).like("%" + func.lower(literal) + "%",
                                                                                   escape="\\"))
        if where.device_class is not None:
            conditions.append(assets.c.device_class == where.device_class)
        if where.asset_type is not None:
            conditions.append(assets.c.asset_type == where.asset_type)
        if where.protocol is not None:  # a key of the protocol -> port object
            if c.dialect.name == "postgresql":
                conditions.append(cast(assets.c.protocols, JSONB).has_key(where.protocol))
            else:
                conditions.append(text("EXISTS (SELECT 1 FROM json_each(assets.protocols) WHERE json_each.key = "
                                       ":protocol)").bindparams(protocol=where.protocol))
        return conditions

    def _stream(self, c: Connection, query: Any) -> Result[Any]:
        """`query`'s rows read as they are consumed, a batch at a time (a server-side cursor on PostgreSQL)."""
        return c.execution_options(yield_per=_BATCH).execute(query)

    def _shared_serials(self, c: Connection) -> set[tuple[str, str]]:
        """(site, serial) that several active assets of the site carry: each of them is flagged as a duplicate."""
        return {(row.site, row.serial) for row in c.execute(
            select(assets.c.site, assets.c.serial)
            .where(assets.c.retired.is_(False), assets.c.serial != "", self._in_site(assets.c.site))
            .group_by(assets.c.site, assets.c.serial).having(func.count() > 1))}

    @guarded
    def asset(self, key: str) -> AssetRecord:
        with self.engine.connect() as c:
            rows = _dicts(c.execute(select(assets).where(
                self._in_site(assets.c.site),
                assets.c.id.startswith(key, autoescape=True) | (assets.c.ip == key) | (assets.c.serial == key),
            ).order_by(assets.c.retired, assets.c.site)))
            shared = self._shared_serials(c)
        if not rows:
            raise InventoryError(f"no asset matches {key!r} (give an asset id, an address or a serial)")
        active_sites = sorted({r["site"] for r in rows if not r["retired"]})
        if len(active_sites) > 1:
            raise InventoryError(f"{key!r} matches assets at sites {', '.join(active_sites)}: name the site "
                                 "(--site)")
        return records.asset_record(rows[0], (rows[0]["site"], rows[0]["serial"]) in shared)

    def snapshot_pairs(self, old_id: str | None, new_id: str) -> Iterator[SnapshotPair]:
        with domain_errors(self.url), self.engine.connect() as c:
            new = c.execute(select(scans.c.started_at).where(scans.c.id == new_id)).one()
            params = {"old": old_id, "new": new_id, "new_started": new.started_at}
            collate = ' COLLATE "C"' if c.dialect.name == "postgresql" else ""
            after = self._stream(c, text(snapshots.after_pairs_sql(_EARLIER, collate)).bindparams(**params))
            before = text(snapshots.before_only_sql(collate)).bindparams(old=old_id, new=new_id)
            yield from snapshots.pairs((tuple(r) for r in after),
                                       None if old_id is None else lambda: (tuple(r) for r in c.execute(before)))

    @guarded
    def history(self, asset_id: str) -> dict[str, list[dict[str, Any]]]:
        def rows(table: Any, *columns: str, order: Any = None) -> list[dict[str, Any]]:
            query = select(*(table.c[name] for name in columns)).where(table.c.asset_id == asset_id)
            with self.engine.connect() as c:
                return _dicts(c.execute(query.order_by(order) if order is not None else query))

        return {
            "firmware": rows(asset_firmware, "scan_id", "firmware", "observed_at"),
            "addresses": rows(asset_addresses, "scan_id", "ip", "observed_at"),
            "events": rows(asset_events, "scan_id", "kind", "old", "new", "at", order=asset_events.c.id),
        }

    @guarded
    def audit_head(self, scan_id: str) -> tuple[int, str] | None:
        """The pushed audit line that closed the scan on its sensor: (seq, hash)."""
        with self.engine.connect() as c:
            row = c.execute(select(audit_heads.c.seq, audit_heads.c.hash)
                            .where(audit_heads.c.scan_id == scan_id)).first()
        return (row.seq, row.hash) if row else None

    @guarded
    def firmware_counts(self) -> list[Count]:
        """Active assets per (vendor, model, firmware, site), counted by the database."""
        group = (assets.c.vendor, assets.c.model, assets.c.firmware, assets.c.site)
        query = (select(*group, func.count()).where(assets.c.retired.is_(False), self._in_site(assets.c.site))
                 .group_by(*group))
        with self.engine.connect() as c:
            return [Count(*row) for row in c.execute(query)]


_BATCH = 1000  # rows a streamed read holds at a time
# what a scan sent, as its observations count it (None: none recorded), as the SQLite store reports it
_PACKETS = (select(func.sum(observations.c.packets)).where(observations.c.scan_id == scans.c.id)
            .scalar_subquery().label("packets_sent"))
# An asset's columns in AssetRecord's order, and its site
_ASSET_COLUMNS = ("id", "ip", "device_class", "vendor", "model", "product_code", "serial", "firmware",
                  "hardware_version", "protocols", "identity", "conflicts", "first_seen", "last_seen", "retired",
                  "asset_type", "cpu_state", "site")
# The scans before the later one, in the order `scans()` lists them (by start, then id): a central database holds
# scans pushed in any order, so the order they were recorded in says nothing
_EARLIER = "(s.started_at < :new_started OR (s.started_at = :new_started AND s.id < :new))"


def _bytewise(c: Connection, column: Any) -> Any:
    """`column` sorted byte by byte, as SQLite sorts text (PostgreSQL sorts by its locale unless told)."""
    return column.collate("C") if c.dialect.name == "postgresql" else column


def _dicts(result: Result[Any]) -> list[dict[str, Any]]:
    """Rows as plain dicts: twice as fast as SQLAlchemy's row mappings when 50,000 assets are read."""
    keys = list(result.keys())
    return [dict(zip(keys, row, strict=True)) for row in result]


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    return (items[i:i + size] for i in range(0, len(items), size))
