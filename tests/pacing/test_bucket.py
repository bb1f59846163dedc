"""TokenBucket and Limiter on virtual time: window caps (alone and composite), rates below 1, fairness, cutoff."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import math
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
import vtime
from hypothesis import given, settings
from hypothesis import strategies as st
from limiter_reference import ScanningLimiter

from otprobe.errors import ScanAborted
from otprobe.pacing.bucket import Limiter, TokenBucket

RATES = (0.2, 0.5, 1.0, 2.0, 3.3, 10.0)
WINDOWS = (0.5, 1.0, 2.0, 5.0, 7.5)


def max_in_window(times: list[float], window: float) -> int:
    """Most grants in any half-open window [t, t + window) (the worst window starts at a grant)."""
    times = sorted(times)
    return max((bisect.bisect_left(times, t + window) - i for i, t in enumerate(times)), default=0)


def cap(rate: float, burst: int, window: float) -> int:
    return math.ceil(rate * window) + burst - 1


async def _grant_times(limiter: Limiter, plan: list[tuple[float, tuple[TokenBucket, ...]]]) -> list[float]:
    """Each entry arrives at START + offset and asks for one token from its buckets; returns the grant times."""
    loop = asyncio.get_running_loop()

    async def one(offset: float, buckets: tuple[TokenBucket, ...]) -> float:
        await asyncio.sleep(offset)
        granted = await limiter.submit(buckets)
        assert granted == loop.time()
        return granted

    return list(await asyncio.gather(*(one(offset, buckets) for offset, buckets in plan)))


arrivals = st.lists(st.floats(min_value=0, max_value=20, allow_nan=False), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(rate=st.sampled_from(RATES), burst=st.integers(1, 3), offsets=arrivals)
def test_single_bucket_never_exceeds_its_window_cap(rate: float, burst: int, offsets: list[float]) -> None:
    bucket = TokenBucket(rate, burst)
    times = vtime.run(_grant_times(Limiter(), [(o, (bucket,)) for o in offsets]))
    assert len(times) == len(offsets)
    for window in WINDOWS:
        assert max_in_window(times, window) <= cap(rate, burst, window), (window, times)


def test_rate_below_one_spaces_packets_five_seconds_apart_without_burst() -> None:
    bucket = TokenBucket(0.2)
    times = vtime.run(_grant_times(Limiter(), [(0.0, (bucket,))] * 4))
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert times[0] == vtime.START
    assert all(gap == pytest.approx(5.0) and gap >= 5.0 for gap in gaps), gaps


def test_idle_bucket_does_not_save_up_a_burst() -> None:
    bucket = TokenBucket(1.0)
    times = vtime.run(_grant_times(Limiter(), [(0.0, (bucket,)), (60.0, (bucket,)), (60.0, (bucket,))]))
    assert times[2] - times[1] >= 1.0


@settings(max_examples=40, deadline=None)
@given(
    plan=st.lists(
        st.tuples(st.floats(min_value=0, max_value=10, allow_nan=False), st.integers(0, 5)), min_size=1, max_size=60
    ),
    device_rate=st.sampled_from((0.5, 1.0, 2.0, 10.0)),
    class_rate=st.sampled_from((1.0, 3.0, 5.0)),
    global_rate=st.sampled_from((2.0, 4.0, 20.0)),
)
def test_device_class_and_global_caps_hold_together(
    plan: list[tuple[float, int]], device_rate: float, class_rate: float, global_rate: float
) -> None:
    # Six devices, the first three in class A (with an aggregate cap), the rest in class B (without).
    devices = [TokenBucket(device_rate) for _ in range(6)]
    class_a, everyone = TokenBucket(class_rate), TokenBucket(global_rate)
    buckets = {d: (devices[d], class_a, everyone) if d < 3 else (devices[d], everyone) for d in range(6)}
    times = vtime.run(_grant_times(Limiter(), [(offset, buckets[d]) for offset, d in plan]))
    by_device: dict[int, list[float]] = defaultdict(list)
    for (_, d), t in zip(plan, times, strict=True):
        by_device[d].append(t)
    class_a_times = [t for d in range(3) for t in by_device[d]]
    for window in WINDOWS:
        assert max_in_window(times, window) <= cap(global_rate, 1, window)
        assert max_in_window(class_a_times, window) <= cap(class_rate, 1, window)
        for device_times in by_device.values():
            assert max_in_window(device_times, window) <= cap(device_rate, 1, window)


async def _saturate(limiter: Limiter, buckets: tuple[TokenBucket, ...], until: float) -> list[float]:
    """One device with work always queued: asks again as soon as it is granted, until `until` (virtual)."""
    loop = asyncio.get_running_loop()
    times: list[float] = []
    while loop.time() < until:
        times.append(await limiter.submit(buckets))
    return times


def test_many_waiters_share_fairly_and_nobody_starves() -> None:
    everyone = TokenBucket(5.0)
    devices = [TokenBucket(10.0) for _ in range(20)]
    slow = TokenBucket(0.2)

    async def scenario() -> tuple[list[list[float]], list[float]]:
        limiter = Limiter()
        until = vtime.START + 60
        fast = [_saturate(limiter, (d, everyone), until) for d in devices]
        results = await asyncio.gather(_saturate(limiter, (slow, everyone), until), *fast)
        return results[1:], results[0]

    fast, slow_times = vtime.run(scenario())
    counts = [len(times) for times in fast]
    # 20 devices wanting 10 pps each share 5 pps: round-robin, every device within one grant of the others.
    assert max(counts) - min(counts) <= 1, counts
    # The slow device still gets >= 90 % of its 0.2 pps although the shared bucket is oversubscribed 40 times.
    assert len(slow_times) >= 0.9 * 0.2 * 60, len(slow_times)


@pytest.mark.parametrize("rate", [0.2, 1.0, 2.0, 10.0])
def test_a_device_with_queued_work_gets_at_least_90_percent_of_its_cap(rate: float) -> None:
    async def scenario() -> list[float]:
        limiter = Limiter()
        # Other devices keep the global bucket busy, below its cap.
        others = [_saturate(limiter, (TokenBucket(1.0), everyone), vtime.START + 60) for _ in range(10)]
        results = await asyncio.gather(_saturate(limiter, (TokenBucket(rate), everyone), vtime.START + 60), *others)
        return results[0]

    everyone = TokenBucket(50.0)
    times = vtime.run(scenario())
    achieved = (len(times) - 1) / (times[-1] - times[0])
    assert achieved >= 0.9 * rate, achieved


def test_cutoff_refuses_what_cannot_be_granted_in_time_but_never_a_close() -> None:
    async def scenario() -> tuple[float, BaseException | float, float]:
        limiter = Limiter()
        bucket = TokenBucket(0.5)  # one token every 2 s
        limiter.stop(at=vtime.START + 3.0)
        first = await limiter.submit((bucket,), reserve=1.0)  # at START: fits
        # Next token at START + 2, but it needs 1.5 s after its grant: 3.5 > cutoff 3.0, refused at once.
        try:
            second: BaseException | float = await limiter.submit((bucket,), reserve=1.5)
        except ScanAborted as exc:
            second = exc
        close = await limiter.submit((bucket,), reserve=None)
        return first, second, close

    first, second, close = vtime.run(scenario())
    assert first == vtime.START
    assert isinstance(second, ScanAborted)
    assert close == pytest.approx(vtime.START + 2.0)


def test_graceful_stop_fails_waiting_requests_immediately() -> None:
    async def scenario() -> tuple[BaseException, float]:
        limiter = Limiter()
        bucket = TokenBucket(0.2)
        await limiter.submit((bucket,))
        waiting = asyncio.ensure_future(limiter.submit((bucket,)))
        await asyncio.sleep(1.0)
        limiter.stop()
        with pytest.raises(ScanAborted) as caught:
            await waiting
        return caught.value, asyncio.get_running_loop().time()

    error, when = vtime.run(scenario())
    assert isinstance(error, ScanAborted)
    assert when == vtime.START + 1.0  # not at the token's time (START + 5)


def test_a_cancelled_waiter_gives_its_turn_away() -> None:
    async def scenario() -> list[float]:
        limiter = Limiter()
        bucket = TokenBucket(1.0)
        await limiter.submit((bucket,))
        withdrawn = asyncio.ensure_future(limiter.submit((bucket,)))
        await asyncio.sleep(0.1)
        withdrawn.cancel()
        return [await limiter.submit((bucket,)), await limiter.submit((bucket,))]

    second, third = vtime.run(scenario())
    assert second == pytest.approx(vtime.START + 1.0)
    assert third == pytest.approx(vtime.START + 2.0)


def test_multi_packet_grant_counts_every_packet() -> None:
    async def scenario() -> list[float]:
        limiter = Limiter()
        bucket = TokenBucket(2.0, burst=2)
        return [await limiter.submit((bucket,), count=2), await limiter.submit((bucket,))]

    burst, after = vtime.run(scenario())
    assert burst == vtime.START
    # Two packets at once used the whole burst: the next may not come before one interval.
    assert after - burst >= 0.5


def test_rejects_nonsense_limits() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0)
    with pytest.raises(ValueError):
        TokenBucket(1.0, burst=0)


def test_open_sessions_go_first_within_their_class_but_classes_take_turns_by_age() -> None:
    """Shared bucket at 1/s; queued in this order: a PLC connect (priority 1), a meter session packet (priority 0),
    a PLC session packet (priority 0). Within the PLC class the session packet overtakes the connect and takes the
    class's first place in the queue; the meter keeps its place by age. (A plan-wide priority would have served the
    meter first, and one class's open sessions could then hold back another class's connections for ever.)"""

    async def order() -> list[str]:
        limiter, shared = Limiter(), TokenBucket(1.0)
        await limiter.submit((shared,))  # the bucket is busy until START + 1
        queued = [("plc connect", 1, "plc"), ("meter packet", 0, "meter"), ("plc packet", 0, "plc")]
        futures = {name: limiter.submit((TokenBucket(10.0), shared), priority=p, group=g) for name, p, g in queued}
        granted = await asyncio.gather(*futures.values())
        return [name for _, name in sorted(zip(granted, futures, strict=True))]

    assert vtime.run(order()) == ["plc packet", "meter packet", "plc connect"]


# -- the heaps grant in the same order as a full scan of the waiters ----------------------------------------------


def _grant_order(make: Callable[[], Any], plan: list[tuple[float, int, int]], device_rate: float,
                 class_rate: float, global_rate: float) -> list[float]:
    """Six devices (the first three in class A, with a class bucket, the rest in class B), one request per plan
    entry (arrival offset, device, priority), grouped by class as the scheduler groups them; the grant times."""
    devices = [TokenBucket(device_rate) for _ in range(6)]
    class_a, everyone = TokenBucket(class_rate), TokenBucket(global_rate)

    async def scenario() -> list[float]:
        limiter = make()

        async def one(offset: float, d: int, priority: int) -> float:
            await asyncio.sleep(offset)
            shared = (class_a, everyone) if d < 3 else (everyone,)
            return await limiter.submit((devices[d], *shared), priority=priority, group=d < 3)

        # arrivals a little apart, in plan order: the loop resumes sleepers due at the same instant in no set order
        return list(await asyncio.gather(*(one(o + (i + 1) * 1e-5, d, p) for i, (o, d, p) in enumerate(plan))))

    return vtime.run(scenario())


@settings(max_examples=80, deadline=None)
@given(
    plan=st.lists(st.tuples(st.integers(0, 100).map(lambda tenths: tenths / 10), st.integers(0, 5), st.just(0)),
                  min_size=1, max_size=60),
    device_rate=st.sampled_from((0.5, 1.0, 2.0, 10.0)),
    class_rate=st.sampled_from((1.0, 3.0, 5.0)),
    global_rate=st.sampled_from((2.0, 4.0, 20.0)),
)
def test_the_heaps_grant_exactly_as_a_full_scan_of_the_waiters_would(
    plan: list[tuple[float, int, int]], device_rate: float, class_rate: float, global_rate: float
) -> None:
    # Same priority everywhere: the turn is age alone, so both must grant every request at the same instant. With
    # priorities the heaps differ from the scan on purpose in one point: a waiter its own bucket still holds back
    # holds no place in its class's queue (the test below).
    rates = (device_rate, class_rate, global_rate)
    assert _grant_order(Limiter, plan, *rates) == _grant_order(ScanningLimiter, plan, *rates)


def test_a_waiter_its_own_bucket_holds_back_keeps_no_place_in_its_class() -> None:
    """Shared bucket at 1/s, busy until START + 1. Queued in this order: a PLC connect (priority 1, can go), a meter
    packet, a PLC session packet whose own device bucket holds it until START + 1.5. The PLC connect keeps the
    PLC class's first place: the session packet was not ready when the place came up. (The full scan let the waiting
    session packet take that place and sent the meter first.) Once it can go, the session packet goes next."""

    async def order() -> list[str]:
        limiter, shared = Limiter(), TokenBucket(1.0)
        await limiter.submit((shared,))
        busy_device = TokenBucket(2.0)
        await limiter.submit((busy_device,))  # its next token at START + 0.5...
        busy_device.departed(vtime.START + 1.0)  # ...pushed to START + 1.5 by a late departure
        queued = [("plc connect", TokenBucket(10.0), 1, "plc"), ("meter packet", TokenBucket(10.0), 0, "meter"),
                  ("plc packet", busy_device, 0, "plc")]
        futures = {name: limiter.submit((own, shared), priority=p, group=g) for name, own, p, g in queued}
        granted = await asyncio.gather(*futures.values())
        return [name for _, name in sorted(zip(granted, futures, strict=True))]

    assert vtime.run(order()) == ["plc connect", "meter packet", "plc packet"]
