"""Per-device pacer: what the Link waits on before each operation to one device.

Why: a device must be able to tell us nothing but "slow down". So every operation takes its packets from the
device's bucket and the shared class/global buckets (one Limiter for the scan), a new connection waits
`connect_gap_s` after the previous one ended, nothing but a close starts unless it and its close fit before the
cutoff, with room for the other open connections' closes (each connection owes its close on the shared buckets
from its connect until it ends), and when replies get much slower than the device's own baseline its rate
halves, then climbs back one step per normal reply (AIMD, as TCP does for congestion).

An operation of n packets takes its n tokens at one instant, because the library sends them back to back: taking
them one by one and then sending all at the last grant would put n packets right after the previous one.

An operation is paced twice: `acquire` waits for its grant (fair queueing over the shared buckets), `depart`
clears it to leave in the same loop step as the send and stamps it (otprobe.pacing.bucket: a grant is not a send).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from otprobe.contract import Kind, Timeouts
from otprobe.pacing.bucket import AGGREGATE_ABSORB_S, Limiter, TokenBucket

# What a busy machine may add between a close's grant and its FIN leaving (scheduling delay; tens of ms measured
# beside 4 CPU-bound processes on 2 cores), kept free before the cutoff.
LATENESS_S = 0.1


@dataclass(frozen=True)
class Slowdown:
    """When a reply counts as slow, and how the rate falls and recovers."""

    factor: float = 4.0  # slow: more than factor x the baseline...
    min_slow_s: float = 0.05  # ...and longer than this (loopback jitter is not a signal)
    alpha: float = 0.2  # EWMA weight of a normal reply in the baseline
    floor: float = 0.125  # never below this fraction of the cap
    steps: int = 8  # normal replies to climb from zero back to the cap (additive step = cap / steps)


class Pacer:
    """Implements link.Pacer for one device; `rate` is its current packets per second (below `cap` while slowed)."""

    def __init__(
        self,
        limiter: Limiter,
        bucket: TokenBucket,
        shared: Sequence[TokenBucket] = (),
        *,
        connect_gap_s: float = 0.0,
        timeouts: Timeouts | None = None,
        slowdown: Slowdown | None = None,
        group: object = None,
    ) -> None:
        self._limiter = limiter
        self._group = group  # the device's class: open sessions go first within it
        self._bucket = bucket
        self._buckets = (bucket, *shared)
        for aggregate in shared:  # class and global caps: the schedule survives a late timer (bucket.py)
            aggregate.absorb_s = AGGREGATE_ABSORB_S
        self._gap = connect_gap_s
        self._timeouts = timeouts or Timeouts()
        self._slowdown = slowdown or Slowdown()
        self.cap = bucket.rate
        self._last_connection = -math.inf  # when the last connect or close left, or when the device closed
        self._open = False  # a connection is open: its close is owed on the shared buckets
        self.last_sent = -math.inf  # when the last packet to this device left
        self._baseline: dict[Kind, float] = {}
        # Called when a connection (or a datagram exchange) is granted: the scheduler starts the session clock
        # there, so that time spent queueing for the first token does not count against `max_session_s`.
        self.on_session: Callable[[], None] | None = None

    @property
    def rate(self) -> float:
        return self._bucket.rate

    async def acquire(self, kind: Kind, packets: int) -> None:
        """Wait for the grant of `packets`. Raises ScanAborted for a non-close that cannot finish by the cutoff."""
        not_before = self._last_connection + self._gap if kind is Kind.CONNECT else -math.inf
        future = self._limiter.submit(
            self._buckets,
            count=packets,
            not_before=not_before,
            reserve=self._reserve(kind),
            priority=1 if kind in (Kind.CONNECT, Kind.DATAGRAM) else 0,  # open sessions first
            group=self._group,
            closes=1 if kind is Kind.CONNECT else 0,  # room for its own close before the cutoff
        )
        if kind is Kind.CLOSE:
            await _uncancellable(future)
        else:
            await future
        if kind in (Kind.CONNECT, Kind.DATAGRAM) and self.on_session is not None:
            self.on_session()

    async def depart(self, kind: Kind, packets: int) -> None:
        """Clear granted packets to leave now and stamp them; the caller sends them in this same loop step."""
        reserve = self._reserve(kind)
        while True:
            try:
                sent = await self._limiter.depart(
                    self._buckets, count=packets, reserve=reserve, closes=1 if kind is Kind.CONNECT else 0
                )
                break
            except asyncio.CancelledError:
                if kind is not Kind.CLOSE:
                    raise
                # a close still goes out (see _uncancellable); the Link delivers the cancellation after it
        self.last_sent = sent
        if kind in (Kind.CONNECT, Kind.CLOSE):
            self._last_connection = sent
            self._owe_close(kind is Kind.CONNECT)

    @property
    def last_connection(self) -> float:
        """When the last connection to this device started or ended (-inf: none yet)."""
        return self._last_connection

    def follow(self, last_sent: float, last_connection: float) -> None:
        """Continue another scan's pacing of this device: its last packet and its last connection start or end."""
        self._bucket.follow(last_sent)
        self.last_sent = max(self.last_sent, last_sent)
        self._last_connection = max(self._last_connection, last_connection)

    def note_closed(self) -> None:
        """The device ended the connection (FIN or RST) and gets no close from us: the gap runs from now."""
        self._last_connection = max(self._last_connection, self._limiter.now())
        self._owe_close(False)

    def connect_failed(self) -> None:
        """The connect left but no connection came of it (refused, timed out): no close is owed."""
        self._owe_close(False)

    def _owe_close(self, owed: bool) -> None:
        """While a connection is open, its close is counted on the shared buckets (TokenBucket.owed), so that
        refusable grants stop early enough for every open connection's FIN to leave before the cutoff."""
        if owed != self._open:
            for bucket in self._buckets[1:]:
                bucket.owed += 1 if owed else -1
            self._open = owed

    def _reserve(self, kind: Kind) -> float | None:
        """Time an operation needs after its grant: its reply, then the device's next token for the close, and the
        time a busy machine may add before the close really leaves."""
        if kind is Kind.CLOSE:
            return None
        wait = self._timeouts.connect_s if kind is Kind.CONNECT else self._timeouts.response_s
        return max(wait, 1.0 / self._bucket.rate) + LATENESS_S

    def observe(self, kind: Kind, seconds: float) -> None:
        """Feed one reply time (from the Link); adjusts the device's rate."""
        if kind is Kind.CLOSE:
            return
        policy = self._slowdown
        baseline = self._baseline.get(kind)
        if baseline is None:
            self._baseline[kind] = seconds
        elif seconds > policy.factor * baseline and seconds > policy.min_slow_s:
            # An outlier does not enter the baseline, or a slowing device would teach us that slow is normal.
            self._bucket.set_rate(max(self.cap * policy.floor, self.rate / 2))
        else:
            self._baseline[kind] = baseline + policy.alpha * (seconds - baseline)
            if self.rate < self.cap:
                self._bucket.set_rate(min(self.cap, self.rate + self.cap / policy.steps))


async def _uncancellable(future: asyncio.Future[float]) -> float:
    """Await a close's grant even through a cancellation ("stop now", or a session limit expiring meanwhile).

    The close must still be paced and still be sent, so the cancellation is held back here; the task's
    `cancelling()` count stays raised, and the Link raises CancelledError once the close has gone out.
    """
    while True:
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            continue
