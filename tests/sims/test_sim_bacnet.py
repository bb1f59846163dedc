"""The simulated BACnet/IP device, spoken to with raw datagrams built and read by hand from the ASHRAE 135 layout.

Each test runs its own devices on 127.0.140.x (this file's addresses; a free port unless the test needs 47808), sends
the request bytes a real client sends (the ReadProperty of nmap's bacnet-info, the ReadPropertyMultiple of an
identity read) and checks the reply bytes and what the device recorded. Nothing here uses the simulator's encoder or
bacpypes3: replies are parsed with the small tag reader below. nmap's bacnet-info is a cross-check when installed.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import struct
import time
from typing import Any

import identities
import pytest

from simulators.plant import PlantError, load_plant

HOST = "127.0.140.10"
CLIENT = "127.0.140.1"
BACNET_PORT = 47808
PXC = identities.BACNET_PXC
# the pids nmap's bacnet-info and an identity read ask for, and the values the device above must give
EXPECTED = {75: ("object", 2098177), 77: PXC["object_name"], 121: PXC["vendor_name"], 120: 7,
            70: PXC["model_name"], 44: PXC["firmware_revision"], 12: PXC["application_software_version"]}

# golden requests (invoke ids 1 and 3, max-APDU 1476, device 4194303)
RP_VENDOR_NAME = bytes.fromhex("810a0011 0104 0005010c 0c023fffff 1979")
RPM_IDENTITY = bytes.fromhex("810a0022 0104 0005030e 0c023fffff 1e 094b 094d 0979 0978 0946 092c 090c 0a0174 1f")


def device(address: str = HOST, port: int = 0, fault: Any = None, **options: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": f"bms-{address.rsplit('.', 1)[1]}", "address": address, "class": "bms",
                            "bacnet": {**PXC, "port": port, **options}}
    if fault is not None:
        spec["fault"] = fault
    return spec


def request(apdu: bytes) -> bytes:
    """A unicast BVLC + NPDU (expecting a reply) around a request APDU."""
    return struct.pack(">BBH", 0x81, 0x0A, 6 + len(apdu)) + b"\x01\x04" + apdu


def rp(pid: int, invoke: int = 1, instance: int = 4194303, max_apdu: int = 5) -> bytes:
    pid_tag = bytes([0x19, pid]) if pid < 256 else b"\x1a" + struct.pack(">H", pid)
    return request(bytes([0x00, max_apdu, invoke, 12, 0x0C]) + struct.pack(">I", 8 << 22 | instance) + pid_tag)


async def exchange(data: bytes, port: int, host: str = HOST, source: tuple[str, int] = (CLIENT, 0),
                   timeout: float = 1.0) -> bytes | None:
    """Send one datagram from `source`; the reply, or None after `timeout` of silence."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(source)
        sock.setblocking(False)
        await loop.sock_sendto(sock, data, (host, port))
        try:
            return await asyncio.wait_for(loop.sock_recv(sock, 70_000), timeout)
        except TimeoutError:
            return None


def apdu_of(reply: bytes | None) -> bytes:
    """The APDU of a unicast reply, after checking the BVLC length and an NPDU expecting no reply."""
    assert reply is not None, "no reply"
    assert reply[:2] == b"\x81\x0a" and struct.unpack(">H", reply[2:4])[0] == len(reply)
    assert reply[4:6] == b"\x01\x00"
    return reply[6:]


def tag(data: bytes, at: int) -> tuple[int, bool, int, int]:
    """(tag number, context?, length or opening/closing 6/7, offset of the content) of the tag at `at`."""
    first = data[at]
    number, context, lvt = first >> 4, bool(first & 0x08), first & 0x07
    at += 1
    if lvt == 5:
        lvt, at = data[at], at + 1
    return number, context, lvt, at


def value(data: bytes, at: int) -> tuple[Any, int]:
    """One application-tagged value (Unsigned, CharacterString, ObjectIdentifier) and the offset after it."""
    number, _, length, at = tag(data, at)
    raw = data[at : at + length]
    if number == 2:
        return int.from_bytes(raw, "big"), at + length
    if number == 7:
        assert raw[0] == 0, "charset UTF-8"
        return raw[1:].decode(), at + length
    if number == 12:
        word = int.from_bytes(raw, "big")
        return ({8: "object"}.get(word >> 22, word >> 22), word & 0x3FFFFF), at + length
    return raw, at + length


