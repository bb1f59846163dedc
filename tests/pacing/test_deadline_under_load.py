"""The deadline at the receiver on a busy machine: the `deadline` scenario (tests/plantgen.py: 12 slow devices, 8 in
flight, a global cap that binds, a 5 s deadline in the middle of sessions) scanned beside 4 CPU-bound processes on
this 2-core machine. Nothing may arrive after the deadline, and every connection the scan opened ends with our FIN
before it: the closes are owed on the shared buckets from each connect, so refusable packets stop early enough for
them, and LATENESS_S (otprobe/pacing/pacer.py) keeps room for a task that resumes late. bench/bench_deadline.py
runs the same scan several times and prints the margins.
"""

from __future__ import annotations

import asyncio

from plantgen import cpu_hogs, deadline, deadline_margins, run_together

HOGS = 4


def test_nothing_arrives_after_the_deadline_beside_four_cpu_bound_processes() -> None:
    with cpu_hogs(HOGS):
        [scanned] = asyncio.run(run_together([deadline()]))
    assert scanned.deadline is not None and scanned.outcome.status == "incomplete"
    last_packet, last_close = deadline_margins(scanned)
    assert last_packet >= 0 and last_close >= 0, (last_packet, last_close)
    connections = [c for recorder in scanned.recorders.values() for c in recorder.connections]
    assert connections and all(c.close_kind == "fin" for c in connections)
    # the deadline fell while sessions were running: some devices were cut, so the margin was tested
    assert scanned.outcome.result.not_covered
