"""Measure rate limiters against otprobe's contract: at most ceil(rate) packets in any 1 s window, no burst.

Runs 50 acquisitions at 5 per second, one after another ("seq") and as 50 concurrent tasks ("conc"), on real time,
and prints for each limiter: the most grants in any 1 s and any 0.2 s window (the contract allows 5 and 1), grants
in the first 10 ms, elapsed, CPU seconds.
asyncio-throttle (named by a user as a candidate) is measured when installed (`pip install asyncio-throttle`);
otprobe does not depend on it.

Then the cost of a grant against the number of waiters: n devices (own bucket at 1,000 pps each) queue under a
global bucket that binds, each asking again as soon as it is granted, on a virtual clock (tests/vtime.py) so that
only CPU is measured; CPU microseconds per grant for otprobe's Limiter (heaps) and for the full scan it replaced
(tests/limiter_reference.py). Last, in real time, what the Limiter alone grants with 256 devices at 19.6 pps
queued under a 1,960 pps aggregate bucket (a 2,000 pps global cap less its headroom) for 3 s, with the aggregate
bucket keeping its schedule through AGGREGATE_ABSORB_S of lateness and without. Takes about 90 s.

    .venv/bin/python bench/bench_limiters.py
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Awaitable, Callable

from common import table
from limiter_reference import ScanningLimiter
from vtime import run as run_virtual

from otprobe.pacing import Limiter, TokenBucket
from otprobe.pacing.bucket import AGGREGATE_ABSORB_S

RATE = 5
COUNT = 50
WAITERS = (10, 100, 1000, 10000)
GRANTS = 5000

Acquire = Callable[[], Awaitable[object]]


def max_in_window(times: list[float], window: float = 1.0) -> int:
    times = sorted(times)
    return max(bisect.bisect_left(times, t + window) - i for i, t in enumerate(times))


async def measure(acquire: Acquire, concurrent: bool) -> tuple[int, int, int, float, float]:
    grants: list[float] = []

    async def one() -> None:
        await acquire()
        grants.append(time.monotonic())

    cpu, start = time.process_time(), time.monotonic()
    if concurrent:
        await asyncio.gather(*(one() for _ in range(COUNT)))
    else:
        for _ in range(COUNT):
            await one()
    elapsed, cpu = time.monotonic() - start, time.process_time() - cpu
    first_10ms = sum(1 for t in grants if t - grants[0] < 0.010)
    return max_in_window(grants), max_in_window(grants, 1 / RATE), first_10ms, elapsed, cpu


def limiters() -> list[tuple[str, Callable[[], Acquire]]]:
    def ours() -> Acquire:
        limiter, bucket = Limiter(), TokenBucket(RATE, burst=1)
        # the scheduler's own path: queue for the grant (Limiter.submit), then stamp the departure as a send does
        async def acquire() -> None:
            await limiter.submit((bucket,))
            await limiter.depart((bucket,))

        return acquire

    found: list[tuple[str, Callable[[], Acquire]]] = []
    try:
        from asyncio_throttle import Throttler  # type: ignore[import-not-found]
    except ImportError:
        print("asyncio-throttle is not installed: skipped (pip install asyncio-throttle to compare)")
    else:

        def throttle() -> Acquire:
            return Throttler(rate_limit=RATE, period=1.0).acquire

        found.append((f"asyncio-throttle Throttler({RATE}, 1.0)", throttle))
    found.append((f"otprobe TokenBucket({RATE}, burst=1)", ours))
    return found


def grant_cost(make: Callable[[], Limiter | ScanningLimiter], waiters: int) -> float:
    """CPU microseconds per grant with `waiters` devices always queued under one binding global bucket."""
    everyone = TokenBucket(10_000.0)

    async def device(limiter: Limiter | ScanningLimiter, granted: list[int]) -> None:
        own = TokenBucket(1000.0)
        while granted[0] < GRANTS:
            await limiter.submit((own, everyone))
            granted[0] += 1

    async def scenario() -> float:
        limiter, granted = make(), [0]
        cpu = time.process_time()
        await asyncio.gather(*(device(limiter, granted) for _ in range(waiters)))
        return (time.process_time() - cpu) / granted[0] * 1e6

    return run_virtual(scenario())


async def aggregate_rate(absorb_s: float, devices: int = 256, seconds: float = 3.0) -> tuple[float, float]:
    """(packets per second granted and stamped, CPU microseconds per packet) under a 1,960 pps aggregate bucket."""
    limiter, everyone = Limiter(), TokenBucket(1960.0)
    everyone.absorb_s = absorb_s
    sent = [0]
    end = time.monotonic() + seconds

    async def device() -> None:
        own = TokenBucket(19.6)
        while time.monotonic() < end:
            await limiter.submit((own, everyone))
            await limiter.depart((own, everyone))
            sent[0] += 1

    cpu, start = time.process_time(), time.monotonic()
    await asyncio.gather(*(device() for _ in range(devices)))
    return sent[0] / (time.monotonic() - start), (time.process_time() - cpu) / sent[0] * 1e6


async def compare() -> None:
    candidates = limiters()
    print(f"{COUNT} acquisitions at {RATE}/s; contract: at most {RATE} in any 1 s window, 1 in the first 10 ms\n")
    print("| limiter | mode | max in any 1 s window | max in any 0.2 s window | burst in first 10 ms | elapsed | CPU |")
    print("|---|---|---|---|---|---|---|")
    for name, make in candidates:
        for concurrent in (False, True):
            peak, peak_short, burst, elapsed, cpu = await measure(make(), concurrent)
            mode = "conc" if concurrent else "seq"
            print(f"| {name} | {mode} | {peak} | {peak_short} | {burst} | {elapsed:.3f} s | {cpu:.3f} s |")


def main() -> None:
    asyncio.run(compare())
    print(f"\nGrant cost: CPU microseconds per grant, {GRANTS} grants, n waiters always queued under one global "
          "bucket (virtual clock)\n")
    rows = []
    for waiters in WAITERS:
        heaps = grant_cost(Limiter, waiters)
        scan = grant_cost(ScanningLimiter, waiters) if waiters <= 1000 else None  # 10,000: minutes of scanning
        rows.append([waiters, f"{heaps:.1f}", f"{scan:.1f}" if scan is not None else "(not run: minutes)"])
    table(("waiters", "Limiter (heaps), us per grant", "full scan (the old Limiter), us per grant"), rows)
    print("Real time: 256 devices at 19.6 pps under a 1,960 pps aggregate bucket, 3 s each\n")
    rows = []
    for absorb_s in (AGGREGATE_ABSORB_S, 0.0):
        pps, cpu_us = asyncio.run(aggregate_rate(absorb_s))
        rows.append([f"{1000 * absorb_s:g} ms", f"{pps:.0f} ({pps / 1960:.0%})", f"{cpu_us:.0f}"])
    table(("lateness kept on schedule", "packets per second (of 1,960)", "CPU us per packet"), rows)


if __name__ == "__main__":
    main()
