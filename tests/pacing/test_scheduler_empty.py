"""Empty addresses on virtual time: what a host that refuses (RST) or drops everything receives, and that sweeping
them neither takes the device sessions' slots nor loosens any per-device cap."""

from __future__ import annotations

import asyncio
import itertools
import math
from dataclasses import replace

import vtime
from fakes import ScriptedProbe, Wire
from test_bucket import max_in_window

from otprobe.contract import Kind, Operation, Probe
from otprobe.link import Link
from otprobe.model import Observation, Status, Target
from otprobe.pacing import ClassLimits, ScanConfig, ScanResult, Scheduler, plan_scan
from otprobe.pacing.scheduler import ABSENT_NOTE
from otprobe.probes import names, probe_class
from otprobe.profile import load_profile, scan_config
from otprobe.scan import build_probes

SLOW = ClassLimits(pps=0.5, burst=1, class_pps=None, connect_gap_s=2.0, max_session_s=30.0)
CONFIG = replace(scan_config(), global_pps=100.0, classes={"unknown": SLOW}, max_devices_in_flight=1,
                 max_addresses_in_flight=16, retries=1, breaker_failures=2)


class EmptyHost(Probe):
    """A probe of one transport whose every packet the `Wire` records; a host in `dropping` ignores it, any other
    refuses it (RST or ICMP port unreachable), a host in `answering` answers it."""

    name = "modbus"  # the allowlist is keyed by protocol; these are Modbus's transport and FC43 codes
    default_port = 1502
    operations = (
        Operation("connect", "tcp:connect", Kind.CONNECT),
        Operation("close", "tcp:close", Kind.CLOSE),
        Operation("datagram", "fc:0x2B/mei:0x0E", Kind.DATAGRAM),
    )

    def __init__(self, wire: Wire, transport: str, dropping: set[str], answering: frozenset[str] = frozenset()):
        super().__init__()
        self.transports = (transport,)
        self.wire, self.dropping, self.answering = wire, dropping, answering

    def max_packets(self) -> int:
        return 2 if "tcp" in self.transports else 1

    async def run(self, link: Link, target: Target) -> Observation:
        status = Status.IDENTIFIED if target.ip in self.answering else Status.REFUSED
        if "tcp" in self.transports:
            try:
                # as a real connect: the SYN leaves first in the body, then the wait for the device's answer
                async with asyncio.timeout(link.timeouts.connect_s), link.op("connect"):
                    self.wire.record(target.ip, Kind.CONNECT)
                    if target.ip in self.dropping:
                        await asyncio.Event().wait()
                    if status is Status.REFUSED:
                        raise ConnectionRefusedError("RST")
            except (TimeoutError, ConnectionRefusedError) as exc:
                self.wire.open_now[target.ip] -= 1  # no connection came of it
                return Observation(target.ip, self.name, self.port,
                                   Status.TIMEOUT if isinstance(exc, TimeoutError) else Status.REFUSED)
            async with link.op("close"):
                self.wire.record(target.ip, Kind.CLOSE)
            return Observation(target.ip, self.name, self.port, status)
        async with link.op("datagram"):
            self.wire.record(target.ip, Kind.DATAGRAM)
        if target.ip in self.dropping:
            await asyncio.sleep(link.timeouts.response_s)
            return Observation(target.ip, self.name, self.port, Status.TIMEOUT)
        return Observation(target.ip, self.name, self.port, status)


def hosts(n: int, subnet: int = 1) -> list[Target]:
    return [Target(f"127.0.{subnet}.{i + 1}") for i in range(n)]


def sweep(targets: list[Target], dropping: set[str], *, answering: frozenset[str] = frozenset(),
          config: ScanConfig = CONFIG, live: list[Target] = (), tcp: int = 3,
          udp: int = 1) -> tuple[ScanResult, Wire]:
    wire = Wire()
    probes: list[Probe] = [EmptyHost(wire, "tcp", dropping, answering) for _ in range(tcp)]
    probes += [EmptyHost(wire, "udp", dropping, answering) for _ in range(udp)]
    sessions = {t.ip: [ScriptedProbe(wire)] for t in live}

    async def go() -> ScanResult:
        return await Scheduler([*live, *targets], probes, config, jobs=sessions).run()

    return vtime.run(go()), wire


def kinds(wire: Wire, ip: str) -> list[Kind]:
    return [kind for _, device, kind in wire.packets if device == ip]


