"""The one choke point between a probe and the network.

A probe announces each operation to its Link before the library call that sends it. The link
refuses what is undeclared or not read-only, refuses to go past the probe's declared packet budget,
waits on the pacer (token buckets, connection gap, deadline), and writes the audit record: the intent
before the packet leaves, the outcome after. The one packet that may leave without its intent is a close, once the
audit log has failed: closing an open connection is still the safest act, so it goes, and a warning on stderr
stands in for the record. A pacer that also has `observe` is told how long each successful
operation took (for adaptive slowdown); one that has `note_closed` learns when the device ended a connection
itself (`connection_ended`), so that the connection gap counts from that end too, and one that has
`connect_failed` learns when a connect opened nothing, so that no close is owed for it. Every probe runs on asyncio
streams, so a cancellation (session limit, deadline, second Ctrl-C) always reaches the probe and its close.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from otprobe.contract import Category, Kind, Operation, Probe, Timeouts
from otprobe.errors import AuditError, BudgetExceeded, PolicyViolation, ProbeContractError
from otprobe.safety import require_read_only

# No host answered at all: the kernel's neighbour discovery (ARP) got no reply, or a router said the host or its
# network cannot be reached. Unlike a refusal (RST, ICMP port unreachable), that proves nobody is there.
UNREACHABLE = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN})

if TYPE_CHECKING:
    from otprobe.model import Target


log = logging.getLogger(__name__)


class Pacer(Protocol):
    """Grants packets to one device: token buckets, connection gap, deadline. May raise ScanAborted.

    `acquire` waits for the grant; `depart` clears the granted packets to leave now and stamps their departure,
    and returns in the same loop step as the send that follows it.
    """

    async def acquire(self, kind: Kind, packets: int) -> None: ...

    async def depart(self, kind: Kind, packets: int) -> None: ...


@runtime_checkable
class Observer(Protocol):
    """Optional pacer side: told the duration of each successful operation (send to reply, or connect)."""

    def observe(self, kind: Kind, seconds: float) -> None: ...


@runtime_checkable
class ConnectionTracker(Protocol):
    """Optional pacer side: told when the device ended a connection itself, so that no close of ours was paced."""

    def note_closed(self) -> None: ...


@runtime_checkable
class ConnectFailureTracker(Protocol):
    """Optional pacer side: told when a connect that left opened no connection, so that no close is owed."""

    def connect_failed(self) -> None: ...


class AuditSink(Protocol):
    """Receives one intent record before each operation and one outcome record after it."""

    def intent(self, *, device: str, protocol: str, operation: str, code: str, packets: int) -> int: ...

    def outcome(self, record_id: int, outcome: str, detail: str | None = None) -> None: ...


class _Unpaced:
    async def acquire(self, kind: Kind, packets: int) -> None:
        return None

    async def depart(self, kind: Kind, packets: int) -> None:
        return None


class Link:
    """Per (device, probe run) gate, the otprobe.contract.ProbeLink a probe runs on. Create one per attempt;
    `packets_sent` is what this attempt cost."""

    def __init__(
        self,
        probe: Probe,
        target: Target,
        *,
        pacer: Pacer | None = None,
        audit: AuditSink | None = None,
        timeouts: Timeouts | None = None,
        enabled_intrusive: frozenset[tuple[str, str]] = frozenset(),
        in_scope: Callable[[str], bool] | None = None,
    ) -> None:
        self.probe = probe
        self.target = target
        self.pacer: Pacer = pacer or _Unpaced()
        self.audit = audit
        self.timeouts = timeouts or Timeouts()
        self.budget = probe.max_packets()
        self.packets_sent = 0
        self.unaudited_closes = 0  # closes sent after the audit log failed (see _intent)
        # an operation failed with one of UNREACHABLE: whatever the probe called it, the host did not answer
        self.unreachable = False
        self._enabled_intrusive = enabled_intrusive
        self._in_scope = in_scope
        self._scope_checked = False  # a link has one target: once allowed, it stays allowed
        # The pacer's optional sides, looked up once: a runtime Protocol check costs tens of microseconds a call.
        self._observer = self.pacer if isinstance(self.pacer, Observer) else None
        self._tracker = self.pacer if isinstance(self.pacer, ConnectionTracker) else None
        self._connect_failures = self.pacer if isinstance(self.pacer, ConnectFailureTracker) else None

    def _check(self, name: str) -> Operation:
        # Scope was enforced when the targets were resolved; checking again here means no code path can reach
        # an excluded or out-of-scope address, whatever the caller did (docs/safety.md#scope-and-exclusions).
        if not self._scope_checked and self._in_scope is not None and not self._in_scope(self.target.ip):
            raise PolicyViolation(f"{self.target.ip} is outside the scan's scope or excluded; refused")
        self._scope_checked = True
        try:
            op = self.probe.operation(name)
        except KeyError:
            raise ProbeContractError(f"probe {self.probe.name} sent undeclared operation {name!r}") from None
        require_read_only(self.probe.wire_protocol(), op.code)
        # Keyed by protocol too: a profile enabling an operation for one protocol enables no namesake elsewhere.
        if op.category is Category.INTRUSIVE and (self.probe.name, op.name) not in self._enabled_intrusive:
            raise ProbeContractError(f"intrusive operation {self.probe.name}.{op.name} is not enabled by the profile")
        if self.packets_sent + op.packets > self.budget:
            raise BudgetExceeded(
                f"probe {self.probe.name} would send {self.packets_sent + op.packets} packets to {self.target.ip}, "
                f"over its declared budget of {self.budget}"
            )
        return op

    def op(self, name: str) -> _Announced:
        """Announce, pace and audit one operation; the body performs the library call that sends it.

        The body's first statement must put the packets on the wire with no await before them (a write, a
        connect, a shutdown): their departure is stamped right before the body runs, and the next packet to the
        device, its class and the scan is spaced from that stamp.
        """
        return _Announced(self, name)

    def connection_ended(self) -> None:
        """The device closed or reset the connection first, so no close is announced or sent; the connection gap
        before the next connect still counts from now, the connection's real end."""
        if self._tracker is not None:
            self._tracker.note_closed()

    def _observe(self, op: Operation, seconds: float) -> None:
        if self._observer is not None:
            self._observer.observe(op.kind, seconds)

    def _intent(self, op: Operation) -> int | None:
        if self.audit is None:
            return None
        try:
            return self.audit.intent(
                device=self.target.ip, protocol=self.probe.name, operation=op.name, code=op.code, packets=op.packets
            )
        except AuditError as exc:
            if op.kind is not Kind.CLOSE:
                raise  # nothing new leaves without its intent on disk
            # Leaving the connection open is worse for the device than an unrecorded FIN: the close still goes
            # (paced), and what the log could not hold is said on stderr instead.
            log.warning(
                "audit log failed (%s): closing the connection to %s (%s) anyway, without an intent record",
                exc, self.target.ip, self.probe.name,
            )
            self.unaudited_closes += 1
            return None

    def _outcome(self, record: int | None, outcome: str, detail: str | None = None) -> None:
        if self.audit is not None and record is not None:
            self.audit.outcome(record, outcome, detail)


