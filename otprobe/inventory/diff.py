"""What changed between two scans: new, missing, firmware changed, replaced, moved, duplicate serial.

Diffs compare the per-scan snapshots of assets. A device counts as missing only when the later
scan was complete and covered its address: an incomplete scan (deadline, Ctrl-C) marks nothing missing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from otprobe.errors import InventoryError
from otprobe.inventory.reconcile import shared_serials
from otprobe.inventory.store import ScanRecord, SnapshotRow, Store


@dataclass
class Change:
    kind: str  # new | missing | firmware_changed | replaced | moved | duplicate_serial
    asset_id: str
    ip: str
    old: str | None = None
    new: str | None = None


@dataclass
class Diff:
    from_scan: str | None  # None: no earlier scan, everything is new
    to_scan: str
    changes: list[Change] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.changes)

    def as_dict(self) -> dict[str, Any]:
        return {"from": self.from_scan, "to": self.to_scan, "changes": [asdict(c) for c in self.changes]}


def pick_scans(store: Store, from_id: str | None, to_id: str | None) -> tuple[ScanRecord | None, ScanRecord]:
    """The two scans to compare: by default the last two that finished (complete or incomplete).

    With only one finished scan there is nothing before it: every asset it found is new (the first scheduled run
    reports the whole plant, rather than an error).
    """
    finished = [s for s in store.scans() if s.status in ("complete", "incomplete")]
    to_scan = store.scan(to_id) if to_id else (finished[-1] if finished else None)
    if to_scan is None:
        raise InventoryError("no finished scan in the inventory yet: run `otprobe scan` first")
    if from_id:
        return store.scan(from_id), to_scan
    earlier = [s for s in finished if s.started_at <= to_scan.started_at and s.id != to_scan.id]
    return (earlier[-1] if earlier else None), to_scan


def diff_scans(store: Store, old: ScanRecord | None, new: ScanRecord) -> Diff:
    before = {row.asset_id: row for row in store.snapshot(old.id)} if old is not None else {}
    after = {row.asset_id: row for row in store.snapshot(new.id)}
    covered = set(new.targets) - set(new.not_covered)
    result = Diff(old.id if old is not None else None, new.id)
    after_ips = {row.ip for row in after.values()}
    for asset_id, row in after.items():
        was = before.get(asset_id)
        if was is None:
            # a different asset at an address whose previous asset is gone: the device was replaced
            previous = next((b for b in before.values() if b.ip == row.ip and b.asset_id not in after), None)
            if previous is not None:
                result.changes.append(Change("replaced", asset_id, row.ip, _label(previous), _label(row)))
            else:
                result.changes.append(Change("new", asset_id, row.ip, None, _label(row)))
            continue
        if was.ip != row.ip:
            result.changes.append(Change("moved", asset_id, row.ip, was.ip, row.ip))
        if was.firmware != row.firmware and row.firmware is not None:
            result.changes.append(Change("firmware_changed", asset_id, row.ip, was.firmware, row.firmware))
    # a serial that became shared by several assets identifies none of them any more: each one is reported
    shared_before = shared_serials(row.serial for row in before.values())
    newly_shared = shared_serials(row.serial for row in after.values()) - shared_before
    for asset_id, row in after.items():
        if row.serial in newly_shared:
            result.changes.append(Change("duplicate_serial", asset_id, row.ip, None, row.serial))
    if new.status == "complete":
        for asset_id, row in before.items():
            if asset_id not in after and row.ip in covered and row.ip not in after_ips:
                result.changes.append(Change("missing", asset_id, row.ip, _label(row), None))
    result.changes.sort(key=lambda c: (c.kind, c.ip))
    return result


def _label(row: SnapshotRow) -> str:
    return " ".join(x for x in (row.model, row.serial) if x) or row.asset_id
