"""tcpdump on Linux lo, read back: the kernel's own stamps of the packets the scanner sent, on the monotonic clock.

Shared by the receiver-side tests of empty addresses (tests/emptyhosts.py) and the benchmarks that judge caps by
kernel stamps (bench/bench_stress.py, bench/bench_throughput.py). tcpdump stamps with the wall clock, so a capture
notes the wall clock's offset from the monotonic one when it starts and again when it ends: a difference means
the wall clock was stepped meanwhile, and a packet's place in monotonic time is then unknown by up to the step.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def can_capture() -> bool:
    if shutil.which("tcpdump") is None:
        return False
    # -d opens the interface to compile a filter for it, and fails without the right to capture there
    return subprocess.run(["tcpdump", "-i", "lo", "-d", "tcp"], capture_output=True, timeout=10).returncode == 0


@dataclass
class Capture:
    path: Path
    wall_minus_mono: float
    wall_minus_mono_after: float | None = None  # read when the capture ends

    def clock_step(self) -> float:
        """How far the wall clock was stepped during the capture (0 when it was not)."""
        assert self.wall_minus_mono_after is not None, "the capture has not ended"
        return self.wall_minus_mono_after - self.wall_minus_mono


@contextlib.contextmanager
def tcpdump(path: Path, bpf: str, *, linger_s: float = 0.0) -> Iterator[Capture]:
    """tcpdump on lo of the packets `bpf` selects into `path`, from when it is armed until the context ends (and
    `linger_s` more)."""
    # packets handed over and written one by one: without these, those still in the kernel's buffer when tcpdump
    # is stopped are lost (all of them, measured, for a capture stopped 0.1 s after the traffic)
    command = ["tcpdump", "-i", "lo", "-n", "--immediate-mode", "-U", "-s", "128", "-w", str(path), bpf]
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
        time.sleep(linger_s)
        process.send_signal(signal.SIGINT)
        process.wait(10)


@dataclass(frozen=True)
class Frame:
    at: float  # monotonic
    dst: str
    dport: int
    kinds: tuple[str, ...]  # what a receiver counts in it: syn, data, fin (one frame may be data and FIN), udp


def frames(cap: Capture) -> Iterator[Frame]:
    """The IPv4 frames of the capture (Ethernet framing, as on Linux lo), in the order captured."""
    data = cap.path.read_bytes()
    endian, scale = {0xA1B2C3D4: ("<", 1e-6), 0xA1B23C4D: ("<", 1e-9)}[struct.unpack("<I", data[:4])[0]]
    offset = 24
    while offset + 16 <= len(data):
        sec, frac, included, _ = struct.unpack(endian + "IIII", data[offset:offset + 16])
        frame = data[offset + 16:offset + 16 + included]
        offset += 16 + included
        if len(frame) < 34 or frame[12:14] != b"\x08\x00":  # IPv4 only
            continue
        ip = frame[14:]
        header, total, proto = (ip[0] & 0x0F) * 4, struct.unpack(">H", ip[2:4])[0], ip[9]
        kinds: tuple[str, ...] = ()
        if proto == 17:
            kinds = ("udp",)
        elif proto == 6:
            flags, payload = ip[header + 13], total - header - (ip[header + 12] >> 4) * 4
            # a SYN without ACK: the scanner opening a connection (a device's SYN-ACK is not counted)
            kinds = ("syn",) * (flags & 0x12 == 0x02) + ("data",) * (payload > 0) + ("fin",) * (flags & 0x01)
        yield Frame(sec + frac * scale - cap.wall_minus_mono, ".".join(str(octet) for octet in ip[16:20]),
                    struct.unpack(">H", ip[header + 2:header + 4])[0], kinds)
