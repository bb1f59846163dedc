"""The EtherNet/IP identity probe: request bytes, parsers (golden and Hypothesis), policy, and runs against devices.

Devices are the project's simulator (simulators.enip_sim) or, for replies the simulator never gives (a refused
Get_Attributes_All, a refused ListIdentity), a scripted stand-in that replays hand-written vectors. Every device
listens on its own address in 127.0.70.0-127.0.79.255, port 44818 (TCP and UDP, unprivileged).
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import pytest
from conftest import settled
from fakes import PacerLog
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from vectors.enipprobe_vectors import (
    CAPTURE_ADDRESS,
    CIP_STOP_REQUEST,
    ENBT,
    GAA_L61_FRAME,
    GAA_SERVICE_NOT_SUPPORTED,
    ICSNPP_MISREAD,
    LIST_IDENTITY_REFUSED,
    LIST_IDENTITY_REPLY,
    LIST_IDENTITY_REQUEST,
    NMAP_CONTEXT,
    OUR_CONTEXT,
    POWERFLEX_LIST_IDENTITY,
    SESSION,
)

from otprobe.contract import Category, Kind, Operation, Timeouts
from otprobe.errors import PolicyViolation, ProtocolError, ScanAborted
from otprobe.link import Link
from otprobe.model import Observation, Status, Target
from otprobe.probes import enip_wire as wire
from otprobe.probes.enip import EnipProbe, device_type_name, to_identity, vendor_name
from otprobe.safety import is_read_only
from simulators.enip_sim import EnipDevice, parse_config
from simulators.faults import Fault
from simulators.recorder import Recorder

PORT = 44818
# response 0.75 s: the probe advertises a 500 ms Max Response Delay, i.e. the context in the hand-written vectors.
TIMEOUTS = Timeouts(connect_s=0.5, response_s=0.75)
_hosts = (f"127.0.{70 + n // 250}.{1 + n % 250}" for n in itertools.count())

L18ER = {"vendor_id": 1, "device_type": 14, "product_code": 154, "revision": "21.11", "status": 0x0030,
         "serial": 0x6043BF65, "product_name": "1769-L18ER/A LOGIX5318ER", "state": 3}
POWERFLEX = {"vendor_id": 1, "device_type": 123, "product_code": 1168, "revision": "11.1", "status": 0x0561,
             "serial": 0x80491D15, "product_name": "PowerFlex 753".ljust(32), "state": 0xFF}
MVI56 = {"vendor_id": 309, "device_type": 12, "product_code": 83, "revision": "1.2", "status": 0x0070,
         "serial": 0x0000AD77, "product_name": "MVI56 ProSoft Technology, Inc."}


# -- requests -----------------------------------------------------------------------------------------------------

def test_list_identity_request_is_the_captured_one_with_our_context() -> None:
    assert wire.list_identity_request(NMAP_CONTEXT) == LIST_IDENTITY_REQUEST
    assert wire.list_identity_request(OUR_CONTEXT) == bytes.fromhex("63000000" "00000000" "00000000") + OUR_CONTEXT + (
        bytes(4))


def test_session_and_identity_requests_follow_the_odva_layout() -> None:
    ctx = OUR_CONTEXT
    assert wire.register_session_request(ctx) == bytes.fromhex("65000400" "00000000" "00000000") + ctx + bytes.fromhex(
        "00000000" "01000000")
    assert wire.get_attributes_all_request(SESSION, ctx) == (
        bytes.fromhex("6f001600" "78563412" "00000000") + ctx + bytes(4)
        + bytes.fromhex("00000000" "0a00" "0200" "00000000" "b2000600" "01022001" "2401")
    )
    assert wire.unregister_session_request(SESSION, ctx) == bytes.fromhex("66000000" "78563412" "00000000") + ctx + (
        bytes(4))


def test_sender_context_carries_the_delay_then_the_tag() -> None:
    ctx = wire.sender_context(500)
    assert struct.unpack_from("<H", ctx)[0] == 500
    assert ctx[2:] == b"otprob"
    for bad in (0, 65536):  # 0 would mean "2000 ms" to OpENer
        with pytest.raises(ValueError):
            wire.sender_context(bad)


@pytest.mark.parametrize(("response_s", "expected_ms"), [(3.0, 500), (0.75, 500), (0.5, 250), (0.1, 1)])
def test_advertised_delay_fits_the_response_timeout(response_s: float, expected_ms: int) -> None:
    assert EnipProbe()._advertised_delay_ms(response_s) == expected_ms


# -- golden replies --------------------------------------------------------------------------------------------------

def test_captured_list_identity_reply_of_a_1756_enbt() -> None:
    ident = wire.parse_list_identity_reply(LIST_IDENTITY_REPLY, NMAP_CONTEXT)
    normal = to_identity(ident, "udp:list_identity")
    assert (normal.vendor_id, normal.vendor, normal.device_type_id, normal.device_type) == (
        ENBT["vendor_id"], ENBT["vendor"], ENBT["device_type_id"], ENBT["device_type"])
    assert (normal.product_code, normal.firmware, normal.serial, normal.product_name) == (
        ENBT["product_code"], ENBT["firmware"], ENBT["serial"], ENBT["product_name"])
    assert normal.raw["revision"] == ENBT["revision"]
    assert normal.raw["status"] == ENBT["status"]
    assert normal.raw["state"] == ENBT["state"]
    assert normal.firmware_version == (4, 3)


def test_sockaddr_is_read_big_endian_not_as_icsnpp_did() -> None:
    ident = wire.parse_list_identity_reply(LIST_IDENTITY_REPLY, NMAP_CONTEXT)
    assert ident.sockaddr == CAPTURE_ADDRESS
    # The same 16 bytes read little-endian give icsnpp-enip's example log line; the probe must not.
    port_le, addr = struct.unpack_from("<H4s", LIST_IDENTITY_REPLY, 32 + 2)
    assert (".".join(str(b) for b in reversed(addr)), port_le) == ICSNPP_MISREAD
    assert ident.sockaddr != ICSNPP_MISREAD


def test_reply_with_someone_elses_context_is_refused() -> None:
    with pytest.raises(ProtocolError, match="context"):
        wire.parse_list_identity_reply(LIST_IDENTITY_REPLY, OUR_CONTEXT)


def test_cpf_items_are_walked_by_length_not_read_at_fixed_offsets() -> None:
    """An unknown item first, the identity second, trailing bytes after: nmap's fixed offsets would read garbage."""
    body = LIST_IDENTITY_REPLY[wire.HEADER_LEN + 2:]
    extra = struct.pack("<HH", 0x8000, 5) + b"\x01\x02\x03\x04\x05"
    data = struct.pack("<H", 2) + extra + body + b"\x00\x00"
    frame = struct.pack("<HHII8sI", 0x63, len(data), 0, 0, NMAP_CONTEXT, 0) + data
    assert wire.parse_list_identity_reply(frame, NMAP_CONTEXT).serial == 0x00524D8E
    assert [kind for kind, _ in wire.walk_cpf(data)] == [0x8000, wire.ITEM_IDENTITY]
    with pytest.raises(ProtocolError, match="claims"):
        wire.walk_cpf(struct.pack("<HHH", 1, 0x0C, 200) + bytes(10))


