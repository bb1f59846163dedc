"""The UDP front a simulated device answers datagrams through.

It owns the device's datagram socket on its own loopback address and port, records every datagram it receives (one
packet each, `connection=None`), applies the fault modes that make sense for a datagram and sends the replies back to
the sender's address and port. A protocol module supplies a `DatagramCodec`: how to turn one request datagram into
its classification and replies, and how to corrupt a reply for the fault modes.

Fault modes for datagrams: `refused` binds nothing (the kernel answers ICMP port unreachable), `silent` records and
never replies, `slow` delays each reply, `malformed`, `oversized` and `wrong_tid` alter the reply as the codec says,
`truncated` sends its first half. The connection-level modes (reset, conn_limit, the hostile senders) have no
datagram meaning and leave replies alone.
"""

from __future__ import annotations

import asyncio
import fcntl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from simulators.faults import Fault, FaultMode, SlowLoad
from simulators.recorder import Recorder

Address = tuple[str, int]
_SIOCGSTAMPNS = 0x8907  # linux/sockios.h: the last received datagram's kernel timestamp, as a struct timespec
_TIMESPEC = struct.Struct("@qq")


class WallToMonotonic:
    """Turns the kernel's receive stamps (CLOCK_REALTIME) into time.monotonic() terms, also across a step of the
    wall clock.

    Why: the wall clock can be stepped while the device runs (time synchronisation on a machine just resumed from a
    snapshot moved it 6 s once); converting with the offset of the moment the device reads would then misplace a
    datagram that arrived before the step by the whole step. So the offset before the last step is kept too, and a
    reading is plausible only between the previous datagram's arrival (a socket's queue is first in, first out) and
    now. The current offset wins when both are plausible; when neither is, the datagram is stamped now: late, never
    early, as the TCP front's stamps err."""

    STEP_S = 0.01  # an offset change larger than this is a step (slewing moves it at most 0.5 ms per second)
    SLACK_S = 0.005  # the two clocks are read one after the other

    def __init__(self, monotonic: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self._monotonic, self._wall = monotonic, wall
        self._floor = monotonic()  # nothing read from now on arrived before this
        self._offset = wall() - self._floor
        self._before_step: float | None = None

    def convert(self, stamp: float) -> float:
        now = self._monotonic()
        offset = self._wall() - now
        if abs(offset - self._offset) > self.STEP_S:
            self._before_step = self._offset
        self._offset = offset
        for candidate in (offset, self._before_step):
            if candidate is not None and self._floor - self.SLACK_S <= stamp - candidate <= now + self.SLACK_S:
                self._floor = at = min(now, stamp - candidate)
                return at
        return now


@dataclass
class Exchange:
    """What one request datagram is (as the recorder files it) and what the device sends back (maybe nothing)."""

    operation: str
    allowed: bool
    replies: list[bytes] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)


class DatagramCodec:
    """Protocol hooks. Subclasses set protocol and implement exchange; the reply mutations have plain defaults."""

    protocol: str = ""
    header_len: int = 0  # bytes a malformed reply keeps intact, so that the client still takes it for this protocol

    def exchange(self, data: bytes, peer: Address) -> Exchange:
        """Classify one datagram and build the replies; must not raise on any input (undecodable: a violation)."""
        raise NotImplementedError

    def malformed(self, reply: bytes) -> bytes:
        return reply[: self.header_len] + bytes([0xFF]) * (len(reply) - self.header_len)

    def oversized(self, reply: bytes) -> bytes:
        return reply + bytes(8_000)

    def wrong_id(self, reply: bytes) -> bytes:
        return reply


class UdpFront:
    def __init__(self, host: str, port: int, codec: DatagramCodec, recorder: Recorder, fault: Fault,
                 load: SlowLoad | None = None) -> None:
        self.host, self.port = host, port
        self.codec, self.recorder, self.fault = codec, recorder, fault
        # a device that also speaks TCP passes its TCP front's load: one processor answers both
        self.load = load or SlowLoad(fault)
        self._transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._clock = WallToMonotonic()

    async def start(self) -> None:
        if self.fault.mode is FaultMode.REFUSED:
            return
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _Endpoint(self._datagram), local_addr=(self.host, self.port))
        # port 0 asks the kernel for a free port: report the one actually bound
        self.port = self._transport.get_extra_info("sockname")[1]
        self._arrived()  # the first SIOCGSTAMPNS turns the kernel's stamping on (it answers ENOENT this once)

    async def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _datagram(self, data: bytes, addr: Address) -> None:
        try:
            exchange = self.codec.exchange(data, addr)
        except Exception as exc:  # a codec's own bug: the datagram is still recorded, as one nobody answers
            exchange = Exchange("bad-frame", False, detail={"error": repr(exc)})
        self.recorder.request(self.codec.protocol, exchange.operation, len(data), exchange.allowed, None,
                              peer=f"{addr[0]}:{addr[1]}", at=self._arrived(), **exchange.detail)
        if self.fault.mode is FaultMode.SILENT or not exchange.replies:
            return
        replies = [self._mutate(reply) for reply in exchange.replies]
        task = asyncio.get_running_loop().create_task(self._send(replies, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _arrived(self) -> float | None:
        """When the datagram just read reached the socket, from the kernel (SIOCGSTAMPNS: the last datagram's receive
        time), in time.monotonic() terms; None where the kernel does not say. A device process that waited for a CPU
        would otherwise stamp datagrams late, and two read together as if they had arrived together."""
        sock = self._transport.get_extra_info("socket") if self._transport is not None else None
        try:
            stamp = fcntl.ioctl(sock.fileno(), _SIOCGSTAMPNS, bytes(_TIMESPEC.size))
        except (AttributeError, OSError):
            return None
        seconds, nanoseconds = _TIMESPEC.unpack(stamp)
        return self._clock.convert(seconds + nanoseconds / 1e9)

    def _mutate(self, reply: bytes) -> bytes:
        match self.fault.mode:
            case FaultMode.MALFORMED:
                return self.codec.malformed(reply)
            case FaultMode.OVERSIZED:
                return self.codec.oversized(reply)
            case FaultMode.WRONG_ID:
                return self.codec.wrong_id(reply)
            case FaultMode.TRUNCATED:
                return reply[: len(reply) // 2]
        return reply

    async def _send(self, replies: list[bytes], addr: Address) -> None:
        if self.fault.mode is FaultMode.SLOW:
            await asyncio.sleep(self.load.latency())
        for reply in replies:
            if self._transport is not None:
                self._transport.sendto(reply, addr)


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, received: Callable[[bytes, Address], None]) -> None:
        self.received = received

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.received(data, addr)


class UdpDevice:
    """A simulated device that speaks one datagram protocol through its own UdpFront; subclasses add `summary()`."""

    def __init__(self, front: UdpFront) -> None:
        self._front = front

    @property
    def port(self) -> int:
        return self._front.port

    async def start(self) -> None:
        await self._front.start()

    async def stop(self) -> None:
        await self._front.stop()
