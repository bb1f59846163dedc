"""Merge what several protocols said about one address into one identity.

Where two sources disagree, the more trusted one wins and the disagreement is kept. How far a protocol's value of
each identity field is trusted is the protocol's own declaration (`Probe.merge_rank`, `Probe.field_ranks`), read
through the registry; each probe says there why it ranks where it does.

What a merged identity changes in the inventory is decided in `reconcile.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from otprobe.model import Observation, Status, parse_version
from otprobe.probes import source_rank

Rank = Callable[[str, str], int]  # (protocol, identity field) -> how far that protocol's value is trusted
MERGED_FIELDS = (
    "vendor", "vendor_id", "product_name", "model", "product_code", "device_type", "device_type_id",
    "asset_type", "serial", "firmware", "hardware_version",
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


def merge(observations: list[Observation], rank: Rank = source_rank) -> MergedIdentity | None:
    """One identity from the identified observations of one address; None if none identified.

    `rank` defaults to the registered probes' declarations; a pure caller may pass its own."""
    identified = [(o, o.identity) for o in observations if o.status is Status.IDENTIFIED and o.identity is not None]
    if not identified:
        return None
    merged = MergedIdentity()
    for obs, ident in identified:
        merged.protocols[obs.protocol] = obs.port
        merged.raw[obs.protocol] = dict(ident.raw)
    for name in MERGED_FIELDS:
        # field by field, the most trusted source first (sorted() is stable: equal ranks keep scan order)
        for obs, ident in sorted(identified, key=lambda pair: rank(pair[0].protocol, name), reverse=True):
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
