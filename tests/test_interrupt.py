"""Ctrl-C as an engineer presses it: `otprobe scan` in its own process, SIGINT once or twice, then resume.

The plant runs in this process (addresses 127.0.120.x), so what the devices saw is checked at the receiver:
every connection ends with the client's FIN, none is left open, and the inventory and audit log stay whole.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import plant_in_thread

PORT = 15020
ADDRESSES = [f"127.0.120.{n}" for n in range(1, 9)]
PROFILE = f"""
name: slow-test
scope: {{include: [127.0.120.0/24]}}
global_pps: 3
classes:
  unknown: {{pps: 1, class_pps: 3, connect_gap_s: 0.2, max_session_s: 15}}
protocols: {{modbus: {{port: {PORT}}}, s7: {{enabled: false}}, enip: {{enabled: false}}}}
timeouts: {{connect_s: 1, response_s: 1}}
max_devices_in_flight: 8
"""


def plant() -> dict:
    return {"plant": "interrupt", "devices": [
        {"name": f"m{n}", "address": ip, "class": "plc",
         "modbus": {"port": PORT, "vendor_name": "Schneider Electric", "product_code": "BMX P34 2020",
                    "revision": f"v2.{n}", "conformity": 0x81}}
        for n, ip in enumerate(ADDRESSES)
    ]}


def otprobe(tmp: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "otprobe", *args, "--db", str(tmp / "inv.db")]


@contextmanager
def scanning(tmp: Path) -> Iterator[subprocess.Popen[str]]:
    """`otprobe scan` in its own process; killed if the test fails before it ends."""
    proc = start_scan(tmp)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def start_scan(tmp: Path) -> subprocess.Popen[str]:
    (tmp / "slow.yaml").write_text(PROFILE)
    cmd = [*otprobe(tmp, "scan", *ADDRESSES, "--profile", str(tmp / "slow.yaml"), "--audit", str(tmp / "a.jsonl"))]
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_for_traffic(devices, at_least: int) -> None:
    deadline = time.monotonic() + 20
    while sum(d.recorder.packet_count() for d in devices) < at_least:
        assert time.monotonic() < deadline, "the scan sent nothing"
        time.sleep(0.05)


def assert_closed_cleanly(devices) -> None:
    deadline = time.monotonic() + 3
    while any(d.recorder.open_connections for d in devices) and time.monotonic() < deadline:
        time.sleep(0.05)
    for d in devices:
        assert d.recorder.open_connections == 0, d.name
        assert {c.close_kind for c in d.recorder.connections} <= {"fin"}, (d.name, d.recorder.connections)


def scans(tmp: Path) -> list[dict]:
    out = subprocess.run(otprobe(tmp, "scans", "list", "--format", "json"), capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


@pytest.mark.timeout(90)
def test_one_ctrl_c_stops_gracefully_and_resume_finishes(tmp_path):
    with plant_in_thread(plant()) as running:
        devices = list(running)
        with scanning(tmp_path) as proc:
            wait_for_traffic(devices, 4)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
        stopped_at = time.monotonic()
        assert proc.returncode == 4, err
        assert "Traceback" not in err
        assert_closed_cleanly(devices)
        sent = sum(d.recorder.packet_count() for d in devices)
        time.sleep(0.5)
        assert sum(d.recorder.packet_count() for d in devices) == sent  # nothing after the process ended
        assert stopped_at - min(c.opened_mono for d in devices for c in d.recorder.connections) < 20

        [first] = scans(tmp_path)
        assert first["status"] == "incomplete" and first["not_covered"]
        verify = subprocess.run(otprobe(tmp_path, "audit", "verify", str(tmp_path / "a.jsonl"))[:-2],
                                capture_output=True, text=True)
        assert verify.returncode == 0, verify.stderr

        resumed = subprocess.run(
            otprobe(tmp_path, "scan", "--resume", "--audit", str(tmp_path / "a.jsonl"), "--format", "jsonl"),
            capture_output=True, text=True, timeout=60,
        )
        assert resumed.returncode == 0, resumed.stderr
        covered = {json.loads(row)["ip"] for row in resumed.stdout.splitlines()}
        assert covered == set(first["not_covered"])
        assert_closed_cleanly(devices)
    listed = subprocess.run(otprobe(tmp_path, "inventory", "list", "--format", "json"), capture_output=True,
                            text=True, check=True)
    assert {a["ip"] for a in json.loads(listed.stdout)} == set(ADDRESSES)
    assert [s["status"] for s in scans(tmp_path)] == ["incomplete", "complete"]


@pytest.mark.timeout(60)
def test_second_ctrl_c_stops_at_once_and_still_closes_every_socket(tmp_path):
    with plant_in_thread(plant()) as running:
        devices = list(running)
        with scanning(tmp_path) as proc:
            wait_for_traffic(devices, 3)
            proc.send_signal(signal.SIGINT)
            time.sleep(0.1)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=15)
        assert proc.returncode == 4, err
        assert "Traceback" not in err
        assert_closed_cleanly(devices)
    [scan] = scans(tmp_path)
    assert scan["status"] == "incomplete"
