"""The central inventory at fleet scale: 10 sites of 5,000 assets each, with firmware history, on PostgreSQL and
on a SQLite file (the same schema and store), and the figures BENCHMARKS.md quotes.

Each site is a sensor's SQLite inventory (`SqliteStore`, as `otprobe scan` writes it) holding two scans of its 5,000
devices, the second with a tenth of them on a newer firmware; every site is pushed (`inventory push`'s library
call). Then, timed: one sensor's next scan of 1,000 devices pushed (against its site's 5,000 assets), `inventory
list`'s read of all 50,000 assets (the store call, the same with every asset's identity read, the whole command
with JSON output, and a table's streamed read), the diff of one site's two scans, and the firmware summary. No
network traffic: the observations are written, not scanned.

    .venv/bin/python bench/bench_central.py [--sites 10] [--assets 5000]

PostgreSQL: $OTPROBE_BENCH_PG (a role that may create databases), else postgres@127.0.0.1:5432; a throwaway
database is created and dropped. Without a server only the SQLite figures are printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from common import table

from otprobe.inventory import SqliteStore
from otprobe.inventory.central import CentralStore
from otprobe.inventory.diff import diff_scans
from otprobe.inventory.fleet import firmware_summary
from otprobe.inventory.push import push
from otprobe.model import Identity, Observation, Status

MODELS = [  # (vendor, model, protocol, port, firmware versions)
    ("Siemens", "CPU 315-2 PN/DP", "s7", 102, ["V3.2.7", "V3.2.8", "V3.2.17"]),
    ("Siemens", "CPU 1515-2 PN", "s7", 102, ["V2.8.3", "V2.9.4"]),
    ("Schneider Electric", "BME P58 1020", "enip", 44818, ["2.70", "3.10"]),
    ("Rockwell Automation/Allen-Bradley", "1769-L18ER/A LOGIX5318ER", "enip", 44818, ["21.11", "33.11"]),
    ("Schneider Electric", "PM5560", "modbus", 502, ["v2.7.4", "v2.8.0"]),
    ("Hirschmann", "RS20-0800T1T1SDAUHC", "snmp", 161, ["09.0.08", "09.1.00"]),
]
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def address(n: int) -> str:
    return f"127.{n // 62500 + 1}.{n // 250 % 250}.{n % 250 + 1}"  # rows only: nothing is sent to it


def observation(site: int, n: int, newer: bool) -> Observation:
    vendor, model, protocol, port, versions = MODELS[n % len(MODELS)]
    firmware = versions[min(len(versions) - 1, (n // len(MODELS)) % 2 + (1 if newer else 0))]
    identity = Identity(vendor=vendor, model=model, serial=f"S{site:02d}-{n:06d}", firmware=firmware)
    return Observation(address(n), protocol, port, Status.IDENTIFIED, identity, 0.02, 4, None, "plc")


def sensor_inventory(path: Path, site: int, devices: int, scans: int) -> None:
    """A sensor's own inventory: `scans` scans of `devices` devices; from the second on, a tenth updated."""
    store = SqliteStore(path)
    try:
        for number in range(scans):
            scan_id = f"2026120{number + 1}T020000Z-{site:02d}{uuid.uuid4().hex[:4]}"
            store.begin_scan(scan_id, "inventory-refresh", [address(n) for n in range(devices)], protocols=["s7"])
            for n in range(devices):
                store.add_observation(scan_id, observation(site, n, newer=number > 0 and n % 10 == 0))
            store.finish_scan(scan_id, "complete")
    finally:
        store.close()