def test_get_attributes_all_reply_without_state() -> None:
    ident = wire.parse_get_attributes_all_reply(GAA_L61_FRAME, SESSION, OUR_CONTEXT)
    normal = to_identity(ident, "tcp:get_attributes_all")
    assert (normal.vendor_id, normal.device_type_id, normal.product_code) == (1, 14, "54")
    assert (normal.firmware, normal.serial, normal.product_name) == ("16.20", "0051823F", "1756-L61/B LOGIX5561")
    assert normal.raw["status"] == 0x3060
    assert normal.raw["state"] is None
    assert "sockaddr" not in normal.raw


def test_get_attributes_all_reply_for_another_session_is_refused() -> None:
    with pytest.raises(ProtocolError, match="session"):
        wire.parse_get_attributes_all_reply(GAA_L61_FRAME, SESSION + 1, OUR_CONTEXT)


def test_error_statuses_are_device_refusals() -> None:
    with pytest.raises(wire.DeviceRefusal, match=r"0x08 \(service not supported\)"):
        wire.parse_get_attributes_all_reply(GAA_SERVICE_NOT_SUPPORTED, SESSION, OUR_CONTEXT)
    with pytest.raises(wire.DeviceRefusal, match="0x0001"):
        wire.parse_list_identity_reply(LIST_IDENTITY_REFUSED, OUR_CONTEXT)


