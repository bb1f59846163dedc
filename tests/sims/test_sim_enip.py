"""The simulated EtherNet/IP device, read back with the independent pycomm3 client and checked against captures.

Each test runs its own device on its own address in 127.0.40.0/24 (port 44818: unprivileged, and the only port
pycomm3's list_identity() can use). Raw requests are built with pycomm3's packet classes or by hand from the ODVA
layout, never with the simulator's own encoder.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycomm3 import CIPDriver, ClassCode, CommError, Services
from pycomm3.custom_types import ModuleIdentityObject
from pycomm3.packets import (
    GenericUnconnectedRequestPacket,
    ListIdentityRequestPacket,
    RegisterSessionRequestPacket,
    UnRegisterSessionRequestPacket,
)
from vectors.enip_captures import (
    CAPTURE_ADDRESS,
    CIP_STOP_REQUEST,
    CIP_STOP_SESSION,
    ENBT_ATTRIBUTES_1_7,
    ENBT_SECTION,
    LIST_IDENTITY_REPLY,
    LIST_IDENTITY_REQUEST,
    LIST_IDENTITY_SOCKADDR,
)

from simulators import enip_wire
from simulators.enip_sim import EnipDevice, classify, parse_config
from simulators.faults import Fault
from simulators.recorder import Recorder

PORT = 44818
CONTEXT = b"otprobe1"
HEADER = struct.Struct("<HHII8sI")

# A second, different identity (a 1769-L18ER from cpppo's README), so that no test passes on the capture's values alone.
L18ER_SECTION = {
    "vendor_id": 1,
    "device_type": 14,
    "product_code": 154,
    "revision": "21.11",
    "status": 0x0030,
    "serial": "0x6043BF65",
    "product_name": "1769-L18ER/A LOGIX5318ER",
}


@asynccontextmanager
async def device(host: str, section: dict[str, Any], fault: Any = None) -> AsyncIterator[Recorder]:
    recorder = Recorder(host)
    dev = EnipDevice(host, parse_config({"port": PORT, **section}), Fault.from_spec(fault), recorder)
    await dev.start()
    try:
        yield recorder
    finally:
        await dev.stop()


@asynccontextmanager
async def tcp(host: str) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection(host, PORT)
    try:
        yield reader, writer
    finally:
        writer.close()
        await writer.wait_closed()


async def roundtrip(stream: tuple[asyncio.StreamReader, asyncio.StreamWriter], frame: bytes) -> bytes:
    reader, writer = stream
    writer.write(frame)
    await writer.drain()
    header = await asyncio.wait_for(reader.readexactly(24), 2)
    (length,) = struct.unpack_from("<H", header, 2)
    return header + await asyncio.wait_for(reader.readexactly(length), 2)


def header_of(reply: bytes) -> tuple[int, int, int, int, bytes, int]:
    return HEADER.unpack_from(reply)


async def register(stream: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> int:
    reply = await roundtrip(stream, RegisterSessionRequestPacket(b"\x01\x00").build_request(None, 0, CONTEXT, 0))
    command, _, session, status, _, _ = header_of(reply)
    assert (command, status) == (0x65, 0) and session != 0
    return session


def rr_request(session: int, service: int, class_code: int, instance: int, attribute: int | bytes = b"") -> bytes:
    packet = GenericUnconnectedRequestPacket(service, class_code, instance, attribute)
    return packet.build_request(None, session, CONTEXT, 0)


def rr_raw(session: int, cip: bytes, declared: int | None = None) -> bytes:
    """SendRRData by hand: interface 0, timeout 10, null address item, unconnected data item (length as declared)."""
    item_len = len(cip) if declared is None else declared
    body = struct.pack("<IHHHHHH", 0, 10, 2, 0x0000, 0, 0x00B2, item_len) + cip
    return HEADER.pack(0x6F, len(body), session, 0, CONTEXT, 0) + body


def cip_status(reply: bytes) -> tuple[int, int, bytes]:
    """(reply service, general status, data after the extended status) of a SendRRData reply."""
    cip = reply[24 + 16:]  # interface handle, timeout, item count, null address item, data item type and length
    return cip[0], cip[2], cip[4 + 2 * cip[3]:]


def udp_exchange(host: str, datagram: bytes, timeout: float = 2.0, source: tuple[str, int] | None = None) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        if source is not None:
            sock.bind(source)
        sock.connect((host, PORT))
        sock.send(datagram)
        return sock.recv(4096)


async def all_closed(rec: Recorder) -> None:
    """Wait (bounded) until the device has seen every client connection end, so its log is complete."""
    for _ in range(200):
        if rec.connections and rec.open_connections == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{rec.open_connections} connection(s) still open")


def open_driver(host: str) -> CIPDriver:
    driver = CIPDriver(f"{host}:{PORT}")
    driver.socket_timeout = 1.0
    driver.open()
    return driver


def get_attributes_all(host: str) -> dict[str, Any]:
    driver = open_driver(host)
    try:
        tag = driver.generic_message(
            service=Services.get_attributes_all, class_code=ClassCode.identity_object, instance=1,
            connected=False, unconnected_send=False, route_path=False, data_type=ModuleIdentityObject)
        assert tag.error is None
        return tag.value
    finally:
        driver.close()


# -- golden vectors --------------------------------------------------------------------------------------------------

def test_list_identity_encoder_reproduces_the_captured_reply() -> None:
    config = parse_config(ENBT_SECTION)
    _, _, session, _, context, _ = header_of(LIST_IDENTITY_REQUEST)
    data = enip_wire.list_identity_data(config.identity, *CAPTURE_ADDRESS)
    assert enip_wire.encap(0x63, data, session, context=context) == LIST_IDENTITY_REPLY


async def test_list_identity_over_tcp_matches_capture_except_own_sockaddr() -> None:
    host = "127.0.40.1"
    async with device(host, ENBT_SECTION) as rec, tcp(host) as stream:
        reply = await roundtrip(stream, LIST_IDENTITY_REQUEST)
    own = struct.pack(">HH4s8x", 2, PORT, socket.inet_aton(host))
    assert reply[LIST_IDENTITY_SOCKADDR] == own
    at = LIST_IDENTITY_SOCKADDR
    assert reply == LIST_IDENTITY_REPLY[: at.start] + own + LIST_IDENTITY_REPLY[at.stop:]
    assert [(r.operation, r.allowed) for r in rec.requests] == [("enip:0x63", True)]


async def test_get_attributes_all_data_matches_the_captured_identity_encoding() -> None:
    host = "127.0.40.2"
    section = {k: v for k, v in ENBT_SECTION.items() if k != "state"}
    async with device(host, section), tcp(host) as stream:
        session = await register(stream)
        without_state = await roundtrip(stream, rr_request(session, 0x01, 0x01, 1))
    assert cip_status(without_state) == (0x81, 0x00, ENBT_ATTRIBUTES_1_7)
    async with device(host, ENBT_SECTION), tcp(host) as stream:
        session = await register(stream)
        with_state = await roundtrip(stream, rr_request(session, 0x01, 0x01, 1))
    assert cip_status(with_state) == (0x81, 0x00, ENBT_ATTRIBUTES_1_7 + b"\x03")


# -- pycomm3 reads the identity back ---------------------------------------------------------------------------------

async def test_pycomm3_list_identity_reads_the_configured_identity() -> None:
    host = "127.0.40.3"
    async with device(host, ENBT_SECTION) as rec:
        identity = await asyncio.to_thread(CIPDriver.list_identity, host)
        await all_closed(rec)
    assert identity == {
        "encap_protocol_version": 1,
        "ip_address": host,
        "vendor": "Rockwell Automation/Allen-Bradley",
        "product_type": "Communications Adapter",
        "product_code": 58,
        "revision": {"major": 4, "minor": 3},
        "status": b"\x30\x00",
        "serial": "00524d8e",
        "product_name": "1756-ENBT/A",
        "state": 3,
    }
    assert rec.operations() == ["enip:0x65", "enip:0x63", "enip:0x66"]
    assert rec.violations() == []
    assert rec.sessions_registered == rec.sessions_unregistered == 1


async def test_pycomm3_get_attributes_all_and_session_bookkeeping() -> None:
    host = "127.0.40.4"
    async with device(host, L18ER_SECTION) as rec:
        identity = await asyncio.to_thread(get_attributes_all, host)
        await all_closed(rec)
    assert identity == {
        "vendor": "Rockwell Automation/Allen-Bradley",
        "product_type": "Programmable Logic Controller",
        "product_code": 154,
        "revision": {"major": 21, "minor": 11},
        "status": b"\x30\x00",
        "serial": "6043bf65",
        "product_name": "1769-L18ER/A LOGIX5318ER",
    }
    assert rec.operations() == ["enip:0x65", "cip:0x01/class:0x01", "enip:0x66"]
    assert all(r.allowed for r in rec.requests)
    assert rec.sessions_registered == rec.sessions_unregistered == 1
    assert [c.close_kind for c in rec.connections] == ["fin"]


async def test_get_attribute_single_returns_each_identity_attribute() -> None:
    host = "127.0.40.5"
    expected = {
        1: b"\x01\x00", 2: b"\x0e\x00", 3: b"\x9a\x00", 4: bytes([21, 11]), 5: b"\x30\x00",
        6: bytes.fromhex("65bf4360"), 7: b"\x18" + b"1769-L18ER/A LOGIX5318ER", 8: b"\x03",
    }

    def read_all() -> dict[int, tuple[int, bytes]]:
        driver = open_driver(host)
        try:
            out = {}
            for attribute in range(1, 10):
                tag = driver.generic_message(
                    service=Services.get_attribute_single, class_code=ClassCode.identity_object, instance=1,
                    attribute=attribute, connected=False, unconnected_send=False, route_path=False,
                    return_response_packet=True)
                out[attribute] = (tag.value.service_status, tag.value.data)
            return out
        finally:
            driver.close()

    async with device(host, {**L18ER_SECTION, "state": 3}) as rec:
        got = await asyncio.to_thread(read_all)
    assert {a: data for a, (status, data) in got.items() if status == 0} == expected
    assert got[9][0] == 0x14  # attribute not supported
    assert rec.operations().count("cip:0x0E/class:0x01") == 9
    assert rec.violations() == []


async def test_attribute_8_is_absent_when_no_state_is_configured() -> None:
    host = "127.0.40.6"
    async with device(host, L18ER_SECTION), tcp(host) as stream:
        session = await register(stream)
        reply = await roundtrip(stream, rr_request(session, 0x0E, 0x01, 1, 8))
        li = await roundtrip(stream, ListIdentityRequestPacket().build_request(None, 0, CONTEXT, 0))
    assert cip_status(reply)[:2] == (0x8E, 0x14)
    assert li[-1] == 0xFF  # ListIdentity always carries a state byte: "default" when none is configured


async def test_get_attributes_all_wrapped_in_unconnected_send() -> None:
    host = "127.0.40.7"

    def routed(slot: int) -> Any:
        driver = open_driver(host)
        try:
            return driver.generic_message(
                service=Services.get_attributes_all, class_code=ClassCode.identity_object, instance=1,
                connected=False, unconnected_send=True, route_path=f"1/{slot}", return_response_packet=True).value
        finally:
            driver.close()

    async with device(host, ENBT_SECTION) as rec:
        ok = await asyncio.to_thread(routed, 0)
        elsewhere = await asyncio.to_thread(routed, 3)
    assert ok.service_status == 0 and ok.data == ENBT_ATTRIBUTES_1_7 + b"\x03"
    # Slot 3 is not this module: Unconnected_Send fails with connection failure, "invalid link address" 0x0312.
    assert (elsewhere.raw[40], elsewhere.service_status, elsewhere.raw[43:46]) == (0xD2, 0x01, b"\x01\x12\x03")
    routed_reads = [r for r in rec.requests if r.operation == "cip:0x01/class:0x01"]
    assert [(r.allowed, r.detail["route"]) for r in routed_reads] == [(True, (1, 0)), (True, (1, 3))]


async def test_sixteen_bit_path_segments_and_undecodable_requests() -> None:
    host = "127.0.40.23"
    sixteen_bit = bytes([0x01, 4, 0x21, 0, 0x01, 0, 0x25, 0, 0x01, 0])  # Get_Attributes_All, class 1, instance 1
    async with device(host, ENBT_SECTION) as rec, tcp(host) as stream:
        session = await register(stream)
        ok = await roundtrip(stream, rr_raw(session, sixteen_bit))
        cut = await roundtrip(stream, rr_raw(session, sixteen_bit, declared=50))  # item longer than the frame
    assert cip_status(ok) == (0x81, 0x00, ENBT_ATTRIBUTES_1_7 + b"\x03")
    assert header_of(cut)[3] == 0x0003
    assert [(r.operation, r.allowed) for r in rec.requests[1:]] == [("cip:0x01/class:0x01", True), ("enip:0x6F", False)]


@settings(max_examples=300, deadline=None)
@given(command=st.sampled_from([0x63, 0x65, 0x66, 0x6F, 0x70, 0x04]), body=st.binary(max_size=80))
def test_classify_never_raises_on_arbitrary_bodies(command: int, body: bytes) -> None:
    operation, allowed, _ = classify(HEADER.pack(command, len(body), 1, 0, CONTEXT, 0) + body)
    assert operation.startswith(("enip:", "cip:"))
    if allowed and command in (0x6F, 0x70):
        assert command == 0x6F and operation in ("cip:0x01/class:0x01", "cip:0x0E/class:0x01")


# -- UDP -------------------------------------------------------------------------------------------------------------

async def test_udp_unicast_list_identity_with_pycomm3_packet_classes() -> None:
    host, client = "127.0.40.8", ("127.0.40.108", 40108)
    request = ListIdentityRequestPacket()
    async with device(host, L18ER_SECTION) as rec:
        data = await asyncio.to_thread(udp_exchange, host, request.build_request(None, 0, b"\0" * 8, 0), 2.0, client)
    identity = request.response_class(request, data).identity
    assert (identity["product_name"], identity["product_code"], identity["serial"], identity["ip_address"]) == (
        "1769-L18ER/A LOGIX5318ER", 154, "6043bf65", host)
    assert identity["revision"] == {"major": 21, "minor": 11}
    [req] = rec.requests
    assert (req.operation, req.allowed, req.connection, req.peer) == ("udp:0x63", True, None, "127.0.40.108:40108")
    assert rec.connections == []


async def test_udp_replies_promptly_whatever_the_max_response_delay() -> None:
    host = "127.0.40.9"
    datagram = HEADER.pack(0x63, 0, 0, 0, struct.pack("<H", 2000) + b"\0" * 6, 0)
    async with device(host, ENBT_SECTION) as rec:
        started = time.monotonic()
        data = await asyncio.to_thread(udp_exchange, host, datagram)
        elapsed = time.monotonic() - started
    assert header_of(data)[4] == datagram[12:20]
    assert elapsed < 1.0  # a real device could wait up to 2 s; the simulator does not (documented in enip_sim)
    assert rec.requests[0].detail["max_delay_ms"] == 2000


async def test_udp_other_command_is_a_violation_with_invalid_command_status() -> None:
    host = "127.0.40.10"
    async with device(host, ENBT_SECTION) as rec:
        data = await asyncio.to_thread(udp_exchange, host, HEADER.pack(0x04, 0, 0, 0, CONTEXT, 0))
    assert header_of(data)[:4] == (0x04, 0, 0, 0x0001)
    assert [(r.operation, r.allowed) for r in rec.requests] == [("udp:0x04", False)]


# -- violations and errors -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("service", "class_code", "instance", "attribute", "status", "operation"),
    [
        (0x10, 0x01, 1, 7, 0x08, "cip:0x10/class:0x01"),  # Set_Attribute_Single on Identity
        (0x05, 0x01, 1, b"", 0x08, "cip:0x05/class:0x01"),  # Reset: must never reset
        (0x54, 0x06, 1, b"", 0x08, "cip:0x54/class:0x06"),  # Forward_Open
        (0x07, 0x8E, 1, b"", 0x05, "cip:0x07/class:0x8E"),  # Stop, sent unconnected
        (0x01, 0x01, 2, b"", 0x05, "cip:0x01/class:0x01"),  # an instance the device does not have
    ],
)
async def test_cip_requests_off_the_allowlist_get_the_proper_error(
    service: int, class_code: int, instance: int, attribute: int | bytes, status: int, operation: str
) -> None:
    host = "127.0.40.11"
    async with device(host, ENBT_SECTION) as rec, tcp(host) as stream:
        session = await register(stream)
        reply = await roundtrip(stream, rr_request(session, service, class_code, instance, attribute))
    assert header_of(reply)[3] == 0
    assert cip_status(reply) == (service | 0x80, status, b"")
    [violation] = rec.violations()
    assert violation.operation == operation


async def test_pycomm3_set_attribute_single_is_refused_and_recorded() -> None:
    host = "127.0.40.12"

    def write_name() -> Any:
        driver = open_driver(host)
        try:
            return driver.generic_message(
                service=Services.set_attribute_single, class_code=ClassCode.identity_object, instance=1,
                attribute=7, request_data=b"\x04EVIL", connected=False, unconnected_send=False, route_path=False)
        finally:
            driver.close()

    async with device(host, ENBT_SECTION) as rec:
        tag = await asyncio.to_thread(write_name)
        identity = await asyncio.to_thread(get_attributes_all, host)
    assert tag.error is not None and "not supported" in tag.error.lower()
    assert identity["product_name"] == "1756-ENBT/A"
    assert [r.operation for r in rec.violations()] == ["cip:0x10/class:0x01"]


async def test_captured_stop_request_is_a_violation_and_is_refused() -> None:
    host = "127.0.40.13"
    async with device(host, ENBT_SECTION) as rec, tcp(host) as stream:
        foreign = await roundtrip(stream, CIP_STOP_REQUEST)  # its session handle is not one of ours
        session = await register(stream)
        assert session != CIP_STOP_SESSION
        ours = CIP_STOP_REQUEST[:4] + struct.pack("<I", session) + CIP_STOP_REQUEST[8:]
        # No connection was ever opened, so the connected request is dropped: the next reply is the ListIdentity one.
        stream[1].write(ours)
        after = await roundtrip(stream, ListIdentityRequestPacket().build_request(None, 0, CONTEXT, 0))
    assert header_of(foreign)[:4] == (0x70, 0, CIP_STOP_SESSION, 0x0064)
    assert header_of(after)[0] == 0x63
    stops = [r for r in rec.requests if r.operation == "cip:0x07/class:0x8E"]
    assert [(r.allowed, r.detail["connected"]) for r in stops] == [(False, True), (False, True)]


def test_identity_read_over_a_cip_connection_is_not_on_the_allowlist() -> None:
    # The captured Stop turned into Get_Attributes_All on Identity: still SendUnitData, still refused.
    service_at, class_at = 46, 49
    frame = bytearray(CIP_STOP_REQUEST)
    frame[service_at], frame[class_at] = 0x01, 0x01
    operation, allowed, detail = classify(bytes(frame))
    assert (operation, allowed, detail["connected"]) == ("cip:0x01/class:0x01", False, True)


@pytest.mark.parametrize("command", [0x04, 0x64, 0x01, 0x99])
async def test_other_encapsulation_commands_get_invalid_command(command: int) -> None:
    host = "127.0.40.14"
    async with device(host, ENBT_SECTION) as rec, tcp(host) as stream:
        reply = await roundtrip(stream, HEADER.pack(command, 0, 0, 0, CONTEXT, 0))
    assert header_of(reply) == (command, 0, 0, 0x0001, CONTEXT, 0)
    assert [(r.operation, r.allowed) for r in rec.requests] == [(f"enip:0x{command:02X}", False)]


async def test_wrong_session_handle_gets_0x0064() -> None:
    host = "127.0.40.15"
    async with device(host, ENBT_SECTION) as rec, tcp(host) as stream:
        unregistered = await roundtrip(stream, rr_request(0x1234, 0x01, 0x01, 1))
        session = await register(stream)
        wrong = await roundtrip(stream, rr_request(session ^ 0xFF, 0x01, 0x01, 1))
        wrong_unregister = await roundtrip(
            stream, UnRegisterSessionRequestPacket().build_request(None, session + 1, CONTEXT, 0))
        right = await roundtrip(stream, rr_request(session, 0x01, 0x01, 1))
    assert header_of(unregistered)[3] == header_of(wrong)[3] == header_of(wrong_unregister)[3] == 0x0064
    assert cip_status(right)[:2] == (0x81, 0x00)
    assert (rec.sessions_registered, rec.sessions_unregistered) == (1, 0)


async def test_unsupported_encapsulation_version_is_refused() -> None:
    host = "127.0.40.16"
    async with device(host, ENBT_SECTION) as rec, tcp(host) as stream:
        reply = await roundtrip(stream, RegisterSessionRequestPacket(b"\x02\x00").build_request(None, 0, CONTEXT, 0))
    command, _, session, status, _, _ = header_of(reply)
    assert (command, session, status, reply[24:26]) == (0x65, 0, 0x0069, b"\x01\x00")
    assert rec.sessions_registered == 0


# -- fault modes -----------------------------------------------------------------------------------------------------

async def test_silent_device_answers_neither_tcp_nor_udp() -> None:
    host = "127.0.40.17"

    def try_open() -> None:
        driver = CIPDriver(f"{host}:{PORT}")
        driver.socket_timeout = 0.3
        driver.open()

    async with device(host, ENBT_SECTION, "silent") as rec:
        with pytest.raises(CommError):
            await asyncio.to_thread(try_open)
        with pytest.raises(TimeoutError):
            await asyncio.to_thread(udp_exchange, host, LIST_IDENTITY_REQUEST, 0.3)
    assert rec.operations() == ["enip:0x65", "udp:0x63"]
    assert rec.sessions_registered == 0


async def test_refused_device_has_no_tcp_or_udp_listener() -> None:
    host = "127.0.40.18"
    async with device(host, ENBT_SECTION, "refused") as rec:
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(host, PORT)
        with pytest.raises(ConnectionRefusedError):  # ICMP port unreachable on a connected UDP socket
            await asyncio.to_thread(udp_exchange, host, LIST_IDENTITY_REQUEST, 1.0)
    assert rec.requests == [] and rec.connections == []


async def test_wrong_id_changes_context_and_session_handle() -> None:
    host = "127.0.40.19"
    inverted = bytes(b ^ 0xFF for b in CONTEXT)
    async with device(host, ENBT_SECTION, "wrong_tid"), tcp(host) as stream:
        reply = await roundtrip(stream, RegisterSessionRequestPacket(b"\x01\x00").build_request(None, 0, CONTEXT, 0))
        claimed = header_of(reply)[2]
        # The handle in the reply is not the one the device registered: using it fails.
        refused = await roundtrip(stream, rr_request(claimed, 0x01, 0x01, 1))
        udp = await asyncio.to_thread(udp_exchange, host, HEADER.pack(0x63, 0, 0, 0, CONTEXT, 0))
    assert header_of(reply)[4] == header_of(udp)[4] == inverted
    assert claimed != 0 and header_of(refused)[3] == 0x0064


async def test_slow_device_delays_udp_replies() -> None:
    host = "127.0.40.20"
    async with device(host, ENBT_SECTION, {"mode": "slow", "latency_s": 0.3}):
        started = time.monotonic()
        data = await asyncio.to_thread(udp_exchange, host, LIST_IDENTITY_REQUEST)
        elapsed = time.monotonic() - started
    assert elapsed >= 0.3 and header_of(data)[0] == 0x63


async def test_malformed_and_oversized_replies() -> None:
    host = "127.0.40.21"
    async with device(host, ENBT_SECTION, "malformed"), tcp(host) as stream:
        malformed = await roundtrip(stream, LIST_IDENTITY_REQUEST)
    assert malformed[:24] == LIST_IDENTITY_REPLY[:24] and set(malformed[24:]) == {0xFF}
    async with device(host, ENBT_SECTION, "oversized"), tcp(host) as stream:
        oversized = await roundtrip(stream, LIST_IDENTITY_REQUEST)
    (length,) = struct.unpack_from("<H", oversized, 2)
    assert length == len(oversized) - 24 > 60_000


# -- configuration ---------------------------------------------------------------------------------------------------

def test_parse_config_reads_a_plant_section() -> None:
    config = parse_config({**L18ER_SECTION, "port": 10818})
    ident = config.identity
    assert config.port == 10818
    assert (ident.vendor_id, ident.device_type, ident.product_code, ident.revision) == (1, 14, 154, (21, 11))
    assert (ident.status, ident.serial, ident.product_name, ident.state) == (0x30, 0x6043BF65, L18ER_SECTION[
        "product_name"], None)
    assert parse_config(ENBT_SECTION).port == 44818


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"vendor_id": None}, "enip.vendor_id"),
        ({"revision": 4.10}, "enip.revision"),
        ({"revision": "4"}, "enip.revision"),
        ({"serial": "0xZZ"}, "enip.serial"),
        ({"serial": 1 << 32}, "enip.serial"),
        ({"product_code": True}, "enip.product_code"),
        ({"state": 256}, "enip.state"),
        ({"port": 0}, "enip.port"),
        ({"product_name": ""}, "enip.product_name"),
        ({"vendor": 1}, "enip.vendor"),
    ],
)
def test_parse_config_names_the_bad_key(change: dict[str, Any], key: str) -> None:
    section = {**ENBT_SECTION, **change}
    section = {k: v for k, v in section.items() if v is not None}
    with pytest.raises(ValueError, match=rf"^{key}: "):
        parse_config(section)


def test_summary_names_port_and_identity() -> None:
    dev = EnipDevice("127.0.40.22", parse_config({**ENBT_SECTION, "port": 10818}), Fault(), Recorder("x"))
    summary = dev.summary()
    assert "10818" in summary and "1756-ENBT/A" in summary and "0x00524D8E" in summary and "rev 4.3" in summary
