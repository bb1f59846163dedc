"""Inventory exports: JSON, CSV (one row per asset) and CycloneDX 1.6 (devices with nested firmware)."""

from __future__ import annotations

import csv
import io
import json
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


def to_csv(assets: list[AssetRecord]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for a in assets:
        row = {k: getattr(a, k) for k in CSV_COLUMNS}
        row["protocols"] = " ".join(f"{p}/{port}" for p, port in sorted(a.protocols.items()))
        writer.writerow(row)
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
