"""Reconciliation: what a finished scan changes in the inventory, decided over plain data.

In: what the scan saw, one `DeviceSeen` per address with its merged identity (`devices_seen`, over observations),
and the inventory's active assets as they were before the scan (`KnownAsset`). Out: one `Decision` per address, in
order. A store writes decisions and decides nothing: the SQLite store today, a central PostgreSQL store later, so
both keep one meaning of new, moved, replaced, firmware changed and duplicate serial.

Matching (`match_assets`) comes first: a serial follows its device to a new address unless the serial is not unique
(see its docstring); what a serial does not settle, the address does. `reconcile` then adds what follows from the
match: a new asset, and a firmware change, where a scan that could not read the firmware keeps the one on record.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from otprobe.inventory.merge import MergedIdentity, merge
from otprobe.model import Observation


@dataclass(frozen=True)
class KnownAsset:
    """An active asset as the inventory holds it before the scan is reconciled."""

    id: str
    ip: str | None  # None: another device took its address
    serial: str | None
    model: str | None
    firmware: str | None


@dataclass(frozen=True)
class Sighting:
    """What matching looks at in one address's merged identity."""

    ip: str
    serial: str | None
    model: str | None  # the model, else the product code: what the inventory keeps as model


@dataclass(frozen=True)
class DeviceSeen:
    """One address the scan identified: its device class and the identity merged from every protocol's answer."""

    ip: str
    device_class: str
    identity: MergedIdentity

    @property
    def serial(self) -> str | None:
        return self.identity.get("serial")

    @property
    def model(self) -> str | None:
        return self.identity.get("model") or self.identity.get("product_code")

    @property
    def sighting(self) -> Sighting:
        return Sighting(self.ip, self.serial, self.model)


@dataclass(frozen=True)
class Event:
    kind: str  # new | moved | replaced | duplicate_serial | firmware_changed
    old: str | None
    new: str | None
    asset_id: str | None = None  # None: the sighting's own asset (which may be created for it)


@dataclass
class Match:
    """Which asset one sighting is, before what follows from that (new asset, firmware) is added."""

    asset_id: str | None = None  # the known asset it is; None: a new asset
    retire: str | None = None  # a known asset at this address, replaced by another device
    unaddress: str | None = None  # a known asset that loses this address to a device that moved here
    events: list[Event] = field(default_factory=list)


@dataclass(frozen=True)
class Decision:
    """What one address of the scan does to the inventory. A store applies the fields in this order."""

    seen: DeviceSeen
    asset_id: str | None  # the known asset it updates; None: a new asset, whose id the store assigns
    retire: str | None  # mark retired, without address
    unaddress: str | None  # keep, without address
    events: tuple[Event, ...]  # for the asset's history, in order
    firmware: str | None  # the asset's firmware after this scan
    firmware_recorded: bool  # the asset's firmware history gets this scan's firmware
    address_recorded: bool  # the asset's address history gets this address


def devices_seen(observations: Sequence[Observation], earlier: Sequence[Observation] = ()) -> list[DeviceSeen]:
    """The addresses of `observations` that identified, in order of first observation, each with its merged identity.

    `earlier` are the observations of the scans a resumed scan continues. A resumed scan probes only the protocols
    its chain still owed a device, so the device's identity is what the whole chain saw of it, or the asset would lose
    what an earlier (killed) scan read over the other protocols. Only addresses this scan observed count.
    """
    by_ip: dict[str, list[Observation]] = defaultdict(list)
    for obs in observations:
        by_ip[obs.target].append(obs)
    for obs in earlier:
        if obs.target in by_ip:
            by_ip[obs.target].append(obs)
    return [DeviceSeen(ip, group[0].device_class, merged) for ip, group in by_ip.items()
            if (merged := merge(group)) is not None]


def shared_serials(serials: Iterable[str | None]) -> set[str]:
    """Serials that several assets carry: such a serial identifies none of them, and each is flagged for it."""
    counts = Counter(serial for serial in serials if serial)
    return {serial for serial, n in counts.items() if n > 1}


def replaced(known: KnownAsset, serial: str | None, model: str | None) -> bool:
    """A different serial, or a different model, at the known asset's address: another device."""
    if serial and known.serial and serial != known.serial:
        return True
    return bool(model and known.model and model != known.model)


