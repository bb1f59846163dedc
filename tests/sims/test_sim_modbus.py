"""The simulated Modbus/TCP device, read back with the independent pymodbus client (and raw frames where the
bytes matter): every demo identity, paging, individual access, conformity, unit ids, FC17, violations."""

from __future__ import annotations

import asyncio
import logging
import shutil
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException
from pymodbus.transport.transport import NullModem

from simulators.plant import relocate, running_plant

DEMO = Path(__file__).parents[2] / "simulators" / "plants" / "demo.yaml"
PORT = 15020
OBJECT_KEYS = ("vendor_name", "product_code", "revision", "vendor_url", "product_name", "model_name",
               "user_application_name")

logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


def device(address: str, fault: Any = None, **modbus: Any) -> dict[str, Any]:
    identity = {"vendor_name": "Acme Controls", "product_code": "AC-100", "revision": "v1.0"}
    return {"name": f"dev-{address.replace('.', '-')}", "address": address, "class": "plc", "fault": fault,
            "modbus": {"port": PORT, **identity, **modbus}}


@pytest.fixture
async def client_for() -> AsyncIterator[Any]:
    clients: list[AsyncModbusTcpClient] = []

    async def connect(host: str, timeout: float = 1.0, **kwargs: Any) -> AsyncModbusTcpClient:
        client = AsyncModbusTcpClient(host, port=PORT, timeout=timeout, retries=0, reconnect_delay=0, **kwargs)
        assert await client.connect()
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


async def read_all(client: AsyncModbusTcpClient, read_code: int, unit: int = 1) -> tuple[dict[int, bytes], int]:
    """Every object of a stream read, following More Follows; (objects, number of requests)."""
    objects: dict[int, bytes] = {}
    object_id, requests = 0, 0
    while True:
        reply = await client.read_device_information(read_code=read_code, object_id=object_id, device_id=unit)
        requests += 1
        assert not reply.isError(), reply
        objects.update(reply.information)
        if not reply.more_follows:
            return objects, requests
        assert reply.next_object_id > object_id and requests < 10
        object_id = reply.next_object_id


def demo_modbus_devices() -> list[dict[str, Any]]:
    """The demo plant's Modbus devices (Modbus section only) moved to 127.0.21-29.x, as the YAML declares them."""
    moved = relocate(DEMO, third_octet_shift=20, ports={"modbus": PORT})
    return [{key: value for key, value in d.items() if key not in ("s7", "enip")}
            for d in moved["devices"] if "modbus" in d and d.get("fault") != "silent"]


async def test_demo_modbus_identities_read_back_as_declared(start_plant: Any, client_for: Any) -> None:
    declared = yaml.safe_load(DEMO.read_text())
    devices = demo_modbus_devices()
    assert len(devices) >= 5
    plant = await start_plant(*devices)
    for dev in devices:
        section = next(d for d in declared["devices"] if d["name"] == dev["name"])["modbus"]
        client = await client_for(dev["address"], timeout=2.0)
        unit = section.get("unit_ids", [1])[0]
        if section.get("fc43", True):
            basic, _ = await read_all(client, 1, unit)
            assert basic == {i: section[k].encode() for i, k in enumerate(OBJECT_KEYS[:3])}, dev["name"]
            regular, _ = await read_all(client, 2, unit)
            visible = OBJECT_KEYS if section.get("conformity", 0x83) & 0x7F > 1 else OBJECT_KEYS[:3]
            expected = {i: section[k].encode() for i, k in enumerate(visible) if k in section}
            assert regular == expected, dev["name"]
        else:
            reply = await client.read_device_information(read_code=1, object_id=0, device_id=unit)
            assert reply.isError() and reply.function_code == 0xAB and reply.exception_code == 1
        assert not plant[dev["name"]].recorder.violations()


async def test_pm710_report_server_id_bytes(start_plant: Any, client_for: Any) -> None:
    pm710 = next(d for d in demo_modbus_devices() if d["name"] == "feeder-pm710")
    await start_plant(pm710)
    seen: list[bytes] = []

    def trace(sending: bool, raw: bytes) -> bytes:
        if not sending:
            seen.append(raw)
        return raw

    client = await client_for(pm710["address"], trace_packet=trace)
    reply = await client.report_device_id(device_id=1)
    assert not reply.isError()
    # 11 <byte count> FA FF "PM710PowerMeter": server id 0xFA, run indicator ON, then the device's text
    assert seen[-1][7:] == bytes([0x11, 17, 0xFA, 0xFF]) + b"PM710PowerMeter"
    assert reply.identifier.startswith(b"\xfa\xff" + b"PM710")


