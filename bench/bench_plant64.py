"""Figures 4 and 5: how close a 64-device scan comes to the least time its caps allow, and the plan against reality.

Runs each 64-device scenario of tests/plantgen.py alone: one class (2 pps, global_pps 20) and two classes (PLCs at
2 pps under class_pps 12, meters at 1 pps, global_pps 20), 4 Modbus packets per device. The least time is computed
from the packets the devices actually received (slowest device, each class cap, the global cap, in-flight limit);
the plan's own bound assumes every probe's worst-case budget, so it is an upper figure for these devices, not a
lower bound. "finished" is the last packet at any device; "scan returned" is when ScanRun.run() came back.
About 35 s.

    .venv/bin/python bench/bench_plant64.py
"""

from __future__ import annotations

import asyncio

from common import table
from plantgen import Scanned, least_seconds, plant64, plant64_one_class, run_together


def row(name: str, scanned: Scanned) -> list[object]:
    times = scanned.packet_times()
    least = least_seconds(scanned)
    finished = times[-1] - scanned.started
    tail = times[-1] - times[int(0.9 * len(times))]
    plan = scanned.prepared.plan
    return [name, len(times), f"{scanned.outcome.result.packets_sent} / {plan.total_packets}",
            f"{least:.2f}", f"{plan.min_seconds:.2f}", f"{finished:.2f} ({finished / least:.3f}x)",
            f"{tail:.2f}", f"{scanned.outcome.result.elapsed_s:.2f} ({scanned.outcome.result.elapsed_s / least:.3f}x)"]


async def main() -> None:
    rows = []
    for make in (plant64_one_class, plant64):
        scenario = make()
        [scanned] = await run_together([scenario])
        rows.append(row(scenario.name, scanned))
    table(("plant", "packets received", "link packets / plan", "least time (s)", "plan min_seconds (s)",
           "finished (s, x least)", "last 10 % of packets (s)", "scan returned (s, x least)"), rows)


if __name__ == "__main__":
    asyncio.run(main())
