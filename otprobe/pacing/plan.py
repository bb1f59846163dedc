"""The scan plan: the worst case, and what to expect for a stated number of live devices, computed without any I/O.

Worst case. Packets are a true upper bound: a Link refuses anything past a probe's `max_packets()`, a job makes at
most `retries + 1` attempts, and a device packet budget (`max_packets_per_device`), when set, caps everything one
address may get (the scheduler starts no attempt whose worst case would not fit). Its duration is the least time
the caps allow for one full budget per (device, probe): no scan of these devices can be faster.

Expected. Most addresses of a block hold no device, and a device answers one or two of the probes, so the worst
case overstates a real scan many times over. The expected figures assume `expect_devices` of the addresses hold a
device (default: `DEFAULT_DENSITY` of them), that a device answers one probe at that probe's usual cost
(`Probe.typical_packets()`) and refuses the others at one packet per transport; an empty address costs what the
scheduler spends on one (`empty_packets`), refusing every probe or silent (the caller says which share is silent:
refusing, the dearer in packets, by default). The duration is the longest of three kinds of stream, each plus half
the mean session it carries (weighted by packets): the caps (each class's and the global, at their paced rates) over
the expected packets, the empty addresses' own time over the discovery slots and the devices' own time over the
session slots. A stream's last sessions end at their devices' own pace, on average half a session after its evenly
spread share (docs/design.md, "The plan's expected time"); and no scan is shorter than its longest session.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from otprobe.contract import Probe
from otprobe.model import Target
from otprobe.pacing.config import ClassLimits, ScanConfig

DEFAULT_DENSITY = 0.1  # share of the addresses expected to hold a device when the caller states none


@dataclass(frozen=True)
class ClassPlan:
    devices: int
    packets: int  # worst case, retries included
    min_seconds: float  # lower bound for one full attempt per job


@dataclass(frozen=True)
class Plan:
    devices: int  # addresses to scan
    packets_per_device: int  # worst case, retries and the device budget included
    classes: dict[str, ClassPlan]  # keyed by the configured class each device is paced as
    total_packets: int
    min_seconds: float  # the least time the caps allow for the worst case
    expected_devices: int
    expected_packets: int
    expected_seconds: float
    silent_share: float  # of the empty addresses, assumed to drop everything (the others refuse)

    @property
    def worst_seconds(self) -> float:
        return self.min_seconds


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


def shared_min_seconds(packets: float, pps: float | None) -> float:
    """Least time a burst-1 aggregate bucket needs for `packets` (its first packet leaves at once)."""
    return 0.0 if pps is None or packets <= 0 else (packets - 1) / pps


def _refused(probe: Probe) -> int:
    """What a probe costs a host that refuses it: one SYN or datagram per transport."""
    return len(probe.transports)


def device_packets(probes: Sequence[Probe]) -> float:
    """Expected packets to a device that answers one of `probes` (any one alike) and refuses the others."""
    if not probes:
        return 0.0
    refused = sum(_refused(p) for p in probes)
    return sum(p.typical_packets() + refused - _refused(p) for p in probes) / len(probes)


def empty_packets(probes: Sequence[Probe], config: ScanConfig, silent_share: float) -> tuple[float, float]:
    """Expected packets to an address with no device, and the seconds its task takes. A host that refuses (RST,
    ICMP port unreachable) gets one packet per probe and transport, paced as one device; a silent one gets its first
    connection attempt with retries, waits out their timeouts, then one datagram per UDP-only probe. `silent_share`
    of the empty addresses are silent, the others refuse."""
    if not probes:
        return 0.0, 0.0
    limits = config.limits_for("unknown")
    refused = sum(_refused(p) for p in probes)
    refused_s = device_min_seconds(refused, refused, limits)
    tcp = any("tcp" in p.transports for p in probes)
    udp_only = sum(1 for p in probes if "tcp" not in p.transports)
    attempts = config.retries + 1 if tcp else 0
    silent = attempts + udp_only
    backoff = sum(config.backoff_s * 2**a * (1 + config.jitter / 2) for a in range(attempts - 1))
    silent_s = attempts * config.timeouts.connect_s + backoff + udp_only * config.timeouts.response_s
    return (silent_share * silent + (1 - silent_share) * refused,
            silent_share * silent_s + (1 - silent_share) * refused_s)


def plan_scan(targets: Sequence[Target], probes: Sequence[Probe], config: ScanConfig,
              expect_devices: int | None = None, silent_share: float = 0.0) -> Plan:
    """The plan; the expected figures for `expect_devices` live devices (default: DEFAULT_DENSITY of the
    addresses), with `silent_share` of the empty addresses dropping everything and the others refusing."""
    once = sum(probe.max_packets() for probe in probes)
    per_device = once * (config.retries + 1)
    budget = config.max_packets_per_device
    if budget is not None:
        once, per_device = min(once, budget), min(per_device, budget)
    counts = Counter(config.class_key(t.device_class) for t in targets)
    # a device's first session runs in a discovery slot, its others in a session slot: both kinds progress at once
    in_flight = config.max_devices_in_flight + max(config.max_addresses_in_flight, config.max_devices_in_flight)
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
    if expect_devices is None:
        expect_devices = max(1, round(len(targets) * DEFAULT_DENSITY))
    live = min(len(targets), expect_devices)
    packets, seconds = _expected(targets, probes, config, live, silent_share)
    return Plan(
        devices=len(targets),
        packets_per_device=per_device,
        classes=classes,
        total_packets=per_device * len(targets),
        min_seconds=overall,
        expected_devices=live,
        expected_packets=round(packets),
        expected_seconds=seconds,
        silent_share=silent_share,
    )


def _expected(targets: Sequence[Target], probes: Sequence[Probe], config: ScanConfig, live: int,
              silent_share: float) -> tuple[float, float]:
    """Expected packets and seconds with `live` of the addresses holding a device, spread like the addresses: the
    longest of the caps over the expected packets, the empty addresses' own time over the discovery slots and the
    devices' own time over the session slots, each plus half the mean session it carries (weighted by packets), and
    at least the longest session. Only half a session: where a cap binds, the last sessions' packets are already in
    the cap's stream, and adding the slowest device's whole session (of any class) counted them twice."""
    if not targets or not probes:
        return 0.0, 0.0
    share = live / len(targets)
    empty, empty_s = empty_packets(probes, config, silent_share)
    per_live = device_packets(probes)
    if config.max_packets_per_device is not None:
        per_live = min(per_live, config.max_packets_per_device)
    counts = Counter(config.class_key(t.device_class) for t in targets)
    bounds: list[float] = []
    total = live_packets = live_time = session_weight = device_weight = longest = 0.0
    for key, addresses in counts.items():
        limits = config.limits_for(key)
        own = device_min_seconds(math.ceil(per_live), len(probes), limits)  # its packets, a session per probe
        to_live, to_empty = addresses * share * per_live, addresses * (1 - share) * empty
        packets = to_live + to_empty
        weight = to_live * own + to_empty * empty_s  # sessions weighted by the packets they put in the stream
        total, live_packets = total + packets, live_packets + to_live
        live_time += addresses * share * own
        session_weight, device_weight = session_weight + weight, device_weight + to_live * own
        longest = max(longest, own if share > 0 else 0.0, empty_s if share < 1 else 0.0)
        bounds.append(_paced(packets, limits.class_pps, config) + _half(weight, packets))
    empties = (len(targets) - live) * empty_s
    discovery = max(config.max_addresses_in_flight, config.max_devices_in_flight)
    bounds += [_paced(total, config.global_pps, config) + _half(session_weight, total),
               live_time / max(1, config.max_devices_in_flight) + _half(device_weight, live_packets),
               empties / discovery + (empty_s / 2 if empties else 0.0), longest]
    return total, max(bounds)


def _half(weight: float, packets: float) -> float:
    """Half the mean session of a stream: its tail, as the sessions still open at its end are half done."""
    return weight / packets / 2 if packets > 0 else 0.0


def _paced(packets: float, pps: float | None, config: ScanConfig) -> float:
    """Seconds an aggregate bucket needs for `packets` at the rate the pacer really grants (the cap less headroom)."""
    return shared_min_seconds(packets, None if pps is None else config.effective(pps))


def remaining_seconds(targets_left: Sequence[Target], probes: Sequence[Probe], config: ScanConfig,
                      live_share: float, silent_share: float) -> float:
    """Expected seconds for the addresses a running scan has not finished, `live_share` of them holding a device
    and `silent_share` of the empty ones silent (the shares seen so far): the plan's expected model over the work
    actually left, not the worst case."""
    live = round(len(targets_left) * min(max(live_share, 0.0), 1.0))
    return _expected(targets_left, probes, config, live, silent_share)[1]
