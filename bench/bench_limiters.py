"""Measure rate limiters against otprobe's contract: at most ceil(rate) packets in any 1 s window, no burst.

Runs 50 acquisitions at 5 per second, one after another ("seq") and as 50 concurrent tasks ("conc"), on real time,
and prints for each limiter: the most grants in any 1 s and any 0.2 s window (the contract allows 5 and 1), grants
in the first 10 ms, elapsed, CPU seconds.
asyncio-throttle (named by a user as a candidate) is measured when installed (`pip install asyncio-throttle`);
otprobe does not depend on it.

Then the cost of a grant against the number of waiters: n devices (own bucket at 1,000 pps each) queue under a
global bucket that binds, each asking again as soon as it is granted, on a virtual clock (tests/vtime.py) so that
only CPU is measured; CPU microseconds per grant for otprobe's Limiter (heaps) and for the full scan it replaced
(tests/limiter_reference.py). Takes about 60 s.

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


if __name__ == "__main__":
    main()