async def test_fc17_default_and_disabled(start_plant: Any, client_for: Any) -> None:
    await start_plant(device("127.0.20.1"), device("127.0.20.2", fc17=False))
    reply = await (await client_for("127.0.20.1")).report_device_id(device_id=1)
    assert reply.identifier == b"AC-100" and reply.status  # default: product code, run indicator ON
    reply = await (await client_for("127.0.20.2")).report_device_id(device_id=1)
    assert reply.isError() and reply.exception_code == 1


async def test_long_objects_page_with_more_follows(start_plant: Any, client_for: Any) -> None:
    long = {"vendor_url": "u" * 120, "product_name": "p" * 120, "model_name": "m" * 120,
            "user_application_name": "a" * 120, "extended": {0x80: "x" * 200, 0x81: "y" * 200}}
    plant = await start_plant(device("127.0.20.3", **long))
    client = await client_for("127.0.20.3")
    first = await client.read_device_information(read_code=2, object_id=0, device_id=1)
    assert first.more_follows == 0xFF and first.next_object_id == 4
    assert set(first.information) == {0, 1, 2, 3}
    regular, requests = await read_all(client, 2)
    assert requests == 3
    assert regular[6] == b"a" * 120 and set(regular) == set(range(7))
    extended, requests = await read_all(client, 3)
    assert requests == 5 and extended[0x80] == b"x" * 200 and extended[0x81] == b"y" * 200
    # every page is a separate, complete request
    assert {r.size for r in plant["dev-127-0-20-3"].recorder.requests} == {11}
    assert plant["dev-127-0-20-3"].recorder.operations().count("fc:0x2B/mei:0x0E") == 9


async def test_individual_access_and_errors(start_plant: Any, client_for: Any) -> None:
    await start_plant(device("127.0.20.4", product_name="Acme 100", extended={0x90: "site 7"}))
    client = await client_for("127.0.20.4")
    reply = await client.read_device_information(read_code=4, object_id=4, device_id=1)
    assert reply.information == {4: b"Acme 100"} and reply.read_code == 4
    reply = await client.read_device_information(read_code=4, object_id=0x90, device_id=1)
    assert reply.information == {0x90: b"site 7"}
    reply = await client.read_device_information(read_code=4, object_id=5, device_id=1)  # not declared
    assert reply.isError() and reply.exception_code == 2
    # stream read from an unknown object id restarts at object 0
    reply = await client.read_device_information(read_code=2, object_id=0x50, device_id=1)
    assert list(reply.information) == [0, 1, 2, 4]


async def test_conformity_levels(start_plant: Any, client_for: Any) -> None:
    await start_plant(device("127.0.20.5", conformity=0x01, product_name="hidden"),
                      device("127.0.20.6", conformity=0x82))
    basic_only = await client_for("127.0.20.5")
    reply = await basic_only.read_device_information(read_code=2, object_id=0, device_id=1)
    # asked above its level, a device answers at its own level
    assert reply.conformity == 0x01 and reply.read_code == 1 and set(reply.information) == {0, 1, 2}
    reply = await basic_only.read_device_information(read_code=4, object_id=0, device_id=1)
    assert reply.isError() and reply.exception_code == 3  # no individual access at conformity 0x01
    regular = await client_for("127.0.20.6")
    reply = await regular.read_device_information(read_code=4, object_id=1, device_id=1)
    assert reply.conformity == 0x82 and reply.information == {1: b"AC-100"}


