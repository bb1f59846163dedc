"""The pacing limits a scan runs under, named as in the profile YAML (global_pps, classes, timeouts, retries...).

Safety defaults live in one place, the profile model (`otprobe.profile.Profile`). These dataclasses take every
safety-relevant value as a required argument and `otprobe.profile.scan_config()` fills them from a profile, by
default one that sets nothing: a library caller is paced exactly like a profile file that leaves every limit unset,
never looser. What stays defaulted here is what no profile configures (retry backoff, jitter, headroom, deadline).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from otprobe.contract import Timeouts


@dataclass(frozen=True, kw_only=True)
class ClassLimits:
    """Caps for one device class: per device (`pps`, `burst`), in aggregate (`class_pps`), and per session."""

    pps: float
    burst: int
    class_pps: float | None  # None: the class as a whole is capped only by the global rate
    connect_gap_s: float  # from the end of one connection to a device to the start of the next
    max_session_s: float

    def __post_init__(self) -> None:
        if not self.pps > 0 or self.burst < 1 or (self.class_pps is not None and not self.class_pps > 0):
            raise ValueError(f"invalid class limits {self}")


@dataclass(frozen=True, kw_only=True)
class ScanConfig:
    """Everything the scheduler needs besides targets and probes. `deadline` is on the scheduler's clock.

    `classes` must define "unknown", the class of every device no other class is configured for (as a profile must).
    """

    global_pps: float
    classes: Mapping[str, ClassLimits]
    timeouts: Timeouts
    retries: int
    breaker_failures: int
    max_devices_in_flight: int  # addresses known to hold a device with a session under way
    max_addresses_in_flight: int  # addresses not yet known to hold a device, on their first attempts
    max_packets_per_device: int | None  # everything one scan may send one address, retries included; None: no cap
    deadline: float | None = None
    backoff_s: float = 1.0  # first retry waits backoff_s * (1 + jitter), then doubles
    jitter: float = 0.5
    # Fraction by which every cap is undercut, so that a few ms of jitter between grant and arrival cannot put one
    # packet too many into a receiver's 1 s window (the bucket itself is exact at its own clock).
    headroom: float = 0.02
    enabled_intrusive: frozenset[tuple[str, str]] = frozenset()  # (protocol, operation name)

    def __post_init__(self) -> None:
        if "unknown" not in self.classes:
            raise ValueError("classes must define 'unknown' (devices of no configured class are paced as it)")

    def class_key(self, device_class: str) -> str:
        """The configured class a device is paced as: its own, else "unknown"."""
        return device_class if device_class in self.classes else "unknown"

    def limits_for(self, device_class: str) -> ClassLimits:
        return self.classes[self.class_key(device_class)]

    def effective(self, pps: float) -> float:
        return pps / (1.0 + self.headroom)
