"""`make bench`: every figure of BENCHMARKS.md, each script in its own process so that none measures another.

    .venv/bin/python bench/run_all.py
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = (
    "bench_caps.py",  # caps per device, class and global; achieved rate
    "bench_sessions.py",  # one connection per device, breaker, exclusion, deadline
    "bench_plant64.py",  # 64 devices against the least time; plan against reality
    "bench_pacing.py",  # scheduler CPU per 1,000 operations; plan_scan alone on a /16
    "bench_plan16.py",  # prepare() on a /16: time and peak memory
    "bench_limiters.py",  # asyncio-throttle against otprobe's bucket
    "bench_stress.py",  # caps and makespan at the receiver beside 0, 2, 4 and 8 CPU-bound processes
    "bench_throughput.py",  # one process against a 2,000 pps global cap on 1,000 devices: rate, caps, CPU per packet
    "bench_deadline.py",  # margins of the last packet and the last FIN before the deadline beside 4 CPU-bound processes
    "bench_startup.py",  # `otprobe --help` and friends against `python -c pass`
    "bench_central.py",  # central: 10 sites x 5,000 assets: push, list, table read, diff, firmware (PG/SQLite)
    "bench_empty24.py",  # a /24 of 15 devices and 239 empty addresses (RST or dropped) per shipped profile
    "bench_abort16.py",  # a /16 stopped by its deadline: recording the unstarted addresses, peak RSS
    "bench_eta.py",  # progress ETA against the real end, plan expected against measured: demo plant, plant64
    "bench_inventory.py",  # list, export and diff on 100,000 assets: time and peak RSS of each command
    "bench_nmap_cost.py",  # packets per identified device at the simulated device: otprobe against nmap's scripts
    "bench_report.py",  # `otprobe report` time and size for 20, 250 and 1,000 devices
    "bench_sqlite_store.py",  # the SQLite file: a scan's writes, opening a file, upgrading a 100,000-asset old file
)


def main() -> int:
    failed = []
    for script in SCRIPTS:
        print(f"## {script}\n", flush=True)
        start = time.monotonic()
        code = subprocess.call([sys.executable, str(HERE / script)])
        print(f"({script}: {time.monotonic() - start:.0f} s, exit {code})\n", flush=True)
        if code:
            failed.append(script)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
