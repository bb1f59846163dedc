"""Per-device Pacer on virtual time: connection gap, deadline refusal, closes always granted, adaptive slowdown."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
import vtime
from fakes import ScriptedProbe, Wire
from test_scheduler import LOOSE, PLC

from otprobe.contract import Kind, Timeouts
from otprobe.errors import ScanAborted
from otprobe.link import Link
from otprobe.model import Observation, Status, Target
from otprobe.pacing import Scheduler
from otprobe.pacing.bucket import Limiter, TokenBucket
from otprobe.pacing.pacer import Pacer, Slowdown

C, R, X = Kind.CONNECT, Kind.REQUEST, Kind.CLOSE


def make(pps: float = 10.0, **kwargs: object) -> tuple[Limiter, Pacer]:
    limiter = Limiter()
    return limiter, Pacer(limiter, TokenBucket(pps), **kwargs)  # type: ignore[arg-type]


async def send(pacer: Pacer, kind: Kind) -> None:
    """What the Link does around each packet: wait for the grant, then clear and stamp the departure."""
    await pacer.acquire(kind, 1)
    await pacer.depart(kind, 1)


async def grants(pacer: Pacer, kinds: list[Kind]) -> list[float]:
    loop = asyncio.get_running_loop()
    times = []
    for kind in kinds:
        await send(pacer, kind)
        times.append(loop.time())
    return times


def test_a_new_connection_waits_the_gap_after_the_previous_one_ended() -> None:
    async def scenario() -> list[float]:
        _, pacer = make(10.0, connect_gap_s=1.5)
        return await grants(pacer, [C, R, X, C, X])

    connect1, request, close1, connect2, close2 = vtime.run(scenario())
    assert request - connect1 >= 0.1 and close1 - request >= 0.1  # the device bucket still spaces packets
    assert connect2 - close1 >= 1.5
    assert connect2 - close1 == pytest.approx(1.5)  # and no more than that
    assert close2 - connect2 >= 0.1


def test_a_connection_the_device_ended_counts_for_the_gap_from_its_end() -> None:
    target = Target("127.0.0.1")
    probe = ScriptedProbe(Wire())

    async def scenario() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        _, pacer = make(10.0, connect_gap_s=1.5)
        link = Link(probe, target, pacer=pacer)
        async with link.op("connect"):
            pass
        async with link.op("read"):
            pass
        await asyncio.sleep(3.0)  # then the device closes its side: the probe sends no close of its own
        ended = loop.time()
        link.connection_ended()
        async with Link(probe, target, pacer=pacer).op("connect"):
            return ended, loop.time()

    ended, reconnected = vtime.run(scenario())
    assert reconnected == pytest.approx(ended + 1.5)


def test_no_operation_starts_that_cannot_finish_and_close_before_the_deadline() -> None:
    async def scenario() -> tuple[list[float], float, float]:
        limiter, pacer = make(1.0, timeouts=Timeouts(connect_s=1.0, response_s=1.0))
        limiter.stop(at=vtime.START + 3.2)
        # START, +1, +2: each leaves >= 1 s for its reply/close, and LATENESS_S (0.1 s) for a busy machine
        granted = await grants(pacer, [C, R, R])
        loop = asyncio.get_running_loop()
        with pytest.raises(ScanAborted):
            await send(pacer, R)  # its token would come at +3: no room left
        refused_at = loop.time()
        await send(pacer, X)
        return granted, refused_at, loop.time()

    granted, refused_at, closed_at = vtime.run(scenario())
    assert granted == pytest.approx([vtime.START, vtime.START + 1, vtime.START + 2])
    assert refused_at == granted[-1]  # refused at once, not after waiting for the token
    assert closed_at == pytest.approx(vtime.START + 3.0)  # the close is paced, and granted even at the cutoff


def test_close_is_granted_after_a_graceful_stop() -> None:
    async def scenario() -> float:
        limiter, pacer = make(2.0)
        await send(pacer, C)
        limiter.stop()
        with pytest.raises(ScanAborted):
            await send(pacer, R)
        await send(pacer, X)
        return asyncio.get_running_loop().time()

    assert vtime.run(scenario()) == pytest.approx(vtime.START + 0.5)


def test_close_survives_a_second_cancellation_and_is_still_paced() -> None:
    target = Target("127.0.0.1")
    wire = Wire()
    probe = ScriptedProbe(wire, {target.ip: [Status.TIMEOUT]})  # hangs on its read until cancelled

    async def scenario() -> asyncio.Task[object]:
        _, pacer = make(0.2)  # one packet every 5 s
        task = asyncio.ensure_future(probe.run(Link(probe, target, pacer=pacer), target))
        await asyncio.sleep(7)  # connect at START, read at START + 5, now hanging
        task.cancel()  # first Ctrl-C: the probe's finally asks for its close (token at START + 10)
        await asyncio.sleep(1)
        task.cancel()  # second Ctrl-C while the close waits for its token
        with pytest.raises(asyncio.CancelledError):
            await task
        return task

    task = vtime.run(scenario())
    assert task.cancelled()
    assert [kind for _, _, kind in wire.packets] == [C, R, X]
    assert wire.times() == pytest.approx([vtime.START, vtime.START + 5, vtime.START + 10])


def test_slow_replies_halve_the_rate_then_normal_replies_restore_it_step_by_step() -> None:
    _, pacer = make(8.0, slowdown=Slowdown(steps=4))
    for _ in range(5):
        pacer.observe(R, 0.010)
    assert pacer.rate == 8.0
    pacer.observe(R, 0.200)  # 20x the baseline
    assert pacer.rate == 4.0
    pacer.observe(R, 0.200)  # still slow: the outlier did not become the baseline
    assert pacer.rate == 2.0
    for _ in range(10):
        pacer.observe(R, 0.200)
    assert pacer.rate == 1.0  # floor: 1/8 of the cap
    climb = []
    for _ in range(5):
        pacer.observe(R, 0.010)
        climb.append(pacer.rate)
    assert climb == [3.0, 5.0, 7.0, 8.0, 8.0]


def test_jitter_below_the_absolute_threshold_is_not_a_slowdown() -> None:
    _, pacer = make(8.0)
    pacer.observe(R, 0.001)
    pacer.observe(R, 0.020)  # 20x, but 20 ms on loopback is noise
    pacer.observe(X, 5.0)  # closes are not replies
    assert pacer.rate == 8.0


def test_a_slowdown_widens_the_spacing_of_the_very_next_packet() -> None:
    async def scenario() -> list[float]:
        _, pacer = make(4.0)
        first = await grants(pacer, [C])
        pacer.observe(C, 0.01)
        pacer.observe(R, 0.01)
        pacer.observe(R, 1.0)  # slow: 4 pps -> 2 pps
        return first + await grants(pacer, [R, R])

    connect, r1, r2 = vtime.run(scenario())
    assert r1 - connect >= 0.5 and r2 - r1 >= 0.5


def test_the_link_reports_reply_times_to_the_pacer() -> None:
    async def scenario() -> float:
        _, pacer = make(4.0)
        target = Target("127.0.0.1")
        probe = ScriptedProbe(Wire(), {target.ip: [0.01, 0.01, 0.5]})
        for _ in range(3):
            await probe.run(Link(probe, target, pacer=pacer), target)
        return pacer.rate

    assert vtime.run(scenario()) == 2.0


def test_every_open_connection_closes_before_the_deadline_when_the_shared_cap_binds() -> None:
    """64 devices under a global cap of 20 pps; each read is answered 0.2 s before the deadline or after the 3 s
    response timeout, whichever comes first, so the last sessions' FINs all want the global bucket at the end:
    closes go first and every open connection's close is owed, and every FIN leaves before the deadline."""
    wire = _converging_replies()
    assert max(wire.times()) <= DEADLINE
    assert all(n == 0 for n in wire.open_now.values())  # every connection closed
    assert sum(1 for _, _, kind in wire.packets if kind is Kind.REQUEST) >= 32  # the reservation is not everything