def match_assets(sightings: Sequence[Sighting], known: Sequence[KnownAsset]) -> dict[str, Match]:
    """Address -> what its sighting is: a known asset (maybe moved), a replacement, or a new asset.

    A serial seen at one address only follows its device: the known asset with that serial is matched wherever it
    was, and when that was elsewhere the device moved. A serial seen at several addresses of the same scan is no
    identity at all (cloned configurations, integrators' placeholders, eleven EtherNet/IP adapters reporting one
    serial): each address is its own asset, matched by address like a device without serial, and all are flagged
    `duplicate_serial`. A move thus needs the old address gone: still answering with the serial, it is a duplicate.
    So is a serial seen once that several known assets share, none of them at this address: which one moved is
    unknowable.
    """
    addresses: dict[str, list[str]] = {}
    for s in sightings:
        if s.serial:
            addresses.setdefault(s.serial, []).append(s.ip)
    by_serial: dict[str, list[KnownAsset]] = {}
    by_ip: dict[str, KnownAsset] = {}
    for k in known:
        if k.serial:
            by_serial.setdefault(k.serial, []).append(k)
        if k.ip:
            by_ip.setdefault(k.ip, k)
    matches = {s.ip: Match() for s in sightings}
    claimed: set[str] = set()
    shared: dict[str, tuple[str, list[str]]] = {}  # address -> its serial, the other addresses (or assets) with it

    # serials first: a device that moved claims its asset before a newcomer at its old address could retire it
    for s in sightings:
        if not s.serial:
            continue
        others = [ip for ip in addresses[s.serial] if ip != s.ip]
        candidates = by_serial.get(s.serial, [])
        here = [k for k in candidates if k.ip == s.ip]
        if others:
            shared[s.ip] = s.serial, others
        elif here or len(candidates) == 1:
            asset = (here or candidates)[0]
            matches[s.ip].asset_id = asset.id
            claimed.add(asset.id)
            if asset.ip != s.ip:
                matches[s.ip].events.append(Event("moved", asset.ip, s.ip))
        elif candidates:
            shared[s.ip] = s.serial, [k.ip or k.id for k in candidates]

    for s in sightings:
        match = matches[s.ip]
        current = by_ip.get(s.ip)
        if current is None or current.id in claimed:
            continue
        if match.asset_id is not None:  # moved here: what stood here keeps its record, without this address
            match.unaddress = current.id
        elif replaced(current, s.serial, s.model):
            match.retire = current.id
            match.events.append(Event("replaced", current.model or current.serial, s.model or s.serial, current.id))
        else:
            match.asset_id = current.id
            claimed.add(current.id)

    # flagged once, when the serial stops being unique: a known asset already sharing it was flagged before
    already = shared_serials(k.serial for k in known)
    for ip, (serial, others) in shared.items():
        if matches[ip].asset_id is None or serial not in already:
            matches[ip].events.append(Event("duplicate_serial", ", ".join(others), serial))
    return matches


def reconcile(seen: Sequence[DeviceSeen], known: Sequence[KnownAsset]) -> list[Decision]:
    """One decision per address of `seen`, in its order, against the assets `known` before the scan.

    Every address is matched against the inventory as it was before this scan, so no decision depends on the order
    they are applied in; each known asset is matched, retired or unaddressed by one decision at most.
    """
    matches = match_assets([s.sighting for s in seen], known)
    by_id = {k.id: k for k in known}
    decisions = []
    for s in seen:
        match = matches[s.ip]
        asset = by_id[match.asset_id] if match.asset_id is not None else None
        events = [Event("new", None, s.ip)] if asset is None else []
        events += match.events
        firmware = s.identity.get("firmware")
        changed = False
        if asset is not None:
            firmware = firmware or asset.firmware  # a scan that could not read the firmware does not erase it
            changed = firmware != asset.firmware
            if changed:
                events.append(Event("firmware_changed", asset.firmware, firmware))
        decisions.append(Decision(
            s, match.asset_id, match.retire, match.unaddress, tuple(events), firmware,
            firmware_recorded=asset is None or changed, address_recorded=asset is None or asset.ip != s.ip,
        ))
    return decisions
