"""Scan behaviour seen at the device: adaptive slowdown, and one scan at a time per audit log.

Adaptive slowdown: when a device's replies slow down under our load, our packets spread out.

A Modbus device whose reply latency grows with the requests it saw in the last second (fault `slow` with
`load_s`) is scanned at 10 pps, one basic-stream request per unit id. The gaps between requests arriving at the
device widen after the replies slow down, well past the 0.1 s the cap alone would give; an identical device with
no fault gets its requests at the cap.
"""

from __future__ import annotations

import itertools
import os
from datetime import UTC, datetime

import pytest
import yaml
from conftest import settled

from otprobe.inventory import SqliteStore
from otprobe.profile import parse_profile
from otprobe.scan import ScanRun, prepare
from simulators.plant import running_plant

PORT = 15030
UNITS = list(range(1, 9))


def device(n: int, fault: object) -> dict:
    return {"name": f"d{n}", "address": f"127.0.150.{n}", "class": "plc", "fault": fault,
            "modbus": {"port": PORT, "unit_ids": UNITS, "conformity": 1, "vendor_name": "Acme",
                       "product_code": "AC-1", "revision": "v1"}}


PROFILE = {
    "name": "slowdown", "scope": {"include": ["127.0.150.0/24"]}, "global_pps": 50,
    "classes": {"unknown": {"pps": 10, "connect_gap_s": 0, "max_session_s": 60}},
    "protocols": {"modbus": {"port": PORT, "unit_ids": UNITS}, "s7": {"enabled": False}, "enip": {"enabled": False}},
    "timeouts": {"connect_s": 2, "response_s": 3}, "retries": 0,
}


async def test_replies_slowing_under_load_spread_the_next_packets(tmp_path):
    plant = {"plant": "slowdown", "devices": [device(1, {"mode": "slow", "load_s": 0.06}), device(2, "none")]}
    async with running_plant(plant) as running:
        now = datetime.now(UTC)
        prepared = prepare(parse_profile(yaml.safe_dump(PROFILE), "slowdown.yaml"), "slowdown",
                           ["127.0.150.1", "127.0.150.2"], now=now)
        store = SqliteStore(tmp_path / "inv.db")
        outcome = await ScanRun(prepared, store, tmp_path / "audit.jsonl", now=now).run()
        store.close()
        for d in running:
            await settled(d.recorder)
        slowed = [r.mono for r in running["d1"].recorder.requests]
        steady = [r.mono for r in running["d2"].recorder.requests]
    assert outcome.status == "complete"
    assert len(slowed) == len(steady) == len(UNITS)  # one basic-stream request per unit id on each device
    steady_gaps = [b - a for a, b in itertools.pairwise(steady)]
    slowed_gaps = [b - a for a, b in itertools.pairwise(slowed)]
    assert max(steady_gaps) < 0.2, steady_gaps  # the cap alone: about 0.1 s apart
    assert max(slowed_gaps) >= 0.35, slowed_gaps  # the rate was halved at least twice
    assert sum(slowed_gaps) > 2 * sum(steady_gaps), (slowed_gaps, steady_gaps)


async def test_a_second_scan_on_the_same_audit_log_is_refused_while_the_first_runs(tmp_path):
    from otprobe.errors import ScanLocked

    plant = {"plant": "lock", "devices": [device(1, "none")]}
    profile = parse_profile(yaml.safe_dump({**PROFILE, "classes": {"unknown": {"pps": 2, "max_session_s": 60}}}),
                            "slow.yaml")
    async with running_plant(plant) as running:
        now = datetime.now(UTC)
        prepared = prepare(profile, "slow", ["127.0.150.1"], now=now)
        store = SqliteStore(tmp_path / "inv.db")
        first = ScanRun(prepared, store, tmp_path / "audit.jsonl", now=now)
        with pytest.raises(ScanLocked, match=rf"pid {os.getpid()}"):
            ScanRun(prepared, store, tmp_path / "audit.jsonl", now=now)
        assert (await first.run()).status == "complete"
        again = await ScanRun(prepared, store, tmp_path / "audit.jsonl", now=now).run()  # free once it ended
        store.close()
        await settled(running["d1"].recorder)
    assert again.status == "complete"
    assert len(running["d1"].recorder.connections) == 2  # the refused scan sent nothing
