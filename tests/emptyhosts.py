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
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest


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


def can_capture() -> bool:
    if shutil.which("tcpdump") is None:
        return False
    # -d opens the interface to compile a filter for it, and fails without the right to capture there
    return subprocess.run(["tcpdump", "-i", "lo", "-d", "tcp"], capture_output=True, timeout=10).returncode == 0


@dataclass
class Capture:
    path: Path
    wall_minus_mono: float
    # read again when the capture ends: tcpdump stamps with the wall clock, which time synchronisation may step
    wall_minus_mono_after: float | None = None


@contextlib.contextmanager
def capture(net: str, path: Path) -> Iterator[Capture]:
    """tcpdump on lo of what is sent to `net` (a CIDR) from outside it, until the context ends."""
    command = ["tcpdump", "-i", "lo", "-n", "--immediate-mode", "-U", "-s", "128", "-w", str(path),
               f"(tcp or udp) and dst net {net} and not src net {net}"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE)
    try:
        assert process.stderr is not None
        line = process.stderr.readline().decode()  # "listening on lo, ..." once the capture is armed
        if "listening on" not in line:
            raise RuntimeError(f"tcpdump did not start: {line.strip()}")
        cap = Capture(path, time.time() - time.monotonic())
        yield cap
        cap.wall_minus_mono_after = time.time() - time.monotonic()
    finally:
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        process.wait(10)


@dataclass(frozen=True)
class Packet:
    at: float  # monotonic
    kind: str  # syn, data, fin, udp


def received(cap: Capture) -> dict[str, list[Packet]]:
    """Per destination address, the scanner's packets in time order (one frame may count as data and FIN)."""
    assert cap.wall_minus_mono_after is not None, "the capture has not ended"
    step = cap.wall_minus_mono_after - cap.wall_minus_mono
    if abs(step) > 0.01:
        # a packet's place in monotonic time is then unknown by up to the step: measuring spacing would be a guess
        pytest.skip(f"the wall clock was stepped by {step:+.3f} s during the capture; its stamps cannot be placed")
    data = cap.path.read_bytes()
    endian, scale = {0xA1B2C3D4: ("<", 1e-6), 0xA1B23C4D: ("<", 1e-9)}[struct.unpack("<I", data[:4])[0]]
    packets: dict[str, list[Packet]] = {}
    offset = 24
    while offset + 16 <= len(data):
        sec, frac, included, _ = struct.unpack(endian + "IIII", data[offset:offset + 16])
        frame = data[offset + 16:offset + 16 + included]
        offset += 16 + included
        if len(frame) < 34 or frame[12:14] != b"\x08\x00":  # IPv4 on Linux lo's Ethernet framing
            continue
        ip = frame[14:]
        header, total, proto = (ip[0] & 0x0F) * 4, struct.unpack(">H", ip[2:4])[0], ip[9]
        dst = ".".join(str(octet) for octet in ip[16:20])
        at = sec + frac * scale - cap.wall_minus_mono
        kinds: list[str] = []
        if proto == 17:
            kinds.append("udp")
        elif proto == 6:
            flags, payload = ip[header + 13], total - header - (ip[header + 12] >> 4) * 4
            kinds += ["syn"] * (flags & 0x12 == 0x02) + ["data"] * (payload > 0) + ["fin"] * (flags & 0x01)
        packets.setdefault(dst, []).extend(Packet(at, kind) for kind in kinds)
    return packets
