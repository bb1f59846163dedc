"""Throughput of one scanning process: a 1,000-device plant under a 2,000 packets/s global cap, judged at the
receiver, and what each packet costs the scanner.

The plant (1,000 simulated Modbus devices on 127.0.80-84.x, in a child process: simulators.process) is scanned from
this process through `otprobe.scan` (prepare, ScanRun: the CLI's path, with its audit log fsync'd by the writer
thread and its SQLite inventory). Every device answers FC43 with "more follows" for ever, so each session is the
probe's whole budget of 18 packets at the device's 20 pps, and 256 devices in flight ask for 5,120 packets/s: the
global cap binds from the first second to the last sessions. The caps leave 2 % headroom (ScanConfig.headroom), so
1,960 packets/s is what the scheduler aims at.

Printed per run: packets the devices received; the achieved global rate (n - 1) / span against the cap; the
busiest 1 s and 10 s windows over all devices and the busiest 1 s window at any one device, each against its cap,
and the count of windows over any cap; the scanner's CPU seconds per 1,000 packets (process time of this process,
all threads, over the scan); the audit log's fsyncs and records per fsync; the load average before and after.
Packet times are tcpdump's kernel stamps on lo when it can capture there (as bench_stress.py), else the devices'
own stamps; both are printed when tcpdump runs. About 35 s per run on the loaded 2-core machine, plant start included.

    .venv/bin/python bench/bench_throughput.py [RUNS]
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from bench_stress import can_capture, capture, captured_times
from common import table
from plantgen import ENDLESS, Scenario, achieved_pps, busiest, cidr, group, plant, profile, window_cap

from otprobe.inventory import SqliteStore
from otprobe.scan import ScanRun, prepare
from simulators.plant import load_plant
from simulators.process import PlantProcess

BLOCKS = (80, 81, 82, 83, 84)
PER_BLOCK = 200  # hosts .10-.209 of each block: 1,000 devices
GLOBAL_PPS = 2000
DEVICE_PPS = 20
IN_FLIGHT = 256


def scenario() -> Scenario:
    groups = [group(block, PER_BLOCK, device_class="plc", **ENDLESS) for block in BLOCKS]
    scan_profile = profile(
        {"plc": {"pps": DEVICE_PPS, "connect_gap_s": 0}}, {cidr(block): "plc" for block in BLOCKS},
        include=["127.0.80.0/20"], unit_ids=[1, 2], global_pps=GLOBAL_PPS, retries=0,
        max_devices_in_flight=IN_FLIGHT,
    )
    targets = [device["address"] for devices in groups for device in devices]
    return Scenario("1,000 devices", plant("plant1000", *groups), scan_profile, targets)


async def scan(chosen: Scenario) -> tuple[float, float, int, str, int, int]:
    """Scan with the CLI's path; (cpu seconds, wall seconds, packets the links sent, statuses, audit records,
    audit fsyncs)."""
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as workdir:
        now, started = datetime.now(UTC), time.monotonic()
        prepared = prepare(chosen.profile, chosen.profile.name, chosen.targets, now=now)
        store = SqliteStore(Path(workdir) / "inventory.db")
        try:
            cpu = time.process_time()
            run = ScanRun(prepared, store, Path(workdir) / "audit.jsonl", now=now)
            outcome = await run.run()
            cpu = time.process_time() - cpu
        finally:
            store.close()
    log = run.audit_log
    statuses = Counter(str(o.status) for o in outcome.observations)
    return (cpu, time.monotonic() - started, outcome.result.packets_sent,
            ", ".join(f"{n} {status}" for status, n in statuses.most_common()), log.written, log.fsyncs)


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def measure(times: dict[str, list[float]]) -> tuple[int, str, str, str, str, int]:
    """(packets, achieved rate against the cap, busiest 1 s and 10 s of all, busiest 1 s at a device, windows
    over a cap)."""
    union = sorted(t for stamps in times.values() for t in stamps)
    device_peak = max(busiest(stamps, 1.0) for stamps in times.values() if stamps)
    over = sum(busiest(union, w) > window_cap(GLOBAL_PPS, 1, w) for w in (1.0, 10.0))
    over += sum(busiest(stamps, w) > window_cap(DEVICE_PPS, 1, w) for stamps in times.values() if stamps
                for w in (1.0, 10.0))
    rate = achieved_pps(union)
    return (len(union), f"{rate:.0f} ({rate / GLOBAL_PPS:.1%})",
            f"{busiest(union, 1.0)} ({window_cap(GLOBAL_PPS, 1, 1.0)})",
            f"{busiest(union, 10.0)} ({window_cap(GLOBAL_PPS, 1, 10.0)})",
            f"{device_peak} ({window_cap(DEVICE_PPS, 1, 1.0)})", over)


async def one_run(number: int, kernel: bool) -> list[object]:
    chosen = scenario()
    load_before = loadavg()
    with tempfile.TemporaryDirectory(prefix="bench-throughput-pcap-") as workdir:
        with PlantProcess(chosen.plant, ready_timeout_s=120) as plants:
            capturing = capture([chosen], Path(workdir)) if kernel else contextlib.nullcontext()
            with capturing as running:
                cpu, wall, sent, statuses, records, fsyncs = await scan(chosen)
            captured = captured_times(running) if running is not None else {}
        received = {ip: recorder.packet_times() for ip, recorder in plants.recorders_by_address().items()}
    devices_say = measure(received)
    kernel_says = measure({ip: captured.get(ip, []) for ip in received}) if kernel else None
    figures = kernel_says or devices_say
    over = f"{figures[5]} ({devices_say[5]})" if kernel_says else str(devices_say[5])
    return [number, f"{figures[0]} ({devices_say[0]})" if kernel_says else figures[0], figures[1], figures[2],
            figures[3], figures[4], over, f"{wall:.2f}", f"{1000 * cpu / max(sent, 1):.3f}",
            f"{records} / {fsyncs} ({records / max(fsyncs, 1):.1f})", statuses, f"{load_before} -> {loadavg()}"]


async def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    # the child holds 1,000 listening sockets and the accepted connections, the scanner up to 256 connections
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    kernel = can_capture()
    devices = len(load_plant(scenario().plant).devices)
    print(f"{devices} devices, {DEVICE_PPS} pps each, {IN_FLIGHT} in flight, global cap {GLOBAL_PPS} pps; packet "
          "times: " + ("tcpdump on lo (kernel stamps; the devices' own in brackets)" if kernel else
                       "the simulated devices' own stamps") + f"; {os.cpu_count()} CPUs\n", flush=True)
    rows = [await one_run(number, kernel) for number in range(1, runs + 1)]
    table(("run", "packets", "achieved pps (of cap)", "busiest 1 s, all (cap)", "busiest 10 s, all (cap)",
           "busiest 1 s at a device (cap)", "windows over a cap", "scan wall s", "scanner CPU ms per packet",
           "audit records / fsyncs (per fsync)", "sessions", "load average before -> after"), rows)


if __name__ == "__main__":
    asyncio.run(main())
