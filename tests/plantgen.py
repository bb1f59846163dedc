"""Generated plants for pacing tests and benches, and one call that scans such a plant for real.

Pacing tests need many devices, not many different ones, so each protocol section here is one realistic identity
(from the demo plant) that callers override key by key. Blocks 80-99 of 127.0.0.0/8 belong to the pacing tests and
benches; each group takes hosts .10 upwards of one block. `run_together()` starts the plants in a child process
(simulators.process), scans them from this one through `otprobe.scan` (prepare, ScanRun: the CLI's path) with
profiles built here, and keeps what every device recorded, so callers measure pacing at the receiver, with stamps
no busy scanner can delay; the measures (window caps, achieved rate, the least time the caps allow) are here too,
shared by tests and bench/.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import identities
import yaml

from otprobe.demo import max_in_window
from otprobe.inventory import SqliteStore
from otprobe.probes import names
from otprobe.profile import Profile, parse_profile
from otprobe.scan import Prepared, ScanOutcome, ScanRun, prepare
from simulators.plant import PlantSource, load_plant
from simulators.process import PlantProcess
from simulators.recorder import Recorder

BLOCKS = range(80, 100)  # 127.0.80.0-127.0.99.255, reserved for these tests
PORTS = {"modbus": 15020, "s7": 10102, "enip": 44818}  # unprivileged; addresses differ, so ports may repeat
FIRST_HOST = 10
# Long enough for a worst-case session of any probe at 0.2 pps (prepare() refuses a profile whose sessions cannot
# fit), and not what ends any session in these scans: the probes' own timeouts and budgets do.
SESSION_S = 120

MODBUS = identities.M340_OBJECTS
S7 = {
    "mode": "s300",
    "rack": 0,
    "slot": 2,
    "order_code": "6ES7 315-2EH14-0AB0",
    "hardware_version": 3,
    "firmware": "V3.2.7",
    "module_type_name": "CPU 315-2 PN/DP",
    "serial": "S C-B1U393142011",
}
ENIP = {
    "vendor_id": 1,
    "device_type": 14,
    "product_code": 154,
    "revision": "21.11",
    "serial": 0x6043BF65,
    "status": 0x0030,
    "state": 3,
    "product_name": "1769-L18ER/A LOGIX5318ER",
}
IDENTITIES = {"modbus": MODBUS, "s7": S7, "enip": ENIP}


def address(block: int, host: int) -> str:
    if block not in BLOCKS or not 1 <= host <= 254:
        raise ValueError(f"127.0.{block}.{host} is outside the pacing tests' 127.0.80.0-127.0.99.255")
    return f"127.0.{block}.{host}"


def cidr(block: int) -> str:
    address(block, 1)
    return f"127.0.{block}.0/24"


def group(
    block: int,
    count: int,
    *,
    device_class: str,
    protocols: Mapping[str, Mapping[str, Any]],
    fault: str | Mapping[str, Any] | None = None,
    first_host: int = FIRST_HOST,
) -> list[dict[str, Any]]:
    """`count` devices on hosts first_host.. of 127.0.<block>.0/24; `protocols` maps each protocol the devices
    speak to overrides of its default identity ({"modbus": {"conformity": 1}}, {"s7": {}})."""
    unknown = set(protocols) - set(IDENTITIES)
    if unknown:
        raise ValueError(f"unknown protocol {sorted(unknown)[0]!r} (known: {', '.join(IDENTITIES)})")
    devices = []
    for host in range(first_host, first_host + count):
        device: dict[str, Any] = {
            "name": f"{device_class}-{block}-{host}",
            "address": address(block, host),
            "class": device_class,
        }
        for protocol, overrides in protocols.items():
            device[protocol] = {**IDENTITIES[protocol], "port": PORTS[protocol], **overrides}
        if fault is not None:
            device["fault"] = fault
        devices.append(device)
    return devices


def plant(name: str, *groups: list[dict[str, Any]]) -> dict[str, Any]:
    return {"plant": name, "devices": [device for devices in groups for device in devices]}


def addresses(devices: list[dict[str, Any]]) -> list[str]:
    return [device["address"] for device in devices]


def profile(
    classes: Mapping[str, Mapping[str, Any]],
    assign: Mapping[str, str],
    *,
    include: Sequence[str],
    exclude: Sequence[str] = (),
    protocols: Sequence[str] = ("modbus",),
    unit_ids: Sequence[int] = (1,),
    **keys: Any,
) -> Profile:
    """A profile through the real YAML parser: `classes` (besides a slow `unknown`; max_session_s SESSION_S unless
    given), `assign` (CIDR -> class, first match wins), only `protocols` enabled, on this module's ports; `keys` are
    further top-level keys (global_pps...)."""
    sections: dict[str, dict[str, Any]] = {name: {"enabled": False} for name in names()}  # only `protocols` run
    sections.update({name: {"enabled": name in protocols, "port": port} for name, port in PORTS.items()})
    sections["modbus"]["unit_ids"] = list(unit_ids)
    data = {
        "name": "pacing-test",
        "scope": {"include": list(include), "exclude": list(exclude)},
        "classes": {
            name: {"max_session_s": SESSION_S, **limits}
            for name, limits in {"unknown": {"pps": 0.5}, **classes}.items()
        },
        "assign": [{"cidr": block, "class": name} for block, name in assign.items()],
        "protocols": sections,
        **keys,
    }
    return parse_profile(yaml.safe_dump(data, sort_keys=False), "<pacing test profile>")


@dataclass
class Scan:
    """A finished scan, from the scanner's side. Times are time.monotonic(), the clock the devices stamp with too."""

    prepared: Prepared
    outcome: ScanOutcome
    started: float
    ended: float
    deadline: float | None