def test_a_request_leaves_room_for_the_other_open_connections_closes() -> None:
    """Global bucket at 10 pps, cutoff 2 s away, a request needing 1 s after its grant: with 5 connections open
    (its own among them) the 4 other closes need 0.4 s more and it fits; with 12 open they need 1.1 s and it is
    refused at once. A close is never refused."""

    async def scenario(open_connections: int) -> list[object]:
        limiter, everyone = Limiter(), TokenBucket(10.0)
        everyone.owed = open_connections
        limiter.stop(at=vtime.START + 2.0)
        outcomes: list[object] = []
        for reserve in (1.0, None):
            try:
                outcomes.append(await limiter.submit((TokenBucket(10.0), everyone), reserve=reserve))
            except ScanAborted as exc:
                outcomes.append(exc)
        return outcomes

    assert vtime.run(scenario(5))[0] == vtime.START
    refused, close = vtime.run(scenario(12))
    assert isinstance(refused, ScanAborted) and close == vtime.START


def test_the_pacer_owes_a_close_from_its_connect_until_the_connection_ends() -> None:
    async def scenario() -> list[int]:
        limiter, everyone = Limiter(), TokenBucket(100.0)
        pacer = Pacer(limiter, TokenBucket(100.0), (everyone,))
        seen = []
        for kind in (C, R, X, C):
            await send(pacer, kind)
            seen.append(everyone.owed)
        pacer.note_closed()  # the device closed that one
        seen.append(everyone.owed)
        await send(pacer, C)
        pacer.connect_failed()  # and this connect opened nothing
        seen.append(everyone.owed)
        return seen

    assert vtime.run(scenario()) == [1, 1, 0, 1, 0, 0]


DEADLINE = vtime.START + 8.0


class _ConvergingProbe(ScriptedProbe):
    """Connect, one read answered at DEADLINE - 0.2 s (or after the 3 s response timeout, if sooner), close."""

    async def run(self, link: Link, target: Target) -> Observation:
        loop = asyncio.get_running_loop()
        async with link.op("connect"):
            self.wire.record(target.ip, Kind.CONNECT)
        try:
            async with link.op("read"):
                self.wire.record(target.ip, Kind.REQUEST)
                await asyncio.sleep(min(DEADLINE - 0.2 - loop.time(), link.timeouts.response_s))
            return Observation(target.ip, self.name, self.port, Status.IDENTIFIED)
        finally:
            async with link.op("close"):
                self.wire.record(target.ip, Kind.CLOSE)


def _converging_replies() -> Wire:
    devices = [Target(f"127.0.1.{i + 1}", "plc") for i in range(64)]
    fast = replace(PLC, pps=10.0, class_pps=None, connect_gap_s=0.0, max_session_s=30.0)
    config = replace(LOOSE, global_pps=20.0, max_devices_in_flight=64, classes={**LOOSE.classes, "plc": fast},
                     deadline=DEADLINE, retries=0)
    wire = Wire()

    async def go() -> None:
        await Scheduler(devices, [_ConvergingProbe(wire)], config).run()

    vtime.run(go())
    return wire