def rp_value(apdu: bytes) -> Any:
    assert apdu[0] == 0x30 and apdu[2] == 12, apdu.hex()  # ComplexACK ReadProperty
    assert apdu[3] == 0x0C
    found, _ = value(b"\xc4" + apdu[4:8], 0)  # ctx 0 object id, read as an application-tagged one
    assert found == ("object", PXC["device_instance"])  # the ACK names the real instance, not the wildcard
    _, _, _, at = tag(apdu, 8)  # ctx 1, the property identifier
    at += 1  # the pid octet
    assert apdu[at] == 0x3E and apdu[-1] == 0x3F
    result, end = value(apdu, at + 1)
    assert end == len(apdu) - 1
    return result


def rpm_values(apdu: bytes) -> dict[int, Any]:
    """pid -> value, or ("error", class, code), of a ReadPropertyMultiple ACK on one object."""
    assert apdu[0] == 0x30 and apdu[2] == 14 and apdu[3] == 0x0C, apdu.hex()
    assert int.from_bytes(apdu[4:8], "big") & 0x3FFFFF == PXC["device_instance"]
    assert apdu[8] == 0x1E and apdu[-1] == 0x1F
    results: dict[int, Any] = {}
    at = 9
    while at < len(apdu) - 1:
        _, _, length, at = tag(apdu, at)  # ctx 2 property identifier
        pid, at = int.from_bytes(apdu[at : at + length], "big"), at + length
        if apdu[at] == 0x4E:
            results[pid], at = value(apdu, at + 1)
            assert apdu[at] == 0x4F
        else:
            assert apdu[at] == 0x5E and apdu[at + 1] == 0x91 and apdu[at + 3] == 0x91 and apdu[at + 5] == 0x5F
            results[pid] = ("error", apdu[at + 2], apdu[at + 4])
            at += 5
        at += 1
    return results


# -- identity reads ---------------------------------------------------------------------------------------------------


async def test_readproperty_golden_bytes_answer_the_vendor_name(start_plant: Any) -> None:
    plant = await start_plant(device())
    port = plant[device()["name"]].ports["bacnet"]
    reply = await exchange(RP_VENDOR_NAME, port)
    text = PXC["vendor_name"].encode()
    # ComplexACK, invoke 1, the real instance, pid 121, CharacterString (tag 7, extended length) UTF-8
    expected_apdu = (bytes([0x30, 0x01, 0x0C, 0x0C]) + struct.pack(">I", 8 << 22 | 2098177) + b"\x19\x79\x3e\x75"
                     + bytes([len(text) + 1, 0]) + text + b"\x3f")
    assert apdu_of(reply) == expected_apdu
    recorder = plant[device()["name"]].recorder
    assert [(r.operation, r.allowed, r.connection, r.size) for r in recorder.requests] == [
        ("confirmed:12", True, None, len(RP_VENDOR_NAME))]
    assert recorder.packet_count() == 1 and recorder.violations() == []


async def test_readproperty_each_identity_property_and_errors(start_plant: Any) -> None:
    plant = await start_plant(device())
    port = plant[device()["name"]].ports["bacnet"]
    for pid, expected in EXPECTED.items():
        assert rp_value(apdu_of(await exchange(rp(pid, invoke=pid), port))) == expected, pid
    # the same with the device's own instance instead of the wildcard
    assert rp_value(apdu_of(await exchange(rp(121, instance=2098177), port))) == PXC["vendor_name"]
    # no serial number configured: Error property / unknown-property; another device instance: object / unknown-object
    assert apdu_of(await exchange(rp(372, invoke=9), port)) == bytes([0x50, 9, 12, 0x91, 2, 0x91, 32])
    assert apdu_of(await exchange(rp(121, invoke=10, instance=1234), port)) == bytes([0x50, 10, 12, 0x91, 1, 0x91, 31])
    assert plant[device()["name"]].recorder.violations() == []


async def test_readpropertymultiple_golden_bytes_answer_the_identity(start_plant: Any) -> None:
    with_serial = device("127.0.140.11", serial_number="SN-PXC-0042")
    plant = await start_plant(device(), with_serial)
    values = rpm_values(apdu_of(await exchange(RPM_IDENTITY, plant[device()["name"]].ports["bacnet"])))
    assert values == {**EXPECTED, 372: ("error", 2, 32)}  # no serial: that property fails, the rest answer
    values = rpm_values(apdu_of(await exchange(RPM_IDENTITY, plant[with_serial["name"]].ports["bacnet"],
                                               host="127.0.140.11")))
    assert values == {**EXPECTED, 372: "SN-PXC-0042"}
    assert [r.operation for r in plant[with_serial["name"]].recorder.requests] == ["confirmed:14"]


async def test_rpm_rejected_when_the_device_does_not_support_it(start_plant: Any) -> None:
    plant = await start_plant(device(rpm=False))
    port = plant[device()["name"]].ports["bacnet"]
    assert apdu_of(await exchange(RPM_IDENTITY, port)) == bytes([0x60, 3, 9])  # Reject unrecognized-service
    assert rp_value(apdu_of(await exchange(RP_VENDOR_NAME, port))) == PXC["vendor_name"]  # the fallback works
    assert plant[device()["name"]].recorder.violations() == []  # both are reads