def test_padded_name_is_stripped_and_kept_raw() -> None:
    normal = to_identity(wire.parse_list_identity_reply(POWERFLEX_LIST_IDENTITY, OUR_CONTEXT), "udp:list_identity")
    assert normal.product_name == "PowerFlex 753"
    assert normal.raw["product_name_raw"] == "PowerFlex 753".ljust(32)
    assert (normal.raw["state"], normal.raw["state_name"]) == (0xFF, "default")
    assert (normal.device_type_id, normal.device_type) == (123, None)  # vendor-specific type: shown by number
    assert (normal.firmware, normal.serial, normal.raw["sockaddr"]) == ("11.1", "80491D15", "192.168.1.20:44818")


def test_oversized_length_is_refused_before_reading() -> None:
    header = struct.pack("<HHII8sI", 0x63, 60_000, 0, 0, OUR_CONTEXT, 0)
    with pytest.raises(ProtocolError, match="cap"):
        wire.parse_header(header)


def test_names_come_from_the_own_table_then_pycomm3() -> None:
    assert vendor_name(1) == "Rockwell Automation/Allen-Bradley"
    assert vendor_name(309) == "ProSoft Technology"
    assert vendor_name(562) == "Phoenix Contact"  # not in otprobe's table: pycomm3's, at run time
    assert vendor_name(0xFFFE) is None
    assert device_type_name(0x0E) == "Programmable Logic Controller"
    assert device_type_name(0x2C) == "Managed Ethernet Switch"


def test_firmware_rendering_compares_numerically() -> None:
    base = wire.CipIdentity(1, 14, 154, (21, 11), 0x30, 0x6043BF65, "x")
    later = to_identity(base, "t")
    earlier = to_identity(wire.CipIdentity(1, 14, 154, (21, 2), 0x30, 0x6043BF65, "x"), "t")
    assert (later.firmware, later.serial) == ("21.11", "6043BF65")
    assert earlier.firmware_version is not None and later.firmware_version is not None
    assert earlier.firmware_version < later.firmware_version


# -- hostile bytes: only ProtocolError escapes -------------------------------------------------------------------

def hostile(golden: bytes) -> st.SearchStrategy[bytes]:
    """Random bytes, truncations, oversized tails and single-byte corruptions of a real reply."""
    cut = st.integers(0, len(golden)).map(lambda n: golden[:n])
    tail = st.binary(min_size=1, max_size=300).map(lambda extra: golden + extra)
    flip = st.tuples(st.integers(0, len(golden) - 1), st.integers(0, 255)).map(
        lambda p: golden[: p[0]] + bytes([p[1]]) + golden[p[0] + 1:])
    return st.one_of(st.binary(max_size=400), cut, tail, flip)


def _only_protocol_error(parse: Any, data: bytes) -> None:
    with suppress(ProtocolError):
        parse(data)


@settings(max_examples=1000, deadline=None)
@given(hostile(LIST_IDENTITY_REPLY[: wire.HEADER_LEN]))
def test_header_parser_only_raises_protocol_error(data: bytes) -> None:
    _only_protocol_error(wire.parse_header, data)


@settings(max_examples=1000, deadline=None)
@given(hostile(LIST_IDENTITY_REPLY[wire.HEADER_LEN:]))
def test_cpf_walk_only_raises_protocol_error(data: bytes) -> None:
    _only_protocol_error(wire.walk_cpf, data)


@settings(max_examples=1000, deadline=None)
@given(hostile(POWERFLEX_LIST_IDENTITY[wire.HEADER_LEN + 6:]))
def test_list_identity_item_parser_only_raises_protocol_error(data: bytes) -> None:
    _only_protocol_error(wire.parse_list_identity_item, data)


@settings(max_examples=1000, deadline=None)
@given(hostile(LIST_IDENTITY_REPLY))
def test_list_identity_reply_parser_only_raises_protocol_error(data: bytes) -> None:
    _only_protocol_error(lambda d: wire.parse_list_identity_reply(d, NMAP_CONTEXT), data)


