"""The store interface the rest of otprobe talks to, and the records it returns.

SQLite is the only backend today; the interface is kept small so that a central PostgreSQL
holding many sites' scans can implement the same methods later. A store decides nothing about assets: what a
finished scan changes (new, moved, replaced, firmware changed, duplicate serial) comes from
`otprobe.inventory.reconcile`, and the store writes those decisions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

from otprobe.inventory.sites import DEFAULT_SITE
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
    packets: int | None = None  # sent, as its observations count them; None: no observation recorded
    site: str = DEFAULT_SITE  # a sensor's file: its sensor's


class StoredJSON:
    """A dict field of a record that also takes the JSON text a column stores, and decodes it when it is first read:
    a listing of 50,000 assets that shows no identity decodes none (decoding was most of reading them)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = f"_{name}"

    def __get__(self, record: object, owner: type | None = None) -> Any:
        if record is None:
            raise AttributeError(self.slot)  # a dataclass reads this as "no default": the field stays required
        value = record.__dict__[self.slot]
        if isinstance(value, str):
            value = record.__dict__[self.slot] = json.loads(value)
        return value

    def __set__(self, record: object, value: dict[str, Any] | str) -> None:
        record.__dict__[self.slot] = value


@dataclass
class AssetRecord:
    """An asset as a store reads it. Compare and serialise it through its fields (`dataclasses.asdict`), not its
    `__dict__`, which may still hold a JSON column's text."""

    id: str
    ip: str | None
    device_class: str
    vendor: str | None
    model: str | None
    product_code: str | None
    serial: str | None
    firmware: str | None
    hardware_version: str | None
    protocols: dict[str, int] = StoredJSON()  # type: ignore[assignment]  # protocol -> port
    identity: dict[str, Any] = StoredJSON()  # type: ignore[assignment]
    conflicts: dict[str, dict[str, Any]] = StoredJSON()  # type: ignore[assignment]
    first_seen: str
    last_seen: str
    retired: bool = False
    duplicate_serial: bool = False  # another active asset of its site reports the same serial
    asset_type: str | None = None  # one of model.ASSET_TYPES, from the device's own protocol data
    cpu_state: str | None = None  # RUN/STOP, when the last scan read an S7 CPU's state
    site: str = DEFAULT_SITE  # an address means something only within its site


@dataclass(frozen=True)
class AssetFilter:
    """Which assets a listing or an export holds: every condition given must hold."""

    vendor: str | None = None  # contained in the vendor, any case
    device_class: str | None = None  # the pacing class
    asset_type: str | None = None
    protocol: str | None = None  # answered this protocol
    include_retired: bool = False


ALL_ASSETS = AssetFilter()  # every active asset

@dataclass
class SnapshotRow:
    """An asset as one scan saw it: the unit diffs compare."""

    asset_id: str
    ip: str
    firmware: str | None
    model: str | None
    serial: str | None
    protocols_json: str = "[]"  # the protocols that identified it, as stored; read through `protocols`

    @property
    def protocols(self) -> list[str]:
        """The protocols that identified it; empty: not recorded (older scans). Parsed only when a diff asks."""
        return list(_protocol_list(self.protocols_json or "[]"))


@lru_cache(maxsize=256)
def _protocol_list(text: str) -> tuple[str, ...]:
    # a plant has a few sets of protocols, and a diff of 100,000 assets asks each row's: parsed once per set
    return tuple(json.loads(text))


@dataclass(frozen=True)
class SnapshotPair:
    """One asset across the two snapshots a diff compares, joined by asset id in the store."""

    before: SnapshotRow | None  # as the earlier scan saw it; None: not in it
    after: SnapshotRow | None  # as the later scan saw it; None: not in it
    displaced: SnapshotRow | None = None  # after only: the earlier scan's asset at this address, absent later
    address_taken: bool = False  # before only: the later scan saw another asset at this address
    seen_earlier: bool = False  # after only: some scan before the later one saw this asset
    newly_shared_serial: bool = False  # after only: its serial is on several assets of the later snapshot only


# Widest value of each column `inventory list` prints, so a streamed table fixes its columns before the first row.
WIDTH_FIELDS = ("id", "ip", "device_class", "asset_type", "cpu_state", "vendor", "model", "product_code", "firmware",
                "serial", "last_seen")


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

    def iter_assets(self, where: AssetFilter = ALL_ASSETS, *, details: bool = True) -> Iterator[AssetRecord]:
        """The assets `where` selects, by address, read as they are consumed: memory stays flat at any count.
        Without `details`, `identity` and `conflicts` are left empty (a table or CSV, which show neither)."""
        ...

    def iter_asset_json(self, where: AssetFilter = ALL_ASSETS) -> Iterator[str]:
        """The same assets, each one JSON object of AssetRecord's fields, built by the database."""
        ...

    def asset_widths(self, where: AssetFilter = ALL_ASSETS) -> dict[str, int]:
        """For the assets `where` selects: `WIDTH_FIELDS` and `site` -> the longest value in UTF-8 bytes (0 when
        none; as wide as it shows, or wider, unless a control character is spelled out), `count` -> how many there
        are, `sites` -> at how many sites, and `duplicate_serial` -> how many serials several active assets share."""
        ...

    def asset(self, key: str) -> AssetRecord: ...

    def sites(self) -> list[str]:
        """The sites the store holds scans of, by name."""
        ...

    def snapshot_pairs(self, old_id: str | None, new_id: str) -> Iterator[SnapshotPair]:
        """The assets of `new_id`'s snapshot that may have changed since `old_id`'s (absent from it, at another
        address, with other firmware, or a serial newly shared), by address and paired with their earlier row;
        then those only in `old_id`'s, by address. Streamed, each found by key: an unchanged asset is never read."""
        ...

    def history(self, asset_id: str) -> dict[str, list[dict[str, Any]]]: ...

    def close(self) -> None: ...