async def test_oversize_reply_is_an_abort_segmentation_not_supported(start_plant: Any) -> None:
    small = device("127.0.140.12", max_apdu=128)
    plant = await start_plant(device(), small)
    port = plant[device()["name"]].ports["bacnet"]
    client_50 = RPM_IDENTITY[:7] + b"\x00" + RPM_IDENTITY[8:]  # the client accepts 50 octets
    assert apdu_of(await exchange(client_50, port)) == bytes([0x71, 3, 4])
    # the device itself takes at most 128 octets per APDU: the full identity does not fit either
    assert apdu_of(await exchange(RPM_IDENTITY, plant[small["name"]].ports["bacnet"], host=small["address"])) == \
        bytes([0x71, 3, 4])
    assert rp_value(apdu_of(await exchange(rp(121, max_apdu=0), port))) == PXC["vendor_name"]  # 44 octets: fits


# -- what is not a read ------------------------------------------------------------------------------------------------


async def test_writeproperty_is_a_violation_denied_and_not_applied(start_plant: Any) -> None:
    plant = await start_plant(device())
    port = plant[device()["name"]].ports["bacnet"]
    name = b"HACKED"
    write = request(bytes([0x00, 0x05, 7, 15, 0x0C]) + struct.pack(">I", 8 << 22 | 4194303) + b"\x19\x4d\x3e"
                    + bytes([0x70 | (len(name) + 1), 0]) + name + b"\x3f")
    assert apdu_of(await exchange(write, port)) == bytes([0x50, 7, 15, 0x91, 2, 0x91, 40])  # write-access-denied
    assert rp_value(apdu_of(await exchange(rp(77), port))) == PXC["object_name"]
    violations = plant[device()["name"]].recorder.violations()
    assert [(v.operation, v.detail["invoke_id"]) for v in violations] == [("confirmed:15", 7)]


async def test_who_is_is_a_violation_answered_with_i_am(start_plant: Any) -> None:
    plant = await start_plant(device())
    port = plant[device()["name"]].ports["bacnet"]
    iam = apdu_of(await exchange(request(b"\x10\x08"), port))
    assert iam[:7] == b"\x10\x00\xc4" + struct.pack(">I", 8 << 22 | 2098177)
    # a Who-Is for a range without this device gets nothing; other services a Reject
    assert await exchange(request(b"\x10\x08\x09\x01\x19\x0a"), port, timeout=0.3) is None
    reinitialize = request(bytes([0x00, 0x05, 4, 20, 0x09, 0x00]))
    assert apdu_of(await exchange(reinitialize, port)) == bytes([0x60, 4, 9])
    assert [(r.operation, r.allowed) for r in plant[device()["name"]].recorder.requests] == [
        ("unconfirmed:8", False), ("unconfirmed:8", False), ("confirmed:20", False)]


async def test_undecodable_datagrams_are_recorded_and_not_answered(start_plant: Any) -> None:
    plant = await start_plant(device())
    port = plant[device()["name"]].ports["bacnet"]
    wrong_length = RP_VENDOR_NAME[:3] + b"\x20" + RP_VENDOR_NAME[4:]
    truncated_rp = request(bytes([0x00, 0x05, 5, 12, 0x0C]) + struct.pack(">I", 8 << 22 | 4194303))
    assert await exchange(b"GET / HTTP/1.0\r\n\r\n", port, timeout=0.3) is None
    assert await exchange(wrong_length, port, timeout=0.3) is None
    assert apdu_of(await exchange(truncated_rp, port)) == bytes([0x60, 5, 4])  # Reject invalid-tag
    recorder = plant[device()["name"]].recorder
    assert [(r.operation, r.allowed) for r in recorder.requests] == [
        ("bvlc:bad-frame", False), ("bvlc:bad-frame", False), ("confirmed:12", True)]
    assert recorder.packet_count() == 3


async def test_require_source_port_answers_47808_only(start_plant: Any) -> None:
    plant = await start_plant(device(require_source_port=True))
    port = plant[device()["name"]].ports["bacnet"]
    assert await exchange(RP_VENDOR_NAME, port, timeout=0.3) is None
    reply = await exchange(RP_VENDOR_NAME, port, source=("127.0.140.2", BACNET_PORT))
    assert rp_value(apdu_of(reply)) == PXC["vendor_name"]
    requests = plant[device()["name"]].recorder.requests
    assert [r.peer.rsplit(":", 1)[1] == str(BACNET_PORT) for r in requests] == [False, True]
    assert "ignored_source_port" in requests[0].detail and "ignored_source_port" not in requests[1].detail


