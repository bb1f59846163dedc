"""Token buckets (GCRA) and the Limiter that takes a token from several buckets at once, fairly.

Why this shape:

* The contract is held at the receiver: in any window of W seconds a device sees at most ceil(rate*W) + burst - 1
  packets. GCRA (ATM "virtual scheduling") gives exactly that with two numbers per bucket: the interval T = 1/rate
  and the theoretical arrival time `tat`. A packet conforms at `now` when now >= tat - (burst-1)*T; taking it sets
  tat = max(tat, now) + T. Nothing refills, nothing is fractional: rate 0.2 simply means T = 5 s, and an idle
  bucket never saves up more than `burst` (no catching up after a pause, masscan's rule).
* A packet to device D of class C takes D's bucket, C's aggregate bucket and the global bucket *together*. Taking
  them one after another holds one token while waiting for the next and breaks the spacing; reserving future slots
  in every bucket lets a slow device block the shared buckets for everyone. So waiters queue in arrival order and
  at every wake-up each waiter whose buckets all conform *now* is granted, oldest first. A waiter held back by its
  own device bucket does not hold back others (work-conserving), and nobody starves: a waiter's device bucket
  stays conformant while it waits, so once the shared buckets conform it is the oldest candidate.
* Within a device class, work already started goes first: a waiter may carry a priority (the pacer gives new
  connections 1, everything else 0) and a group (the class). A group's waiters keep the group's places in the queue
  but are served lower priority first, so between classes age alone decides. When the shared caps are the
  bottleneck, a class's open sessions finish at their devices' rate instead of every device opening a connection
  and all of them crawling (and hitting their session limit) together; and one class's open sessions cannot hold
  back another class's new connections, which would leave the held-back class to run alone, slowly, at the end
  (1.23x the least time on the two-class 64-device bench with a plan-wide rule, 1.15x with this one). Sessions are
  finite, so new connections do not starve.
* No background task and no polling: one loop timer is armed for the earliest instant a waiter can go. The clock
  is injectable (default: the running loop's monotonic time) and timers are computed as delays from it.
* aiolimiter and asyncio-throttle admit a whole period's worth at once (bench/bench_limiters.py has the figures);
  here `burst` is separate from the rate and defaults to 1.
* A refusable waiter (anything but a close) carries `reserve`, the time it needs after its grant (its reply and
  its close). It is refused with ScanAborted as soon as it cannot be granted by `cutoff - reserve`: the deadline
  and a graceful stop are the same mechanism, a cutoff.
* A grant is not a send. The granted task runs when the loop next gets to it, and on a busy machine that can be tens
  of ms later, so a packet granted on time can leave late and land right before the next one. Each bucket therefore
  keeps a second GCRA state over the real departures (`departed`): the sender stamps a packet in the same loop
  step as the library call that writes it (`Limiter.depart`), a packet whose departure would not conform to the
  earlier departures waits, and the grant clock is pushed to the departure clock, so the next grant is spaced from
  the later of the grant and the send. The cap then holds over departures whatever the scheduling delay.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from otprobe.errors import ScanAborted

# Added to each interval so that float rounding can never place two grants closer than exactly 1/rate.
_EPSILON_S = 1e-9


def _interval(rate: float) -> float:
    if not rate > 0:
        raise ValueError(f"rate must be positive, got {rate}")
    return 1.0 / rate + _EPSILON_S


class TokenBucket:
    """GCRA bucket: `rate` tokens per second (may be below 1), at most `burst` at once. Times come from the caller."""

    __slots__ = ("_interval", "_sent_tat", "_tat", "burst", "rate")

    def __init__(self, rate: float, burst: int = 1) -> None:
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self.rate = rate
        self.burst = burst
        self._interval = _interval(rate)
        self._tat = -math.inf  # over grants (includes packets granted and not yet sent)
        self._sent_tat = -math.inf  # over departures only

    def set_rate(self, rate: float) -> None:
        """Change the rate from the next packet on (adaptive slowdown); the pending spacing follows the new rate."""
        interval = _interval(rate)
        self._tat += interval - self._interval
        self._sent_tat += interval - self._interval
        self.rate, self._interval = rate, interval

    def ready_at(self, count: int = 1) -> float:
        """Earliest time `count` tokens can be taken at one instant (they leave together, so they count together)."""
        return self._tat + (count - self.burst) * self._interval

    def take(self, now: float, count: int = 1) -> None:
        self._tat = max(self._tat, now) + count * self._interval

    def departs_at(self, count: int = 1) -> float:
        """Earliest time `count` granted packets may leave together without crowding the packets that already left."""
        return self._sent_tat + (count - self.burst) * self._interval

    def departed(self, at: float, count: int = 1) -> None:
        """`count` packets left at `at`: later grants and departures are spaced from here."""
        self._sent_tat = max(self._sent_tat, at) + count * self._interval
        self._tat = max(self._tat, self._sent_tat)

    def follow(self, last_sent: float) -> None:
        """Space this bucket's packets from one another pacer sent at `last_sent` (another scan, same device)."""
        self._sent_tat = max(self._sent_tat, last_sent + self._interval)
        self._tat = max(self._tat, self._sent_tat)


