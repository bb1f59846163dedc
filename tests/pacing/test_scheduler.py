"""Scheduler and plan on virtual time with scripted fake probes: what each device would have seen on the wire."""

from __future__ import annotations

import asyncio
import math
import socket
from dataclasses import replace

import pytest
import vtime
from fakes import ScriptedProbe, Step, Wire
from test_bucket import max_in_window

from otprobe.contract import Kind
from otprobe.errors import PolicyViolation
from otprobe.model import Observation, Status, Target
from otprobe.pacing import ClassLimits, ScanConfig, ScanResult, Scheduler, plan_scan
from otprobe.profile import scan_config

DEFAULTS = scan_config()  # the profile's defaults; each config below sets what its tests measure
PLC = ClassLimits(pps=2.0, burst=1, class_pps=5.0, connect_gap_s=1.0, max_session_s=5.0)
# global and in-flight caps too wide to bind, so that the plc class's own caps are what a test sees
LOOSE = replace(DEFAULTS, global_pps=50.0, max_devices_in_flight=64, classes={**DEFAULTS.classes, "plc": PLC})
SLOW = ClassLimits(pps=1.0, burst=1, class_pps=None, connect_gap_s=1.0, max_session_s=10.0)
CONFIG = replace(LOOSE, global_pps=8.0, classes={"plc": PLC, "unknown": SLOW}, backoff_s=1.0)


def targets(n: int, device_class: str = "plc", subnet: int = 1) -> list[Target]:
    return [Target(f"127.0.{subnet}.{i + 1}", device_class) for i in range(n)]


def scan(
    devices: list[Target],
    scripts: dict[str, list[Step]] | None = None,
    config: ScanConfig = CONFIG,
    probes: int = 2,
    control: object = None,
) -> tuple[ScanResult, Wire, list[ScriptedProbe], list[Observation]]:
    wire = Wire()
    # One script shared by all probe instances: each attempt, whichever probe makes it, takes the next step.
    shared = {ip: list(steps) for ip, steps in (scripts or {}).items()}
    fakes = [ScriptedProbe(wire, shared) for _ in range(probes)]
    seen: list[Observation] = []

    async def go() -> ScanResult:
        scheduler = Scheduler(devices, fakes, config, on_observation=seen.append)
        if control is not None:
            return await control(scheduler)  # type: ignore[operator]
        return await scheduler.run()

    return vtime.run(go()), wire, fakes, seen


def attempts(fakes: list[ScriptedProbe], ip: str) -> int:
    return sum(f.attempts.get(ip, 0) for f in fakes)


def test_caps_gaps_and_one_connection_per_device_hold_on_the_wire() -> None:
    devices = targets(6) + targets(3, "unknown", subnet=2)
    result, wire, _, seen = scan(devices)
    assert result.complete and not result.not_covered and not result.tripped
    assert [o.status for o in result.observations] == [Status.IDENTIFIED] * 18
    assert seen == result.observations  # reported as each one completed
    assert result.packets_sent == len(wire.packets) == 9 * 2 * 3
    assert all(wire.most_open[t.ip] == 1 for t in devices)
    for t in devices:
        pps = CONFIG.limits_for(t.device_class).pps
        assert max_in_window(wire.times(t.ip), 1.0) <= math.ceil(pps)
        closes = [time for time, ip, kind in wire.packets if ip == t.ip and kind is Kind.CLOSE]
        connects = [time for time, ip, kind in wire.packets if ip == t.ip and kind is Kind.CONNECT]
        assert connects[1] - closes[0] >= 1.0
    plc_times = [time for time, ip, _ in wire.packets if ip.startswith("127.0.1.")]
    assert max_in_window(plc_times, 1.0) <= 5
    assert max_in_window(wire.times(), 1.0) <= 8


def test_the_scan_stays_within_its_plan_and_close_to_the_lower_bound() -> None:
    devices = targets(16) + targets(16, "unknown", subnet=2)
    result, wire, fakes, _ = scan(devices)
    plan = plan_scan(devices, fakes, CONFIG)
    assert result.complete
    assert len(wire.packets) <= plan.total_packets
    assert plan.min_seconds <= result.elapsed_s <= 1.15 * plan.min_seconds, (result.elapsed_s, plan.min_seconds)


def test_open_sessions_go_first_when_the_shared_caps_are_oversubscribed() -> None:
    # 32 devices want 48 pps through a global cap of 8: rather than all connecting and crawling together,
    # a few sessions run at a time and each finishes close to its device's own pace (3 packets at 2 pps: 1 s).
    devices = targets(16) + targets(16, "unknown", subnet=2)
    _, wire, _, _ = scan(devices)
    opened: dict[str, float] = {}
    longest, open_now, most_open = 0.0, 0, 0
    for time, ip, kind in sorted(wire.packets):
        if kind is Kind.CONNECT:
            opened[ip] = time
            open_now += 1
            most_open = max(most_open, open_now)
        elif kind is Kind.CLOSE:
            longest = max(longest, time - opened[ip])
            open_now -= 1
    assert longest < 2.5, longest
    assert most_open <= 8, most_open


