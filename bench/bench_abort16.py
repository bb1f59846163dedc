"""A /16 with nothing listening, stopped by its deadline: how long recording the unstarted addresses takes.

Scans 127.1.0.0/16 (every address answers RST on loopback) with the default profile's pacing and a short deadline,
into a fresh inventory, and prints when the scan returned (recorded and closed) against the deadline, the ABORTED
rows written (jobs cut short in flight), the addresses recorded as never started (the scan record's counts; they are
in its not-covered list) and the process's peak RSS.

    unshare -n sh -c 'ip link set lo up && exec .venv/bin/python bench/bench_abort16.py 20'
"""

from __future__ import annotations

import asyncio
import json
import resource
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import table

from otprobe.inventory import SqliteStore
from otprobe.profile import load_profile
from otprobe.scan import ScanRun, prepare


async def main(deadline_s: float) -> None:
    profile = load_profile("default")
    with tempfile.TemporaryDirectory(prefix="otprobe-abort16-") as workdir:
        now = datetime.now(UTC)
        prepared = prepare(profile, "default", ["127.1.0.0/16"], now=now, scope_include=["127.1.0.0/16"],
                           deadline=now + timedelta(seconds=deadline_s))
        db = Path(workdir) / "inventory.db"
        store = SqliteStore(db)
        started = time.monotonic()
        try:
            outcome = await ScanRun(prepared, store, Path(workdir) / "audit.jsonl", now=now).run()
        finally:
            store.close()
        returned = time.monotonic() - started
        with sqlite3.connect(db) as conn:
            aborted = conn.execute("SELECT count(*) FROM observations WHERE status='aborted'").fetchone()[0]
            counts = json.loads(conn.execute("SELECT counts FROM scans").fetchone()[0])
            not_covered = len(json.loads(conn.execute("SELECT not_covered FROM scans").fetchone()[0]))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table(("addresses", "deadline (s)", "scan returned (s)", "returned - deadline (s)", "aborted rows",
           "recorded not started", "not covered", "packets", "peak RSS (MB)"),
          [[len(prepared.targets), f"{deadline_s:g}", f"{returned:.2f}", f"{returned - deadline_s:.2f}", aborted,
            counts.get("not_started"), not_covered, outcome.result.packets_sent, f"{peak_mb:.0f}"]])


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 40.0))
