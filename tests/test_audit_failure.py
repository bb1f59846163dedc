"""When the audit log fails mid-scan (a full disk), nothing new leaves, and open connections still close with a FIN.

The promise, exactly: every packet but one kind has its intent on disk before it leaves; once the log cannot be
written, the scan starts nothing new and ends with the audit error, and the connections it has open are closed
anyway (closing is the safest act for the device), each close named on stderr instead of in the log. Judged at
the simulated devices: every request and connection they saw has its intent in the log, and every connection ended
with our FIN.
"""

from __future__ import annotations

import errno
import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from plantgen import PORTS, group

from otprobe import audit as audit_module
from otprobe.errors import AuditError
from otprobe.inventory import SqliteStore
from otprobe.profile import parse_profile
from otprobe.scan import ScanRun, prepare

DEVICES = [f"127.0.88.{host}" for host in (10, 11, 12)]  # plantgen.group(88, 3): hosts .10 upwards
INTENTS_BEFORE_THE_DISK_FILLS = 7


def _profile() -> str:
    return yaml.safe_dump({
        "name": "audit-failure",
        "scope": {"include": ["127.0.88.0/24"], "exclude": []},
        "global_pps": 50,
        "classes": {"unknown": {"pps": 4, "connect_gap_s": 0, "max_session_s": 20}},
        "protocols": {"modbus": {"port": PORTS["modbus"], "unit_ids": [1, 2, 3]}, "s7": {"enabled": False},
                      "enip": {"enabled": False}},
        "retries": 0,
    })


async def test_a_full_disk_stops_the_scan_and_every_open_connection_still_ends_with_a_fin(
    start_plant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    modbus = {"modbus": {"unit_ids": [1, 2, 3]}}
    plant = await start_plant(*group(88, len(DEVICES), device_class="plc", protocols=modbus))
    audit_path = tmp_path / "audit.jsonl"
    real_write = os.write
    intents = 0

    def disk_fills(fd: int, data: bytes) -> int:
        nonlocal intents
        if b'"type":"intent"' in data:
            intents += 1
            if intents > INTENTS_BEFORE_THE_DISK_FILLS:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(audit_module.os, "write", disk_fills)
    profile = parse_profile(_profile(), "audit-failure.yaml")
    now = datetime.now(UTC)
    prepared = prepare(profile, "audit-failure.yaml", DEVICES, now=now)
    store = SqliteStore(tmp_path / "inventory.db")
    caplog.set_level(logging.WARNING, logger="otprobe.link")
    try:
        with pytest.raises(AuditError, match="No space left"):
            await ScanRun(prepared, store, audit_path, now=now).run()
    finally:
        store.close()
    monkeypatch.undo()

    assert audit_module.verify(audit_path).ok  # the chain on disk is whole up to the failure
    records = [json.loads(line) for line in audit_path.read_text().splitlines()]
    logged = [r for r in records if r["type"] == "intent"]
    assert len(logged) == INTENTS_BEFORE_THE_DISK_FILLS
    unaudited = [r.getMessage() for r in caplog.records if "without an intent record" in r.getMessage()]
    recorders = {device.address: device.recorder for device in plant}
    assert any(recorder.connections for recorder in recorders.values())  # the failure came mid-scan
    for ip, recorder in recorders.items():
        mine = [r for r in logged if r["device"] == ip]
        # nothing but a close reached the device without its intent on disk first
        assert len(recorder.connections) == sum(r["operation"] == "connect" for r in mine), ip
        assert len(recorder.requests) == sum(r["code"].startswith("fc:") for r in mine), ip
        for connection in recorder.connections:
            assert connection.close_kind == "fin", (ip, connection)  # closed by us, cleanly, not left open
        closes_logged = sum(r["operation"] == "close" for r in mine)
        closes_unlogged = sum(f"to {ip} " in message for message in unaudited)
        assert closes_logged + closes_unlogged == len(recorder.connections), ip
    assert unaudited  # at least one connection was open when the disk filled: its close is on stderr