@dataclass
class Scanned(Scan):
    """A finished scan and what its devices recorded."""

    recorders: dict[str, Recorder]  # by address

    @classmethod
    def of(cls, scan: Scan, recorders: dict[str, Recorder]) -> Scanned:
        return cls(**{f.name: getattr(scan, f.name) for f in fields(Scan)}, recorders=recorders)

    def packet_times(self, ips: Sequence[str] | None = None) -> list[float]:
        """Every packet of the given devices (default: all), merged and sorted."""
        wanted = self.recorders if ips is None else ips
        return sorted(t for ip in wanted for t in self.recorders[ip].packet_times())


async def scan_targets(scan_profile: Profile, targets: Sequence[str], *, deadline_s: float | None = None) -> Scan:
    """Scan `targets` (of a plant running elsewhere) with `scan_profile`, with a deadline `deadline_s` after the
    start."""
    with tempfile.TemporaryDirectory(prefix="otprobe-pacing-") as workdir:
        now, started = datetime.now(UTC), time.monotonic()
        deadline = None if deadline_s is None else now + timedelta(seconds=deadline_s)
        prepared = prepare(scan_profile, scan_profile.name, targets, now=now, deadline=deadline)
        store = SqliteStore(Path(workdir) / "inventory.db")
        try:
            outcome = await ScanRun(prepared, store, Path(workdir) / "audit.jsonl", now=now).run()
        finally:
            store.close()
        ended = time.monotonic()
    return Scan(prepared, outcome, started, ended, None if deadline_s is None else started + deadline_s)


@contextlib.contextmanager
def cpu_hogs(processes: int) -> Iterator[None]:
    """`processes` CPU-bound processes (`while True: pass`) for the duration: a busy machine, as in the field."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def deadline_margins(scanned: Scanned) -> tuple[float, float]:
    """(last packet at any device, last FIN or connection end) in seconds before the deadline: negative is late."""
    assert scanned.deadline is not None
    closes = [c.closed_mono for recorder in scanned.recorders.values() for c in recorder.connections]
    last_packet = max(scanned.packet_times(), default=-math.inf)
    last_close = max((t if t is not None else math.inf for t in closes), default=-math.inf)
    return scanned.deadline - last_packet, scanned.deadline - last_close


# -- measures at the receiver ------------------------------------------------------------------------------------


def window_cap(pps: float, burst: int, window_s: float) -> int:
    """Most packets a cap of `pps` with `burst` allows in any `window_s` window: ceil(pps*W + burst - 1)."""
    return math.ceil(pps * window_s + burst - 1 - 1e-9)


def busiest(times: Sequence[float], window_s: float) -> int:
    return max_in_window(sorted(times), window_s)


def achieved_pps(times: Sequence[float]) -> float:
    """Packets per second from a device's first packet to its last: (n - 1) / span."""
    return (len(times) - 1) / (max(times) - min(times))


def device_seconds(recorder: Recorder, pps: float, burst: int, connect_gap_s: float) -> float:
    """Least time from first to last of the packets this device received, in the sessions it saw (a UDP datagram
    is a session). Burst 1: packets of a session one interval apart, sessions max(gap, interval) apart; a larger
    burst lets `burst` packets go at once, so only (packets - burst) intervals and the gaps are certain."""
    packets = recorder.packet_count()
    sessions = len(recorder.connections) + sum(1 for r in recorder.requests if r.connection is None)
    interval, gaps = 1.0 / pps, max(sessions - 1, 0)
    if burst == 1:
        return (packets - sessions) * interval + gaps * max(connect_gap_s, interval)
    return max((packets - burst) * interval, gaps * connect_gap_s, 0.0)


