"""Everything a scan report states, gathered from the inventory, the audit log and the scan's profile.

Nothing here formats: the templates in `templates/` and `scan_json` decide how facts look. The profile is read as
it is now (by the name or path the scan recorded); a report says so, and says when it cannot be read.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from otprobe.errors import OtprobeError
from otprobe.inventory.diff import Change, diff_scans, pick_scans
from otprobe.inventory.merge import merge
from otprobe.inventory.store import ScanRecord, Store
from otprobe.model import Observation, Status
from otprobe.profile import Profile, load_profile
from otprobe.report.evidence import WINDOW_S, AuditEvidence, Sends, read_evidence, window_cap
from otprobe.windows import current_window

# When one device answered its protocols differently, the status that tells most about the device stands for it.
STATUS_ORDER = (Status.IDENTIFIED, Status.NO_IDENTITY, Status.PROTOCOL_ERROR, Status.RESET, Status.TIMEOUT,
                Status.TRIPPED, Status.ABORTED, Status.REFUSED, Status.EXCLUDED)
# A (device, protocol) pair is covered when the device answered it, even with a refusal: these four had no answer.
NOT_COVERED_WHY = {
    Status.EXCLUDED: "excluded by the profile's scope.exclude: zero packets sent",
    Status.TRIPPED: "circuit breaker open after consecutive timeouts or resets: nothing more sent to the device",
    Status.ABORTED: "stopped by the deadline, the window's end or an interrupt",
    Status.TIMEOUT: "no answer within the profile's timeouts, retries included",
}
NO_RESULT = "no result: the scan ended before it reached this pair (`otprobe scan --resume` continues it)"
PLAN_KEYS = ("plan_packets", "plan_expected_s", "plan_worst_s")


def address_key(ip: str) -> tuple[int, str]:
    """Numeric address order (127.0.1.9 before 127.0.1.10); a value that is not an address sorts last."""
    try:
        return int(IPv4Address(ip)), ip
    except ValueError:
        return 1 << 32, ip


@dataclass
class Device:
    ip: str
    device_class: str
    status: str
    identity: dict[str, Any]  # the merged identity fields (otprobe.inventory.merge), empty when none answered
    results: list[Observation]

    @property
    def answered(self) -> list[Observation]:
        """The results worth a line: a refusal (nothing listening) or an exclusion says nothing per protocol."""
        return [o for o in self.results if o.status not in (Status.REFUSED, Status.EXCLUDED)]


@dataclass
class Uncovered:
    ip: str
    protocol: str
    why: str
    detail: str | None = None


@dataclass
class Rate:
    """Packets of one device, class or the whole scan against the cap of any 1 s window."""

    name: str
    packets: int
    busiest: int
    cap: int | None  # None: no such cap (a class without class_pps, or an unreadable profile)
    connections: int | None = None
    device_class: str | None = None

    @property
    def over(self) -> bool:
        return self.cap is not None and self.busiest > self.cap


@dataclass
class Timeline:
    """One plot's data: a step curve per series, seconds since the scan began, and the cap lines."""

    title: str
    series: dict[str, list[tuple[float, int]]]
    caps: dict[str, int]
    span_s: float  # every plot of a report spans the whole scan, so that their time axes line up


@dataclass
class ScanFacts:
    scan: ScanRecord
    profile: Profile | None
    profile_problem: str | None
    window: str
    deadline: str | None
    planned: dict[str, float] | None
    elapsed_s: float | None
    devices: list[Device]
    previous_scan: str | None
    changes: list[Change]
    uncovered: list[Uncovered]
    evidence: AuditEvidence
    device_rates: list[Rate]
    class_rates: list[Rate]
    global_rate: Rate
    timelines: list[Timeline] = field(default_factory=list)

    @property
    def packets(self) -> int:
        return self.evidence.everything.packets

    @property
    def excluded(self) -> list[str]:
        """Addresses the scan named but the profile's scope.exclude kept out (the scan record holds the others)."""
        return [d.ip for d in self.devices if d.status == Status.EXCLUDED]


def gather(store: Store, scan_id: str, audit_path: Path, profile: Profile | None = None) -> ScanFacts:
    """The facts of scan `scan_id` (an id or its unique prefix). `profile`: the one the scan ran with, when the
    caller has it; otherwise the scan's recorded profile is loaded."""
    scan = store.scan(scan_id)
    problem = None
    if profile is None:
        try:
            profile = load_profile(scan.profile)
        except (OtprobeError, OSError) as exc:
            problem = f"profile {scan.profile} cannot be read now ({exc}): caps and windows are not shown"
    observations = store.observations(scan.id)
    evidence = read_evidence(audit_path, scan.id)
    devices = _devices(observations)
    pair = pick_scans(store, None, scan.id)
    diff = diff_scans(store, pair.old, pair.new)
    rates, classes, overall = _rates(devices, evidence, profile)
    end = evidence.events.get("scan_end", {})
    return ScanFacts(
        scan=scan, profile=profile, profile_problem=problem, window=_window(scan, profile, evidence),
        deadline=evidence.events.get("scan_start", {}).get("deadline"),
        planned={key: scan.counts[key] for key in PLAN_KEYS if key in scan.counts} or None,
        elapsed_s=end.get("elapsed_s", _seconds_between(scan.started_at, scan.ended_at)),
        devices=devices, previous_scan=diff.from_scan, changes=diff.changes,
        uncovered=_uncovered(observations, store.missing(scan.id)), evidence=evidence,
        device_rates=rates, class_rates=classes, global_rate=overall,
        timelines=_timelines(devices, evidence, profile),
    )


