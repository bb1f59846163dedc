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
  finite, so new connections do not starve. A close (never refused) goes ahead of everything: it ends a session
  and frees a device's connection, and the cutoff counts on it (below).
* A grant costs O(log n) in the number of waiters, not a scan of them all (190 waiters scanned per grant held one
  process at 500-650 packets/s). A waiter its own bucket (the first) or `not_before` still holds back sleeps in a
  heap keyed by when they allow it; the rest queue per lane, a lane being a group with the same shared buckets, in
  the order above. All of a lane waits for the same shared buckets, so only each lane's front is checked. One
  difference from scanning every waiter: a waiter still asleep holds no place in its group's queue.
  tests/limiter_reference.py keeps the scanning version; the tests check that both grant alike.
* No background task and no polling: one loop timer is armed for the earliest instant a waiter can go. The clock
  is injectable (default: the running loop's monotonic time) and timers are computed as delays from it.
* aiolimiter and asyncio-throttle admit a whole period's worth at once (bench/bench_limiters.py has the figures);
  here `burst` is separate from the rate and defaults to 1.
* A refusable waiter (anything but a close) carries `reserve`, the time it needs after its grant (its reply and
  its close). It is refused with ScanAborted once it cannot be granted by `cutoff - reserve - drain`: the deadline
  and a graceful stop are the same mechanism, a cutoff. `drain` keeps room for the closes of the connections still
  open (`TokenBucket.owed`): they go one interval apart through each shared bucket and may all come before this
  waiter's own close, so with 64 sessions open under a 20 pps global cap the last new packet is granted 3.15 s
  plus its reserve before the cutoff, and every FIN leaves before it.
* A grant is not a send. The granted task runs when the loop next gets to it, and on a busy machine that can be tens
  of ms later, so a packet granted on time can leave late and land right before the next one. Each bucket therefore
  keeps a second GCRA state over the real departures (`departed`): the sender stamps a packet in the same loop
  step as the library call that writes it (`Limiter.depart`), a packet whose departure would not conform to the
  earlier departures waits, and the grant clock is pushed to the departure clock, so the next grant is spaced from
  the later of the grant and the send. The cap then holds over departures whatever the scheduling delay.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from otprobe.errors import ScanAborted

# Added to each interval so that float rounding can never place two grants closer than exactly 1/rate.
_EPSILON_S = 1e-9
# An aggregate bucket (a class's, the scan's) keeps its schedule through lateness up to this much: the next packet
# is spaced from when this one was due, not from when it went. Its interval is short (0.5 ms at 2,000 pps) while
# the loop's timers fire up to 1 ms late (epoll counts in ms), a resumed task runs a little after its grant and a
# busy machine deschedules the process for a few ms; spacing every packet from its late instant reached 31 % of a
# 2,000 pps cap with 200 devices queued (62 % with 2 ms absorbed, 87 % with 10 ms, on the loaded 2-core machine).
# The cost at the receiver is at most this much once per window (no packet is ever due earlier than the
# schedule), which the caps' 2 % headroom covers for every window of 0.5 s and longer. Device buckets absorb nothing
# (their intervals are long and their contract is exact in every window); lateness beyond the bound (a starved
# process) still pushes the schedule back, and an idle bucket still saves nothing up.
AGGREGATE_ABSORB_S = 0.01


def _interval(rate: float) -> float:
    if not rate > 0:
        raise ValueError(f"rate must be positive, got {rate}")
    return 1.0 / rate + _EPSILON_S


class TokenBucket:
    """GCRA bucket: `rate` tokens per second (may be below 1), at most `burst` at once. Times come from the caller."""

    __slots__ = ("_interval", "_sent_tat", "_tat", "absorb_s", "burst", "owed", "rate")

    def __init__(self, rate: float, burst: int = 1) -> None:
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self.rate = rate
        self.burst = burst
        self._interval = _interval(rate)
        self._tat = -math.inf  # over grants (includes packets granted and not yet sent)
        self._sent_tat = -math.inf  # over departures only
        # Closes owed by the connections open through this bucket: each will take a token before the cutoff, so a
        # refusable grant leaves them room (Limiter.submit). Kept by the pacers.
        self.owed = 0
        self.absorb_s = 0.0  # lateness that keeps the schedule: AGGREGATE_ABSORB_S for class and global buckets

    @property
    def interval(self) -> float:
        return self._interval

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
        self._tat = _due(self._tat, now, self.absorb_s) + count * self._interval

    def departs_at(self, count: int = 1) -> float:
        """Earliest time `count` granted packets may leave together without crowding the packets that already left."""
        return self._sent_tat + (count - self.burst) * self._interval

    def departed(self, at: float, count: int = 1) -> None:
        """`count` packets left at `at`: later grants and departures are spaced from here."""
        self._sent_tat = _due(self._sent_tat, at, self.absorb_s) + count * self._interval
        self._tat = max(self._tat, self._sent_tat)

    def follow(self, last_sent: float) -> None:
        """Space this bucket's packets from one another pacer sent at `last_sent` (another scan, same device)."""
        self._sent_tat = max(self._sent_tat, last_sent + self._interval)
        self._tat = max(self._tat, self._sent_tat)


def _due(tat: float, at: float, absorb_s: float) -> float:
    """Where the next interval starts after a packet at `at`: the schedule `tat` if `at` was at most `absorb_s` late
    (or early, within a burst), else `at`."""
    return tat if at <= tat + absorb_s else at


@dataclass(eq=False)
class _Waiter:
    buckets: tuple[TokenBucket, ...]  # its own (device) bucket first, then the shared ones
    count: int
    not_before: float
    reserve: float | None  # None: never refused (closes)
    priority: int
    future: asyncio.Future[float]
    seq: int  # arrival order
    lane: _Lane
    closes: int  # closes this grant will owe (a connect's own close), counted in its drain
    eligible: bool = False  # its own bucket and not_before allow it now: it queues in its lane
    epoch: int = 0  # bumped at every move between sleeping and eligible; heap entries of another epoch are stale

    def own_ready(self) -> float:
        return max(self.not_before, self.buckets[0].ready_at(self.count))

    def ready_at(self) -> float:
        return max(self.not_before, *(b.ready_at(self.count) for b in self.buckets))

    def latest(self, cutoff: float) -> float:
        """Last instant it may be granted: its reserve (reply, own close), and the other open connections' closes,
        which go out one interval apart through the shared buckets, must fit before the cutoff."""
        return _latest(cutoff, self.reserve, self.buckets, self.closes)

    def live(self, epoch: int, eligible: bool) -> bool:
        return self.epoch == epoch and self.eligible is eligible and not self.future.done()


class _Lane:
    """The eligible waiters of one group (device class) with the same shared buckets, in their turn.

    A lane sends its front, and only its front, when its shared buckets allow: all of its waiters wait for the same
    shared buckets, so if the front cannot go, none can (a multi-packet operation is not overtaken by one-packet
    ones, which would starve it). Within the lane closes come first, then lower priorities (open sessions before
    new connections), then age. The lane holds its waiters' places in the queue (their arrival numbers), and the
    k-th waiter in turn holds the k-th place: so whichever waiter leaves the front, the lane gives up its first
    place, and a waiter that is overtaken inherits the later place of the one that overtook it. Among lanes, the
    first place goes first, a lane whose front is a close ahead of all.
    """

    __slots__ = ("by_turn", "places", "waiters")

    def __init__(self) -> None:
        self.by_turn: list[tuple[bool, int, int, int, _Waiter]] = []  # (not a close, priority, seq, epoch, waiter)
        self.places: list[int] = []  # the arrival numbers the lane's eligible waiters hold, a heap
        self.waiters = 0  # live waiters, eligible or sleeping: an empty lane is dropped

    def push(self, w: _Waiter) -> None:
        heapq.heappush(self.by_turn, (w.reserve is not None, w.priority, w.seq, w.epoch, w))
        heapq.heappush(self.places, w.seq)

    def front(self) -> _Waiter | None:
        turn = self.by_turn
        while turn and not turn[0][4].live(turn[0][3], eligible=True):
            heapq.heappop(turn)
            heapq.heappop(self.places)  # it held the first place (granted, refused, withdrawn or asleep again)
        return turn[0][4] if turn else None

    def turn(self) -> tuple[bool, int] | None:
        front = self.front()
        return None if front is None else (front.reserve is not None, self.places[0])


class Limiter:
    """Grants tokens from several buckets together, in turn (see the module docstring). One per scan.

    A grant costs O(log n) in the number of waiters n (plus one step per lane, i.e. per device class): waiters whose
    own bucket (or `not_before`) holds them back sleep in a heap keyed by when it will allow them; the others queue
    in their lane. Nothing is scanned per grant.
    """

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock
        self._sleeping: list[tuple[float, int, int, _Waiter]] = []  # (own ready time, seq, epoch, waiter)
        self._lanes: dict[tuple[object, tuple[TokenBucket, ...]], _Lane] = {}
        self._live: set[_Waiter] = set()
        self._arrivals = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self.cutoff = math.inf  # no refusable grant after this instant (deadline or graceful stop)

    def now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    @property
    def waiting(self) -> int:
        return len(self._live)

    def submit(
        self,
        buckets: Iterable[TokenBucket],
        *,
        count: int = 1,
        not_before: float = -math.inf,
        reserve: float | None = 0.0,
        priority: int = 0,
        group: object = None,
        closes: int = 0,
    ) -> asyncio.Future[float]:
        """Queue a request for `count` tokens from every bucket; the future yields the grant time.

        The first bucket is the requester's own; the others are shared. It fails with ScanAborted once it cannot be
        granted by `cutoff - reserve - drain`, where drain is the time the closes owed on its shared buckets (see
        TokenBucket.owed), and `closes` more for this grant, take to leave; `reserve=None` is never refused.
        Cancelling the future withdraws the request.
        """
        future = asyncio.get_running_loop().create_future()
        buckets = tuple(buckets)
        now = self.now()
        if self._nobody_else(now):  # the common case while the caps do not bind: grant at once, no heap
            ready = not_before
            for b in buckets:  # a loop, not max() over a generator: this runs for every packet
                at = b.ready_at(count)
                if at > ready:
                    ready = at
            if ready <= now <= _latest(self.cutoff, reserve, buckets, closes):
                for b in buckets:
                    b.take(now, count)
                future.set_result(now)
                return future
        key = (group, buckets[1:])
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        waiter = _Waiter(buckets, count, not_before, reserve, priority, future, next(self._arrivals), lane, closes)
        lane.waiters += 1
        self._live.add(waiter)
        future.add_done_callback(lambda _: self._gone(waiter, key))
        self._sleep(waiter, waiter.own_ready())
        self._service()
        return future

    async def depart(
        self, buckets: Sequence[TokenBucket], *, count: int = 1, reserve: float | None = 0.0, closes: int = 0
    ) -> float:
        """Wait until `count` granted packets may leave without crowding the packets that already left, stamp their
        departure in every bucket and return it. Call it in the same loop step as the library call that sends them,
        with no await in between: the stamp is then the send. Raises ScanAborted for a refusable packet (`reserve`
        not None) that could no longer leave by `cutoff - reserve - drain` (as in `submit`)."""
        while True:
            now = self.now()
            ready = -math.inf
            for b in buckets:
                at = b.departs_at(count)
                if at > ready:
                    ready = at
            if max(ready, now) > _latest(self.cutoff, reserve, buckets, closes):
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
        now = self.now()
        for w in list(self._live):  # rare: one pass over everyone, since every latest instant moved
            if max(w.ready_at(), now) > w.latest(self.cutoff):
                _refuse(w)
        self._service()

    # -- internals ---------------------------------------------------------------------------------------------

    def _gone(self, w: _Waiter, key: tuple[object, tuple[TokenBucket, ...]]) -> None:
        """Granted, refused or withdrawn: forget it (its heap entries go stale and are dropped when reached)."""
        self._live.discard(w)
        w.lane.waiters -= 1
        if w.lane.waiters == 0 and self._lanes.get(key) is w.lane:
            del self._lanes[key]

    def _nobody_else(self, now: float) -> bool:
        """No waiter can go now or is due: a new request that can go now is the only candidate."""
        sleeping = self._sleeping
        return (not sleeping or sleeping[0][0] > now) and all(lane.front() is None for lane in self._lanes.values())

    def _sleep(self, w: _Waiter, until: float) -> None:
        if until > w.latest(self.cutoff):
            _refuse(w)
            return
        w.eligible, w.epoch = False, w.epoch + 1
        heapq.heappush(self._sleeping, (until, w.seq, w.epoch, w))

    def _wake(self, now: float) -> float:
        """Move every sleeper its own bucket now allows into its lane; returns when the next sleeper is due."""
        sleeping = self._sleeping
        while sleeping and (sleeping[0][0] <= now or not sleeping[0][3].live(sleeping[0][2], eligible=False)):
            _, seq, epoch, w = heapq.heappop(sleeping)
            if not w.live(epoch, eligible=False):
                continue
            own = w.own_ready()
            if own > now:  # its bucket moved on since it went to sleep (a departure stamp): sleep on
                heapq.heappush(sleeping, (own, seq, epoch, w))
                continue
            w.eligible, w.epoch = True, w.epoch + 1
            w.lane.push(w)
        return sleeping[0][0] if sleeping else math.inf

    def _service(self) -> None:
        now = self.now()
        wake = self._wake(now)
        turns = [(turn, id(lane), lane) for lane in self._lanes.values() if (turn := lane.turn()) is not None]
        heapq.heapify(turns)
        while turns:
            _, _, lane = heapq.heappop(turns)
            w = lane.front()
            assert w is not None
            ready = w.ready_at()
            if max(ready, now) > w.latest(self.cutoff):
                _refuse(w)
            elif w.own_ready() > now:  # its own bucket moved on since it woke
                self._sleep(w, w.own_ready())
                wake = min(wake, w.own_ready())
            elif ready <= now:
                for b in w.buckets:
                    b.take(now, w.count)
                w.future.set_result(now)
            else:  # the shared buckets hold the whole lane back
                wake = min(wake, ready)
                continue
            turn = lane.turn()
            if turn is not None:
                heapq.heappush(turns, (turn, id(lane), lane))
        self._arm(wake, now)

    def _arm(self, wake: float, now: float) -> None:
        if wake == self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = None, wake
        if wake < math.inf:
            self._timer = asyncio.get_running_loop().call_later(wake - now, self._fire)

    def _fire(self) -> None:
        self._timer, self._timer_at = None, math.inf
        self._service()


def _latest(cutoff: float, reserve: float | None, buckets: Sequence[TokenBucket], closes: int) -> float:
    """Last instant a request may be granted or leave: `cutoff - reserve - drain` (Limiter.submit); never for a
    close (`reserve` None) or while no cutoff is set, which spares the drain's arithmetic on every packet."""
    if reserve is None or cutoff == math.inf:
        return math.inf
    return cutoff - reserve - _drain(buckets, closes)


def _drain(buckets: Sequence[TokenBucket], closes: int) -> float:
    """Time the other open connections' closes may hold a close of this waiter's device back in the shared buckets
    (all but the first): the closes owed there and `closes` more, but its own (the reserve covers that one)."""
    return max((max(b.owed + closes - 1, 0) * b.interval for b in buckets[1:]), default=0.0)


def _refuse(w: _Waiter) -> None:
    if not w.future.done():
        w.future.set_exception(ScanAborted("no time left before the scan's cutoff for this operation"))
