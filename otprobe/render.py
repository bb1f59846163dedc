"""Everything a person sees: tables, progress and one-line errors. The only module that imports rich.

Machine output (`--format json`) goes to stdout only; everything else (logs, progress, summaries
around tables) goes to stderr, so `otprobe scan ... --format json | jq` works.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from otprobe.inventory.store import AssetRecord, ScanRecord
from otprobe.model import Observation, Status


def console(stderr: bool = False) -> Console:
    # NO_COLOR is honoured by rich itself; a dumb or piped terminal gets plain text.
    return Console(stderr=stderr, highlight=False, soft_wrap=False, no_color="NO_COLOR" in os.environ)


out = console()
err = console(stderr=True)


def error_line(message: str) -> None:
    err.print(f"otprobe: error: {message}", markup=False)


def info(message: str, quiet: bool = False) -> None:
    if not quiet:
        err.print(message, markup=False)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def _table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    return table


_STATUS_STYLE = {Status.IDENTIFIED: "green", Status.NO_IDENTITY: "yellow", Status.EXCLUDED: "dim"}


def observations_table(observations: Sequence[Observation]) -> None:
    rows = []
    for o in sorted(observations, key=lambda o: (tuple(int(p) for p in o.target.split(".")), o.protocol)):
        i = o.identity
        style = _STATUS_STYLE.get(o.status, "red")
        rows.append((o.target, o.protocol, o.port, f"[{style}]{o.status}[/]", i and i.vendor,
                     i and (i.model or i.product_name), i and i.product_code, i and i.firmware, i and i.serial,
                     o.error or ""))
    out.print(_table("Scan results", ("ip", "protocol", "port", "status", "vendor", "model", "order/product code",
                                      "firmware", "serial", "note"), rows))


def assets_table(assets: Sequence[AssetRecord], title: str = "Inventory") -> None:
    rows = [(a.id, a.ip, a.device_class, a.vendor, a.model, a.product_code, a.firmware, a.serial,
             " ".join(sorted(a.protocols)), a.last_seen) for a in assets]
    out.print(_table(title, ("asset", "ip", "class", "vendor", "model", "order/product code", "firmware", "serial",
                             "protocols", "last seen"), rows))


def asset_detail(asset: AssetRecord, history: dict[str, list[dict[str, Any]]]) -> None:
    fields = [("asset", asset.id), ("address", asset.ip), ("class", asset.device_class), ("vendor", asset.vendor),
              ("model", asset.model), ("order/product code", asset.product_code), ("serial", asset.serial),
              ("firmware", asset.firmware), ("hardware", asset.hardware_version),
              ("protocols", ", ".join(f"{p}/{port}" for p, port in sorted(asset.protocols.items()))),
              ("first seen", asset.first_seen), ("last seen", asset.last_seen)]
    out.print(_table(f"Asset {asset.id}", ("field", "value"), fields))
    for name, value in asset.conflicts.items():
        out.print(f"conflict: {name}: " + ", ".join(f"{p}={v!r}" for p, v in value.items()), markup=False)
    out.print(_table("Firmware history", ("scan", "firmware", "seen"),
                     [(h["scan_id"], h["firmware"], h["observed_at"]) for h in history["firmware"]]))
    out.print(_table("Address history", ("scan", "ip", "seen"),
                     [(h["scan_id"], h["ip"], h["observed_at"]) for h in history["addresses"]]))


def scans_table(scans: Sequence[ScanRecord]) -> None:
    rows = [(s.id, s.profile, s.started_at, s.ended_at, s.status, len(s.targets), len(s.not_covered),
             ", ".join(f"{k} {v}" for k, v in sorted(s.counts.items()))) for s in scans]
    out.print(_table("Scans", ("scan", "profile", "started", "ended", "status", "targets", "not covered",
                               "results"), rows))


def diff_table(diff: dict[str, Any]) -> None:
    rows = [(c["kind"], c["ip"], c["asset_id"], c["old"], c["new"]) for c in diff["changes"]]
    out.print(_table(f"Changes from scan {diff['from']} to {diff['to']}", ("change", "ip", "asset", "old", "new"),
                     rows))
    if not rows:
        out.print("no changes")


def generic_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    out.print(_table(title, columns, rows))
