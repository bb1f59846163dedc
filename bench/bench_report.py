"""How long `otprobe report` takes, and how large the HTML gets, for scans of 20, 250 and 1,000 devices.

Each scan is written through the real inventory and audit log (SqliteStore, AuditLog): one identified result and
four paced packets per device (connect, two requests, close), stamped on a clock that advances as the `lab`
profile's caps would let them go, so the plots have as many points as a real scan of that size. Nothing is sent.

    .venv/bin/python bench/bench_report.py
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from common import table

from otprobe.audit import AuditLog
from otprobe.inventory import SqliteStore
from otprobe.model import Identity, Observation, Status
from otprobe.profile import load_profile
from otprobe.report.documents import to_html, to_markdown
from otprobe.report.facts import gather
from otprobe.report.scan_json import document

T = TypeVar("T")
SIZES = (20, 250, 1000)
OPERATIONS = (("connect", "tcp:connect"), ("read_basic", "fc:0x2B/mei:0x0E"), ("read_regular", "fc:0x2B/mei:0x0E"),
              ("close", "tcp:close"))


def write_scan(workdir: Path, devices: int) -> tuple[SqliteStore, Path, str]:
    profile = load_profile("lab")
    start = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
    now = [start]
    scan_id = f"{start:%Y%m%dT%H%M%SZ}-b{devices:03x}"[:21]
    addresses = [f"127.1.{n // 250}.{n % 250 + 1}" for n in range(devices)]
    store = SqliteStore(workdir / "inventory.db")
    store.begin_scan(scan_id, "lab", addresses, protocols=["modbus"])
    audit_path = workdir / "audit.jsonl"
    step = timedelta(seconds=1 / profile.global_pps)  # the global cap is the binding one for a large scan
    with AuditLog(audit_path, scan_id, clock=lambda: now[0], fsync=False) as audit:
        audit.event("scan_start", profile="lab", targets=devices)
        for number, address in enumerate(addresses):
            for operation, code in OPERATIONS:
                record = audit.intent(device=address, protocol="modbus", operation=operation, code=code, packets=1)
                audit.outcome(record, "ok")
                now[0] += step
            identity = Identity(vendor="Schneider Electric", model=f"PM55{number % 100:02d}", firmware="v2.7",
                                serial=f"S{number:06d}", asset_type="meter")
            store.add_observation(scan_id, Observation(address, "modbus", 5020, Status.IDENTIFIED, identity, 0.01, 4))
        audit.event("scan_end", status="complete", packets=4 * devices,
                    elapsed_s=(now[0] - start).total_seconds())
    store.finish_scan(scan_id, "complete")
    return store, audit_path, scan_id


def timed(call: Callable[..., T], *args: Any, runs: int = 1) -> tuple[T, float]:
    """The result and the least wall time of `runs` calls: the machine is shared, the least is the steadiest."""
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        result = call(*args)
        best = min(best, time.perf_counter() - started)
    return result, best


def main() -> None:
    rows = []
    # the first report of a process also imports Jinja2 and matplotlib (and builds matplotlib's font cache if there
    # is none yet): its own row, one run; then every size again with both loaded, the least of three runs
    for label, devices in (("20, first in the process", 20), *((str(n), n) for n in SIZES)):
        with tempfile.TemporaryDirectory() as folder:
            store, audit_path, scan_id = write_scan(Path(folder), devices)
            try:
                runs = 1 if label.endswith("process") else 3
                facts, gathered = timed(gather, store, scan_id, audit_path, runs=runs)
                html, html_s = timed(to_html, facts, runs=runs)
                markdown, markdown_s = timed(to_markdown, facts, runs=runs)
                text, json_s = timed(json.dumps, document(facts), runs=runs)
            finally:
                store.close()
        rows.append((label, 4 * devices, f"{gathered:.2f}", f"{html_s:.2f}", f"{len(html) / 1024:.0f}",
                     f"{markdown_s:.3f}", f"{len(markdown) / 1024:.0f}", f"{json_s:.3f}", f"{len(text) / 1024:.0f}"))
    table(("devices", "packets", "gather s", "HTML s", "HTML KiB", "Markdown s", "Markdown KiB", "JSON dump s",
           "JSON KiB"), rows)


if __name__ == "__main__":
    main()
