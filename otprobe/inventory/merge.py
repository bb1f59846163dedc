"""Merge what several protocols said about one address into one identity.

Where two sources disagree, the more specific one wins and the disagreement is kept. S7's SZL
records come from the CPU itself; a CIP Identity object is the device's own too but is often the
communication module's; a Modbus FC43 revision string is whatever the integrator or gateway put
there. Hence the ranking s7 > enip > modbus.

What a merged identity changes in the inventory is decided in `reconcile.py`.
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
