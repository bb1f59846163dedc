"""Inventory exports: JSON, CSV (one row per asset) and CycloneDX 1.6 (devices with nested firmware).

CSV is opened in spreadsheets, which run a cell starting with `=`, `+`, `-`, `@`, TAB or CR as a formula, and the
cells hold what devices said about themselves: see `csv_cell`.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from otprobe import __version__
from otprobe.inventory.store import AssetRecord

CSV_COLUMNS = (
    "id", "ip", "device_class", "vendor", "model", "product_code", "serial", "firmware", "hardware_version",
    "protocols", "first_seen", "last_seen",
)


def to_json(assets: list[AssetRecord]) -> str:
    return json.dumps([asdict(a) for a in assets], indent=2, default=str)


# Leading characters that make Excel, LibreOffice Calc or Google Sheets read a cell as a formula: a device naming
# itself `=cmd|' /C calc'!A0` or `=HYPERLINK(...)` would run it on the machine of whoever opens the export. NUL is
# added as OWASP's verification standard (ASVS) lists it beside them.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\0")
# A cell that is a plain number ("-1", "+3.5", "-2e3") is left alone: a spreadsheet reads it as that number and
# runs nothing, and a quote would turn it into text. Anything more ("-1+1", "-1.2.3") is not a plain number.
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def csv_cell(value: Any) -> str:
    """A cell a spreadsheet shows as text: a formula start is prefixed with `'`, which spreadsheets take as
    "text follows" (OWASP's CSV Injection advice). Separators, quotes and line breaks inside are left to CSV
    quoting: every cell is quoted and its quotes are doubled."""
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def to_csv(assets: list[AssetRecord]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(CSV_COLUMNS)
    for a in assets:
        row = {k: getattr(a, k) for k in CSV_COLUMNS}
        row["protocols"] = " ".join(f"{p}/{port}" for p, port in sorted(a.protocols.items()))
        writer.writerow([csv_cell(row[k]) for k in CSV_COLUMNS])
    return out.getvalue()


def to_cyclonedx(assets: list[AssetRecord]) -> str:
    """A CycloneDX 1.6 BOM: each asset a `device` component with its firmware as a nested `firmware` component."""
    components = [_device(a) for a in assets]
    bom = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": f"urn:uuid:{uuid.uuid4()}",
        "version": 1,
        "metadata": {
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "tools": {"components": [{"type": "application", "name": "otprobe", "version": __version__}]},
        },
        "components": components,
    }
    return json.dumps(bom, indent=2)


def _device(a: AssetRecord) -> dict[str, Any]:
    props = {"otprobe:ip": a.ip, "otprobe:device_class": a.device_class, "cdx:device:serialNumber": a.serial,
             "otprobe:product_code": a.product_code, "otprobe:hardware_version": a.hardware_version,
             "otprobe:protocols": " ".join(f"{p}/{port}" for p, port in sorted(a.protocols.items())),
             "otprobe:last_seen": a.last_seen}
    device: dict[str, Any] = {
        "type": "device",
        "bom-ref": f"asset-{a.id}",
        "name": a.model or a.product_code or a.ip or a.id,
        "properties": [{"name": k, "value": str(v)} for k, v in props.items() if v],
    }
    if a.vendor:
        device["manufacturer"] = {"name": a.vendor}
    if a.firmware:
        device["components"] = [
            {"type": "firmware", "bom-ref": f"asset-{a.id}-firmware", "name": f"{device['name']} firmware",
             "version": a.firmware}
        ]
    return device
