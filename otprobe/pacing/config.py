"""The pacing limits a scan runs under, named as in the profile YAML (global_pps, classes, timeouts, retries...)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from otprobe.link import Timeouts


@dataclass(frozen=True)
class ClassLimits:
    """Caps for one device class: per device (`pps`, `burst`), in aggregate (`class_pps`), and per session."""

    pps: float
    burst: int = 1
    class_pps: float | None = None
    connect_gap_s: float = 1.0  # from the end of one connection to a device to the start of the next
    max_session_s: float = 10.0

    def __post_init__(self) -> None:
        if not self.pps > 0 or self.burst < 1 or (self.class_pps is not None and not self.class_pps > 0):
            raise ValueError(f"invalid class limits {self}")


# Devices whose class the profile does not configure get the slowest rate: an unknown device is treated as fragile.
UNKNOWN = ClassLimits(pps=0.5)


@dataclass(frozen=True)
class ScanConfig:
    """Everything the scheduler needs besides targets and probes. `deadline` is on the scheduler's clock."""

    global_pps: float = 50.0
    classes: Mapping[str, ClassLimits] = field(default_factory=dict)
    timeouts: Timeouts = field(default_factory=Timeouts)
    retries: int = 1
    breaker_failures: int = 2
    max_devices_in_flight: int = 64
    deadline: float | None = None
    backoff_s: float = 1.0  # first retry waits backoff_s * (1 + jitter), then doubles
    jitter: float = 0.5
    # Fraction by which every cap is undercut, so that a few ms of jitter between grant and arrival cannot put one
    # packet too many into a receiver's 1 s window (the bucket itself is exact at its own clock).
    headroom: float = 0.02
    enabled_intrusive: frozenset[tuple[str, str]] = frozenset()  # (protocol, operation name)

    def class_key(self, device_class: str) -> str:
        """The configured class a device is paced as: its own, else "unknown"."""
        return device_class if device_class in self.classes else "unknown"

    def limits_for(self, device_class: str) -> ClassLimits:
        return self.classes.get(self.class_key(device_class), UNKNOWN)

    def effective(self, pps: float) -> float:
        return pps / (1.0 + self.headroom)
