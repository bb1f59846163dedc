"""Figure 3: connections per device, the circuit breaker, an excluded device and the deadline, at the receiver.

Runs the `sessions` scenario (all three probes; multi-protocol devices with no connection gap, S7 CPUs, a silent
device with breaker failures 2, a listening device on an excluded address) and the `deadline` scenario (12 slow
devices, 8 in flight, a 5 s deadline) of tests/plantgen.py together. About 7 s.

    .venv/bin/python bench/bench_sessions.py
"""

from __future__ import annotations

import asyncio

from common import table
from plantgen import Scanned, deadline, run_together, sessions

from otprobe.model import Status


def connections(scanned: Scanned) -> list[list[object]]:
    rows = []
    for target in scanned.prepared.targets:
        recorder = scanned.recorders[target.ip]
        rows.append([target.ip, target.device_class, len(recorder.connections),
                     ", ".join(sorted({r.protocol for r in recorder.requests})) or "-",
                     recorder.packet_count(), recorder.max_concurrent])
    return rows


def breaker_and_exclusion(scanned: Scanned) -> list[list[object]]:
    rows = []
    for ip in scanned.outcome.result.tripped:
        recorder = scanned.recorders[ip]
        tripped_at = max(c.closed_mono for c in recorder.connections if c.closed_mono is not None)
        after = sum(1 for t in recorder.packet_times() if t > tripped_at)
        others = max(t for other, rec in scanned.recorders.items() if other != ip for t in rec.packet_times())
        rows.append([f"tripped {ip}", f"{recorder.packet_count()} packets; {after} after its trip; the scan sent to "
                                      f"others for {others - tripped_at:.2f} s more"])
    for target in scanned.prepared.resolution.excluded:
        recorder = scanned.recorders[target.ip]
        rows.append([f"excluded {target.ip}",
                     f"{len(recorder.connections)} connections, {len(recorder.requests)} requests (listening)"])
    return rows


def deadline_facts(scanned: Scanned) -> list[list[object]]:
    assert scanned.deadline is not None
    result = scanned.outcome.result
    times = scanned.packet_times()
    closes = [c for rec in scanned.recorders.values() for c in rec.connections]
    late_closes = sum(1 for c in closes if c.closed_mono is None or c.closed_mono > scanned.deadline)
    return [
        ["deadline after start", f"{scanned.deadline - scanned.started:.2f} s"],
        ["last packet at any device", f"{max(times) - scanned.deadline:+.3f} s from the deadline"],
        ["packets after the deadline", sum(1 for t in times if t > scanned.deadline)],
        ["connections not closed (FIN) by the deadline", f"{late_closes} of {len(closes)}"],
        ["scan status", scanned.outcome.status],
        ["devices not covered", f"{len(result.not_covered)} of {len(scanned.prepared.targets)}"],
        ["aborted observations", sum(1 for o in result.observations if o.status is Status.ABORTED)],
        ["scan returned", f"{scanned.ended - scanned.deadline:+.3f} s from the deadline"],
    ]


async def main() -> None:
    scanned_sessions, scanned_deadline = await run_together([sessions(), deadline()])
    print("Connections per device (scenario sessions)\n")
    table(("device", "class", "connections", "protocols seen", "packets", "max concurrent"),
          connections(scanned_sessions))
    table(("device", "at the receiver"), breaker_and_exclusion(scanned_sessions))
    print("Deadline (scenario deadline)\n")
    table(("figure", "value"), deadline_facts(scanned_deadline))


if __name__ == "__main__":
    asyncio.run(main())
