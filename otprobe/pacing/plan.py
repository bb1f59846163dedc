"""The scan plan: worst-case packets and the least time the caps allow, computed without any I/O.

Packets are an upper bound: a Link refuses anything past a probe's `max_packets()`, and a job makes at most
`retries + 1` attempts, so a real scan never sends more than its plan. Durations are lower bounds for sending one
full budget per (device, probe) under the nominal caps: no scan of these devices can be faster, so a real scan's
elapsed time divided by this bound measures how much the scheduler wastes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from otprobe.contract import Probe
from otprobe.model import Target
from otprobe.pacing.config import ClassLimits, ScanConfig


@dataclass(frozen=True)
class ClassPlan:
    devices: int
    packets: int  # worst case, retries included
    min_seconds: float  # lower bound for one full attempt per job


@dataclass(frozen=True)
class Plan:
    devices: int
    packets_per_device: int  # worst case, retries included (the same probes run against every device)
    classes: dict[str, ClassPlan]  # keyed by the configured class each device is paced as
    total_packets: int
    min_seconds: float


def device_min_seconds(packets: int, sessions: int, limits: ClassLimits) -> float:
    """Least time one device needs for `packets` over `sessions` sequential connections, under its own caps."""
    if packets <= 0:
        return 0.0
    interval = 1.0 / limits.pps
    gaps = max(sessions - 1, 0)
    if limits.burst == 1:
        # Packets within a session are one interval apart; between sessions the connection gap and the
        # interval overlap, since the gap is counted from the close.
        return max(packets - sessions, 0) * interval + gaps * max(limits.connect_gap_s, interval)
    return max((packets - limits.burst) * interval, gaps * limits.connect_gap_s)


def shared_min_seconds(packets: int, pps: float | None) -> float:
    """Least time a burst-1 aggregate bucket needs for `packets` (its first packet leaves at once)."""
    return 0.0 if pps is None or packets <= 0 else (packets - 1) / pps


def plan_scan(targets: Sequence[Target], probes: Sequence[Probe], config: ScanConfig) -> Plan:
    once = sum(probe.max_packets() for probe in probes)
    per_device = once * (config.retries + 1)
    counts = Counter(config.class_key(t.device_class) for t in targets)
    in_flight = max(1, config.max_devices_in_flight)
    classes: dict[str, ClassPlan] = {}
    device_total = 0.0  # sum of per-device bounds: at most `in_flight` devices progress at once
    slowest = 0.0
    for key, devices in sorted(counts.items()):
        limits = config.limits_for(key)
        each = device_min_seconds(once, len(probes), limits)
        device_total += each * devices
        slowest = max(slowest, each)
        bound = max(each, each * devices / in_flight, shared_min_seconds(once * devices, limits.class_pps))
        classes[key] = ClassPlan(devices=devices, packets=per_device * devices, min_seconds=bound)
    overall = max(
        [slowest, device_total / in_flight, shared_min_seconds(once * len(targets), config.global_pps)]
        + [plan.min_seconds for plan in classes.values()]
    )
    return Plan(
        devices=len(targets),
        packets_per_device=per_device,
        classes=classes,
        total_packets=per_device * len(targets),
        min_seconds=overall,
    )
