"""The TCP front every simulated device listens through.

It owns the listening socket on the device's own loopback address, records every connection and
request frame, and applies the transport-level fault modes, so that protocol modules only turn a
request frame into reply frames. A protocol module supplies a `Framing` (how long a frame is, what
operation it carries, how to corrupt a reply for the fault modes) and a handler coroutine.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Iterator
from itertools import chain, repeat
from typing import Any

from simulators.faults import HOSTILE_SENDERS, Fault, FaultMode, SlowLoad
from simulators.recorder import Connection, Recorder

MAX_FRAME = 65_536 + 64
HUGE_LENGTH = 0xFFFF  # what the huge_length fault's reply header claims
SEND_CHUNK = 1024  # the hostile senders write this much at a time...
SEND_PAUSE_S = 0.001  # ...this often (about 1 MB/s, a fast embedded stack), except trickle:
TRICKLE_PAUSE_S = 0.25  # one byte this often
# After the client's FIN the device closes too and watches, at most this long, until the connection is fully
# closed, to see whether the client reset it after all.
RESET_WATCH_S = 1.0
_TCP_CLOSE = 7  # tcpi_state of a connection fully closed (Linux TCP_INFO)


class Framing:
    """Protocol hooks. Subclasses set protocol and header_len and implement frame_length and classify."""

    protocol: str = ""
    header_len: int = 0

    def frame_length(self, header: bytes) -> int:
        """Total frame length read from the first header_len bytes; ValueError if it is not a frame."""
        raise NotImplementedError

    def classify(self, frame: bytes) -> tuple[str, bool, dict[str, Any]]:
        """(operation, allowed, detail) of one request frame."""
        raise NotImplementedError

    def malformed(self, reply: bytes) -> bytes:
        return reply[: self.header_len] + bytes([0xFF]) * (len(reply) - self.header_len)

    def oversized(self, reply: bytes) -> bytes:
        return reply + bytes(60_000)

    def wrong_id(self, reply: bytes) -> bytes:
        return reply

    def endless(self, request: bytes, reply: bytes) -> bytes:
        return reply

    def huge_length(self, reply: bytes) -> bytes:
        """The reply with its header claiming HUGE_LENGTH bytes, padded to what the header claims."""
        raise NotImplementedError


class ConnState:
    """Per-connection state a handler may keep (session handle, negotiated PDU, backend socket...)."""

    def __init__(self, conn: Connection, peer: str) -> None:
        self.conn = conn
        self.peer = peer
        self.data: dict[str, Any] = {}
        self.sender: asyncio.Task[None] | None = None  # a hostile sender's writing, stopped by the client's FIN

    async def stop_sending(self) -> None:
        if self.sender is not None:
            self.sender.cancel()
            await asyncio.gather(self.sender, return_exceptions=True)


Handler = Callable[[bytes, ConnState], Awaitable[list[bytes]]]
Closer = Callable[[ConnState], Awaitable[None]]


def _chunks(data: bytes, size: int = SEND_CHUNK) -> Iterator[bytes]:
    return (data[i : i + size] for i in range(0, len(data), size))


async def _reset_after_fin(writer: asyncio.StreamWriter) -> bool:
    """After the client's FIN: send ours and tell whether the client reset the connection before it fully closed.

    A client that closes with bytes of ours unread in its receive queue resets the connection even after its FIN;
    the kernel reports it as a pending socket error once the connection is closed.
    """
    sock = writer.get_extra_info("socket")
    try:
        writer.write_eof()
        deadline = time.monotonic() + RESET_WATCH_S
        while sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] != _TCP_CLOSE:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.005)
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0
    except OSError:
        return True  # asyncio already dropped the socket: only a failed write does that here


# struct tcp_info (linux/tcp.h): 8 one-byte fields, then u32s; tcpi_last_data_recv and tcpi_last_ack_recv are the
# 12th and 13th u32: milliseconds since the last data segment, and since the last segment at all, reached the socket.
_TCP_INFO_AGES = struct.Struct("<8x44xII")
_JIFFY_S = 0.004  # one jiffy at HZ=250, the coarsest of the common kernel configurations (100 is rare now)


def arrived(writer: asyncio.StreamWriter, segment: str) -> float | None:
    """When the last data segment (`"data"`: a request, or the handshake for a new connection) or the last segment
    at all (`"ack"`: the client's FIN, read as EOF) reached this socket, from the kernel's own record, in
    time.monotonic() terms; None where the kernel does not say (not Linux).

    Why: a device stamping packets when its event loop gets to them stamps late whenever its process waits for a
    CPU, and two packets read together look closer than they arrived. The kernel keeps only the latest segment's
    time, so the stamp is exact when nothing else arrived before the device looked, and otherwise lies between the
    true arrival and the moment the device looked: never worse than the device's own clock. Resolution: one jiffy
    (1-4 ms), far below the spacing being checked; the stamp errs late, never early."""
    sock = writer.get_extra_info("socket")
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_AGES.size)
    except (AttributeError, OSError):
        return None
    if len(info) < _TCP_INFO_AGES.size:
        return None
    data_ms, ack_ms = _TCP_INFO_AGES.unpack(info)
    now = time.monotonic()
    # The kernel counts ages in jiffies, so an age can read up to one jiffy long: adding one keeps the stamp at or
    # after the true arrival (never before a packet was sent), and never later than now.
    return min(now, now - (data_ms if segment == "data" else ack_ms) / 1000 + _JIFFY_S)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST, as a device does when it refuses or drops a connection."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class TcpFront:
    def __init__(
        self,
        host: str,
        port: int,
        framing: Framing,
        handler: Handler,
        recorder: Recorder,
        fault: Fault,
        on_close: Closer | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.framing, self.handler, self.recorder, self.fault = framing, handler, recorder, fault
        self.on_close = on_close
        self._server: asyncio.Server | None = None
        self._live: dict[int, tuple[Connection, asyncio.StreamWriter]] = {}
        self.load = SlowLoad(fault)
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        if self.fault.mode is FaultMode.REFUSED:
            return
        self._server = await asyncio.start_server(self._serve, self.host, self.port, reuse_address=True)
        # port 0 asks the kernel for a free port: report the one actually bound
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn, writer in list(self._live.values()):
                self.recorder.connection_closed(conn, "server")
                writer.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    def latency(self) -> float:
        return self.load.latency()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer_addr = writer.get_extra_info("peername")
        peer = f"{peer_addr[0]}:{peer_addr[1]}" if peer_addr else "?"
        conn = self.recorder.connection_opened(peer, at=arrived(writer, "data"))
        state = ConnState(conn, peer)
        try:
            if self.fault.mode is FaultMode.RESET or self._over_limit():
                self.recorder.connection_closed(conn, "server")
                _reset(writer)
                return
            self._live[conn.id] = (conn, writer)
            await self._loop(reader, writer, state)
        except asyncio.CancelledError:
            self.recorder.connection_closed(conn, "server")
            writer.transport.abort()
        except (ConnectionResetError, BrokenPipeError):
            # the client reset the connection while we were replying
            self.recorder.connection_closed(conn, "rst")
        finally:
            await state.stop_sending()
            self._live.pop(conn.id, None)
            self._tasks.discard(task)
            if self.on_close is not None:
                await self.on_close(state)
            if not writer.is_closing():
                writer.close()
            self.recorder.connection_released(conn)

    def _over_limit(self) -> bool:
        if self.fault.mode is not FaultMode.CONN_LIMIT or len(self._live) < self.fault.limit:
            return False
        if self.fault.policy == "refuse":
            return True
        # recorded before closing, so the victim's reader does not log our close as the client's FIN
        victim_conn, victim = self._live.pop(min(self._live))
        self.recorder.connection_closed(victim_conn, "server")
        victim.close()
        return False

    async def _loop(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: ConnState) -> None:
        framing, fault, conn = self.framing, self.fault, state.conn
        while True:
            try:
                header = await reader.readexactly(framing.header_len)
                length = framing.frame_length(header)
                if not framing.header_len <= length <= MAX_FRAME:
                    raise ValueError(length)
                frame = header + await reader.readexactly(length - framing.header_len)
            except asyncio.IncompleteReadError as exc:
                self.recorder.connection_closed(conn, "fin", at=arrived(writer, "ack"))
                if exc.partial:
                    self.recorder.request(framing.protocol, "incomplete-frame", len(exc.partial), False, conn)
                await state.stop_sending()
                if await _reset_after_fin(writer):
                    self.recorder.reset_after_fin(conn)
                return
            except ConnectionResetError:
                self.recorder.connection_closed(conn, "rst")
                return
            except ValueError:
                self.recorder.request(framing.protocol, "bad-frame", framing.header_len, False, conn)
                self.recorder.connection_closed(conn, "server")
                _reset(writer)
                return
            operation, allowed, detail = framing.classify(frame)
            at = arrived(writer, "data")
            self.recorder.request(framing.protocol, operation, len(frame), allowed, conn, at=at, **detail)
            if fault.mode is FaultMode.SILENT:
                continue
            if fault.mode in HOSTILE_SENDERS:
                if state.sender is None:  # the first request only; the device is too busy for any other
                    replies = await self.handler(frame, state)
                    state.sender = asyncio.create_task(self._send_hostile(writer, b"".join(replies)))
                continue
            replies = await self.handler(frame, state)
            if fault.mode is FaultMode.SLOW:
                await asyncio.sleep(self.latency())
            for reply in replies:
                if fault.mode is FaultMode.TRUNCATED:
                    writer.write(reply[: max(1, len(reply) // 2)])
                    await writer.drain()
                    self.recorder.connection_closed(conn, "server")
                    writer.close()
                    return
                writer.write(self._mutate(frame, reply))
            await writer.drain()
            if state.data.get("close_after_reply"):
                self.recorder.connection_closed(conn, "server")
                if state.data["close_after_reply"] == "rst":  # e.g. an S7 CPU refusing a wrong rack/slot
                    _reset(writer)
                return

    async def _send_hostile(self, writer: asyncio.StreamWriter, reply: bytes) -> None:
        """Write the hostile sender's bytes until they end (huge_length) or the client's FIN stops them."""
        mode, pause = self.fault.mode, SEND_PAUSE_S
        pieces: Iterator[bytes]
        if mode is FaultMode.TRICKLE:
            pieces, pause = _chunks(reply, 1), TRICKLE_PAUSE_S
        elif mode is FaultMode.HUGE_LENGTH:
            pieces = _chunks(self.framing.huge_length(reply))
        else:
            pieces = chain(_chunks(reply), repeat(bytes(SEND_CHUNK)))
        try:
            for piece in pieces:
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(pause)
        except ConnectionError:
            return  # the client reset the connection: the reading side records it

    def _mutate(self, request: bytes, reply: bytes) -> bytes:
        mode = self.fault.mode
        if mode is FaultMode.MALFORMED:
            return self.framing.malformed(reply)
        if mode is FaultMode.OVERSIZED:
            return self.framing.oversized(reply)
        if mode is FaultMode.WRONG_ID:
            return self.framing.wrong_id(reply)
        if mode is FaultMode.ENDLESS:
            return self.framing.endless(request, reply)
        return reply
