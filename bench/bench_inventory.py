"""Figure: time and peak memory of the inventory's read commands on 100,000 assets, each the real CLI in its own
process, its stdout to /dev/null.

The inventory is synthesised through the store API (no packet is sent; the addresses are strings in
127.16.0.0-127.17.x and 127.32.0.0-127.33.x): site A scanned twice (the second time 1,000 devices with new firmware,
so assets carry firmware history, 500 gone and 500 new), then site B once. The commands then run on site A's
100,000 assets: `inventory list` as a table (120 columns) and as JSON, `export` in each format, the default `diff`
(the two scans of site A), and the diff across sites (`--from` site A `--to` site B, every asset of B against every
asset of A). Peak RSS is the command's own: each runs under a fresh Python parent that reads getrusage(
RUSAGE_CHILDREN) after it exits, so no earlier command's peak is carried over.

    .venv/bin/python bench/bench_inventory.py [--assets 100000]
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

from common import table

from otprobe.inventory import SqliteStore
from otprobe.model import Identity, Observation, Status

SITE_A, SITE_B = ipaddress.IPv4Address("127.16.0.0"), ipaddress.IPv4Address("127.32.0.0")
ASSET_TYPES = ("plc", "drive", "meter", "io_adapter", "switch", "hmi")


def addresses(base: ipaddress.IPv4Address, count: int, skip: int = 0) -> list[str]:
    return [str(base + i) for i in range(skip, skip + count)]


def identity(n: int, firmware: str) -> Identity:
    """A device's identity; `n` (its address as a number) makes its serial unique across both sites."""
    return Identity(vendor=("Siemens", "Rockwell Automation/Allen-Bradley", "Schneider Electric")[n % 3],
                    model=f"Model {n % 97:02d} series {n % 7}", product_code=f"6ES7 {n % 1000:03d}-2EH14-0AB0",
                    asset_type=ASSET_TYPES[n % len(ASSET_TYPES)], serial=f"S C-{n:012d}", firmware=firmware,
                    raw={"cpu_state": "RUN"} if n % 10 == 0 else {})


def scan(store: SqliteStore, scan_id: str, targets: list[str], firmware: dict[str, str]) -> float:
    """One complete scan of `targets` in which the devices of `firmware` (address -> version) answer S7."""
    start = time.perf_counter()
    store.begin_scan(scan_id, "bench", targets, protocols=["s7"])
    store.db.execute("BEGIN")  # one transaction for the synthesis: a real scan commits each observation
    for ip in targets:
        version = firmware.get(ip)
        n = int(ipaddress.IPv4Address(ip))
        store.add_observation(scan_id, Observation(
            ip, "s7", 102, Status.IDENTIFIED if version else Status.TIMEOUT,
            identity(n, version) if version else None, 0.01, 5 if version else 2, None, "plc"))
    store.db.execute("COMMIT")
    store.finish_scan(scan_id, "complete")
    return time.perf_counter() - start


def site_a(store: SqliteStore, count: int) -> list[tuple[str, float]]:
    """Site A scanned twice: 1,000 firmware upgrades, 500 devices gone and 500 new in the second scan."""
    targets = addresses(SITE_A, count)
    changed, gone = set(targets[:1000]), set(targets[1000:1500])
    first = dict.fromkeys(targets[: count - 500], "V3.2.7")  # the last 500 appear in the second scan only
    second = {ip: "V3.2.8" if ip in changed else "V3.2.7" for ip in targets if ip not in gone}
    return [("site A, first scan", scan(store, "A1", targets, first)),
            ("site A, second scan", scan(store, "A2", targets, second))]


def measure(command: list[str], env: dict[str, str]) -> tuple[float, float, float, int]:
    """Wall seconds, CPU seconds (user + system), peak RSS (MB) and exit code of `command`, run under a fresh parent
    of its own. CPU time is the steadier figure on a machine other work shares."""
    probe = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
             "code = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL); "
             "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
             "print(time.perf_counter() - t, u.ru_utime + u.ru_stime, u.ru_maxrss, code)")
    done = subprocess.run([sys.executable, "-c", probe, *command], env=env, capture_output=True, text=True,
                          check=True)
    seconds, cpu, rss_kb, code = done.stdout.split()
    return float(seconds), float(cpu), int(rss_kb) / 1024, int(code)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--assets", type=int, default=100_000)
    count = parser.parse_args().assets
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "inventory.db"
        otprobe = [sys.executable, "-m", "otprobe"]
        env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120"}
        where = ["--db", str(db)]
        with closing(SqliteStore(db)) as store:
            built = site_a(store, count)
            assets = len(store.assets())
        print(f"site A: {assets} active assets\n")
        commands = {
            "inventory list (table, 120 columns)": ["inventory", "list", *where],
            "inventory list --wide": ["inventory", "list", *where, "--wide"],
            "inventory list --format json": ["inventory", "list", *where, "--format", "json"],
            "inventory list --type drive (a sixth)": ["inventory", "list", *where, "--type", "drive"],
            "inventory export --format json": ["inventory", "export", *where, "--format", "json"],
            "inventory export --format csv": ["inventory", "export", *where, "--format", "csv"],
            "inventory export --format cyclonedx": ["inventory", "export", *where, "--format", "cyclonedx"],
            "inventory diff (site A: second scan against first)": ["inventory", "diff", *where],
            "inventory diff --format json (site A)": ["inventory", "diff", *where, "--format", "json"],
        }
        rows = [(name, *measure([*otprobe, *args], env)) for name, args in commands.items()]
        with closing(SqliteStore(db)) as store:
            built.append(("site B", scan(store, "B1", addresses(SITE_B, count),
                                         dict.fromkeys(addresses(SITE_B, count), "V2.1.0"))))
        across = {
            "inventory diff across sites (--from A2 --to B1)": ["inventory", "diff", *where, "--from", "A2",
                                                                "--to", "B1"],
            "inventory list (table), both sites": ["inventory", "list", *where],
        }
        rows += [(name, *measure([*otprobe, *args], env)) for name, args in across.items()]
        table(("synthesis through the store API", "seconds"), [(name, f"{s:.1f}") for name, s in built])
        print(f"database {db.stat().st_size / 1e6:.0f} MB\n")
        table(("command", "wall s", "CPU s", "peak RSS MB", "exit"),
              [(name, f"{seconds:.2f}", f"{cpu:.2f}", f"{rss:.0f}", code) for name, seconds, cpu, rss, code in rows])
        print(f"load average during the run: {os.getloadavg()[0]:.1f} (1 min), {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