def _seconds_between(start: str, end: str | None) -> float | None:
    if end is None:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _devices(observations: list[Observation]) -> list[Device]:
    by_ip: dict[str, list[Observation]] = defaultdict(list)
    for observation in observations:
        by_ip[observation.target].append(observation)
    devices = []
    for ip in sorted(by_ip, key=address_key):
        results = sorted(by_ip[ip], key=lambda o: o.protocol)
        merged = merge(results)
        status = min((o.status for o in results), key=STATUS_ORDER.index)
        devices.append(Device(ip, results[0].device_class, str(status), merged.fields if merged else {}, results))
    return devices


def _uncovered(observations: list[Observation], missing: dict[str, list[str]]) -> list[Uncovered]:
    found = [Uncovered(o.target, o.protocol, NOT_COVERED_WHY[o.status], o.error)
             for o in observations if o.status in NOT_COVERED_WHY]
    found += [Uncovered(ip, protocol, NO_RESULT) for ip, protocols in missing.items() for protocol in protocols]
    return sorted(found, key=lambda u: (address_key(u.ip), u.protocol))


def _window(scan: ScanRecord, profile: Profile | None, evidence: AuditEvidence) -> str:
    override = evidence.events.get("window_override")
    if override is not None:
        return f"maintenance window overridden (--ignore-window), reason: {override.get('reason')}"
    if profile is None:
        return "unknown: the profile cannot be read"
    if not profile.windows:
        return f"profile {profile.name} has no maintenance windows: scans may run at any time"
    window = current_window(profile.windows, datetime.fromisoformat(scan.started_at))
    if window is None:
        return f"outside every window of profile {profile.name} as it reads now (was it changed since?)"
    return f"inside the window {window[0]:%Y-%m-%d %H:%M} - {window[1]:%Y-%m-%d %H:%M} UTC of profile {profile.name}"


def _class_caps(profile: Profile | None, device_class: str) -> tuple[int | None, int | None]:
    """(per-device cap, class aggregate cap) of any 1 s window."""
    if profile is None:
        return None, None
    limits = profile.limits(device_class)
    return (window_cap(limits.pps, limits.burst),
            window_cap(limits.class_pps) if limits.class_pps is not None else None)


def _rates(devices: list[Device], evidence: AuditEvidence,
           profile: Profile | None) -> tuple[list[Rate], list[Rate], Rate]:
    rates = []
    per_class: dict[str, Sends] = defaultdict(Sends)
    for device in devices:
        sends = evidence.devices.get(device.ip, Sends())
        rates.append(Rate(device.ip, sends.packets, sends.busiest(), _class_caps(profile, device.device_class)[0],
                          evidence.connections.get(device.ip, 0), device.device_class))
        per_class[device.device_class].times.extend(sends.times)
    classes = []
    for name in sorted(per_class):
        sends = Sends(sorted(per_class[name].times))
        classes.append(Rate(name, sends.packets, sends.busiest(), _class_caps(profile, name)[1]))
    everything = evidence.everything
    overall = Rate("all devices", everything.packets, everything.busiest(),
                   window_cap(profile.global_pps) if profile is not None else None)
    return rates, classes, overall


def _timelines(devices: list[Device], evidence: AuditEvidence, profile: Profile | None) -> list[Timeline]:
    """Per class: its aggregate and its busiest device in the trailing 1 s, against both caps; then the global rate."""
    members: dict[str, list[str]] = defaultdict(list)
    for device in devices:
        members[device.device_class].append(device.ip)
    timelines = []
    span = max((t for t, _ in evidence.everything.times), default=0.0) + WINDOW_S
    for name in sorted(members):
        sends = [evidence.devices[ip] for ip in members[name] if ip in evidence.devices]
        if not sends:
            continue  # excluded or never reached: nothing was sent to this class
        device_cap, class_cap = _class_caps(profile, name)
        busiest_device = max(sends, key=lambda s: s.busiest())
        aggregate = Sends(sorted(t for s in sends for t in s.times))
        caps = {"cap per device": device_cap, "class cap": class_cap}
        timelines.append(Timeline(
            f"class {name}: packets in the trailing 1 s ({len(sends)} devices)",
            {"class, all devices": aggregate.trailing(), "its busiest device": busiest_device.trailing()},
            {label: cap for label, cap in caps.items() if cap is not None}, span,
        ))
    global_caps = {"global cap": window_cap(profile.global_pps)} if profile is not None else {}
    if evidence.everything.times:
        timelines.append(Timeline("all devices: packets in the trailing 1 s",
                                  {"scan": evidence.everything.trailing()}, global_caps, span))
    return timelines
