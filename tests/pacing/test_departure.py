"""Spacing from the real send, on virtual time: a packet granted on time that leaves late must not crowd the next.

A task resumes some time after its grant (a busy machine, a long loop turn). The tests model that delay with a
sleep between the grant and the departure, and check the window caps over the departure stamps, which is what a
receiver sees. Each property also checks that the same delays, without departure stamps, do break the cap: the
test would catch a limiter that only spaced its grants.
"""

from __future__ import annotations

import asyncio

import pytest
import vtime
from hypothesis import given, settings
from hypothesis import strategies as st
from test_bucket import cap, max_in_window

from otprobe.errors import ScanAborted
from otprobe.pacing.bucket import AGGREGATE_ABSORB_S, Limiter, TokenBucket

WINDOWS = (0.5, 1.0, 2.0, 5.0)


async def _send(limiter: Limiter, buckets: tuple[TokenBucket, ...], arrive: float, late: float) -> tuple[float, float]:
    """Arrive at START + arrive, get the grant, resume `late` seconds later, depart. Returns (grant, departure)."""
    await asyncio.sleep(arrive)
    granted = await limiter.submit(buckets)
    await asyncio.sleep(late)
    departed = await limiter.depart(buckets)
    assert departed == asyncio.get_running_loop().time()
    return granted, departed


def test_a_late_departure_pushes_the_next_grant_back() -> None:
    async def scenario() -> list[tuple[float, float]]:
        limiter, bucket = Limiter(), TokenBucket(8.0)
        first = await _send(limiter, (bucket,), 0.0, 0.03)  # granted at START, left 30 ms late
        second = await _send(limiter, (bucket,), 0.0, 0.0)
        return [first, second]

    (g1, d1), (g2, d2) = vtime.run(scenario())
    assert d1 == pytest.approx(g1 + 0.03)
    assert g2 == pytest.approx(d1 + 0.125)  # spaced from the real send, not from the first grant
    assert d2 == g2


def test_a_packet_that_would_land_inside_the_previous_interval_waits() -> None:
    async def scenario() -> list[tuple[float, float]]:
        limiter, shared = Limiter(), TokenBucket(8.0)
        # A is granted first and resumes 200 ms late; B, granted one interval later, is on time and leaves first.
        return list(
            await asyncio.gather(
                _send(limiter, (shared,), 0.0, 0.200),
                _send(limiter, (shared,), 0.001, 0.0),
            )
        )

    (ga, da), (gb, db) = vtime.run(scenario())
    assert gb == pytest.approx(ga + 0.125)  # B's grant came before A left
    assert db == gb  # B left on time...
    assert da == pytest.approx(db + 0.125)  # ...and A, resuming inside B's interval, waited for its end
    assert da - ga > 0.200


def test_a_refusable_departure_that_cannot_make_the_cutoff_is_refused() -> None:
    async def scenario() -> None:
        limiter, bucket = Limiter(), TokenBucket(1.0)
        limiter.stop(at=vtime.START + 1.5)
        await _send(limiter, (bucket,), 0.0, 0.0)
        granted = await limiter.submit((bucket,), reserve=0.2)  # at +1: leaves 0.3 s before the cutoff
        await asyncio.sleep(0.4)  # resumes too late to leave room for its reply
        with pytest.raises(ScanAborted):
            await limiter.depart((bucket,), reserve=0.2)
        assert asyncio.get_running_loop().time() == pytest.approx(granted + 0.4)
        await limiter.depart((bucket,), reserve=None)  # a close still leaves

    vtime.run(scenario())


delays = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=5, allow_nan=False),  # arrival
        st.integers(0, 3),  # device
        st.sampled_from((0.0, 0.0, 0.001, 0.02, 0.05, 0.3)),  # resumption delay after the grant
    ),
    min_size=2,
    max_size=50,
)


@settings(max_examples=60, deadline=None)
@given(plan=delays, device_rate=st.sampled_from((1.0, 2.0, 10.0)), global_rate=st.sampled_from((4.0, 8.0, 20.0)),
       burst=st.integers(1, 2))