@settings(max_examples=1000, deadline=None)
@given(st.one_of(hostile(GAA_L61_FRAME), hostile(GAA_SERVICE_NOT_SUPPORTED)))
def test_get_attributes_all_parser_only_raises_protocol_error(data: bytes) -> None:
    _only_protocol_error(lambda d: wire.parse_get_attributes_all_reply(d, SESSION, OUR_CONTEXT), data)


@settings(max_examples=1000, deadline=None)
@given(hostile(wire.register_session_request(OUR_CONTEXT)[:4] + struct.pack("<I", SESSION) + bytes(4) + OUR_CONTEXT
               + bytes(4) + b"\x01\x00\x00\x00"))
def test_register_session_parser_only_raises_protocol_error(data: bytes) -> None:
    _only_protocol_error(lambda d: wire.parse_register_session_reply(d, OUR_CONTEXT), data)


# -- policy: a probe declaring writes is still refused ----------------------------------------------------------

def captured_stop_code() -> str:
    """The wire code of the captured request, decoded here by hand: SendUnitData, connected data item, CIP Stop."""
    command = struct.unpack_from("<H", CIP_STOP_REQUEST)[0]
    assert command == 0x70
    items = dict(wire.walk_cpf(CIP_STOP_REQUEST[wire.HEADER_LEN + 6:]))
    cip = items[0x00B1][2:]  # after the sequence count
    service, path = cip[0], cip[2: 2 + 2 * cip[1]]
    assert path[0] == 0x20  # 8-bit class segment
    return f"cip:0x{service:02X}/class:0x{path[1]:02X}"


class EvilEnipProbe(EnipProbe):
    operations = (
        *EnipProbe.operations,
        Operation("set_attribute", "cip:0x10/class:0x01", Kind.REQUEST, 1, Category.SAFE, "Set_Attribute_Single"),
        Operation("stop", captured_stop_code(), Kind.REQUEST, 1, Category.SAFE, "CIP Stop, from the capture"),
        Operation("send_unit_data", "enip:0x70", Kind.REQUEST, 1, Category.SAFE, "connected messaging"),
    )


@pytest.mark.parametrize("op", ["set_attribute", "stop", "send_unit_data"])
async def test_link_refuses_writes_and_stop_even_when_declared(op: str) -> None:
    assert captured_stop_code() == "cip:0x07/class:0x8E"
    probe = EvilEnipProbe()
    link = Link(probe, Target("127.0.70.250"))
    reached = []
    with pytest.raises(PolicyViolation):
        async with link.op(op):
            reached.append(op)
    assert reached == []
    assert link.packets_sent == 0


def test_declared_operations_are_all_read_only_and_budget_matches_options() -> None:
    assert all(is_read_only("enip", op.code) for op in EnipProbe.operations)
    assert EnipProbe().max_packets() == 7
    assert EnipProbe({"udp": False}).max_packets() == 6
    # one schema, the profile's: the probe validates its options with the model `protocols.enip:` is read with
    assert EnipProbe.Options is type(EnipProbe().options)
    with pytest.raises(ValidationError, match=r"max_response_delay_ms\n.*greater than or equal to 1"):
        EnipProbe({"max_response_delay_ms": 0})
    with pytest.raises(ValidationError, match=r"udp\n.*valid boolean"):
        EnipProbe({"udp": "yes"})


# -- against the simulated device ---------------------------------------------------------------------------------

@asynccontextmanager
async def simulated(section: dict[str, Any], fault: Any = None) -> AsyncIterator[tuple[str, Recorder, EnipDevice]]:
    host = next(_hosts)
    recorder = Recorder(host)
    dev = EnipDevice(host, parse_config({"port": PORT, **section}), Fault.from_spec(fault), recorder)
    await dev.start()
    try:
        yield host, recorder, dev
    finally:
        await dev.stop()


async def probe(host: str, options: dict[str, Any] | None = None, pacer: Any = None) -> tuple[Observation, Link]:
    p = EnipProbe({"port": PORT, **(options or {})})
    link = Link(p, Target(host, "plc"), timeouts=TIMEOUTS, pacer=pacer)
    return await p.run(link, Target(host, "plc")), link