def timed(action: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def cli_seconds(url: str) -> float:
    """`otprobe inventory list --format json` of every site, output to /dev/null: the whole command."""
    env = {**os.environ, "OTPROBE_CONFIG": "/nonexistent", "NO_COLOR": "1"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "otprobe", "inventory", "list", "--db", url, "--format", "json"],
                   cwd=ROOT, env=env, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def measure(label: str, url: str, sensors: list[Path], extra_scan: Path, assets_total: int) -> list[list[object]]:
    rows: list[list[object]] = []
    load_start = time.perf_counter()
    for site, path in enumerate(sensors):
        store = CentralStore(url, site=f"site-{site:02d}")
        push(path, store)
        store.close()
    rows.append([label, f"push {len(sensors)} sites x 2 scans ({assets_total:,} assets, build)",
                 f"{time.perf_counter() - load_start:.1f}", ""])
    sensor = CentralStore(url, site="site-00")
    seconds, report = timed(lambda: push(extra_scan, sensor))
    sensor.close()
    rows.append([label, f"push one sensor's next scan ({report.observations} devices)",  # type: ignore[attr-defined]
                 f"{seconds:.2f}", "< 5"])
    everything = CentralStore(url)
    seconds, assets = timed(everything.assets)
    assert len(assets) == assets_total, len(assets)  # type: ignore[arg-type]
    rows.append([label, f"store.assets(): {len(assets):,} assets", f"{seconds:.2f}", "< 2"])  # type: ignore[arg-type]
    # the records decode their JSON columns when read: a caller that reads every identity pays for it then
    seconds, identities = timed(lambda: sum(bool(a.identity) for a in everything.assets()))
    assert identities == assets_total, identities
    rows.append([label, "store.assets(), then every asset's identity read", f"{seconds:.2f}", ""])
    rows.append([label, "otprobe inventory list --format json (whole command)", f"{cli_seconds(url):.2f}", ""])
    # the table's read: widths first, then the assets streamed without identity
    seconds, streamed = timed(lambda: (everything.asset_widths(),
                                       sum(1 for _ in everything.iter_assets(details=False))))
    rows.append([label, f"asset_widths + iter_assets(details=False): {streamed[1]:,} assets",  # type: ignore[index]
                 f"{seconds:.2f}", ""])
    site = CentralStore(url, site="site-00")
    first, second = site.scans()[:2]  # the site's two scans of all its devices, a tenth updated in the second
    seconds, diff = timed(lambda: diff_scans(site, first, second))
    site.close()
    rows.append([label, f"diff of one site's two scans: {len(diff.changes):,} changes",  # type: ignore[attr-defined]
                 f"{seconds:.2f}", ""])
    seconds, summary = timed(lambda: firmware_summary(everything.firmware_counts()))
    devices = sum(row.devices for row in summary)  # type: ignore[attr-defined]
    assert devices == assets_total, devices
    rows.append([label, f"firmware summary: {len(summary)} rows over {devices:,} devices",  # type: ignore[arg-type]
                 f"{seconds:.3f}", "< 1"])
    everything.close()
    return rows


def postgres(server: str) -> tuple[str, Callable[[], None]] | None:
    try:
        import psycopg
        from sqlalchemy.engine import make_url

        name = f"otprobe_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(server, autocommit=True, connect_timeout=3) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except Exception as exc:
        print(f"PostgreSQL skipped: {server.split('@')[-1]} does not answer ({exc})")
        return None

    def drop() -> None:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return make_url(server).set(database=name).render_as_string(hide_password=False), drop


def run(work: Path, sites: int, per_site: int) -> list[list[object]]:
    start = time.perf_counter()
    sensors = []
    for site in range(sites):
        sensors.append(work / f"site-{site:02d}.db")
        sensor_inventory(sensors[-1], site, per_site, scans=2)
    extra = work / "site-00-next.db"  # site-00's sensor, a later scan of 1,000 of its devices
    sensor_inventory(extra, 0, min(1000, per_site), scans=1)
    print(f"{sites} sensor inventories of {per_site:,} devices, two scans each, written in "
          f"{time.perf_counter() - start:.1f} s\n")
    total = sites * per_site
    rows = measure("SQLite", f"sqlite:///{work / 'central.db'}", sensors, extra, total)
    server = os.environ.get("OTPROBE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
    found = postgres(server)
    if found is not None:
        url, drop = found
        try:
            rows = measure("PostgreSQL", url, sensors, extra, total) + rows
        finally:
            drop()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=10)
    parser.add_argument("--assets", type=int, default=5000, help="devices per site")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="otprobe-bench-central-"))
    try:
        rows = run(work, args.sites, args.assets)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table(["database", "operation", "seconds", "target"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