def test_departures_hold_every_cap_whatever_the_resumption_delays(plan, device_rate, global_rate, burst) -> None:
    async def scenario() -> list[tuple[int, float, float, float]]:
        limiter = Limiter()
        shared = TokenBucket(global_rate)
        devices = [TokenBucket(device_rate, burst) for _ in range(4)]

        async def one(arrive: float, device: int, late: float) -> tuple[int, float, float, float]:
            granted, departed = await _send(limiter, (devices[device], shared), arrive, late)
            return device, granted, departed, late

        return list(await asyncio.gather(*(one(*p) for p in plan)))

    sent = vtime.run(scenario())
    departures = [d for _, _, d, _ in sent]
    for window in WINDOWS:
        assert max_in_window(departures, window) <= cap(global_rate, 1, window), (window, sent)
        for device in range(4):
            mine = [d for dev, _, d, _ in sent if dev == device]
            assert max_in_window(mine, window) <= cap(device_rate, burst, window), (device, window, sent)


def test_the_same_delays_without_departure_stamps_break_the_cap() -> None:
    """The property above is not vacuous: sending at grant + delay, with grants spaced alone, overflows a window."""

    async def scenario() -> list[float]:
        limiter, shared = Limiter(), TokenBucket(8.0)

        async def grant_only(arrive: float, late: float) -> float:
            await asyncio.sleep(arrive)
            return await limiter.submit((shared,)) + late

        return list(await asyncio.gather(grant_only(0.0, 0.05), *(grant_only(0.001 * i, 0.0) for i in range(1, 9))))

    sent = sorted(vtime.run(scenario()))
    assert max_in_window(sent, 1.0) > cap(8.0, 1, 1.0)


def test_an_aggregate_bucket_keeps_its_schedule_through_small_lateness_and_a_device_bucket_does_not() -> None:
    """The second packet leaves 5 ms late (a timer that fired late, a task that resumed late). Through an aggregate
    bucket the third is due one interval after the second was due, so a 2,000 pps global cap is not lost to 1 ms
    timer steps; through a device bucket it is spaced from the late departure, exactly as always."""

    async def scenario(absorb_s: float) -> list[tuple[float, float]]:
        limiter, bucket = Limiter(), TokenBucket(50.0)
        bucket.absorb_s = absorb_s
        return [await _send(limiter, (bucket,), 0.0, late) for late in (0.0, 0.005, 0.0)]

    (_, d1), (g2, d2), (g3, d3) = vtime.run(scenario(AGGREGATE_ABSORB_S))
    assert AGGREGATE_ABSORB_S > 0.005
    assert g2 == pytest.approx(d1 + 0.02) and d2 == pytest.approx(g2 + 0.005)
    assert g3 == pytest.approx(d1 + 0.04) and d3 == g3  # due at d1 + 2/50, not d2 + 1/50
    (_, d1), (_, d2), (g3, _) = vtime.run(scenario(0.0))
    assert g3 == pytest.approx(d2 + 0.02)


@settings(max_examples=60, deadline=None)
@given(plan=delays, global_rate=st.sampled_from((4.0, 8.0, 20.0, 500.0)))
def test_an_absorbing_aggregate_bucket_holds_its_cap_in_every_window_of_half_a_second_with_the_headroom(
    plan, global_rate
) -> None:
    """With the scheduler's 2 % headroom (the bucket runs at 0.98 of the cap) the absorbed lateness costs at most one
    packet more than the exact bucket in short windows, and nothing in windows of 0.5 s and longer."""
    cap_pps = global_rate

    async def scenario() -> list[float]:
        limiter, shared = Limiter(), TokenBucket(0.98 * cap_pps)
        shared.absorb_s = AGGREGATE_ABSORB_S
        sent = await asyncio.gather(*(_send(limiter, (shared,), arrive, late) for arrive, _, late in plan))
        return [d for _, d in sent]

    departures = vtime.run(scenario())
    for window in (0.5, 1.0, 2.0, 5.0):
        assert max_in_window(departures, window) <= cap(cap_pps, 1, window), (window, departures)