def test_breaker_trips_after_consecutive_timeouts_and_the_device_gets_nothing_more() -> None:
    devices = targets(2)
    silent = devices[0].ip
    result, wire, fakes, _ = scan(devices, {silent: [Status.TIMEOUT] * 10}, probes=3)
    assert result.tripped == [silent]
    statuses = [o.status for o in result.observations if o.target == silent]
    assert statuses == [Status.TIMEOUT, Status.TRIPPED, Status.TRIPPED]
    assert attempts(fakes, silent) == 2  # the first job's attempt and its one retry; nothing after
    assert wire.open_now[silent] == 0  # the timed-out sessions still closed
    assert [o.status for o in result.observations if o.target != silent] == [Status.IDENTIFIED] * 3
    assert result.complete  # tripped is a result, not a gap


def test_a_definitive_answer_resets_the_breaker_count() -> None:
    ip = targets(1)[0].ip
    result, _, fakes, _ = scan(targets(1), {ip: [Status.TIMEOUT, 0.01, Status.TIMEOUT, Status.TIMEOUT]}, probes=3)
    assert [o.status for o in result.observations] == [Status.IDENTIFIED, Status.TIMEOUT, Status.TRIPPED]
    assert attempts(fakes, ip) == 4


@pytest.mark.parametrize("answer", [Status.NO_IDENTITY, Status.REFUSED, Status.PROTOCOL_ERROR])
def test_no_retry_after_a_definitive_answer(answer: Status) -> None:
    ip = targets(1)[0].ip
    result, _, fakes, _ = scan(targets(1), {ip: [answer, answer]}, probes=1)
    assert [o.status for o in result.observations] == [answer]
    assert attempts(fakes, ip) == 1


def test_retries_are_bounded_and_back_off_exponentially() -> None:
    ip = targets(1)[0].ip
    config = replace(LOOSE, retries=2, breaker_failures=10, backoff_s=3.0, jitter=0.5)
    result, wire, fakes, _ = scan(targets(1), {ip: [Status.RESET] * 5}, config=config, probes=1)
    assert [o.status for o in result.observations] == [Status.RESET]
    assert attempts(fakes, ip) == 3
    connects = [t for t, _, kind in wire.packets if kind is Kind.CONNECT]
    closes = [t for t, _, kind in wire.packets if kind is Kind.CLOSE]
    first_wait, second_wait = connects[1] - closes[0], connects[2] - closes[1]
    assert 3.0 <= first_wait <= 3.0 * 1.5 + 0.5
    assert 6.0 <= second_wait <= 6.0 * 1.5 + 0.5


def test_a_session_is_cut_at_max_session_s_and_still_closes() -> None:
    ip = targets(1)[0].ip
    config = replace(LOOSE, retries=0)
    result, wire, _, _ = scan(targets(1), {ip: [Status.TIMEOUT]}, config=config, probes=1)
    (observation,) = result.observations
    assert observation.status is Status.TIMEOUT
    assert observation.packets_sent == 3
    connect, _, close = wire.times(ip)
    assert 5.0 <= close - connect <= 5.5  # the session limit, then the close's token
    assert wire.open_now[ip] == 0


def test_deadline_makes_the_result_incomplete_and_lists_what_was_not_covered() -> None:
    deadline = vtime.START + 6.0
    config = replace(LOOSE, max_devices_in_flight=1, max_addresses_in_flight=1, deadline=deadline)
    devices = targets(6)
    result, wire, _, _ = scan(devices, config=config)
    assert not result.complete
    # every job is accounted for: a result each, or its address listed as never started
    assert len(result.observations) + 2 * len(result.unstarted) == 12
    assert result.unstarted, "the deadline came before the last devices started"
    aborted = {o.target for o in result.observations if o.status is Status.ABORTED} | set(result.unstarted)
    assert set(result.not_covered) == aborted
    covered = {t.ip for t in devices} - aborted
    assert covered, "the first devices finished before the deadline"
    assert max(wire.times()) <= deadline  # nothing arrives after the deadline, closes included
    assert all(n == 0 for n in wire.open_now.values())


async def _stop_after(scheduler: Scheduler, seconds: float, *, now: bool) -> ScanResult:
    async def stopper() -> None:
        await asyncio.sleep(seconds)
        scheduler.stop(now=now)

    stopping = asyncio.ensure_future(stopper())
    result = await scheduler.run()
    await stopping
    return result


