"""Plant files and the launcher: what the demo plant contains, one-line errors naming file and key, the
in-process `running_plant` (start time, recording, start failures) and `python -m simulators` as a process."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulators import plant as plant_module
from simulators.faults import FaultMode
from simulators.plant import PlantError, PlantStartError, load_plant, relocate, running_plant

ROOT = Path(__file__).parents[2]
DEMO = ROOT / "simulators" / "plants" / "demo.yaml"
STANDARD = ROOT / "simulators" / "plants" / "standard.yaml"
PORT = 15020
UDP_ONLY = ("bacnet", "snmp")
MODBUS = {"port": PORT, "vendor_name": "Acme Controls", "product_code": "AC-100", "revision": "v1.0"}


def modbus_device(name: str, address: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "address": address, "class": "plc", "modbus": dict(MODBUS), **extra}


# -- plant contents ---------------------------------------------------------------------------------------


def test_demo_plant_is_a_realistic_small_plant() -> None:
    spec = load_plant(DEMO)
    devices = {d.name: d for d in spec.devices}
    assert len(devices) >= 12
    assert {p for d in spec.devices for p in d.protocols} == {"modbus", "s7", "enip", "bacnet", "snmp", "opcua"}
    assert {"plc", "hmi", "gateway", "drive", "meter", "safety"} <= {d.device_class for d in spec.devices}
    assert [d.name for d in spec.devices if len(d.protocols) > 1] == ["line3-cpu1515", "utility-m580"]
    assert devices["safety-guardlogix"].address.startswith("127.0.9.")
    assert {d.fault.mode for d in spec.devices if d.fault.mode is not FaultMode.NONE} >= {FaultMode.SILENT,
                                                                                          FaultMode.SLOW}
    raw = yaml.safe_load(DEMO.read_text())
    vendors = {d["modbus"]["vendor_name"] for d in raw["devices"] if "modbus" in d}
    vendors |= {d["enip"]["vendor_id"] for d in raw["devices"] if "enip" in d}
    assert len(vendors | {"Siemens"}) >= 5  # Siemens (S7), Schneider, KBR, ABB, Moxa, Rockwell (1), ProSoft (309)
    text = DEMO.read_text()
    for emulator_default in ("SNAP7-SERVER", "Technodrome", "Mouser Factory", "Pymodbus", "88111222", "S7-200"):
        assert emulator_default not in text


def test_standard_plant_uses_standard_ports() -> None:
    ports = {(p, config.port) for d in load_plant(STANDARD).devices for p, config in d.protocols.items()}
    assert ports == {("modbus", 502), ("s7", 102), ("enip", 44818), ("bacnet", 47808), ("snmp", 161)}


def test_relocate_moves_addresses_and_ports() -> None:
    moved = load_plant(relocate(DEMO, third_octet_shift=20, ports={"modbus": PORT}))
    original = {d.name: d for d in load_plant(DEMO).devices}
    for device in moved.devices:
        before = original[device.name].address.split(".")
        assert device.address == f"127.0.{int(before[2]) + 20}.{before[3]}"
        if "modbus" in device.protocols:
            assert device.protocols["modbus"].port == PORT
        if "s7" in device.protocols:
            assert device.protocols["s7"].port == original[device.name].protocols["s7"].port


# -- one-line errors --------------------------------------------------------------------------------------


BAD_PLANTS = [
    ({"devices": [modbus_device("a", "10.0.0.1")]}, "devices[0].address: 10.0.0.1 is not in 127.0.0.0/8"),
    ({"devices": [modbus_device("a", "127.0.0.300")]}, "devices[0].address: 127.0.0.300 is not an IPv4 address"),
    ({"devices": [modbus_device("a", "127.0.27.1"), modbus_device("b", "127.0.27.1")]},
     "devices[1].address: 127.0.27.1 is already used by a"),
    ({"devices": [modbus_device("a", "127.0.27.1"), modbus_device("a", "127.0.27.2")]},
     "devices[1].name: a is already used"),
    ({"devices": [modbus_device("a", "127.0.27.1", colour="red")]}, "devices[0].colour: unknown key"),
    ({"devices": [{"name": "a", "class": "plc", "modbus": MODBUS}]}, "devices[0].address: missing"),
    ({"devices": [{"name": "a", "address": "127.0.27.1", "class": "plc"}]},
     "devices[0]: a declares no protocol section"),
    ({"devices": [modbus_device("a", "127.0.27.1", fault="sleepy")]}, "devices[0].fault.mode: unknown mode 'sleepy'"),
    ({"devices": [{**modbus_device("a", "127.0.27.1"), "modbus": {**MODBUS, "unit_ids": [1, 300]}}]},
     "devices[0].modbus.unit_ids[1]: 300 is not an integer in 0..255"),
    ({"devices": [{**modbus_device("a", "127.0.27.1"), "modbus": {"port": PORT, "revision": "1"}}]},
     "devices[0].modbus.vendor_name: missing"),
    ({"devices": [{**modbus_device("a", "127.0.27.1"), "modbus": {**MODBUS, "conformity": 4}}]},
     "devices[0].modbus.conformity: 0x04 is not one of"),
    ({"devices": [{**modbus_device("a", "127.0.27.1"), "modbus": {**MODBUS, "vendor_name": "Überwerk"}}]},
     "devices[0].modbus.vendor_name: must be ASCII"),
    ({"devices": [{**modbus_device("a", "127.0.27.1"), "modbus": [1, 2]}]},
     "devices[0].modbus: must be a mapping of settings"),
    ({"devices": [{"name": "a", "address": "127.0.27.1", "class": "plc", "fault": "endless_more_follows",
                   "s7": {"order_code": "6ES7 315-2EH14-0AB0", "firmware": "V3.2.7"}}]},
     "devices[0].fault: endless_more_follows is a Modbus FC43 fault"),
    ({"devices": []}, "devices: must be a non-empty list"),
    ({"devices": [modbus_device("a", "127.0.27.1")], "site": "x"}, "site: unknown key"),
]


@pytest.mark.parametrize(("content", "message"), BAD_PLANTS)
def test_bad_plant_file_is_one_line_naming_file_and_key(tmp_path: Path, content: Any, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(PlantError) as excinfo:
        load_plant(path)
    assert str(excinfo.value).startswith(f"{path}: {message}")
    assert "\n" not in str(excinfo.value)


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(PlantError, match=r"^.*missing\.yaml: cannot read: No such file or directory$"):
        load_plant(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("devices:\n  - name: a\n   address: [\n")
    with pytest.raises(PlantError, match=r"broken\.yaml: invalid YAML at line 3"):
        load_plant(broken)


def test_missing_protocol_module_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(plant_module.PROTOCOL_MODULES, "modbus", "simulators.no_such_module")
    with pytest.raises(PlantError, match=r"devices\[0\]\.modbus: simulator module simulators\.no_such_module is not"):
        load_plant({"devices": [modbus_device("a", "127.0.27.1")]})


# -- running in-process -----------------------------------------------------------------------------------


async def test_whole_demo_plant_starts_in_under_3_s_and_listens(eventually: Any) -> None:
    moved = relocate(DEMO, third_octet_shift=20)  # 127.0.21-29.x: the demo's devices on this file's addresses
    began = time.monotonic()
    async with running_plant(moved) as plant:
        elapsed = time.monotonic() - began
        assert elapsed < 3.0
        assert len(plant.devices) == len(moved["devices"])
        # BACnet/IP and SNMP devices are UDP only: they are checked by what they record of a datagram
        endpoints = [(d.address, port) for d in plant for p, port in d.ports.items() if p not in UDP_ONLY]
        for address, port in endpoints:
            _, writer = await asyncio.open_connection(address, port)
            writer.close()
        udp = [(d, port) for d in plant for p, port in d.ports.items() if p in UDP_ONLY]
        assert udp
        for device, port in udp:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.sendto(b"\x00", (device.address, port))
            await eventually(lambda device=device: bool(device.recorder.requests))
        assert all(d.recorder.connections or d.recorder.requests for d in plant)
        assert plant.by_address("127.0.22.11").ports == {"modbus": 5020, "enip": 44818}  # utility-m580, moved
    for address, port in endpoints:  # stopped: nothing listens any more
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(address, port)


async def test_record_to_writes_json_lines(modbus_raw: Any) -> None:
    sink = io.StringIO()
    async with running_plant({"devices": [modbus_device("rec", "127.0.27.10")]}, record_to=sink) as plant:
        await modbus_raw.exchange("127.0.27.10", PORT, bytes([0x06, 0x00, 0x01, 0x00, 0x02]))
        assert plant["rec"].recorder.violations()[0].operation == "fc:0x06"
    events = [json.loads(line) for line in sink.getvalue().splitlines()]
    assert [e["event"] for e in events][:2] == ["connect", "request"]
    assert events[1] | {"mono": 0, "wall": 0} == {
        "device": "rec", "event": "request", "mono": 0, "wall": 0, "protocol": "modbus", "operation": "fc:0x06",
        "size": 12, "allowed": False, "connection": 1, "peer": events[0]["peer"], "detail": {"unit_id": 1, "tid": 1},
    }
    assert events[-1]["event"] == "close" and events[-1]["close_kind"] in ("fin", "server")


async def test_start_failure_names_device_and_stops_the_rest() -> None:
    async with running_plant({"devices": [modbus_device("first", "127.0.27.20")]}):
        clash = {"devices": [modbus_device("ok", "127.0.27.21"), modbus_device("clash", "127.0.27.20")]}
        with pytest.raises(PlantStartError, match=r"^clash \(127\.0\.27\.20\) modbus: .*address already in use"):
            async with running_plant(clash):
                pass
        with pytest.raises(ConnectionRefusedError):  # the device that did start was stopped again
            await asyncio.open_connection("127.0.27.21", PORT)


# -- the launcher -----------------------------------------------------------------------------------------


async def run_cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulators", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    return process.returncode or 0, out.decode(), err.decode()


async def test_cli_list_prints_devices_without_starting() -> None:
    code, out, err = await run_cli("list", "simulators/plants/demo.yaml")
    assert code == 0 and err == ""
    for device in load_plant(DEMO).devices:
        assert device.name in out and device.address in out
    assert "127.0.2.11      utility-m580         plc      modbus:5020 enip:44818" in out


async def test_cli_bad_plant_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"devices": [modbus_device("a", "10.0.0.1")]}))
    for command in ("list", "up"):
        code, out, err = await run_cli(command, str(bad))
        assert code == 2 and out == ""
        assert err == f"{bad}: devices[0].address: 10.0.0.1 is not in 127.0.0.0/8\n"


@pytest.mark.parametrize(("sig", "address"), [(signal.SIGINT, "127.0.28.1"), (signal.SIGTERM, "127.0.28.2")])
async def test_cli_up_serves_records_and_stops_cleanly(
    tmp_path: Path, modbus_raw: Any, sig: signal.Signals, address: str
) -> None:
    plant_file, record = tmp_path / "plant.yaml", tmp_path / "events.jsonl"
    plant_file.write_text(yaml.safe_dump({"plant": "cli", "devices": [modbus_device("cli-meter", address)]}))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulators", "up", str(plant_file), "--record", str(record), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        lines = []
        while not lines or lines[-1] != "Ctrl-C to stop":
            line = await asyncio.wait_for(process.stdout.readline(), 20)  # type: ignore[union-attr]
            assert line, f"launcher exited early: {lines}"
            lines.append(line.decode().strip())
        assert any(address in line and "'Acme Controls AC-100 v1.0'" in line for line in lines)
        reply = await modbus_raw.exchange(address, PORT, bytes([0x2B, 0x0E, 0x01, 0x00]))
        assert b"Acme Controls" in reply
        process.send_signal(sig)
        out, err = await asyncio.wait_for(process.communicate(), 10)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0 and err == b""
    assert out.decode().strip().endswith("plant stopped")
    events = [json.loads(line) for line in record.read_text().splitlines()]
    assert ("request", "fc:0x2B/mei:0x0E", True) in [(e["event"], e.get("operation"), e.get("allowed")) for e in events]
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(address, PORT)
