"""Inventory exports: JSON, CSV (one row per asset) and CycloneDX 1.6 (devices with nested firmware), each asset with
its site (an address means something only within it).

Each is written asset by asset to a stream as the store reads them, so an export of 100,000 assets holds one.

CSV is opened in spreadsheets, which run a cell starting with `=`, `+`, `-`, `@`, TAB or CR as a formula, and the
cells hold what devices said about themselves: see `csv_cell`.
"""

from __future__ import annotations

import csv
import json
import re
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, TextIO

from otprobe import __version__
from otprobe.inventory.store import AssetRecord

CSV_COLUMNS = (
    "id", "site", "ip", "device_class", "asset_type", "vendor", "model", "product_code", "serial", "firmware",
    "hardware_version", "protocols", "cpu_state", "first_seen", "last_seen",
)


# What a terminal obeys beyond C0 (which JSON escapes itself): DEL, the C1 controls (U+009B is a one-character CSI
# to some terminals), the line separators and the bidirectional overrides. A database's JSON keeps them raw; escaped
# as \uXXXX they mean the same to a JSON reader and nothing to a terminal that shows the export.
_TERMINAL_CONTROLS = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def write_json(assets: Iterable[str], out: TextIO) -> None:
    """A JSON array of the assets, each given as its JSON object (`Store.iter_asset_json`), one a line."""
    out.write("[")
    for n, asset in enumerate(assets):
        out.write(",\n" if n else "\n")
        out.write(_TERMINAL_CONTROLS.sub(lambda m: f"\\u{ord(m.group()):04x}", asset))
    out.write("\n]\n")


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


def write_csv(assets: Iterable[AssetRecord], out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(CSV_COLUMNS)
    for a in assets:
        row = {k: getattr(a, k) for k in CSV_COLUMNS}
        row["protocols"] = " ".join(f"{p}/{port}" for p, port in sorted(a.protocols.items()))
        writer.writerow([csv_cell(row[k]) for k in CSV_COLUMNS])


_COMPACT = json.JSONEncoder(separators=(",", ":"))  # one encoder for every component, no blank after separators


def write_cyclonedx(assets: Iterable[AssetRecord], out: TextIO) -> None:
    """A CycloneDX 1.6 BOM: each asset a `device` component with its firmware as a nested `firmware` component,
    written one component at a time."""
    head = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": f"urn:uuid:{uuid.uuid4()}",
        "version": 1,
        "metadata": {
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "tools": {"components": [{"type": "application", "name": "otprobe", "version": __version__}]},
        },
    }
    out.write(json.dumps(head, indent=2)[:-2] + ',\n  "components": [')
    for n, asset in enumerate(assets):
        out.write(",\n" if n else "\n")
        out.write("    " + _COMPACT.encode(_device(asset)))  # one component a line, by json's C encoder
    out.write("\n  ]\n}\n")


# Every protocol's raw identity goes into the component as `otprobe:<protocol>:<field>` properties, so whatever a
# probe records of what the device is (a vendor id, a sysObjectID, an application URI, a certificate's validity) is
# carried without this file knowing any protocol: scalars and lists of scalars, down to one nested level
# (`certificate.not_after`); lists of records (endpoints, entity rows) stay in the JSON export.
_RAW_DEPTH = 2


def _raw_properties(identity: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(property, value) for each answering protocol's raw fields."""

    def walk(prefix: str, value: Any, depth: int) -> Iterator[tuple[str, Any]]:
        if isinstance(value, dict):
            if depth < _RAW_DEPTH:
                for key, inner in value.items():
                    yield from walk(f"{prefix}.{key}" if depth else f"{prefix}{key}", inner, depth + 1)
        elif isinstance(value, list):
            if all(isinstance(item, str | int | float | bool) for item in value):
                yield prefix, value
        else:
            yield prefix, value

    for protocol, raw in (identity.get("raw") or {}).items():
        yield from walk(f"otprobe:{protocol}:", raw, 0)


def _property_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return " ".join(map(str, value))
    return str(value)


def _device(a: AssetRecord) -> dict[str, Any]:
    own = (("otprobe:site", a.site), ("otprobe:ip", a.ip), ("otprobe:asset_type", a.asset_type),
           ("otprobe:device_class", a.device_class), ("cdx:device:serialNumber", a.serial),
           ("otprobe:product_code", a.product_code), ("otprobe:hardware_version", a.hardware_version),
           ("otprobe:protocols", " ".join(f"{p}/{port}" for p, port in sorted(a.protocols.items()))),
           ("otprobe:last_seen", a.last_seen))
    # the record's own fields are text or None; a device's raw values may be 0 or false, which are kept
    properties = [{"name": name, "value": value} for name, value in own if value]
    properties += [{"name": name, "value": _property_value(value)} for name, value in _raw_properties(a.identity)
                   if value not in (None, "", [])]
    device: dict[str, Any] = {
        "type": "device",
        "bom-ref": f"asset-{a.id}",
        "name": a.model or a.product_code or a.ip or a.id,
        "properties": properties,
    }
    if a.vendor:
        device["manufacturer"] = {"name": a.vendor}
    if a.firmware:
        device["components"] = [
            {"type": "firmware", "bom-ref": f"asset-{a.id}-firmware", "name": f"{device['name']} firmware",
             "version": a.firmware}
        ]
    return device
