"""simulators/process.py: a plant in a child process is listening when start() returns, its devices' recorders come
back with stamps on the test's own monotonic clock, and no child outlives a stop, a failing test or a killed parent.
Addresses 127.0.31.x and 127.0.32.x."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from plantgen import MODBUS

from simulators.plant import running_plant
from simulators.process import PlantProcess, PlantProcessError
from simulators.recorder import Recorder

PORT = 15020
READ_ID = bytes([0x2B, 0x0E, 0x01, 0x00])  # FC43/14 basic device identification


def device(name: str, address: str, device_class: str = "plc") -> dict[str, Any]:
    return {"name": name, "address": address, "class": device_class, "modbus": {**MODBUS, "port": PORT}}


def plant(name: str, *devices: dict[str, Any]) -> dict[str, Any]:
    return {"plant": name, "devices": list(devices)}


def gone(pid: int) -> bool:
    """True when the process no longer runs (a zombie waiting for its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


async def test_every_device_listens_when_start_returns_and_its_recorder_comes_back(modbus_raw: Any) -> None:
    plants = [plant("a", device("pa-1", "127.0.31.10"), device("pa-2", "127.0.31.11", "meter")),
              plant("b", device("pb-1", "127.0.32.10"))]
    with PlantProcess(*plants) as child:
        assert {(d.plant, d.name, d.address, d.device_class, d.ports["modbus"]) for d in child.devices.values()} == {
            ("a", "pa-1", "127.0.31.10", "plc", PORT), ("a", "pa-2", "127.0.31.11", "meter", PORT),
            ("b", "pb-1", "127.0.32.10", "plc", PORT),
        }
        before = time.monotonic()
        # no retry and no wait: a device not yet listening would refuse this connection
        for address in ("127.0.31.10", "127.0.32.10"):
            assert b"Schneider Electric" in await modbus_raw.exchange(address, PORT, READ_ID)
        after = time.monotonic()
        await asyncio.sleep(0.2)  # let the child see the FINs (it stamps them when it reads them)
        assert child.recorders()["pa-1"].packet_count() == 3  # readable while the plant runs
    assert child.returncode == 0
    recorders = child.recorders_by_address()
    assert set(recorders) == {"127.0.31.10", "127.0.31.11", "127.0.32.10"}
    for address in ("127.0.31.10", "127.0.32.10"):
        recorder = recorders[address]
        # connect, one request, FIN: all stamped by the child between our own two readings of the same clock
        assert recorder.packet_count() == 3
        assert before <= min(recorder.packet_times()) and max(recorder.packet_times()) <= after + 0.2
        assert recorder.operations() == ["fc:0x2B/mei:0x0E"] and recorder.violations() == []
        assert [c.close_kind for c in recorder.connections] == ["fin"] and recorder.max_concurrent == 1
    assert recorders["127.0.31.11"].packet_count() == 0


async def test_a_recorder_rebuilt_from_its_events_equals_the_original(modbus_raw: Any) -> None:
    sink = io.StringIO()
    async with running_plant(plant("rec", device("rec-1", "127.0.31.20")), record_to=sink) as running:
        await modbus_raw.exchange("127.0.31.20", PORT, READ_ID)
        await modbus_raw.exchange("127.0.31.20", PORT, bytes([0x06, 0x00, 0x01, 0x00, 0x07]))  # a write: refused
        original = running["rec-1"].recorder
        for _ in range(100):
            if original.open_connections == 0:
                break
            await asyncio.sleep(0.01)
    original.session(True)  # EtherNet/IP sessions are recorded too; no Modbus device registers one
    events = [json.loads(line) for line in sink.getvalue().splitlines()]
    rebuilt = Recorder.from_events("rec-1", [{"device": "other", "event": "connect"}, *events])
    assert rebuilt.connections == original.connections and len(rebuilt.connections) == 2
    assert rebuilt.requests == original.requests and len(rebuilt.violations()) == 1
    assert rebuilt.packet_times() == original.packet_times()
    assert (rebuilt.max_concurrent, rebuilt.open_connections, rebuilt.sessions_registered) == (1, 0, 1)
    assert rebuilt.sessions_unregistered == original.sessions_unregistered == 0
    with pytest.raises(ValueError, match="unknown recorded event 'teleport'"):
        Recorder.from_events("rec-1", [{"device": "rec-1", "event": "teleport"}])


async def test_a_failing_body_still_stops_the_child_and_keeps_its_exception() -> None:
    child = PlantProcess(plant("fail", device("fail-1", "127.0.31.30")))
    with pytest.raises(KeyError, match="the test failed"), child:
        pid = child._process.pid  # type: ignore[union-attr]
        assert not gone(pid)
        raise KeyError("the test failed")
    assert gone(pid) and child.returncode == 0
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.31.30", PORT)


def test_a_plant_that_cannot_start_raises_with_the_childs_reason() -> None:
    clash = [plant("one", device("same", "127.0.31.40")), plant("two", device("same", "127.0.31.41"))]
    with pytest.raises(PlantProcessError, match=r"exited with 2 before it was ready: .*device name same is already"):
        PlantProcess(*clash).start()
    taken = PlantProcess(plant("again", device("held-2", "127.0.31.42")))  # its port is in use: exit 1
    with PlantProcess(plant("held", device("held-1", "127.0.31.42"))), pytest.raises(
        PlantProcessError, match=r"exited with 1 .*cannot start plant: held-2"
    ):
        taken.start()


def test_the_child_stops_when_its_parent_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        # the repository (the real simulators package first), this test, its helpers
        sys.path[:0] = [{str(Path(__file__).parents[2])!r}, {str(Path(__file__).parent)!r},
                        {str(Path(__file__).parents[1])!r}]
        from test_sim_process import device, plant
        from simulators.process import PlantProcess
        child = PlantProcess(plant("orphan", device("orphan-1", "127.0.31.50"))).start()
        print(child._process.pid, flush=True)
        time.sleep(60)
    """))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, cwd=Path(__file__).parents[2])
    try:
        line = parent.stdout.readline()  # type: ignore[union-attr]
        assert line, "the parent did not start its plant"
        pid = int(line)
        assert not gone(pid)
        parent.send_signal(signal.SIGKILL)  # no finally, no atexit: only the closed stdin pipe is left
        parent.wait()
        deadline = time.monotonic() + 10
        while not gone(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gone(pid)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if "pid" in locals() and not gone(pid):
            os.kill(pid, signal.SIGKILL)
