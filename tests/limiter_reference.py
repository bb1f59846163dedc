"""The Limiter's grant order as it was first written: every wake-up sorts all waiters into their turn and scans them
all, granting each whose buckets all conform now. O(n) per grant in the number of waiters n; kept as the reference
that otprobe.pacing.bucket.Limiter's heaps must agree with (tests/pacing/test_bucket.py) and as the baseline of the
grant-cost figure (bench/bench_limiters.py).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable
from dataclasses import dataclass

from otprobe.errors import ScanAborted
from otprobe.pacing.bucket import TokenBucket


@dataclass(eq=False)
class _Waiter:
    buckets: tuple[TokenBucket, ...]
    count: int
    not_before: float
    reserve: float | None
    priority: int
    future: asyncio.Future[float]
    group: object = None

    def ready_at(self) -> float:
        return max(self.not_before, *(b.ready_at(self.count) for b in self.buckets))


def _in_turn(waiters: list[_Waiter]) -> list[_Waiter]:
    """Oldest first, except that within one group lower priorities go first, in the group's places."""
    places: dict[object, list[int]] = {}
    for index, w in enumerate(waiters):
        places.setdefault(w.group, []).append(index)
    ordered: list[_Waiter] = list(waiters)
    for indexes in places.values():
        for index, w in zip(indexes, sorted((waiters[i] for i in indexes), key=lambda w: w.priority), strict=True):
            ordered[index] = w
    return ordered


class ScanningLimiter:
    """Limiter.submit's contract, served by a full scan of the waiters at every wake-up (grants only)."""

    def __init__(self) -> None:
        self._waiters: list[_Waiter] = []
        self._timer: asyncio.TimerHandle | None = None
        self.cutoff = math.inf

    def submit(
        self,
        buckets: Iterable[TokenBucket],
        *,
        count: int = 1,
        not_before: float = -math.inf,
        reserve: float | None = 0.0,
        priority: int = 0,
        group: object = None,
    ) -> asyncio.Future[float]:
        future = asyncio.get_running_loop().create_future()
        self._waiters.append(_Waiter(tuple(buckets), count, not_before, reserve, priority, future, group))
        self._service()
        return future

    def _service(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        wake = math.inf
        pending: list[_Waiter] = []
        for w in _in_turn(self._waiters):
            if w.future.done():
                continue
            ready = w.ready_at()
            latest = math.inf if w.reserve is None else self.cutoff - w.reserve
            if max(ready, now) > latest:
                w.future.set_exception(ScanAborted("no time left before the scan's cutoff for this operation"))
            elif ready <= now:
                for b in w.buckets:
                    b.take(now, w.count)
                w.future.set_result(now)
            else:
                pending.append(w)
                wake = min(wake, ready)
        self._waiters = pending
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if pending:
            self._timer = loop.call_later(wake - now, self._service)