@dataclass(eq=False)
class _Waiter:
    buckets: tuple[TokenBucket, ...]
    count: int
    not_before: float
    reserve: float | None  # None: never refused (closes)
    priority: int
    future: asyncio.Future[float]
    group: object = None

    def ready_at(self) -> float:
        return max(self.not_before, *(b.ready_at(self.count) for b in self.buckets))


def _in_turn(waiters: list[_Waiter]) -> list[_Waiter]:
    """Oldest first, except that within one group (a device class) lower priorities go first.

    Each group's waiters keep the group's places in the queue; only their order among themselves changes. So a
    class's open sessions go before its own new connections, while classes still take turns by age.
    """
    places: dict[object, list[int]] = {}
    for index, w in enumerate(waiters):
        places.setdefault(w.group, []).append(index)
    ordered: list[_Waiter] = list(waiters)
    for indexes in places.values():
        for index, w in zip(indexes, sorted((waiters[i] for i in indexes), key=lambda w: w.priority), strict=True):
            ordered[index] = w
    return ordered


class Limiter:
    """Grants tokens from several buckets together, oldest conformant waiter first. One per scan."""

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock
        self._waiters: list[_Waiter] = []
        self._timer: asyncio.TimerHandle | None = None
        self.cutoff = math.inf  # no refusable grant after this instant (deadline or graceful stop)

    def now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

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
        """Queue a request for `count` tokens from every bucket; the future yields the grant time.

        It fails with ScanAborted if the grant cannot come by `cutoff - reserve`; `reserve=None` is never refused.
        Cancelling the future withdraws the request.
        """
        future = asyncio.get_running_loop().create_future()
        waiter = _Waiter(tuple(buckets), count, not_before, reserve, priority, future, group)
        self._waiters.append(waiter)
        self._service()
        return waiter.future

    async def depart(self, buckets: Sequence[TokenBucket], *, count: int = 1, reserve: float | None = 0.0) -> float:
        """Wait until `count` granted packets may leave without crowding the packets that already left, stamp their
        departure in every bucket and return it. Call it in the same loop step as the library call that sends them,
        with no await in between: the stamp is then the send. Raises ScanAborted for a refusable packet (`reserve`
        not None) that could no longer leave by `cutoff - reserve`."""
        while True:
            now = self.now()
            ready = max(b.departs_at(count) for b in buckets)
            if reserve is not None and max(ready, now) > self.cutoff - reserve:
                raise ScanAborted("no time left before the scan's cutoff for this operation")
            if ready <= now:
                break
            await asyncio.sleep(ready - now)
        for b in buckets:
            b.departed(now, count)
        return now

    def stop(self, at: float | None = None) -> None:
        """Set the cutoff (now, or a later deadline): refusable requests that cannot be granted by then fail."""
        self.cutoff = min(self.cutoff, self.now() if at is None else at)
        self._service()

    def _service(self) -> None:
        now = self.now()
        wake = math.inf
        pending: list[_Waiter] = []
        for w in _in_turn(self._waiters):
            if w.future.done():  # withdrawn
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
            self._timer = asyncio.get_running_loop().call_later(wake - now, self._service)
