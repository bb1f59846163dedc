"""What changed between two scans: new, missing, firmware changed, replaced, moved, duplicate serial.

Diffs compare the per-scan snapshots of assets, and say only what the two scans can tell apart:

- A device is `missing` only when the later scan was complete and asked its address over one of the protocols that
  identified it before: an incomplete scan (deadline, Ctrl-C), a scan of other addresses, or one whose `--protocol`
  left out every protocol the device answers marks nothing missing.
- A device is `new` when nothing saw it before the later scan, or when the earlier scan asked its address over one
  of the protocols that now identify it and got no such asset: a known device outside the earlier scan is not new.
- By default the later scan is the last finished one and the earlier one the last finished before it with the same
  targets and protocols (`pick_scans` says which, and why).

The store joins the two snapshots by key (`Store.snapshot_pairs`), so a diff is linear in the assets and is
streamed: `iter_changes` holds no snapshot in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from otprobe.errors import InventoryError
from otprobe.inventory.store import ScanRecord, SnapshotRow, Store

KINDS = ("new", "missing", "firmware_changed", "replaced", "moved", "duplicate_serial")


@dataclass
class Change:
    kind: str  # one of KINDS
    asset_id: str
    ip: str
    old: str | None = None
    new: str | None = None


@dataclass(frozen=True)
class Comparison:
    """The two scans a diff compares, and why these two."""

    old: ScanRecord | None  # None: no earlier scan to compare with; only never-seen assets are new
    new: ScanRecord
    basis: str  # how they were chosen, for the person reading the diff


@dataclass
class Diff:
    from_scan: str | None  # None: no earlier scan, everything is new
    to_scan: str
    changes: list[Change] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.changes)

    def as_dict(self) -> dict[str, Any]:
        return {"from": self.from_scan, "to": self.to_scan, "changes": [asdict(c) for c in self.changes]}


def _same_scope(a: ScanRecord, b: ScanRecord) -> bool:
    # the same addresses at another site are other devices: every one of them would look replaced
    return a.site == b.site and sorted(a.targets) == sorted(b.targets) and sorted(a.protocols) == sorted(b.protocols)


def pick_scans(store: Store, from_id: str | None, to_id: str | None) -> Comparison:
    """The two scans to compare. `--to` defaults to the last finished scan (complete or incomplete); `--from` to the
    last finished before it that covered the same targets with the same protocols at the same site. Both take id
    prefixes.

    Without such an earlier scan there is nothing to compare with: the assets no scan saw before are new (the first
    scheduled run reports the whole plant rather than an error), and nothing is missing.
    """
    finished = [s for s in store.scans() if s.status in ("complete", "incomplete")]
    to_scan = store.scan(to_id) if to_id else (finished[-1] if finished else None)
    if to_scan is None:
        raise InventoryError("no finished scan in the inventory yet: run `otprobe scan` first")
    if from_id:
        from_scan = store.scan(from_id)
        if from_scan.id == to_scan.id:
            raise InventoryError(f"--from and --to name the same scan {to_scan.id}")
        return Comparison(from_scan, to_scan, "as asked")
    earlier = [s for s in finished if s.started_at <= to_scan.started_at and s.id != to_scan.id]
    same = [s for s in earlier if _same_scope(s, to_scan)]
    if same:
        return Comparison(same[-1], to_scan, "the last two finished scans of the same site, targets and protocols")
    return Comparison(None, to_scan, "no earlier finished scan of the same site, targets and protocols: "
                                     "only assets no scan saw before are new")


@dataclass(frozen=True)
class _Coverage:
    """Which addresses a scan asked, over which protocols."""

    addresses: frozenset[str]
    protocols: frozenset[str]

    @classmethod
    def of(cls, scan: ScanRecord) -> _Coverage:
        return cls(frozenset(scan.targets) - frozenset(scan.not_covered), frozenset(scan.protocols))

    def asked(self, row: SnapshotRow) -> bool:
        # a row from before protocols were recorded (or a scan without them) is judged by its address alone
        protocols = set(row.protocols)
        return row.ip in self.addresses and (not protocols or not self.protocols or bool(protocols & self.protocols))


def iter_changes(store: Store, old: ScanRecord | None, new: ScanRecord) -> Iterator[Change]:
    """The changes from `old` to `new`: the later snapshot's assets by address, then the missing ones by address."""
    before_covered = _Coverage.of(old) if old is not None else None
    after_covered = _Coverage.of(new)
    for pair in store.snapshot_pairs(old.id if old is not None else None, new.id):
        was, row = pair.before, pair.after
        if row is None:
            assert was is not None
            if new.status == "complete" and not pair.address_taken and after_covered.asked(was):
                yield Change("missing", was.asset_id, was.ip, _label(was), None)
            continue
        if was is None:
            if pair.displaced is not None:  # a different asset where the earlier scan saw one now gone: replaced
                yield Change("replaced", row.asset_id, row.ip, _label(pair.displaced), _label(row))
            elif not pair.seen_earlier or (before_covered is not None and before_covered.asked(row)):
                yield Change("new", row.asset_id, row.ip, None, _label(row))
        else:
            if was.ip != row.ip:
                yield Change("moved", row.asset_id, row.ip, was.ip, row.ip)
            if was.firmware != row.firmware and row.firmware is not None:
                yield Change("firmware_changed", row.asset_id, row.ip, was.firmware, row.firmware)
        if pair.newly_shared_serial:  # a serial several assets now share identifies none of them: each is reported
            yield Change("duplicate_serial", row.asset_id, row.ip, None, row.serial)


def diff_scans(store: Store, old: ScanRecord | None, new: ScanRecord) -> Diff:
    """Every change at once, for callers that hold a small diff (tests, a report); the CLI streams `iter_changes`."""
    return Diff(old.id if old is not None else None, new.id, list(iter_changes(store, old, new)))


def _label(row: SnapshotRow) -> str:
    return " ".join(x for x in (row.model, row.serial) if x) or row.asset_id