def test_a_host_that_drops_its_first_connection_attempt_is_absent_and_gets_one_datagram_per_udp_probe() -> None:
    [target] = hosts(1)
    result, wire = sweep([target], {target.ip})
    # the first connection attempt and its one retry; no other TCP probe; one datagram for the UDP-only probe
    assert kinds(wire, target.ip) == [Kind.CONNECT, Kind.CONNECT, Kind.DATAGRAM]
    assert result.absent == [target.ip] and result.tripped == [] and result.complete
    statuses = [(o.status, o.error) for o in result.observations]
    assert statuses.count((Status.TRIPPED, ABSENT_NOTE)) == 2  # the two TCP probes never tried
    assert [s for s, _ in statuses].count(Status.TIMEOUT) == 2


def test_a_refusing_host_is_alive_each_probe_gets_one_packet_and_nothing_is_retried() -> None:
    [target] = hosts(1)
    result, wire = sweep([target], set())
    assert kinds(wire, target.ip) == [Kind.CONNECT] * 3 + [Kind.DATAGRAM]
    assert [o.status for o in result.observations] == [Status.REFUSED] * 4
    assert result.absent == [] and result.tripped == []


def test_a_udp_answer_proves_a_silent_host_alive_and_its_tcp_probes_run_after_all() -> None:
    [target] = hosts(1)
    udp_only = {target.ip}
    wire = Wire()
    probes: list[Probe] = [EmptyHost(wire, "tcp", udp_only) for _ in range(2)]
    answering = EmptyHost(wire, "udp", set(), frozenset(udp_only))
    result = vtime.run(Scheduler([target], [*probes, answering], CONFIG).run())
    assert kinds(wire, target.ip) == [Kind.CONNECT, Kind.CONNECT, Kind.DATAGRAM, Kind.CONNECT]
    assert result.absent == []
    assert [o.status for o in result.observations if o.protocol == "modbus"].count(Status.IDENTIFIED) == 1


def test_empty_addresses_keep_every_per_device_cap_and_connection_gap_at_the_receiver() -> None:
    targets = hosts(40)
    dropping = {t.ip for t in targets[::2]}
    result, wire = sweep(targets, dropping)
    assert result.complete and len(result.absent) == 20
    for t in targets:
        times = wire.times(t.ip)
        assert max_in_window(times, 1.0) <= math.ceil(SLOW.pps), t.ip
        starts = [time for time, ip, kind in wire.packets if ip == t.ip and kind is Kind.CONNECT]
        assert all(b - a >= SLOW.connect_gap_s for a, b in itertools.pairwise(starts)), t.ip


def test_empty_addresses_do_not_take_the_device_session_slots() -> None:
    # one device session slot; a live device with a long session and 30 silent addresses beside it
    live = [Target("127.0.2.1")]
    targets = hosts(30)
    result, wire = sweep(targets, {t.ip for t in targets}, live=live)
    assert result.complete and len(result.absent) == 30
    sweeping = [time for time, ip, _ in wire.packets if ip.startswith("127.0.1.")]
    device = wire.times(live[0].ip)
    # the sweep ran beside the device's session, not after it, and many addresses were in flight at once
    assert min(sweeping) < max(device)
    per_address_s = 2 * CONFIG.timeouts.connect_s + CONFIG.backoff_s + CONFIG.timeouts.response_s
    assert result.elapsed_s < 30 * per_address_s / 4, result.elapsed_s


def test_the_plan_bound_holds_when_every_attempt_is_retried_and_the_device_budget_binds() -> None:
    # every attempt ends with a reset after its whole exchange: each job is retried; the budget stops the rest
    devices = hosts(4)
    wire = Wire()
    script = {t.ip: [Status.RESET] * 40 for t in devices}
    probes = [ScriptedProbe(wire, script) for _ in range(6)]  # 3 packets each: 36 with one retry each
    config = replace(CONFIG, max_packets_per_device=14, breaker_failures=10, max_devices_in_flight=4,
                     classes={"unknown": replace(SLOW, pps=10.0, connect_gap_s=0.0)})
    plan = plan_scan(devices, probes, config)
    result = vtime.run(Scheduler(devices, probes, config).run())
    assert plan.packets_per_device == 14
    for t in devices:
        assert len(wire.times(t.ip)) <= plan.packets_per_device
        assert len(wire.times(t.ip)) >= 12  # four attempts ran: the budget, not the test, ended them
    assert {o.error for o in result.observations if o.status is Status.TRIPPED} == {
        "this device's packet budget (14 per scan) has no room for this probe"}


def test_the_default_profile_sends_a_device_at_most_24_packets_with_every_probe_on() -> None:
    profile = load_profile("default")
    probes = [*build_probes(profile), probe_class("snmp")({"communities": ["public"]})]
    assert sorted(p.name for p in probes) == sorted(names())  # every registered probe, SNMP with a community
    assert sum(p.max_packets() for p in probes) > 24  # the probes alone would allow more: the budget binds
    plan = plan_scan(hosts(1), probes, scan_config(profile))
    assert plan.packets_per_device == 24
