"""Empty addresses on loopback, and a receiver for them: shared by the empty-address tests and bench/bench_empty24.py.

On loopback an address with nothing listening answers a SYN with RST and a datagram with ICMP port unreachable: a
refusing host for free. A host that drops everything (behind a DROP firewall) needs no root either: `dropping()`
gives each TCP port a listener whose accept queue is full and never accepted, so the kernel drops every further SYN,
and each UDP port a socket that never answers. Neither kind of empty address can record what it receives, so
`capture()` runs tcpdump on lo and `received()` reads, per address, the packets the scanner sent it (a SYN, a
segment carrying bytes, a FIN, a datagram) with kernel time stamps on the monotonic clock.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from lo_capture import Capture, frames, tcpdump


@contextlib.contextmanager
def dropping(ips: Sequence[str], tcp: Sequence[int], udp: Sequence[int]) -> Iterator[None]:
    """Make `ips` drop every SYN to `tcp` and ignore every datagram to `udp` while the context lasts."""
    sockets: list[socket.socket] = []
    try:
        for ip in ips:
            for port in tcp:
                listener = socket.socket()
                listener.bind((ip, port))
                listener.listen(0)
                sockets.append(listener)
                for _ in range(2):  # backlog 0 queues one or two handshakes; later SYNs are dropped
                    filler = socket.socket()
                    # from the address itself: a filler still retrying its own SYN is not traffic to the address
                    filler.bind((ip, 0))
                    filler.setblocking(False)
                    filler.connect_ex((ip, port))
                    sockets.append(filler)
            for port in udp:
                sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sink.bind((ip, port))
                sockets.append(sink)
        time.sleep(0.2)  # the fillers' handshakes complete before anything is measured
        yield
    finally:
        for s in sockets:
            s.close()


@contextlib.contextmanager
def capture(net: str, path: Path) -> Iterator[Capture]:
    """tcpdump on lo of what is sent to `net` (a CIDR) from outside it, until the context ends."""
    with tcpdump(path, f"(tcp or udp) and dst net {net} and not src net {net}", linger_s=0.2) as cap:
        yield cap


@dataclass(frozen=True)
class Packet:
    at: float  # monotonic
    kind: str  # syn, data, fin, udp


def received(cap: Capture) -> dict[str, list[Packet]]:
    """Per destination address, the scanner's packets in time order (one frame may count as data and FIN)."""
    step = cap.clock_step()
    if abs(step) > 0.01:
        # a packet's place in monotonic time is then unknown by up to the step: measuring spacing would be a guess
        pytest.skip(f"the wall clock was stepped by {step:+.3f} s during the capture; its stamps cannot be placed")
    packets: dict[str, list[Packet]] = {}
    for frame in frames(cap):
        packets.setdefault(frame.dst, []).extend(Packet(frame.at, kind) for kind in frame.kinds)
    return packets