def test_graceful_stop_starts_nothing_new_and_lets_sessions_close() -> None:
    result, wire, _, _ = scan(targets(4), control=lambda s: _stop_after(s, 1.2, now=False), probes=2)
    assert not result.complete and result.not_covered
    assert all(n == 0 for n in wire.open_now.values())
    assert not [t for t, _, kind in wire.packets if kind is not Kind.CLOSE and t > vtime.START + 1.2]


def test_stop_now_cancels_hanging_sessions_which_still_close() -> None:
    devices = targets(3)
    scripts = {t.ip: [Status.TIMEOUT] for t in devices}
    patient = ClassLimits(pps=2.0, burst=1, class_pps=None, connect_gap_s=1.0, max_session_s=60.0)
    config = replace(LOOSE, classes={**DEFAULTS.classes, "plc": patient})
    result, wire, _, _ = scan(devices, scripts, config=config, control=lambda s: _stop_after(s, 3.0, now=True))
    assert result.elapsed_s < 5.0  # did not wait for the 60 s session limit
    assert set(result.not_covered) == {t.ip for t in devices}
    assert all(o.status is Status.ABORTED for o in result.observations)
    assert all(wire.open_now[t.ip] == 0 for t in devices)


def test_cancelling_the_run_task_closes_sockets_and_leaves_an_incomplete_result() -> None:
    devices = targets(3)

    async def cancel_midway(scheduler: Scheduler) -> ScanResult:
        task = asyncio.ensure_future(scheduler.run())
        await asyncio.sleep(0.7)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return scheduler.result()

    result, wire, _, _ = scan(devices, control=cancel_midway)
    assert not result.complete
    assert set(result.not_covered) == {t.ip for t in devices}
    assert all(wire.open_now[t.ip] == 0 for t in devices)


def test_an_error_in_a_device_task_is_raised_as_itself() -> None:
    async def go() -> None:
        wire = Wire()
        scheduler = Scheduler(targets(2), [ScriptedProbe(wire)], CONFIG, in_scope=lambda ip: False)
        with pytest.raises(PolicyViolation, match="outside the scan's scope") as raised:
            await scheduler.run()
        assert wire.packets == []
        assert isinstance(raised.value.__cause__, BaseExceptionGroup)  # the other device's error stays reachable

    vtime.run(go())


def test_plan_counts_worst_case_packets_and_lower_bounds_without_io(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_sockets(*args: object, **kwargs: object) -> None:
        raise AssertionError("the plan opened a socket")

    monkeypatch.setattr(socket, "socket", no_sockets)
    wire = Wire()
    probes = [ScriptedProbe(wire), ScriptedProbe(wire)]  # 3 packets each, one connection each
    plan = plan_scan(targets(10) + targets(2, "unknown", subnet=2), probes, CONFIG)
    assert plan.devices == 12
    assert plan.packets_per_device == 2 * 3 * 2  # retries=1: two attempts
    assert plan.total_packets == 12 * 12
    assert plan.classes["plc"].packets == 10 * 12 and plan.classes["unknown"].devices == 2
    # plc: one device needs 2 x (3-1) x 0.5 s + one gap of 1 s = 3 s; the class's 60 packets at 5 pps need 11.8 s.
    assert plan.classes["plc"].min_seconds == pytest.approx(59 / 5)
    # unknown at 1 pps: (6 - 2) x 1 s + max(gap 1 s, interval 1 s) = 5 s.
    assert plan.classes["unknown"].min_seconds == pytest.approx(5.0)
    assert plan.min_seconds == pytest.approx(59 / 5)
    assert not wire.packets


def test_plan_of_a_16_bit_network_is_quick() -> None:
    devices = [Target(f"127.{i // 256}.{i % 256}.1") for i in range(65536)]
    plan = plan_scan(devices, [ScriptedProbe(Wire())], replace(DEFAULTS, global_pps=50.0))
    assert plan.total_packets == 65536 * 6
    assert plan.min_seconds >= 65536 * 3 / 50 - 1  # the global cap dominates


def test_at_most_max_devices_in_flight_have_connections_open() -> None:
    config = replace(LOOSE, max_devices_in_flight=3)
    result, wire, _, _ = scan(targets(8), config=config)
    assert result.complete
    open_devices: set[str] = set()
    most = 0
    for _, ip, kind in sorted(wire.packets):
        if kind is Kind.CONNECT:
            open_devices.add(ip)
        elif kind is Kind.CLOSE:
            open_devices.discard(ip)
        most = max(most, len(open_devices))
    assert most == 3