def assert_identity_is_config(obs: Observation, section: dict[str, Any], state: int | None) -> None:
    ident = obs.identity
    assert obs.status is Status.IDENTIFIED, obs.error
    assert ident is not None
    assert ident.vendor_id == section["vendor_id"]
    assert ident.device_type_id == section["device_type"]
    assert ident.product_code == str(section["product_code"])
    assert ident.firmware == section["revision"]
    assert ident.serial == f"{section['serial']:08X}"
    assert ident.product_name == section["product_name"].strip()
    assert ident.raw["product_name_raw"] == section["product_name"]
    assert ident.raw["status"] == section["status"]
    assert ident.raw["state"] == state


def assert_clean(obs: Observation, link: Link, recorder: Recorder) -> None:
    assert link.packets_sent == recorder.packet_count() == obs.packets_sent
    assert recorder.violations() == []
    assert all(c.close_kind == "fin" for c in recorder.connections)
    assert recorder.sessions_registered == recorder.sessions_unregistered


@pytest.mark.parametrize("section", [L18ER, POWERFLEX, MVI56], ids=["1769-L18ER", "powerflex-753", "mvi56"])
async def test_udp_list_identity_path(section: dict[str, Any]) -> None:
    async with simulated(section) as (host, recorder, _):
        obs, link = await probe(host)
        assert_identity_is_config(obs, section, section.get("state", 0xFF))  # ListIdentity: 0xFF when none set
        assert obs.identity is not None and obs.identity.raw["sockaddr"] == f"{host}:{PORT}"
        assert obs.identity.raw["source"] == "udp:list_identity"
        assert recorder.operations() == ["udp:0x63"]
        assert recorder.requests[0].detail["max_delay_ms"] == 500
        assert_clean(obs, link, recorder)
        assert link.packets_sent == 1


@pytest.mark.parametrize("section", [L18ER, POWERFLEX, MVI56], ids=["1769-L18ER", "powerflex-753", "mvi56"])
async def test_tcp_get_attributes_all_path(section: dict[str, Any]) -> None:
    async with simulated(section) as (host, recorder, _):
        obs, link = await probe(host, {"udp": False})
        await settled(recorder)
        assert_identity_is_config(obs, section, section.get("state"))  # Get_Attributes_All: only when configured
        assert obs.identity is not None and obs.identity.raw["source"] == "tcp:get_attributes_all"
        assert recorder.operations() == ["enip:0x65", "cip:0x01/class:0x01", "enip:0x66"]
        assert recorder.sessions_registered == 1
        assert_clean(obs, link, recorder)
        assert link.packets_sent == 5


async def test_udp_silent_device_is_identified_over_tcp() -> None:
    """UDP filtered (the datagram arrives, nothing answers), TCP open: the probe falls back after its UDP wait.

    The simulator has no UDP-only silence, so its UDP endpoint is swapped for a socket that only counts datagrams.
    """
    async with simulated(L18ER) as (host, recorder, dev):
        assert dev._udp is not None
        await dev._udp.stop()  # idempotent: the device's own stop() later finds it stopped
        await asyncio.sleep(0)  # the transport releases its socket one loop step after close()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
            sink.bind((host, PORT))
            sink.setblocking(False)
            obs, link = await probe(host)
            datagrams = []
            while True:
                try:
                    datagrams.append(sink.recv(2048))
                except BlockingIOError:
                    break
        await settled(recorder)
        assert_identity_is_config(obs, L18ER, 3)
        assert obs.identity is not None and obs.identity.raw["source"] == "tcp:get_attributes_all"
        assert datagrams == [wire.list_identity_request(OUR_CONTEXT)]
        assert link.packets_sent == recorder.packet_count() + len(datagrams) == 6
        assert recorder.violations() == []
        assert recorder.sessions_registered == recorder.sessions_unregistered == 1
        assert [c.close_kind for c in recorder.connections] == ["fin"]


