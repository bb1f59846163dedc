"""Device leases across sensors: scans into the central store never have one device of a site in flight twice.

The host-wide flock lease (`otprobe.leases`) keeps two processes of one host apart; two sensors (two hosts, or two
containers) that reach the same devices need a lease both can see: a `device_leases` row per (site, address) in the
central database. A scan takes the host lease first, then the row; a device another sensor holds is waited for,
and the warning names the holder. A row carries an expiry, which the holder renews every quarter of the lease
time while it scans; a sensor that died (power, network) stops renewing and its leases pass on when they expire,
the next holder then pacing as if a packet had just left. Releasing records, in wall-clock time, when the last packet
and connection went out, so the next sensor keeps the device's spacing across the hand-over (less the clock skew
between the two hosts, which NTP keeps far below the connection gap).

Database calls run in a worker thread: the scan's event loop, which paces every other device, never waits for the
database.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from otprobe.inventory.database import domain_errors
from otprobe.inventory.schema import device_leases
from otprobe.leases import POLL_S, Handover, HeldLease, Leases

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

TTL_S = 120.0  # how long a dead sensor keeps its devices: long against a renewal hiccup, short against a shift


@dataclass(frozen=True)
class _Taken:
    handover: Handover | None


class CentralLeases:
    """The leases of one site's devices in the central database, each on top of the host-wide lease."""

    def __init__(self, engine: Engine, url: str, site: str, *, host: Leases | None = None, ttl_s: float = TTL_S,
                 wall: Callable[[], float] = time.time, clock: Callable[[], float] = time.monotonic) -> None:
        self.engine, self.url, self.site = engine, url, site
        self.host = host or Leases()
        self.ttl_s = ttl_s
        self._wall, self._clock = wall, clock
        self.holder = f"{socket.gethostname()} pid {os.getpid()} {uuid.uuid4().hex[:6]}"
        self.waited: list[tuple[str, str]] = []
        self._held: set[str] = set()
        self._renewing: asyncio.Task[None] | None = None

    def _key(self) -> tuple[object, object]:
        return device_leases.c.site == self.site, device_leases.c.holder == self.holder

    def try_acquire(self, address: str) -> _Taken | str:
        """The lease with the previous holder's pacing, or who holds it."""
        now = self._wall()
        where = (device_leases.c.site == self.site, device_leases.c.address == address)
        with domain_errors(self.url), self.engine.begin() as c:
            row = c.execute(select(device_leases).where(*where).with_for_update()).mappings().first()
            if row is None:
                try:
                    with c.begin_nested():
                        c.execute(insert(device_leases).values(site=self.site, address=address, holder=self.holder,
                                                               expires_at=now + self.ttl_s))
                except IntegrityError:  # another sensor inserted it first
                    return "another sensor"
                return _Taken(None)
            if row["holder"] not in (None, self.holder) and row["expires_at"] >= now:
                return f"sensor {row['holder']}"
            c.execute(update(device_leases).where(*where).values(holder=self.holder, expires_at=now + self.ttl_s))
        if row["holder"] not in (None, self.holder):  # expired: its holder died without recording its pacing
            mono = self._clock()
            return _Taken(Handover(mono, mono))
        return _Taken(self._handover(now, row["last_sent"], row["last_connection"]))

    def _handover(self, now: float, last_sent: float | None, last_connection: float | None) -> Handover | None:
        """The previous holder's pacing on this host's CLOCK_MONOTONIC."""
        if last_sent is None or last_connection is None:
            return None
        mono = self._clock()
        # a time in the future (another host's clock ahead of ours) counts as now, never as a longer wait
        return Handover(mono - max(0.0, now - last_sent), mono - max(0.0, now - last_connection))

    def release(self, address: str, last_sent: float, last_connection: float) -> None:
        now, mono = self._wall(), self._clock()
        self._held.discard(address)
        with domain_errors(self.url), self.engine.begin() as c:
            c.execute(update(device_leases).where(*self._key(), device_leases.c.address == address).values(
                holder=None, expires_at=now, last_sent=now - (mono - last_sent),
                last_connection=now - (mono - last_connection)))

    def renew(self) -> int:
        """Push the expiry of every lease this scan holds one lease time ahead; how many it holds."""
        with domain_errors(self.url), self.engine.begin() as c:
            return int(c.execute(update(device_leases).where(*self._key())
                                 .values(expires_at=self._wall() + self.ttl_s)).rowcount)

    async def _renew_while_held(self) -> None:
        while self._held:
            await asyncio.sleep(self.ttl_s / 4)
            try:
                await asyncio.to_thread(self.renew)
            except Exception as exc:  # the database is unreachable: the leases run out, and the warning says so
                log.error("cannot renew the central device leases (%s): another sensor may take the devices of "
                          "this scan in %.0f s", exc, self.ttl_s)

    async def acquire(self, address: str, stopping: Callable[[], bool]) -> HeldLease | None:
        """Wait for the device's host-wide lease, then its central one; None if the scan stops first."""
        local = await self.host.acquire(address, stopping)
        if local is None:
            return None
        try:
            while not stopping():
                got = await asyncio.to_thread(self.try_acquire, address)
                if isinstance(got, _Taken):
                    self._held.add(address)
                    if self._renewing is None or self._renewing.done():
                        self._renewing = asyncio.create_task(self._renew_while_held())
                    return _Lease(self, address, local, got.handover)
                if not any(a == address for a, _ in self.waited):
                    self.waited.append((address, got))
                    log.warning("%s is being scanned by another otprobe sensor (%s): waiting for it", address, got)
                await asyncio.sleep(POLL_S)
        except BaseException:
            _pass_back(local)
            raise
        _pass_back(local)
        return None


def _pass_back(local: HeldLease) -> None:
    """Release a host lease this scan sent nothing under: the previous holder's pacing stays on record."""
    previous = local.handover
    local.release(previous.last_sent if previous else 0.0, previous.last_connection if previous else 0.0)


class _Lease:
    """A device held on this host and in the central database; released from both, the central one first."""

    def __init__(self, leases: CentralLeases, address: str, local: HeldLease, central: Handover | None) -> None:
        self._leases, self.address, self._local = leases, address, local
        self.handover = _later(local.handover, central)

    def release(self, last_sent: float, last_connection: float) -> None:
        try:
            self._leases.release(self.address, last_sent, last_connection)
        finally:
            self._local.release(last_sent, last_connection)


def _later(a: Handover | None, b: Handover | None) -> Handover | None:
    """The stricter of two hand-overs: the later packet and the later connection."""
    if a is None or b is None:
        return a or b
    return Handover(max(a.last_sent, b.last_sent), max(a.last_connection, b.last_connection))