def least_seconds(scanned: Scanned) -> float:
    """The least time the profile's caps allow for the packets the devices actually received: the slowest device,
    each class aggregate, the global cap, and the devices' total over the in-flight limit."""
    profile = scanned.prepared.profile
    per_device: list[float] = []
    per_class: dict[str, int] = {}
    for target in scanned.prepared.targets:
        limits = profile.limits(target.device_class)
        recorder = scanned.recorders[target.ip]
        per_device.append(device_seconds(recorder, limits.pps, limits.burst, limits.connect_gap_s))
        per_class[target.device_class] = per_class.get(target.device_class, 0) + recorder.packet_count()
    bounds = [max(per_device), sum(per_device) / profile.max_devices_in_flight]
    bounds += [(n - 1) / profile.limits(c).class_pps for c, n in per_class.items() if profile.limits(c).class_pps]
    bounds.append((sum(per_class.values()) - 1) / profile.global_pps)
    return max(bounds)


# -- the scenarios of the receiver-side acceptance tests and the bench -------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    plant: PlantSource
    profile: Profile
    targets: list[str]
    deadline_s: float | None = None

    async def scan(self) -> Scan:
        return await scan_targets(self.profile, self.targets, deadline_s=self.deadline_s)


async def run_together(scenarios: Sequence[Scenario]) -> list[Scanned]:
    """Start every scenario's plant in one child process, run all the scans at once from this one, stop the plants,
    and give each scan the recorders of its own plant's devices (the excluded ones too).

    The devices stamp packets when the child's event loop reads them, so neither this process's scans nor its
    garbage collector can delay a stamp; all plants listen before the first scan starts.
    """
    with PlantProcess(*(scenario.plant for scenario in scenarios)) as plants:
        scans = await asyncio.gather(*(scenario.scan() for scenario in scenarios))
    recorders = plants.recorders_by_address()
    return [
        Scanned.of(scan, {device.address: recorders[device.address] for device in load_plant(scenario.plant).devices})
        for scenario, scan in zip(scenarios, scans, strict=True)
    ]


# Modbus devices whose FC43 streams always say "More Follows": with unit ids 1 and 2 a session is the probe's whole
# budget, 18 packets (connect, 2 units x (basic + 3 pages + regular + 3 pages), close), more than 10 pps fill 1 s.
ENDLESS = {"protocols": {"modbus": {"unit_ids": [1, 2]}}, "fault": "endless_more_follows"}


def rates() -> Scenario:
    """One scan, a class per per-device rate, each assigned by /24: 0.2, 1, 2, 10 pps and 1 pps with burst 2."""
    classes = {
        # 4 packets (connect, basic for units 1 and 2, close): 15.3 s
        "r0_2": (80, 2, {"pps": 0.2}, {"protocols": {"modbus": {"unit_ids": [1, 2], "conformity": 1}}}),
        "r1": (81, 3, {"pps": 1}, {"protocols": {"modbus": {"unit_ids": [1, 2]}}}),  # 6 packets
        "r2": (82, 3, {"pps": 2}, ENDLESS),
        "r10": (83, 3, {"pps": 10}, ENDLESS),
        "r1b2": (84, 3, {"pps": 1, "burst": 2}, {"protocols": {"modbus": {"unit_ids": [1, 2]}}}),
    }
    groups = [group(block, n, device_class=name, **devices) for name, (block, n, _, devices) in classes.items()]
    scan_profile = profile(
        {name: {"connect_gap_s": 0, **limits} for name, (_, _, limits, _) in classes.items()},
        {cidr(block): name for name, (block, *_) in classes.items()},
        include=["127.0.80.0/20"], unit_ids=[1, 2], global_pps=200, retries=0, max_devices_in_flight=64,
    )
    return Scenario("rates", plant("rates", *groups), scan_profile, [a for g in groups for a in addresses(g)])


