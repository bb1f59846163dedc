"""Scheduler overhead and plan cost: CPU seconds per 1,000 operations, and time and peak memory to plan a /16.

The scheduler runs scripted probes (tests/fakes.py: connect, read, close, no network) under caps high enough that
it never waits, so the figure is the pacing machinery's own CPU (Limiter, Pacer, Link, retries bookkeeping).

    .venv/bin/python bench/bench_pacing.py
"""

from __future__ import annotations

import asyncio
import sys
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fakes import ScriptedProbe, Wire

from otprobe.model import Target
from otprobe.pacing import ClassLimits, Scheduler, plan_scan
from otprobe.profile import scan_config

DEVICES = 500
PROBES = 4


async def scheduler_cpu() -> tuple[int, float]:
    wire = Wire()
    probes = [ScriptedProbe(wire, default=0.0) for _ in range(PROBES)]
    targets = [Target(f"127.1.{i // 250}.{i % 250 + 1}", "plc") for i in range(DEVICES)]
    fast = ClassLimits(pps=1e6, burst=1, class_pps=None, connect_gap_s=0.0, max_session_s=10.0)
    defaults = scan_config()
    config = replace(defaults, global_pps=1e7, classes={**defaults.classes, "plc": fast}, max_devices_in_flight=64)
    cpu = time.process_time()
    result = await Scheduler(targets, probes, config).run()
    return result.packets_sent, time.process_time() - cpu


def plan_slash16() -> tuple[float, float, float]:
    targets = [Target(f"127.{i // 256}.{i % 256}.1", "plc" if i % 2 else "unknown") for i in range(65536)]
    defaults = scan_config()
    plc = ClassLimits(pps=2, burst=1, class_pps=10, connect_gap_s=1.0, max_session_s=10.0)
    config = replace(defaults, global_pps=50.0, classes={**defaults.classes, "plc": plc})
    probes = [ScriptedProbe(Wire()) for _ in range(3)]
    tracemalloc.start()
    start = time.perf_counter()
    plan = plan_scan(targets, probes, config)
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return elapsed, peak / 1e6, plan.min_seconds


def main() -> None:
    ops, cpu = asyncio.run(scheduler_cpu())
    print(f"scheduler: {ops} operations ({DEVICES} devices x {PROBES} probes x 3) in {cpu:.3f} CPU s")
    print(f"           {cpu / ops * 1000:.3f} CPU s per 1,000 operations")
    elapsed, peak_mb, bound = plan_slash16()
    print(f"plan /16:  {elapsed:.3f} s, peak {peak_mb:.2f} MB beyond the target list (lower bound {bound:.0f} s)")


if __name__ == "__main__":
    main()
