"""Fault modes a simulated device can be given, as declared in a plant file under `fault:`."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class FaultMode(StrEnum):
    NONE = "none"
    SILENT = "silent"  # accepts, reads, never replies
    SLOW = "slow"  # replies after latency_s (+ load_s per request seen in the last second)
    REFUSED = "refused"  # no listener at all
    RESET = "reset"  # RST right after accept
    MALFORMED = "malformed"  # frame header intact, body garbage
    TRUNCATED = "truncated"  # half a reply, then FIN
    OVERSIZED = "oversized"  # a reply claiming and sending far more than any real one
    ENDLESS = "endless_more_follows"  # Modbus FC43 that always says "more follows"
    WRONG_ID = "wrong_tid"  # reply carries the wrong transaction id / PDU reference / context
    CONN_LIMIT = "conn_limit"  # at most `limit` connections; beyond it refuse (RST) or drop the oldest
    # The hostile senders: each answers the first request on a connection in its own way and then answers no
    # more requests (it still reads and records them). Like a real embedded stack, it stops sending and closes
    # (FIN) as soon as it reads the client's FIN, so a client that half-closes and then reads to EOF ends cleanly.
    STREAM = "stream"  # the first reply, then zero bytes without end
    HUGE_LENGTH = "huge_length"  # a first reply whose header claims 65,535 bytes, and that many bytes, in chunks
    TRICKLE = "trickle"  # the first reply one byte at a time, 0.25 s apart


HOSTILE_SENDERS = frozenset({FaultMode.STREAM, FaultMode.HUGE_LENGTH, FaultMode.TRICKLE})


@dataclass(frozen=True)
class Fault:
    mode: FaultMode = FaultMode.NONE
    latency_s: float = 0.0
    load_s: float = 0.0
    limit: int = 4
    policy: str = "refuse"  # conn_limit: "refuse" or "drop_oldest"

    @classmethod
    def from_spec(cls, spec: Any) -> Fault:
        """`fault: silent` or `fault: {mode: slow, latency_s: 0.5}`. Raises ValueError with the bad key."""
        if spec is None:
            return cls()
        if isinstance(spec, str):
            spec = {"mode": spec}
        if not isinstance(spec, dict):
            raise ValueError("fault: must be a mode name or a mapping")
        known = {"mode", "latency_s", "load_s", "limit", "policy"}
        unknown = set(spec) - known
        if unknown:
            raise ValueError(f"fault.{sorted(unknown)[0]}: unknown key (known: {', '.join(sorted(known))})")
        try:
            mode = FaultMode(spec.get("mode", "none"))
        except ValueError:
            raise ValueError(
                f"fault.mode: unknown mode {spec.get('mode')!r} (known: {', '.join(m.value for m in FaultMode)})"
            ) from None
        policy = spec.get("policy", "refuse")
        if policy not in ("refuse", "drop_oldest"):
            raise ValueError(f"fault.policy: must be refuse or drop_oldest (got {policy!r})")
        limit = spec.get("limit", 4)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ValueError(f"fault.limit: must be 1 or more (got {limit!r})")
        return cls(mode, _seconds(spec, "latency_s"), _seconds(spec, "load_s"), limit, policy)


def _seconds(spec: dict[str, Any], key: str) -> float:
    value = spec.get(key, 0.0)
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise ValueError(f"fault.{key}: must be a number >= 0 (got {value!r})")
    return float(value)


class SlowLoad:
    """The slow fault's delay, shared by a device's TCP and UDP endpoints: a device is one processor, so datagrams
    load it like TCP requests do."""

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self._recent: deque[float] = deque()

    def latency(self) -> float:
        """The delay for one more request now: fixed, plus load_s per request in the last second."""
        now = time.monotonic()
        self._recent.append(now)
        while self._recent and self._recent[0] < now - 1.0:
            self._recent.popleft()
        return self.fault.latency_s + self.fault.load_s * (len(self._recent) - 1)