async def test_unit_ids(start_plant: Any, client_for: Any, modbus_raw: Any) -> None:
    plant = await start_plant(device("127.0.20.7", unit_ids=[0, 255]), device("127.0.20.8", unknown_unit="exception"))
    client = await client_for("127.0.20.7", timeout=0.4)
    for unit in (0, 255):
        reply = await client.read_device_information(read_code=1, object_id=0, device_id=unit)
        assert reply.information[0] == b"Acme Controls"
    with pytest.raises(ModbusIOException):  # unit 1 is not answered: no reply at all
        await client.read_device_information(read_code=1, object_id=0, device_id=1)
    assert [r.detail["unit_id"] for r in plant["dev-127-0-20-7"].recorder.requests] == [0, 255, 1]
    reply = await modbus_raw.exchange("127.0.20.8", PORT, bytes([0x2B, 0x0E, 1, 0]), unit=9, tid=0x1234)
    assert reply == struct.pack(">HHHBBB", 0x1234, 0, 3, 9, 0xAB, 0x0B)  # gateway: target did not respond


async def test_writes_and_other_functions_are_violations(start_plant: Any, client_for: Any, modbus_raw: Any) -> None:
    plant = await start_plant(device("127.0.20.9"))
    recorder = plant["dev-127-0-20-9"].recorder
    client = await client_for("127.0.20.9")
    assert not (await client.read_device_information(read_code=1, object_id=0, device_id=1)).isError()
    assert not (await client.report_device_id(device_id=1)).isError()
    assert not recorder.violations()
    write = await client.write_register(10, 1234, device_id=1)
    assert not write.isError()  # accepted, as a real device would
    assert (await client.read_holding_registers(10, count=1, device_id=1)).registers == [1234]
    # MEI 0x0D (CANopen) and a vendor function code: exception 01 from a real device
    assert (await modbus_raw.exchange("127.0.20.9", PORT, bytes([0x2B, 0x0D, 0, 0])))[7:] == b"\xab\x01"
    assert (await modbus_raw.exchange("127.0.20.9", PORT, bytes([0x5A, 0x00, 0x02])))[7:] == b"\xda\x01"
    violations = recorder.violations()
    assert [v.operation for v in violations] == ["fc:0x06", "fc:0x03", "fc:0x2B/mei:0x0D", "fc:0x5A"]
    assert violations[0].detail["unit_id"] == 1 and violations[0].size == 12
    assert recorder.operations()[:2] == ["fc:0x2B/mei:0x0E", "fc:0x11"]


async def test_identities_are_per_device_in_one_process(start_plant: Any, client_for: Any) -> None:
    await start_plant(device("127.0.20.10", vendor_name="First"), device("127.0.20.11", vendor_name="Second"),
                      device("127.0.20.12", fc43=False))
    for host, vendor in (("127.0.20.10", b"First"), ("127.0.20.11", b"Second")):
        reply = await (await client_for(host)).read_device_information(read_code=1, object_id=0, device_id=1)
        assert reply.information[0] == vendor
    reply = await (await client_for("127.0.20.12")).read_device_information(read_code=1, object_id=0, device_id=1)
    assert reply.isError() and reply.exception_code == 1


@pytest.mark.skipif(shutil.which("nmap") is None, reason="nmap is not installed")
async def test_nmap_modbus_discover_reads_the_identity(start_plant: Any) -> None:
    pm710 = {**next(d for d in demo_modbus_devices() if d["name"] == "feeder-pm710"), "address": "127.0.20.30"}
    await start_plant(device("127.0.20.31", product_name="Acme 100"), pm710)
    process = await asyncio.create_subprocess_exec(
        "nmap", "-Pn", "-n", "-sT", "-p", str(PORT), "--script", "+modbus-discover", "127.0.20.31", "127.0.20.30",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    text = out.decode()
    assert "Device identification: Acme Controls AC-100 v1.0" in text
    assert "Slave ID data: AC-100\\xFF" in text
    assert "Slave ID data: \\xFA\\xFFPM710PowerMeter" in text


async def test_stop_releases_the_backend(modbus_raw: Any) -> None:
    """The front reaches each pymodbus server through pymodbus' in-process null modem: nothing may leak."""
    async with running_plant({"devices": [device("127.0.20.40")]}):
        reader, writer = await asyncio.open_connection("127.0.20.40", PORT)
        writer.write(modbus_raw.frame(bytes([0x2B, 0x0E, 0x01, 0x00])))
        assert (await modbus_raw.read(reader))[7:9] == b"\x2b\x0e"
        assert NullModem.listeners and NullModem.connections
    writer.close()
    assert not NullModem.listeners and not NullModem.connections