@pytest.mark.parametrize(
    ("fault", "options", "status"),
    [
        ("silent", {}, Status.TIMEOUT),
        ("refused", {}, Status.REFUSED),
        ("reset", {"udp": False}, Status.RESET),
        ("malformed", {}, Status.PROTOCOL_ERROR),
        ("truncated", {}, Status.RESET),
        ("oversized", {}, Status.PROTOCOL_ERROR),
        ("wrong_tid", {}, Status.PROTOCOL_ERROR),
        ({"mode": "slow", "latency_s": 2.0}, {"udp": False}, Status.TIMEOUT),
    ],
    ids=["silent", "refused", "reset", "malformed", "truncated", "oversized", "wrong_tid", "slow"],
)
async def test_fault_devices_give_the_right_status(fault: Any, options: dict[str, Any], status: Status) -> None:
    async with simulated(L18ER, fault) as (host, recorder, _):
        obs, link = await probe(host, options)
        assert obs.status is status, obs.error
        assert obs.identity is None and obs.error
        assert "Traceback" not in obs.error
        assert 0 < link.packets_sent <= EnipProbe(options).max_packets()
        await settled(recorder)
        if fault not in ("refused", "reset"):  # what reaches a closed port or a reset socket is recorded by no device
            assert link.packets_sent == recorder.packet_count()
        assert recorder.violations() == []
        assert recorder.sessions_unregistered <= recorder.sessions_registered <= 1
        assert all(c.close_kind != "rst" for c in recorder.connections)  # the device may reset; the probe never


async def test_a_connection_the_device_reset_is_reported_to_the_pacer_instead_of_a_close() -> None:
    pacer = PacerLog()
    async with simulated(L18ER, "reset") as (host, _, _):
        obs, _ = await probe(host, {"udp": False}, pacer=pacer)
    assert obs.status is Status.RESET
    assert pacer.events[0] is Kind.CONNECT and Kind.CLOSE not in pacer.events
    assert pacer.events[-1] == "ended"  # no close of ours; the connection gap counts from the reset


async def test_a_device_that_closes_mid_reply_gets_no_fin_announced() -> None:
    pacer = PacerLog()
    async with simulated(L18ER, "truncated") as (host, recorder, _):
        obs, link = await probe(host, {"udp": False}, pacer=pacer)
        await settled(recorder)
    assert obs.status is Status.RESET and "mid-reply" in (obs.error or "")
    assert [c.close_kind for c in recorder.connections] == ["server"]
    assert pacer.events == [Kind.CONNECT, Kind.REQUEST, "ended"]
    assert link.packets_sent == recorder.packet_count() == 2  # connect and RegisterSession: no phantom FIN


async def test_silent_device_costs_exactly_what_it_saw() -> None:
    async with simulated(L18ER, "silent") as (host, recorder, _):
        obs, link = await probe(host)
        await settled(recorder)
        assert obs.status is Status.TIMEOUT
        assert recorder.operations() == ["udp:0x63", "enip:0x65"]  # nothing after the unanswered request
        assert_clean(obs, link, recorder)
        assert link.packets_sent == 4  # datagram, connect, RegisterSession, FIN


async def test_cancellation_mid_request_still_closes_with_fin() -> None:
    async with simulated(L18ER, "silent") as (host, recorder, _):
        p = EnipProbe({"port": PORT, "udp": False})
        link = Link(p, Target(host), timeouts=Timeouts(0.5, 10.0))
        task = asyncio.create_task(p.run(link, Target(host)))
        for _ in range(200):
            if recorder.operations():
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await settled(recorder)
        assert [c.close_kind for c in recorder.connections] == ["fin"]
        assert link.packets_sent == recorder.packet_count() == 3


class StopRequestsAfter:
    """A pacer whose deadline passes after `n` packets: requests are refused, closes always granted."""

    def __init__(self, n: int) -> None:
        self.n = n

    async def acquire(self, kind: Kind, packets: int) -> None:
        if kind is not Kind.CLOSE:
            if self.n <= 0:
                raise ScanAborted("deadline")
            self.n -= packets

    async def depart(self, kind: Kind, packets: int) -> None:
        return None


async def test_scan_abort_propagates_after_a_clean_close() -> None:
    async with simulated(L18ER) as (host, recorder, _):
        with pytest.raises(ScanAborted):
            await probe(host, {"udp": False}, pacer=StopRequestsAfter(2))  # connect and RegisterSession only
        await settled(recorder)
        assert recorder.operations() == ["enip:0x65"]
        assert [c.close_kind for c in recorder.connections] == ["fin"]


