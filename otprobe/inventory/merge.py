"""Merge what several protocols said about one address into one identity, and match a scan's identities to the
inventory's assets.

Where two sources disagree, the more specific one wins and the disagreement is kept. S7's SZL
records come from the CPU itself; a CIP Identity object is the device's own too but is often the
communication module's; a Modbus FC43 revision string is whatever the integrator or gateway put
there. Hence the ranking s7 > enip > modbus.

Matching (`match_assets`) is a pure function over plain data, so the store only applies its decisions: a serial
follows its device to a new address, unless the serial is not unique (see its docstring).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from otprobe.model import Identity, Observation, Status, parse_version

SOURCE_RANK = {"s7": 3, "enip": 2, "modbus": 1}
MERGED_FIELDS = (
    "vendor", "vendor_id", "product_name", "model", "product_code", "device_type", "device_type_id",
    "serial", "firmware", "hardware_version",
)


@dataclass
class MergedIdentity:
    fields: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # field -> protocol it came from
    conflicts: dict[str, dict[str, Any]] = field(default_factory=dict)  # field -> {protocol: value}
    protocols: dict[str, int] = field(default_factory=dict)  # protocol -> port
    raw: dict[str, dict[str, Any]] = field(default_factory=dict)  # protocol -> raw fields

    def get(self, name: str) -> Any:
        return self.fields.get(name)


def _same(name: str, a: Any, b: Any) -> bool:
    # "v02.70" over Modbus and "2.70" over CIP are one firmware, not a conflict.
    if name == "firmware":
        return parse_version(a) == parse_version(b)
    return a == b


def merge(observations: list[Observation]) -> MergedIdentity | None:
    """One identity from the identified observations of one address; None if none identified."""
    identified = [o for o in observations if o.status is Status.IDENTIFIED and o.identity is not None]
    if not identified:
        return None
    identified.sort(key=lambda o: SOURCE_RANK.get(o.protocol, 0), reverse=True)
    merged = MergedIdentity()
    for obs in identified:
        ident: Identity = obs.identity  # type: ignore[assignment]
        merged.protocols[obs.protocol] = obs.port
        merged.raw[obs.protocol] = dict(ident.raw)
        for name in MERGED_FIELDS:
            value = getattr(ident, name)
            if value in (None, ""):
                continue
            if name not in merged.fields:
                merged.fields[name] = value
                merged.sources[name] = obs.protocol
            elif not _same(name, merged.fields[name], value):
                seen = merged.conflicts.setdefault(name, {merged.sources[name]: merged.fields[name]})
                seen[obs.protocol] = value
    return merged


@dataclass(frozen=True)
class KnownAsset:
    """An active asset as the inventory holds it before the scan is merged."""

    id: str
    ip: str | None  # None: another device took its address
    serial: str | None
    model: str | None


@dataclass(frozen=True)
class Sighting:
    """One address's merged identity in the scan being merged."""

    ip: str
    serial: str | None
    model: str | None  # the model, else the product code: what the inventory keeps as model


@dataclass(frozen=True)
class Event:
    kind: str  # moved | replaced | duplicate_serial
    old: str | None
    new: str | None
    asset_id: str | None = None  # None: the sighting's own asset (which may be created for it)


@dataclass
class Match:
    """What merging one sighting does to the inventory."""

    asset_id: str | None = None  # the known asset it is; None: a new asset
    retire: str | None = None  # a known asset at this address, replaced by another device
    unaddress: str | None = None  # a known asset that loses this address to a device that moved here
    events: list[Event] = field(default_factory=list)


def replaced(known: KnownAsset, serial: str | None, model: str | None) -> bool:
    """A different serial, or a different model, at the known asset's address: another device."""
    if serial and known.serial and serial != known.serial:
        return True
    return bool(model and known.model and model != known.model)


def match_assets(sightings: list[Sighting], known: list[KnownAsset]) -> dict[str, Match]:
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
    already = {serial for serial, assets in by_serial.items() if len(assets) > 1}
    for ip, (serial, others) in shared.items():
        if matches[ip].asset_id is None or serial not in already:
            matches[ip].events.append(Event("duplicate_serial", ", ".join(others), serial))
    return matches