class _Announced(AbstractAsyncContextManager[Operation]):
    """One `Link.op`: checked, paced and its intent written on entry, its outcome written on exit. A class rather
    than an @asynccontextmanager generator, which costs a generator, its wrapper and their frames per packet."""

    __slots__ = ("_link", "_name", "_op", "_record", "_started")

    def __init__(self, link: Link, name: str) -> None:
        self._link, self._name = link, name

    async def __aenter__(self) -> Operation:
        link = self._link
        op = self._op = link._check(self._name)
        await link.pacer.acquire(op.kind, op.packets)
        record = self._record = link._intent(op)
        try:
            await link.pacer.depart(op.kind, op.packets)
        except BaseException as exc:
            link._outcome(record, type(exc).__name__, str(exc) or None)
            raise
        link.packets_sent += op.packets
        self._started = asyncio.get_running_loop().time()
        return op

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        link, op = self._link, self._op
        if exc_type is not None:
            link._outcome(self._record, exc_type.__name__, str(exc) or None)
            link.unreachable |= isinstance(exc, OSError) and exc.errno in UNREACHABLE
            if op.kind is Kind.CONNECT and link._connect_failures is not None:
                link._connect_failures.connect_failed()
            return  # the exception goes on
        link._outcome(self._record, "ok")
        link._observe(op, asyncio.get_running_loop().time() - self._started)
        task = asyncio.current_task()
        if op.kind is Kind.CLOSE and task is not None and task.cancelling():
            # A paced close holds back a cancellation until it is sent (otprobe.pacing.pacer): deliver it now.
            raise asyncio.CancelledError