def shared_caps(fleet: int = 20, others: int = 8) -> Scenario:
    """`fleet` devices of a class with class_pps 5 and `others` of another class, under global_pps 8: 3 packets each
    (connect, basic stream, close), so both shared caps bind."""
    basic = {"modbus": {"conformity": 1}}
    groups = [group(85, fleet, device_class="fleet", protocols=basic),
              group(86, others, device_class="other", protocols=basic)]
    scan_profile = profile(
        {"fleet": {"pps": 2, "class_pps": 5, "connect_gap_s": 0}, "other": {"pps": 2, "connect_gap_s": 0}},
        {cidr(85): "fleet", cidr(86): "other"},
        include=["127.0.80.0/20"], global_pps=8, retries=0, max_devices_in_flight=64,
    )
    return Scenario("shared caps", plant("shared", *groups), scan_profile, [a for g in groups for a in addresses(g)])


def sessions() -> Scenario:
    """All three probes: multi-protocol devices with no connection gap, S7 CPUs at 2 and 1 pps, a silent device, and
    a listening device on an excluded address (targeted explicitly)."""
    everything = {"modbus": {}, "s7": {"pdu_size": 240}, "enip": {}}
    groups = {
        "multi": group(90, 2, device_class="multi", protocols=everything),
        "s7rate": group(91, 2, device_class="s7rate", protocols={"s7": {"pdu_size": 240}}),
        # still being scanned seconds after the silent device trips: there is time for a breaker leak to show
        "s7slow": group(94, 1, device_class="s7slow", protocols={"s7": {"pdu_size": 240}}),
        "silent": group(92, 1, device_class="silent", protocols=everything, fault="silent"),
        "excluded": group(93, 1, device_class="excluded", protocols={"modbus": {}, "enip": {}}),
    }
    scan_profile = profile(
        {
            "multi": {"pps": 10, "connect_gap_s": 0},
            "s7rate": {"pps": 2, "connect_gap_s": 0.5},  # the gap no longer than an interval: it cannot dominate
            "s7slow": {"pps": 1, "connect_gap_s": 1},
            "silent": {"pps": 10, "connect_gap_s": 0},
        },
        {cidr(90): "multi", cidr(91): "s7rate", cidr(92): "silent", cidr(94): "s7slow"},
        include=["127.0.80.0/20"], exclude=[cidr(93)], protocols=list(PORTS), global_pps=100,
        timeouts={"connect_s": 0.5, "response_s": 0.5}, retries=1, breaker={"failures": 2},
        max_devices_in_flight=64,
    )
    targets = [a for g in groups.values() for a in addresses(g)]
    return Scenario("sessions", plant("sessions", *groups.values()), scan_profile, targets)


def deadline(devices: int = 12, deadline_s: float = 5.0) -> Scenario:
    """Many slow devices (1 pps, 6 packets each, 8 in flight, global_pps 6) and a deadline long before the end."""
    devs = group(95, devices, device_class="slow", protocols={"modbus": {"unit_ids": [1, 2]}})
    scan_profile = profile(
        {"slow": {"pps": 1, "connect_gap_s": 0}}, {cidr(95): "slow"},
        include=["127.0.80.0/20"], unit_ids=[1, 2], global_pps=6, retries=0, max_devices_in_flight=8,
        timeouts={"connect_s": 1, "response_s": 1},
    )
    return Scenario("deadline", plant("deadline", devs), scan_profile, addresses(devs), deadline_s)


def plant64_one_class() -> Scenario:
    """64 Modbus devices of one class, 4 packets each at 2 pps, under global_pps 20."""
    devs = group(98, 64, device_class="plc", protocols={"modbus": {}})
    scan_profile = profile(
        {"plc": {"pps": 2, "connect_gap_s": 0}}, {cidr(98): "plc"},
        include=["127.0.96.0/22"], global_pps=20, retries=0, max_devices_in_flight=64,
    )
    return Scenario("64 devices, one class", plant("plant64-one-class", devs), scan_profile, addresses(devs))


def plant64() -> Scenario:
    """64 Modbus devices, 4 packets each: 32 PLCs at 2 pps (class_pps 12) and 32 meters at 1 pps, global_pps 20."""
    identity = {"modbus": {}}
    groups = [group(96, 32, device_class="plc", protocols=identity),
              group(97, 32, device_class="meter", protocols=identity)]
    scan_profile = profile(
        {"plc": {"pps": 2, "class_pps": 12, "connect_gap_s": 0}, "meter": {"pps": 1, "connect_gap_s": 0}},
        {cidr(96): "plc", cidr(97): "meter"},
        include=["127.0.96.0/22"], global_pps=20, retries=0, max_devices_in_flight=64,
    )
    targets = [a for g in groups for a in addresses(g)]
    return Scenario("64 devices, two classes", plant("plant64", *groups), scan_profile, targets)
