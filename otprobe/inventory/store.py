"""The store interface the rest of otprobe talks to, and the records it returns.

SQLite is the only backend today; the interface is kept small so that a central PostgreSQL
holding many sites' scans can implement the same methods later. A store decides nothing about assets: what a
finished scan changes (new, moved, replaced, firmware changed, duplicate serial) comes from
`otprobe.inventory.reconcile`, and the store writes those decisions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from otprobe.model import Observation


@dataclass
class ScanRecord:
    id: str
    profile: str
    started_at: str
    ended_at: str | None
    status: str  # running | complete | incomplete | interrupted
    targets: list[str] = field(default_factory=list)
    not_covered: list[str] = field(default_factory=list)
    counts: dict[str, float] = field(default_factory=dict)  # per status, and the plan's figures (plan_*)
    protocols: list[str] = field(default_factory=list)  # probed on each target (the first scan's bind a chain)
    resumes: str | None = None  # the scan this one continues (`scan --resume`)


@dataclass
class AssetRecord:
    id: str
    ip: str | None
    device_class: str
    vendor: str | None
    model: str | None
    product_code: str | None
    serial: str | None
    firmware: str | None
    hardware_version: str | None
    protocols: dict[str, int]  # protocol -> port
    identity: dict[str, Any]
    conflicts: dict[str, dict[str, Any]]
    first_seen: str
    last_seen: str
    retired: bool = False
    duplicate_serial: bool = False  # another active asset reports the same serial


@dataclass
class SnapshotRow:
    """An asset as one scan saw it: the unit diffs compare."""

    asset_id: str
    ip: str
    firmware: str | None
    model: str | None
    serial: str | None


class Store(Protocol):
    def begin_scan(self, scan_id: str, profile: str, targets: Iterable[str], *, protocols: Iterable[str],
                   resumes: str | None = None) -> None: ...

    def add_observation(self, scan_id: str, observation: Observation) -> None: ...

    def add_observations(self, scan_id: str, observations: Iterable[Observation]) -> None:
        """Record many observations in one transaction (a scan stopped with thousands of addresses unstarted)."""
        ...

    def finish_scan(self, scan_id: str, status: str, not_covered: Iterable[str] = (),
                    figures: Mapping[str, float] | None = None) -> None:
        """Close the scan and, in the same transaction, write `reconcile.reconcile`'s decisions for what its resume
        chain saw (`reconcile.devices_seen`) against the active assets. `figures` (the plan's, e.g. `plan_worst_s`)
        are kept in the scan's counts beside the per-status counts."""
        ...

    def observations(self, scan_id: str) -> list[Observation]: ...

    def missing(self, scan_id: str) -> dict[str, list[str]]:
        """Target -> protocols still without a result across `scan_id`'s resume chain, up to and including it."""
        ...

    def scans(self) -> list[ScanRecord]: ...

    def scan(self, scan_id: str) -> ScanRecord: ...

    def assets(self, include_retired: bool = False) -> list[AssetRecord]: ...

    def asset(self, key: str) -> AssetRecord: ...

    def snapshot(self, scan_id: str) -> list[SnapshotRow]: ...

    def history(self, asset_id: str) -> dict[str, list[dict[str, Any]]]: ...

    def close(self) -> None: ...
