"""Fleet questions over plain data: which firmware versions of each vendor's model run on how many devices, at
which sites. Counting rows per (vendor, model, firmware, site) is the store's job (the central store lets the
database count); folding them into the summary is done here, once for every store.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from otprobe.inventory.store import AssetRecord
from otprobe.model import parse_version


@dataclass
class FirmwareRow:
    """One firmware version of one vendor's model: devices in all, and per site."""

    vendor: str
    model: str
    firmware: str
    devices: int = 0
    sites: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"vendor": self.vendor, "model": self.model, "firmware": self.firmware, "devices": self.devices,
                "sites": self.sites}


@dataclass(frozen=True)
class Count:
    """How many active assets of one site run one firmware of one vendor's model."""

    vendor: str | None
    model: str | None
    firmware: str | None
    site: str
    devices: int


def site_counts(assets: Iterable[AssetRecord]) -> list[Count]:
    """The counts of active assets per site, counted in Python (for a sensor's inventory file)."""
    counted = Counter((a.vendor, a.model, a.firmware, a.site) for a in assets if not a.retired)
    return [Count(vendor, model, firmware, site, n) for (vendor, model, firmware, site), n in counted.items()]


UNKNOWN = "(unknown)"  # a device that did not tell: still counted, so that the totals are the fleet


def firmware_summary(counts: Iterable[Count]) -> list[FirmwareRow]:
    """Rows by vendor, model, then firmware version in version order (V3.2.10 after V3.2.9)."""
    rows: dict[tuple[str, str, str], FirmwareRow] = {}
    per_site: dict[tuple[str, str, str], Counter[str]] = {}
    for c in counts:
        key = (c.vendor or UNKNOWN, c.model or UNKNOWN, c.firmware or UNKNOWN)
        row = rows.setdefault(key, FirmwareRow(*key))
        row.devices += c.devices
        per_site.setdefault(key, Counter())[c.site] += c.devices
    for key, row in rows.items():
        row.sites = dict(sorted(per_site[key].items()))
    return sorted(rows.values(), key=lambda r: (r.vendor.lower(), r.model.lower(), _version_key(r.firmware)))


def _version_key(firmware: str) -> tuple[int, Any, str]:
    version = parse_version(firmware) if firmware != UNKNOWN else None
    return (1, (), firmware) if version is None else (0, version, firmware)
