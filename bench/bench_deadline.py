"""The deadline under load: how long before the deadline the last packet and the last FIN reach the devices.

Runs the `deadline` scenario of tests/plantgen.py (12 devices at 1 pps with 6 packets each, 8 in flight,
global_pps 6, a deadline 5 s after the start, in the middle of sessions) RUNS times beside 4 CPU-bound processes,
the plant in a child process (simulators.process) so that its stamps do not wait for the scanner. Prints, per run,
the margin of the last packet and of the last connection end (our FIN, as the device saw it) before the deadline
(negative: late), the packets after the deadline and the connections not ended by a FIN before it; then the
distribution of the margins over the runs. About 8 s per run.

    .venv/bin/python bench/bench_deadline.py [RUNS]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys

from common import table
from plantgen import cpu_hogs, deadline, deadline_margins, run_together

HOGS = 4


async def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    print(f"deadline scenario, {runs} runs beside {HOGS} CPU-bound processes, {os.cpu_count()} CPUs; load average "
          f"before {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n", flush=True)
    rows, packet_margins, close_margins = [], [], []
    with cpu_hogs(HOGS):
        for number in range(1, runs + 1):
            [scanned] = await run_together([deadline()])
            assert scanned.deadline is not None
            last_packet, last_close = deadline_margins(scanned)
            late = sum(1 for t in scanned.packet_times() if t > scanned.deadline)
            connections = [c for recorder in scanned.recorders.values() for c in recorder.connections]
            unclosed = sum(1 for c in connections if c.close_kind != "fin" or c.closed_mono is None
                           or c.closed_mono > scanned.deadline)
            packet_margins.append(last_packet)
            close_margins.append(last_close)
            rows.append([number, len(scanned.packet_times()), f"{1000 * last_packet:.0f}", f"{1000 * last_close:.0f}",
                         late, f"{unclosed} of {len(connections)}", scanned.outcome.status])
    table(("run", "packets", "last packet, ms before the deadline", "last FIN, ms before the deadline",
           "packets after the deadline", "connections not ended by our FIN before it", "scan"), rows)
    table(("margin (ms before the deadline)", "min", "median", "max"),
          [[label, f"{1000 * min(values):.0f}", f"{1000 * statistics.median(values):.0f}", f"{1000 * max(values):.0f}"]
           for label, values in (("last packet", packet_margins), ("last FIN", close_margins))])
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    asyncio.run(main())
