"""Store and forward: a sensor's SQLite inventory pushed to the central store, scan by scan.

What is sent: each finished scan the central store lacks, with its observations and the hash of the last line its
sensor's audit log holds for it (the audit-chain head: the sensor's chain up to there cannot be rewritten without the
central copy showing it). Nothing else: the sensor's assets are not sent, the central store reconciles its own,
in the sensor's scan order. Each scan is one central transaction, so a push killed midway leaves every scan either
in or out, and the next push sends the rest; a repeated push finds every scan there and sends nothing.

The SQLite file is opened read-only: a push never changes the sensor's inventory. Scans are taken in the order they
started, up to the first one still running (or killed and not yet closed by otprobe), so that the central store
reconciles them in order.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from otprobe.audit import verify
from otprobe.errors import AuditError, InventoryError
from otprobe.inventory.central import CentralStore
from otprobe.inventory.sites import DEFAULT_SITE

OLDEST_READABLE = 2  # the SQLite schema version from which scans record their protocols and resume chains


@dataclass
class PushReport:
    sent: list[str] = field(default_factory=list)  # scan ids, in the order sent
    observations: int = 0
    heads: int = 0
    already: int = 0  # scans the central store had
    held_back: list[str] = field(default_factory=list)  # a running scan and those after it
    audit: str = ""  # what became of the audit log: verified, absent


def audit_heads(path: Path) -> dict[str, tuple[int, str]]:
    """Scan id -> (seq, SHA-256) of its last line in a verified audit log; empty when there is no log."""
    if not path.exists():
        return {}
    result = verify(path)
    if not result.ok:
        raise AuditError(f"{path}:{result.bad_line}: {result.reason}; its chain heads are not pushed (nothing was "
                         "sent): check the log (`otprobe audit verify`) and move it aside to push without it")
    heads: dict[str, tuple[int, str]] = {}
    with path.open("rb") as fh:
        for line in fh:
            record = json.loads(line)
            heads[record["scan"]] = record["seq"], hashlib.sha256(line.rstrip(b"\n")).hexdigest()
    return heads


def _open_read_only(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise InventoryError(f"{path}: no such inventory file")
    try:
        db = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)
        db.row_factory = sqlite3.Row
        version = db.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise InventoryError(f"{path}: cannot read the inventory: {exc}") from None
    if version < OLDEST_READABLE:
        db.close()
        raise InventoryError(f"{path}: schema version {version} is older than a push reads; open it once with this "
                             "otprobe (e.g. `otprobe scans list --db FILE`) to upgrade it")
    return db


def _site_of(scan: sqlite3.Row, push_site: str) -> str:
    """The site a scan goes to: the one the sensor's file recorded for it, unless that is `default` (no site was
    named when it ran) or the file predates sites; then the push's."""
    recorded = scan["site"] if "site" in scan.keys() else None  # noqa: SIM118 (`in` a Row looks at its values)
    return recorded if recorded and recorded != DEFAULT_SITE else push_site


def push(source: Path, central: CentralStore, audit_log: Path | None = None,
         on_scan: Callable[[str, int], None] | None = None) -> PushReport:
    """Send `source`'s scans that `central` lacks, each to the site its file recorded (`_site_of`: else `central`'s
    site); `on_scan(scan id, observations)` after each."""
    audit_path = audit_log or source.parent / "audit.jsonl"
    heads = audit_heads(audit_path)
    report = PushReport(audit="verified" if heads else f"no audit log at {audit_path}")
    present = central.scan_sites()
    db = _open_read_only(source)
    try:
        local_scans = db.execute("SELECT * FROM scans ORDER BY started_at, rowid").fetchall()
        for number, scan in enumerate(local_scans):
            if scan["status"] == "running":
                report.held_back = [s["id"] for s in local_scans[number:] if s["id"] not in present]
                break
            site = _site_of(scan, central.write_site)
            if scan["id"] in present and present[scan["id"]] == site:
                report.already += 1
                continue
            rows = db.execute("SELECT * FROM observations WHERE scan_id=? ORDER BY id", (scan["id"],)).fetchall()
            if central.receive_scan(scan, rows, heads.get(scan["id"]), site):
                report.sent.append(scan["id"])
                report.observations += len(rows)
                report.heads += scan["id"] in heads
                if on_scan is not None:
                    on_scan(scan["id"], len(rows))
            else:
                report.already += 1
    except sqlite3.DatabaseError as exc:
        raise InventoryError(f"{source}: cannot read the inventory: {exc}") from None
    finally:
        db.close()
    return report
