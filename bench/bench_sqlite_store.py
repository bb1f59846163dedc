"""Figure: what the SQLite inventory file costs a scan and a command, and what the in-place upgrade of a file an
older otprobe wrote costs.

- A scan's writes: `begin_scan`, one observation per device each committed as it arrives (as `otprobe scan` records
  them), and `finish_scan`, which reconciles the devices in one transaction.
- Opening: a new file (the first in the process, then the median of the next ones) and an up-to-date file (what every
  command pays before it reads), median of `--repeat`.
- The upgrade: the schema-3 file kept in tests/inventory/data (two real scans of six devices) scaled up to about
  `--assets` assets by copying its rows under new ids (addresses repeat: the upgrade copies rows, it matches
  nothing), then opened once.

It runs against whichever otprobe it imports: with PYTHONPATH set to a tree from before the shared schema it measures
that code, and skips the upgrade (nothing to upgrade to). No network traffic.

    .venv/bin/python bench/bench_sqlite_store.py [--devices 5000] [--assets 100000] [--repeat 20]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from common import TESTS, table

from otprobe.inventory import SqliteStore
from otprobe.model import Identity, Observation, Status

KEPT = TESTS / "inventory" / "data" / "inventory-schema3.sqlite"
KEYS = {"assets": "id", "asset_firmware": "asset_id", "asset_addresses": "asset_id", "asset_events": "asset_id",
        "scan_assets": "asset_id"}  # the tables copied per asset, and the column that names the asset


def seconds(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def wall_and_cpu(action: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU seconds of `action`: on a machine other work shares, the CPU time is the steadier figure."""
    cpu = time.process_time()
    wall = seconds(action)
    return wall, time.process_time() - cpu


def scan_writes(path: Path, devices: int) -> tuple[float, tuple[float, float], tuple[float, float]]:
    """Seconds for begin_scan; wall and CPU seconds for the observations (each committed) and for finish_scan."""
    targets = [f"127.{16 + n // 65536}.{n // 256 % 256}.{n % 256}" for n in range(devices)]
    with closing(SqliteStore(path)) as store:
        begin = seconds(lambda: store.begin_scan("s1", "bench", targets, protocols=["s7"]))

        def observe() -> None:
            for n, ip in enumerate(targets):
                identity = Identity(vendor="Siemens", model=f"CPU {n % 97}", serial=f"S C-{n:012d}", firmware="V3.2.7")
                store.add_observation("s1", Observation(ip, "s7", 102, Status.IDENTIFIED, identity, 0.01, 5, None,
                                                        "plc"))

        observed = wall_and_cpu(observe)
        finished = wall_and_cpu(lambda: store.finish_scan("s1", "complete"))
    return begin, observed, finished


def opening(folder: Path, repeat: int) -> tuple[float, float, float]:
    """Seconds to create the first new file of the process, the median of the next ones, and the median open of an
    up-to-date file."""
    def create(n: int) -> float:
        return seconds(lambda: SqliteStore(folder / f"new{n}.db").close())

    first = create(0)
    created = statistics.median(create(n) for n in range(1, repeat + 1))
    existing = folder / "new0.db"
    opened = statistics.median(seconds(lambda: SqliteStore(existing).close()) for _ in range(repeat))
    return first, created, opened


def scaled_old_file(path: Path, assets: int) -> dict[str, int]:
    """The kept schema-3 file with its asset rows copied to about `assets` assets; the rows per table."""
    shutil.copyfile(KEPT, path)
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        kept = db.execute("SELECT count(*) FROM assets").fetchone()[0]
        copies = max(1, assets // kept - 1)
        db.execute("BEGIN")
        for table, key in (*KEYS.items(), ("observations", None)):
            names = [row[1] for row in db.execute(f"PRAGMA table_info({table})") if row[1] != "id" or key]
            picked = ", ".join(f"{name} || '-' || k" if name == key else f"{name} || '#' || k" if name == "ip"
                               and table == "observations" else name for name in names)
            db.execute(f"WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < {copies}) "
                       f"INSERT INTO {table} ({', '.join(names)}) SELECT {picked} FROM {table}, n")
        db.execute("COMMIT")
        return {table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in (*KEYS, "observations")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=5000)
    parser.add_argument("--assets", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        first, created, opened = opening(folder, args.repeat)  # first: the process has created no file yet
        begin, observed, finished = scan_writes(folder / "scan.db", args.devices)
        rows = [(f"a scan's begin_scan ({args.devices:,} targets)", f"{begin * 1e3:.1f} ms", ""),
                (f"{args.devices:,} observations, each committed", f"{observed[0]:.2f} s "
                 f"({observed[0] / args.devices * 1e6:.0f} us each)", f"{observed[1]:.2f} s"),
                (f"finish_scan: {args.devices:,} devices reconciled", f"{finished[0]:.2f} s", f"{finished[1]:.2f} s"),
                ("a new file, the first of the process", f"{first * 1e3:.0f} ms", ""),
                (f"a new file, median of {args.repeat} more", f"{created * 1e3:.1f} ms", ""),
                (f"open an up-to-date file, median of {args.repeat}", f"{opened * 1e3:.2f} ms", "")]
        if importlib.util.find_spec("otprobe.inventory.sqlite_schema") is not None:
            old = folder / "old.db"
            counts = scaled_old_file(old, args.assets)
            size = old.stat().st_size
            upgraded = wall_and_cpu(lambda: SqliteStore(old).close())
            rows.append((f"upgrade a schema-3 file of {counts['assets']:,} assets, {counts['observations']:,} "
                         f"observations ({size / 1e6:.0f} MB; {old.stat().st_size / 1e6:.0f} MB after)",
                         f"{upgraded[0]:.1f} s", f"{upgraded[1]:.1f} s"))
        table(("SQLite store", "wall", "CPU"), rows)
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