# -- fault modes ------------------------------------------------------------------------------------------------------


async def test_fault_modes_at_the_datagram(start_plant: Any) -> None:
    faults = {"silent": "127.0.140.20", "malformed": "127.0.140.21", "truncated": "127.0.140.22",
              "wrong_tid": "127.0.140.23", "oversized": "127.0.140.24"}
    slow = device("127.0.140.25", fault={"mode": "slow", "latency_s": 0.3})
    plant = await start_plant(*(device(address, fault=mode) for mode, address in faults.items()), slow)
    replies = {}
    for mode, address in faults.items():
        replies[mode] = await exchange(RP_VENDOR_NAME, plant.by_address(address).ports["bacnet"], host=address,
                                       timeout=0.5)
    assert replies["silent"] is None
    malformed = replies["malformed"]
    assert malformed is not None and malformed[:6] == b"\x81\x0a\x00\x32\x01\x00" and set(malformed[6:]) == {0xFF}
    assert replies["truncated"] is not None and len(replies["truncated"]) == 0x32 // 2
    wrong = apdu_of(replies["wrong_tid"])
    assert wrong[0] == 0x30 and wrong[1] != 0x01
    assert replies["oversized"] is not None and len(apdu_of(replies["oversized"])) > 8_000
    began = time.monotonic()
    reply = await exchange(RP_VENDOR_NAME, plant[slow["name"]].ports["bacnet"], host=slow["address"])
    assert time.monotonic() - began >= 0.3
    assert rp_value(apdu_of(reply)) == PXC["vendor_name"]
    for running in plant:  # every datagram recorded once, whatever the device did with it
        assert [(r.operation, r.connection) for r in running.recorder.requests] == [("confirmed:12", None)]


async def test_refused_binds_nothing(start_plant: Any) -> None:
    plant = await start_plant(device(port=BACNET_PORT, fault="refused"))
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect((HOST, BACNET_PORT))  # a connected UDP socket reports the ICMP port unreachable
        await loop.sock_sendall(sock, RP_VENDOR_NAME)
        with pytest.raises(ConnectionRefusedError):
            await asyncio.wait_for(loop.sock_recv(sock, 2048), 1.0)
    assert plant[device()["name"]].recorder.requests == []


# -- plant sections ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("section", "message"), [
    ({**PXC, "vendor_id": 70000}, "bacnet.vendor_id: must be an integer 0-65535"),
    ({**PXC, "device_instance": 4194303}, "bacnet.device_instance: must be an integer 0-4194302"),
    ({**PXC, "max_apdu": 1000}, "bacnet.max_apdu: must be one of 50, 128, 206, 480, 1024, 1476"),
    ({**PXC, "rpm": "no"}, "bacnet.rpm: must be true or false"),
    ({**PXC, "colour": "red"}, "bacnet.colour: unknown key"),
    ({k: v for k, v in PXC.items() if k != "model_name"}, "bacnet.model_name: required"),
])
def test_bad_bacnet_section_names_file_and_key(section: dict[str, Any], message: str) -> None:
    with pytest.raises(PlantError) as excinfo:
        load_plant({"plant": "bad", "devices": [{"name": "a", "address": HOST, "class": "bms", "bacnet": section}]})
    assert str(excinfo.value).startswith(f"<plant bad>: devices[0].{message}")


# -- an outside client ------------------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("nmap") is None, reason="nmap is not installed")
async def test_nmap_bacnet_info_reads_the_identity(start_plant: Any) -> None:
    # port 47808: bacnet-info has no port argument. It tries to bind 47808 as its source and, finding the device's
    # socket there on this host, sends from another port, which this device answers.
    plant = await start_plant(device("127.0.140.30", port=BACNET_PORT, description="AHU hall A",
                                     location="Hall A roof"))
    process = await asyncio.create_subprocess_exec(
        "nmap", "-n", "-Pn", "-sU", "-p", str(BACNET_PORT), "--script", "bacnet-info", "127.0.140.30",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    if process.returncode != 0 and b"root" in err:
        pytest.skip("nmap -sU needs root here")
    text = out.decode()
    for line in ("Vendor Name: Siemens Building Technologies", "Object-identifier: 2098177",
                 "Firmware: EPXC V3.5.2", "Application Software: AHU-A 2.1", "Object Name: AHU-HALL-A",
                 "Model Name: Siemens BACnet Field Panel", "Description: AHU hall A", "Location: Hall A roof"):
        assert line in text, text
    operations = [r.operation for r in plant[device("127.0.140.30")["name"]].recorder.requests]
    assert operations.count("confirmed:12") == 9  # its nine ReadProperty requests; its port-scan payloads beside
