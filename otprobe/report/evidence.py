"""The safety evidence of one scan, read from its audit log: packets and connections per device, busiest windows
against the caps, the rate over time, and the hash that ties a report to the log.

Every figure comes from the scan's intent records, each written (and fsync'd) before its packets leave, with
their count and a timestamp. An intent is stamped when the pacer grants its packets, before the departure check,
which may hold them a few milliseconds longer: a busiest-window figure from intents can differ from what the device
counted by that much (the tests compare both with what the simulated devices recorded). The caps themselves are
enforced on the departures (docs/design.md, "Caps hold at the receiver").
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from otprobe.audit import VerifyResult, verify
from otprobe.errors import AuditError

CONNECT_CODE = "tcp:connect"  # every TCP probe's connect operation (the wire code the allowlist knows)
WINDOW_S = 1.0


def window_cap(pps: float, burst: int = 1, window_s: float = WINDOW_S) -> int:
    """The most packets a bucket of `pps` and `burst` lets into any window of `window_s` seconds."""
    return math.ceil(pps * window_s) + burst - 1


@dataclass
class Sends:
    """Packets let go at each instant: (seconds since the scan started, packets), in time order."""

    times: list[tuple[float, int]] = field(default_factory=list)

    @property
    def packets(self) -> int:
        return sum(n for _, n in self.times)

    def busiest(self, window_s: float = WINDOW_S) -> int:
        """Most packets in any half-open window [t, t + window_s)."""
        best = in_window = start = 0
        for t, n in self.times:
            in_window += n
            while self.times[start][0] <= t - window_s:
                in_window -= self.times[start][1]
                start += 1
            best = max(best, in_window)
        return best

    def trailing(self, window_s: float = WINDOW_S) -> list[tuple[float, int]]:
        """The step curve of packets in the trailing window (t - window_s, t]: it rises at each send and falls
        `window_s` later, when those packets leave the window."""
        steps = sorted([(t, n) for t, n in self.times] + [(t + window_s, -n) for t, n in self.times],
                       key=lambda step: (step[0], step[1] > 0))  # at one instant, leaving before entering
        out: list[tuple[float, int]] = [(0.0, 0)]
        count = 0
        for t, change in steps:
            count += change
            out.append((t, count))
        return out


@dataclass
class AuditEvidence:
    """What the audit log holds about one scan."""

    path: Path
    chain: VerifyResult | None  # None: the log could not be read at all
    problem: str | None  # why the log (or this scan's part of it) cannot serve as evidence
    records: int = 0  # this scan's records
    head_seq: int | None = None  # the scan's last record
    head_hash: str | None = None  # SHA-256 of that line: the next record's `prev`, and `audit verify`'s last hash
    started: datetime | None = None
    events: dict[str, dict[str, Any]] = field(default_factory=dict)  # scan_start, window_override, scan_end...
    devices: dict[str, Sends] = field(default_factory=lambda: defaultdict(Sends))
    connections: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    everything: Sends = field(default_factory=Sends)


def read_evidence(path: Path, scan_id: str) -> AuditEvidence:
    """This scan's records of the log at `path`, and whether the whole chain verifies."""
    try:
        chain = verify(path)
    except AuditError as exc:
        return AuditEvidence(path, None, str(exc))
    evidence = AuditEvidence(path, chain, None if chain.ok else
                             f"the hash chain breaks at line {chain.bad_line}: {chain.reason}")
    lines_read = 0
    with path.open("rb") as fh:
        for raw in fh:
            lines_read += 1
            if not chain.ok and chain.bad_line is not None and lines_read >= chain.bad_line:
                break  # nothing from the broken line on is evidence
            record = json.loads(raw)
            if record.get("scan") != scan_id:
                continue
            _take(evidence, record)
            evidence.records += 1
            evidence.head_seq = record["seq"]
            evidence.head_hash = hashlib.sha256(raw.rstrip(b"\n")).hexdigest()
    if evidence.records == 0 and evidence.problem is None:
        evidence.problem = f"{path} holds no record of scan {scan_id}"
    return evidence


def _take(evidence: AuditEvidence, record: dict[str, Any]) -> None:
    at = datetime.fromisoformat(record["t"])
    if evidence.started is None:
        evidence.started = at
    if record["type"] == "event":
        evidence.events.setdefault(record["event"], record)
    elif record["type"] == "intent":
        since = (at - evidence.started).total_seconds()
        packets = int(record["packets"])
        evidence.devices[record["device"]].times.append((since, packets))
        evidence.everything.times.append((since, packets))
        if record["code"] == CONNECT_CODE:
            evidence.connections[record["device"]] += 1