async def test_identity_read_before_the_cutoff_is_kept_and_the_fin_ends_the_session() -> None:
    async with simulated(L18ER) as (host, recorder, _):
        obs, link = await probe(host, {"udp": False}, pacer=StopRequestsAfter(3))  # connect, RegisterSession, GAA
        await settled(recorder)
    assert_identity_is_config(obs, L18ER, 3)
    assert recorder.operations() == ["enip:0x65", "cip:0x01/class:0x01"]  # UnRegisterSession refused by the cutoff
    assert [c.close_kind for c in recorder.connections] == ["fin"]
    assert link.packets_sent == recorder.packet_count() == 4


# -- against a scripted stand-in, for error replies the simulator does not give ----------------------------------

@asynccontextmanager
async def scripted(replies: dict[int, bytes], udp_reply: bytes | None = None) -> AsyncIterator[tuple[str, list[Any]]]:
    """A device that answers each encapsulation command with a fixed frame; logs commands and how connections end."""
    host = next(_hosts)
    log: list[Any] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                header = await reader.readexactly(wire.HEADER_LEN)
                await reader.readexactly(struct.unpack_from("<H", header, 2)[0])
                command = struct.unpack_from("<H", header)[0]
                log.append(command)
                if command in replies:
                    writer.write(replies[command])
                    await writer.drain()
        except asyncio.IncompleteReadError as exc:
            log.append("fin" if not exc.partial else "partial")
        except ConnectionResetError:
            log.append("rst")
        finally:
            writer.close()

    class Udp(asyncio.DatagramProtocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: Any) -> None:
            log.append("udp")
            if udp_reply is not None:
                self.transport.sendto(udp_reply, addr)

    server = await asyncio.start_server(serve, host, PORT, reuse_address=True)
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(Udp, local_addr=(host, PORT))
    try:
        yield host, log
    finally:
        transport.close()
        server.close()
        await server.wait_closed()


REGISTERED = bytes.fromhex("65000400" "78563412" "00000000") + OUR_CONTEXT + bytes.fromhex("00000000" "01000000")


async def test_get_attributes_all_refused_falls_back_to_tcp_list_identity() -> None:
    replies = {0x65: REGISTERED, 0x6F: GAA_SERVICE_NOT_SUPPORTED, 0x63: POWERFLEX_LIST_IDENTITY}
    async with scripted(replies) as (host, log):
        obs, link = await probe(host, {"udp": False})
        await asyncio.sleep(0.05)
    assert obs.status is Status.IDENTIFIED, obs.error
    assert obs.identity is not None and obs.identity.raw["source"] == "tcp:list_identity"
    assert obs.identity.product_name == "PowerFlex 753"
    assert log == [0x65, 0x6F, 0x63, 0x66, "fin"]
    assert link.packets_sent == 6 == link.budget


async def test_every_refusal_means_no_identity_and_a_clean_close() -> None:
    replies = {0x65: REGISTERED, 0x6F: GAA_SERVICE_NOT_SUPPORTED, 0x63: LIST_IDENTITY_REFUSED}
    async with scripted(replies) as (host, log):
        obs, link = await probe(host, {"udp": False})
        await asyncio.sleep(0.05)
    assert obs.status is Status.NO_IDENTITY
    assert obs.error is not None and "service not supported" in obs.error and "0x0001" in obs.error
    assert log == [0x65, 0x6F, 0x63, 0x66, "fin"]
    assert link.packets_sent == 6


async def test_list_identity_refused_over_udp_is_not_asked_again_over_tcp() -> None:
    replies = {0x65: REGISTERED, 0x6F: GAA_SERVICE_NOT_SUPPORTED, 0x63: LIST_IDENTITY_REFUSED}
    async with scripted(replies, udp_reply=LIST_IDENTITY_REFUSED) as (host, log):
        obs, link = await probe(host)
        await asyncio.sleep(0.05)
    assert obs.status is Status.NO_IDENTITY
    assert obs.error is not None and "UDP ListIdentity refused" in obs.error
    assert log == ["udp", 0x65, 0x6F, 0x66, "fin"]
    assert link.packets_sent == 6  # the datagram, connect, and the four TCP packets logged
