"""Figure: time and peak memory to plan a /16, as `otprobe plan 127.0.0.0/16 --profile lab` does (prepare():
scope resolution, probes, plan; no socket). Time is the best of 5 untraced runs; peak memory is tracemalloc's, in
a separate traced run (tracing slows Python several times over).

    .venv/bin/python bench/bench_plan16.py
"""

from __future__ import annotations

import time
import tracemalloc
from datetime import UTC, datetime

from common import table

from otprobe.profile import load_profile
from otprobe.scan import Prepared, prepare

TARGET = "127.0.0.0/16"


def plan_once() -> Prepared:
    return prepare(load_profile("lab"), "lab", [TARGET], now=datetime.now(UTC), check_window=False)


def main() -> None:
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        prepared = plan_once()
        timings.append(time.perf_counter() - start)
    tracemalloc.start()
    plan_once()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    plan = prepared.plan
    table(("target", "devices", "excluded", "worst-case packets", "least time (s)", "time (s, best of 5)",
           "peak memory (MB)"),
          [[TARGET, plan.devices, len(prepared.resolution.excluded), plan.total_packets, f"{plan.min_seconds:.0f}",
            f"{min(timings):.3f}", f"{peak / 1e6:.1f}"]])


if __name__ == "__main__":
    main()
