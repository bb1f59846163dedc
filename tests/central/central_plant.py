"""Scans without a network for the central store's tests: a small plant's observations, written through any store."""

from __future__ import annotations

import json

from otprobe.inventory import SqliteStore
from otprobe.inventory.central import CentralStore
from otprobe.model import Identity, Observation, Status

PORTS = {"s7": 102, "modbus": 502, "enip": 44818}


def obs(ip: str, protocol: str, **ident: object) -> Observation:
    return Observation(ip, protocol, PORTS[protocol], Status.IDENTIFIED, Identity(**ident), 0.01, 4, None, "plc")


def run_scan(store: SqliteStore | CentralStore, scan_id: str, plant: dict, targets: list[str] | None = None) -> None:
    store.begin_scan(scan_id, "lab", targets or sorted(plant), protocols=list(PORTS))
    for ip, entries in plant.items():
        for protocol, ident in entries:
            store.add_observation(scan_id, obs(ip, protocol, **ident))
    store.finish_scan(scan_id, "complete")


def later(plant: dict) -> dict:
    """The plant a while later: a firmware update, a device moved to another address, one device gone."""
    second = json.loads(json.dumps(plant))
    second["127.0.1.10"][0][1]["firmware"] = "V3.2.8"
    second["127.0.3.99"] = second.pop("127.0.3.10")
    del second["127.0.2.11"]
    return second
