"""The normalised results every probe returns: Status, Identity, Observation, Target."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """What happened when one probe met one device. Closed set: the inventory and the CLI rely on it."""

    IDENTIFIED = "identified"  # identity objects read
    NO_IDENTITY = "no_identity"  # speaks the protocol (e.g. exception reply) but gave no identity
    REFUSED = "refused"  # TCP connection refused / nothing listening
    TIMEOUT = "timeout"  # no answer within the profile's timeouts
    RESET = "reset"  # connection reset or closed by the device mid-exchange
    PROTOCOL_ERROR = "protocol_error"  # a reply that does not parse
    EXCLUDED = "excluded"  # in scope.exclude: zero packets sent
    TRIPPED = "tripped"  # circuit breaker open: nothing more sent this scan
    ABORTED = "aborted"  # deadline or interrupt stopped it before or during the exchange


_NUMBERS = re.compile(r"\d+")


def parse_version(text: str | None) -> tuple[int, ...] | None:
    """Comparable version from a device's own firmware text: 'V3.2.7' -> (3, 2, 7), ' 2.00r016' -> (2, 0, 16)."""
    if not text:
        return None
    parts = tuple(int(n) for n in _NUMBERS.findall(text))
    return parts or None


# What a device is, as its own protocol data says (CIP device type, S7 module data, BACnet vendor and model, the
# SNMP sysObjectID and ENTITY-MIB classes, OPC UA application type). A closed vocabulary, so that `inventory list
# --type drive` means the same thing for every protocol; it is never the pacing class, which is set by address
# before anything is known.
ASSET_TYPES = (
    "plc", "safety_plc", "hmi", "drive", "meter", "io_adapter", "switch", "router", "gateway", "rtu",
    "building_controller", "ups", "server", "other",
)


@dataclass(frozen=True)
class Target:
    """One address to probe and the device class it was assigned before identification."""

    ip: str
    device_class: str = "unknown"


@dataclass
class Identity:
    """What a device said about itself, normalised across protocols. `raw` keeps protocol-specific fields."""

    vendor: str | None = None
    vendor_id: int | None = None
    product_name: str | None = None
    model: str | None = None
    product_code: str | None = None  # Modbus ProductCode, S7 order code (MLFB), CIP product code
    device_type: str | None = None
    device_type_id: int | None = None
    asset_type: str | None = None  # one of ASSET_TYPES, derived from the protocol's own fields by the probe
    serial: str | None = None
    firmware: str | None = None  # exactly as reported
    hardware_version: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def firmware_version(self) -> tuple[int, ...] | None:
        return parse_version(self.firmware)

    def as_dict(self) -> dict[str, Any]:
        return {
            "vendor": self.vendor,
            "vendor_id": self.vendor_id,
            "product_name": self.product_name,
            "model": self.model,
            "product_code": self.product_code,
            "device_type": self.device_type,
            "device_type_id": self.device_type_id,
            "asset_type": self.asset_type,
            "serial": self.serial,
            "firmware": self.firmware,
            "firmware_version": list(self.firmware_version) if self.firmware_version else None,
            "hardware_version": self.hardware_version,
            "raw": self.raw,
        }


@dataclass
class Observation:
    """One probe's result for one device."""

    target: str
    protocol: str
    port: int
    status: Status
    identity: Identity | None = None
    latency_s: float | None = None
    packets_sent: int = 0
    error: str | None = None
    device_class: str = "unknown"

    def as_dict(self) -> dict[str, Any]:
        ident = self.identity.as_dict() if self.identity else {}
        return {
            "ip": self.target,
            "protocol": self.protocol,
            "port": self.port,
            "status": str(self.status),
            "device_class": self.device_class,
            "vendor": ident.get("vendor"),
            "model": ident.get("model"),
            "product_code": ident.get("product_code"),
            "firmware": ident.get("firmware"),
            "serial": ident.get("serial"),
            "latency_s": self.latency_s,
            "packets_sent": self.packets_sent,
            "error": self.error,
            "identity": ident or None,
        }
