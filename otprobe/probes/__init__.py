"""The probe registry: a plain tuple, checked by the contract tests. Order is the order probes run per device."""

from __future__ import annotations

from otprobe.probes.base import Category, Kind, Operation, Probe
from otprobe.probes.enip import EnipProbe
from otprobe.probes.modbus import ModbusProbe
from otprobe.probes.s7 import S7Probe

PROBES: tuple[type[Probe], ...] = (S7Probe, EnipProbe, ModbusProbe)


def probe_class(name: str) -> type[Probe]:
    for cls in PROBES:
        if cls.name == name:
            return cls
    raise KeyError(f"unknown protocol {name!r} (known: {', '.join(p.name for p in PROBES)})")


__all__ = ["PROBES", "Category", "Kind", "Operation", "Probe", "probe_class"]
