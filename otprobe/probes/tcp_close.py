"""How every probe ends a TCP connection: FIN first, then read and discard what the device still sends, then close.

Why: close(2) on a socket whose receive queue still holds bytes we never read makes the kernel answer with RST
instead of FIN, and the same happens to any byte that reaches the socket after it is closed. A device that keeps
sending (an endless stream, a reply claiming 65,535 bytes, a reply trickling in) would see its connection torn
down by RST, which some embedded stacks log as an error or handle badly. So the close shuts the write side first
(the FIN, the one packet the close is announced and counted for), then drains: reads and discards at most
DRAIN_LIMIT bytes for at most `drain_seconds()`, until the device answers our FIN with its own (EOF). Only then is
the socket closed, with nothing unread, so nothing but the FIN ever left. Draining sends nothing.

A device that ignores our FIN and goes on sending past either bound gets its RST after all: by then it is the
device that misbehaves, and the probe's session stays bounded.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from otprobe.contract import ProbeLink, Timeouts

# Bytes read and discarded after our FIN, at most. While a probe waits for its close to be paced, a stream reader
# stops reading once its own buffer is full, and Linux lets the receive queue behind it grow with what the device
# sends: about 1.1 MB after a 1.5 s wait on a 1 MB/s stream. 4 MiB covers a wait of a few seconds at that rate;
# reading it takes milliseconds, and the time bound below still holds on a slow link.
DRAIN_LIMIT = 4 * 1024 * 1024
DRAIN_MAX_S = 1.0  # and for at most this long, or the response timeout if that is shorter


def drain_seconds(timeouts: Timeouts) -> float:
    return min(timeouts.response_s, DRAIN_MAX_S)


class _Drain(asyncio.Protocol):
    """Takes over the transport after our FIN: discards what arrives, and closes at EOF or past the byte limit."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.left = DRAIN_LIMIT
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.left -= len(data)
        if self.left < 0:
            self.transport.close()  # the device ignores our FIN: stop reading it

    def eof_received(self) -> bool:
        return False  # the device's FIN after ours: asyncio closes the transport, nothing is left unread

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)


async def close(link: ProbeLink, transport: asyncio.Transport | None, *, device_ended: bool) -> None:
    """End one probe connection. `device_ended`: the device closed or reset it first, so nothing is announced or
    sent and the link is told instead. Otherwise one announced `close` operation: FIN, drain, close. The socket is
    closed on every path, also when the link refuses the announcement or a cancellation cuts the drain short."""
    if device_ended:
        link.connection_ended()
        if transport is not None:
            transport.close()
        return
    if transport is None:
        return
    try:
        async with link.op("close"):
            await _fin_and_drain(transport, drain_seconds(link.timeouts))
    finally:
        transport.close()


async def _fin_and_drain(transport: asyncio.Transport, seconds: float) -> None:
    # The FIN goes out before the first await, as the link requires of an operation's packet.
    if transport.is_closing():
        return
    try:
        transport.write_eof()
    except OSError:
        return  # the connection is already gone (reset meanwhile): nothing can be sent or drained
    drain = _Drain(transport)
    # The reader the probe used may hold bytes it read but never took: they are in our memory, not in the
    # kernel's queue, so dropping them with the old protocol costs no RST.
    transport.set_protocol(drain)
    transport.resume_reading()  # a stream reader pauses the socket when its buffer is full
    # Past the time bound the device neither closed nor stopped: the caller closes, the kernel resets what is left.
    with suppress(TimeoutError):
        await asyncio.wait_for(drain.lost, seconds)
