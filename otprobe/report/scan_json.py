"""The scan's JSON document (`scan --format json`, `report --format json`) and its JSON Lines rows.

The document is described by `otprobe/data/scan.schema.json`, which ships with the package; a change to its shape
raises `SCHEMA_VERSION` (a new optional key does not). Device strings are kept exactly as the devices sent them:
JSON escapes them itself.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

from otprobe.model import Observation
from otprobe.profile import Profile
from otprobe.report.facts import Device, ScanFacts, address_key

SCHEMA_VERSION = 1


def schema() -> dict[str, Any]:
    """The JSON Schema of the document, as shipped in the package."""
    return json.loads(files("otprobe.data").joinpath("scan.schema.json").read_text(encoding="utf-8"))


def profile_summary(ref: str, profile: Profile | None) -> dict[str, Any]:
    """The profile's name and the caps the scan ran under; only the reference when it cannot be read."""
    if profile is None:
        return {"ref": ref, "name": None, "global_pps": None, "classes": None}
    return {
        "ref": ref,
        "name": profile.name,
        "global_pps": profile.global_pps,
        "classes": {name: limits.model_dump() for name, limits in sorted(profile.classes.items())},
    }


def _result(observation: Observation) -> dict[str, Any]:
    return {
        "protocol": observation.protocol,
        "port": observation.port,
        "status": str(observation.status),
        "packets_sent": observation.packets_sent,
        "latency_s": observation.latency_s,
        "error": observation.error,
        "identity": observation.identity.as_dict() if observation.identity else None,
    }


def _device(device: Device) -> dict[str, Any]:
    return {
        "ip": device.ip,
        "device_class": device.device_class,
        "status": device.status,
        "identity": device.identity or None,
        "results": [_result(o) for o in device.results],
    }


def document(facts: ScanFacts) -> dict[str, Any]:
    scan = facts.scan
    return {
        "schema_version": SCHEMA_VERSION,
        "scan_id": scan.id,
        "profile": profile_summary(scan.profile, facts.profile),
        "started_at": scan.started_at,
        "ended_at": scan.ended_at,
        "outcome": scan.status,
        "protocols": scan.protocols,
        "resumes": scan.resumes,
        "packets": facts.packets,
        "not_covered": sorted(scan.not_covered, key=address_key),
        "devices": [_device(d) for d in facts.devices],
    }


def jsonl_row(observation: Observation) -> str:
    """One device's result of one protocol as one JSON line (`scan --format jsonl` prints each as it is recorded)."""
    return json.dumps(observation.as_dict(), default=str)
