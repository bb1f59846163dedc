"""What a simulated device saw: connections, requests, sessions. The receiver-side truth tests assert on.

A packet, as otprobe counts it, is what the device must handle: an accepted connection counts 1, each
request frame 1, a clean close (FIN) 1, each UDP datagram 1. `packet_times()` gives their monotonic
timestamps so tests can check rate caps at the receiver. A recorder given a sink also writes every event there as
a JSON line; `Recorder.from_events` rebuilds the same views from those lines in another process (time.monotonic()
is CLOCK_MONOTONIC, one clock for the whole machine on Linux, so the stamps stay comparable). A caller that knows
when a packet reached the host (the TCP front asks the kernel) passes that time as `at`; otherwise the stamp is the
moment the event is recorded, which is later by however long the device's process took to get to it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import IO, Any


@dataclass
class Connection:
    id: int
    peer: str
    opened_mono: float
    opened_wall: float
    closed_mono: float | None = None
    close_kind: str | None = None  # "fin" (client closed), "rst" (client reset), "server" (we closed it)
    # A client whose FIN came first can still reset the connection (it closed with our bytes unread): the device
    # watches for that after the FIN, until the connection is fully closed, and only then lets go of it.
    reset_after_fin: bool = False

    @property
    def duration_s(self) -> float | None:
        return None if self.closed_mono is None else self.closed_mono - self.opened_mono


@dataclass
class Request:
    mono: float
    wall: float
    protocol: str
    operation: str  # e.g. "fc:0x2B/mei:0x0E", "szl:0x0011", "enip:0x65", "cip:0x01/class:0x01"
    size: int
    allowed: bool
    connection: int | None  # None for a UDP datagram
    peer: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


class Recorder:
    """Thread-safe log of one device's traffic (the S7 backend runs in threads)."""

    # the devices of a plant share one sink: one lock for all keeps their JSON lines whole
    _sink_lock = threading.Lock()

    def __init__(self, device: str, sink: IO[str] | None = None) -> None:
        self.device = device
        self.connections: list[Connection] = []
        self.requests: list[Request] = []
        self.sessions_registered = 0
        self.sessions_unregistered = 0
        self.max_concurrent = 0
        self._open = 0
        self._held: set[int] = set()  # ids of the connections whose socket the device still holds
        self._lock = threading.Lock()
        self._sink = sink

    def _emit(self, kind: str, payload: dict[str, Any]) -> None:
        if self._sink is not None:
            line = json.dumps({"device": self.device, "event": kind, **payload}, default=str) + "\n"
            with Recorder._sink_lock:
                self._sink.write(line)
                self._sink.flush()

    def connection_opened(self, peer: str, at: float | None = None) -> Connection:
        """`at`: when the packet reached the host (CLOCK_MONOTONIC, e.g. from the kernel; default now)."""
        with self._lock:
            mono, wall = _stamps(at)
            conn = Connection(len(self.connections) + 1, peer, mono, wall)
            self.connections.append(conn)
            self._held.add(conn.id)
            self._open += 1
            self.max_concurrent = max(self.max_concurrent, self._open)
            self._emit("connect", asdict(conn))
            return conn

    def connection_closed(self, conn: Connection, kind: str, at: float | None = None) -> None:
        with self._lock:
            if conn.closed_mono is not None:
                return
            conn.closed_mono = _stamps(at)[0]
            conn.close_kind = kind
            self._open -= 1
            self._emit("close", asdict(conn))

    def reset_after_fin(self, conn: Connection) -> None:
        with self._lock:
            conn.reset_after_fin = True
            self._emit("reset_after_fin", {"id": conn.id, "mono": time.monotonic()})

    def connection_released(self, conn: Connection) -> None:
        """The device let go of the connection's socket: nothing more will be recorded about it, an RST after its FIN
        included. Kept in this process only (no event): in-process tests wait for it."""
        with self._lock:
            self._held.discard(conn.id)

    def request(
        self,
        protocol: str,
        operation: str,
        size: int,
        allowed: bool,
        conn: Connection | None = None,
        peer: str = "",
        at: float | None = None,
        **detail: Any,
    ) -> Request:
        with self._lock:
            req = Request(*_stamps(at), protocol, operation, size, allowed,
                          conn.id if conn else None, peer or (conn.peer if conn else ""), detail)
            self.requests.append(req)
            self._emit("request", asdict(req))
            return req

    def session(self, registered: bool) -> None:
        with self._lock:
            if registered:
                self.sessions_registered += 1
            else:
                self.sessions_unregistered += 1
            self._emit("session", {"registered": registered})

    @classmethod
    def from_events(cls, device: str, events: Iterable[Mapping[str, Any]]) -> Recorder:
        """The recorder of `device` rebuilt from the events its original wrote to a sink (parsed JSON lines, in the
        order written; events of other devices are skipped)."""
        recorder = cls(device)
        for event in events:
            if event.get("device") == device:
                recorder._replay(event)
        return recorder

    def _replay(self, event: Mapping[str, Any]) -> None:
        payload = {key: value for key, value in event.items() if key not in ("device", "event")}
        kind = event["event"]
        if kind == "connect":
            self.connections.append(Connection(**payload))
            self._open += 1
            self.max_concurrent = max(self.max_concurrent, self._open)
        elif kind == "close":
            # the close event carries the whole connection as it ends: its fields replace the opened ones
            conn = next(c for c in self.connections if c.id == payload["id"])
            for key, value in payload.items():
                setattr(conn, key, value)
            self._open -= 1
        elif kind == "reset_after_fin":
            next(c for c in self.connections if c.id == payload["id"]).reset_after_fin = True
        elif kind == "request":
            self.requests.append(Request(**payload))
        elif kind == "session":
            if payload["registered"]:
                self.sessions_registered += 1
            else:
                self.sessions_unregistered += 1
        else:
            raise ValueError(f"{self.device}: unknown recorded event {kind!r}")

    # -- views for tests -------------------------------------------------------------------------

    @property
    def open_connections(self) -> int:
        return self._open

    @property
    def held_connections(self) -> int:
        """Connections whose socket the device still holds (this process's recorder only; 0 when rebuilt)."""
        return len(self._held)

    def violations(self) -> list[Request]:
        return [r for r in self.requests if not r.allowed]

    def resets(self) -> list[Connection]:
        """Connections the client reset, before its FIN or after it."""
        return [c for c in self.connections if c.close_kind == "rst" or c.reset_after_fin]

    def operations(self) -> list[str]:
        return [r.operation for r in self.requests]

    def packet_times(self) -> list[float]:
        """Monotonic times of every packet this device had to handle, sorted."""
        with self._lock:
            times = [c.opened_mono for c in self.connections]
            times += [c.closed_mono for c in self.connections if c.close_kind == "fin" and c.closed_mono is not None]
            times += [r.mono for r in self.requests]
        return sorted(times)

    def packet_count(self) -> int:
        return len(self.packet_times())


def _stamps(at: float | None) -> tuple[float, float]:
    """(monotonic, wall) time of an event that happened at monotonic `at` (default: now)."""
    mono, wall = time.monotonic(), time.time()
    if at is None or at > mono:
        return mono, wall
    return at, wall - (mono - at)
