"""Rows of the inventory tables to and from the store's records, over plain mappings: one encoding of JSON columns
and identities for every backend (a sqlite3.Row and a SQLAlchemy row mapping read alike).

A NUL a device sent is stored as U+2400 (SYMBOL FOR NULL) in every column but an observation's identity JSON (which
keeps the exact string in JSON's own escape): PostgreSQL's TEXT cannot hold NUL, and both stores must hold the same.

Pure: no database here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from otprobe.inventory.reconcile import Decision
from otprobe.inventory.store import AssetRecord, ScanRecord
from otprobe.model import Identity, Observation, Status


def scan_record(r: Mapping[str, Any]) -> ScanRecord:
    packets = r.get("packets_sent")
    return ScanRecord(r["id"], r["profile"], r["started_at"], r["ended_at"], r["status"], json.loads(r["targets"]),
                      json.loads(r["not_covered"]), json.loads(r["counts"]), json.loads(r["protocols"]), r["resumes"],
                      None if packets is None else int(packets), r["site"])


def asset_record(r: Mapping[str, Any], duplicate_serial: bool) -> AssetRecord:
    """The asset of a row, its JSON columns decoded only when read; without identity and conflicts in the row (a table
    or CSV shows neither), both are empty."""
    return AssetRecord(
        r["id"], r["ip"], r["device_class"], r["vendor"], r["model"], r["product_code"], r["serial"], r["firmware"],
        r["hardware_version"], r["protocols"], r.get("identity") or {}, r.get("conflicts") or {},
        r["first_seen"], r["last_seen"], bool(r["retired"]), duplicate_serial and not r["retired"],
        r["asset_type"], r["cpu_state"], r["site"],
    )


# AssetRecord's fields in order; the JSON columns among them are embedded as stored
_JSON_FIELDS = ("id", "ip", "device_class", "vendor", "model", "product_code", "serial", "firmware",
                "hardware_version", "protocols", "identity", "conflicts", "first_seen", "last_seen", "retired",
                "duplicate_serial", "asset_type", "cpu_state", "site")
_STORED_JSON = frozenset(("protocols", "identity", "conflicts"))


def asset_json(r: Mapping[str, Any], duplicate_serial: bool) -> str:
    """The asset of a row as one JSON object of `asset_record`'s fields, without parsing its stored identity: a
    listing of 100,000 assets spends its time writing, not decoding and encoding again."""
    values = {**r, "retired": bool(r["retired"]), "duplicate_serial": duplicate_serial and not r["retired"]}
    parts = (f"{json.dumps(name)}:{values[name] if name in _STORED_JSON else json.dumps(values[name])}"
             for name in _JSON_FIELDS)
    return "{" + ",".join(parts) + "}"


# What a NUL in a device's string is stored as: visible, one column wide, and saying which byte it was (U+FFFD
# would not: a probe that decodes UTF-8 leaves it for any undecodable byte).
NUL_SHOWN = "\u2400"


def without_nul(value: Any) -> Any:
    """`value` (a string, or JSON-like data holding strings) with every NUL as `NUL_SHOWN`."""
    if isinstance(value, str):
        return value.replace("\0", NUL_SHOWN) if "\0" in value else value
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nul(v) for v in value]
    return value


def observation_row(obs: Observation) -> dict[str, Any]:
    """The observations columns of one observation, but its scan and time. The identity is kept exactly: JSON
    escapes a NUL (`\\u0000`), which any TEXT holds."""
    return {
        "ip": obs.target, "protocol": obs.protocol, "port": obs.port, "status": str(obs.status),
        "device_class": obs.device_class,
        "identity": json.dumps(obs.identity.as_dict()) if obs.identity else None,
        "latency_s": obs.latency_s, "packets": obs.packets_sent, "error": without_nul(obs.error),
    }


def observation(r: Mapping[str, Any]) -> Observation:
    """The observation of a row, its identity's NULs as `NUL_SHOWN`: every asset, snapshot, event and report is made
    from these, so none of them holds a NUL, whichever store and whichever version wrote the row."""
    ident = None
    if r["identity"]:
        data = without_nul(json.loads(r["identity"]))
        data.pop("firmware_version", None)  # an older spelling of firmware, derived again by Identity
        ident = Identity(**data)
    return Observation(r["ip"], r["protocol"], r["port"], Status(r["status"]), ident, r["latency_s"], r["packets"],
                       r["error"], r["device_class"])


def asset_columns(d: Decision) -> dict[str, Any]:
    """The assets columns one reconcile decision sets, from what the scan saw of the address (every store's)."""
    seen, m = d.seen, d.seen.identity
    identity = {**m.fields, "sources": m.sources, "raw": m.raw}
    # a state is a moment's: one this scan did not read is not carried over from an earlier one
    cpu_state = next((raw["cpu_state"] for raw in m.raw.values() if raw.get("cpu_state")), None)
    return {
        "ip": seen.ip, "device_class": seen.device_class, "vendor": m.get("vendor"), "model": seen.model,
        "product_code": m.get("product_code"), "serial": seen.serial, "firmware": d.firmware,
        "hardware_version": m.get("hardware_version"), "protocols": json.dumps(m.protocols),
        "identity": json.dumps(identity, default=str), "conflicts": json.dumps(m.conflicts, default=str),
        "asset_type": m.get("asset_type"), "cpu_state": cpu_state,
    }


def snapshot_columns(d: Decision) -> dict[str, Any]:
    """The scan_assets columns of one decision, but its scan and asset id: the asset as this scan saw it, with the
    protocols that identified it (a diff calls it missing only where a later scan asked over one of them)."""
    seen = d.seen
    return {"ip": seen.ip, "firmware": d.firmware, "model": seen.model, "serial": seen.serial,
            "protocols": json.dumps(sorted(seen.identity.protocols))}
