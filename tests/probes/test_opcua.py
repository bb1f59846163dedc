"""The OPC UA identity probe: runs against the simulated server (identity, what the device recorded, sessions, every
fault mode), the intrusive BuildInfo path, the allowlist refusing writes, and the reply parsers under Hypothesis and
the two inputs that hang asyncua's own decoders.

Every server listens on its own address in 127.0.152.1-127.0.152.250 (this file's range), on a port of its own.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import identities
import pytest
from asyncua import ua
from asyncua.ua.ua_binary import nodeid_to_binary, struct_to_binary, uatcp_to_binary
from conftest import settled
from hypothesis import given, settings
from hypothesis import strategies as st

from otprobe.contract import Operation, Timeouts
from otprobe.errors import PolicyViolation, ProbeContractError, ProtocolError
from otprobe.link import Link
from otprobe.model import Observation, Status, Target
from otprobe.probes import opcua_wire as wire
from otprobe.probes.opcua import OpcuaProbe
from simulators.faults import Fault
from simulators.opcua_sim import OpcuaDevice, parse_config, self_signed_certificate
from simulators.recorder import Recorder

PORT = 14852
TIMEOUTS = Timeouts(connect_s=0.5, response_s=0.75)
BUILD_INFO = {"intrusive": {"read_build_info": "lab test of the BuildInfo read"}}
_hosts = (f"127.0.152.{n}" for n in itertools.count(1))

S7_1500 = identities.OPCUA_S7_1500


@asynccontextmanager
async def simulated(section: dict[str, Any] | None = None, fault: Any = None
                    ) -> AsyncIterator[tuple[str, Recorder, OpcuaDevice]]:
    host = next(_hosts)
    recorder = Recorder(host)
    device = OpcuaDevice(host, parse_config({**S7_1500, "port": PORT, **(section or {})}), Fault.from_spec(fault),
                         recorder)
    await device.start()
    try:
        yield host, recorder, device
    finally:
        await device.stop()


async def probe(host: str, options: dict[str, Any] | None = None, pacer: Any = None,
                timeouts: Timeouts = TIMEOUTS) -> tuple[Observation, Link]:
    p = OpcuaProbe({"port": PORT, **(options or {})})
    enabled = frozenset(("opcua", name) for name in p.options.intrusive)
    link = Link(p, Target(host, "plc"), timeouts=timeouts, pacer=pacer, enabled_intrusive=enabled)
    return await p.run(link, Target(host, "plc")), link


def assert_clean(obs: Observation, link: Link, recorder: Recorder) -> None:
    assert link.packets_sent == recorder.packet_count() == obs.packets_sent <= link.budget
    assert recorder.violations() == []
    assert [c.close_kind for c in recorder.connections] == ["fin"]
    assert recorder.sessions_registered == recorder.sessions_unregistered


# -- against the simulated server --------------------------------------------------------------------------------

async def test_get_endpoints_identifies_the_server_without_a_session() -> None:
    async with simulated() as (host, recorder, device):
        obs, link = await probe(host)
        await settled(recorder)
        assert device.open_sessions() == 0
    assert obs.status is Status.IDENTIFIED, obs.error
    ident = obs.identity
    assert ident is not None
    assert (ident.device_type, ident.device_type_id) == ("OPC UA Server", 0)
    assert ident.product_name == "SIMATIC.S7-1500.OPC-UA.Application:PLC_1"
    assert (ident.vendor, ident.model, ident.firmware) == (None, None, None)  # BuildInfo needs the session
    raw = ident.raw
    assert raw["application_type"] == "Server"
    assert raw["application_uri"] == "urn:SIMATIC.S7-1500.OPC-UA.Application:PLC_1"
    assert raw["product_uri"] == "https://www.siemens.com/s7-1500"
    assert raw["security_modes"] == ["None", "SignAndEncrypt"]
    assert raw["security_policies"] == ["Basic256Sha256", "None"]
    assert raw["user_token_types"] == ["Anonymous", "UserName"]
    assert raw["anonymous_without_security"] is True
    cert = raw["certificate"]
    assert cert["subject"] == cert["issuer"] == "O=Siemens,CN=PLC_1/OPCUA" and cert["self_signed"]
    assert cert["signature_hash"] == "sha384"
    assert cert["not_before"] == "2023-03-01T08:00:00+00:00"
    assert cert["not_after"] == (dt.datetime(2023, 3, 1, 8, tzinfo=dt.UTC) + dt.timedelta(days=7300)).isoformat()
    assert cert["san_uris"] == [raw["application_uri"]]
    assert "build_info" not in raw and "notes" not in raw
    # at the receiver: the discovery exchange, nothing else, each frame allowed; connect + 4 frames + FIN
    assert recorder.operations() == ["opcua:HEL", "opcua:OPN", "opcua:GetEndpoints", "opcua:CLO"]
    assert recorder.requests[1].detail == {"policy": wire.POLICY_NONE}
    assert_clean(obs, link, recorder)
    assert link.packets_sent == 6 == OpcuaProbe().max_packets()
    assert recorder.sessions_registered == 0


async def test_build_info_through_an_anonymous_session_that_is_closed() -> None:
    async with simulated() as (host, recorder, device):
        obs, link = await probe(host, BUILD_INFO)
        await settled(recorder)
        still_open = device.open_sessions()
    assert obs.status is Status.IDENTIFIED, obs.error
    ident = obs.identity
    assert ident is not None
    assert (ident.vendor, ident.model, ident.product_name, ident.firmware) == (
        "Siemens AG", "SIMATIC S7-1500", "SIMATIC S7-1500", "V2.9.2")
    assert ident.firmware_version == (2, 9, 2)
    assert ident.raw["build_info"] == {
        "ProductName": "SIMATIC S7-1500", "ProductUri": "https://www.siemens.com/s7-1500",
        "ManufacturerName": "Siemens AG", "SoftwareVersion": "V2.9.2", "BuildNumber": "2.9.2.4",
        "BuildDate": "2021-06-15T00:00:00+00:00"}
    assert recorder.operations() == ["opcua:HEL", "opcua:OPN", "opcua:GetEndpoints", "opcua:CreateSession",
                                     "opcua:ActivateSession", "opcua:Read", "opcua:CloseSession", "opcua:CLO"]
    # the Read asked for the BuildInfo variables only, and the device let go of the session
    assert recorder.requests[5].detail["nodes"] == list(wire.BUILD_INFO_NODES.values())
    assert (recorder.sessions_registered, recorder.sessions_unregistered, still_open) == (1, 1, 0)
    assert_clean(obs, link, recorder)
    assert link.packets_sent == 10 == link.budget


async def test_no_session_is_asked_of_a_server_without_an_anonymous_unsecured_endpoint() -> None:
    async with simulated({"security_modes": ["Sign", "SignAndEncrypt"], "anonymous": False}) as (host, recorder, _):
        obs, link = await probe(host, BUILD_INFO)
        await settled(recorder)
    assert obs.status is Status.IDENTIFIED and obs.identity is not None
    assert obs.identity.raw["security_modes"] == ["Sign", "SignAndEncrypt"]
    assert obs.identity.raw["anonymous_without_security"] is False
    assert "no endpoint without security" in obs.identity.raw["notes"][0]
    assert recorder.operations() == ["opcua:HEL", "opcua:OPN", "opcua:GetEndpoints", "opcua:CLO"]
    assert_clean(obs, link, recorder)


async def test_a_full_session_table_keeps_the_endpoint_identity_and_closes_nothing_it_has_not() -> None:
    async with simulated({"max_sessions": 1}) as (host, recorder, device):
        first, _ = await probe(host, BUILD_INFO, timeouts=Timeouts(0.5, 0.75))
        # a client that dropped its connection without CloseSession holds the only slot
        device.sessions[b"x" * 32] = _held_session()
        obs, link = await probe(host, BUILD_INFO)
        await settled(recorder)
    assert first.status is Status.IDENTIFIED
    assert obs.status is Status.IDENTIFIED and obs.identity is not None
    assert "BadTooManySessions" in obs.identity.raw["notes"][0]
    assert "build_info" not in obs.identity.raw
    assert recorder.operations()[-3:] == ["opcua:GetEndpoints", "opcua:CreateSession", "opcua:CLO"]
    assert device.refused_sessions == 1
    assert link.packets_sent == 7 and recorder.violations() == []


def _held_session() -> Any:
    from simulators.opcua_sim import Session

    token = ua.NodeId(b"x" * 32, 0, ua.NodeIdType.ByteString)
    return Session(ua.NodeId(99, 1), token, 60.0, time.monotonic())


@pytest.mark.parametrize(
    ("fault", "options", "status"),
    [
        ("silent", {}, Status.TIMEOUT),
        ("refused", {}, Status.REFUSED),
        ("reset", {}, Status.RESET),
        ("malformed", BUILD_INFO, Status.PROTOCOL_ERROR),
        ("truncated", {}, Status.PROTOCOL_ERROR),
        ("oversized", BUILD_INFO, Status.PROTOCOL_ERROR),
        ("wrong_tid", BUILD_INFO, Status.PROTOCOL_ERROR),
        ("stream", {}, Status.PROTOCOL_ERROR),
        ("huge_length", {}, Status.PROTOCOL_ERROR),
        ("trickle", {}, Status.TIMEOUT),
        ({"mode": "slow", "latency_s": 1.5}, {}, Status.TIMEOUT),
        ({"mode": "conn_limit", "limit": 1}, {}, Status.IDENTIFIED),
    ],
    ids=["silent", "refused", "reset", "malformed", "truncated", "oversized", "wrong_tid", "stream", "huge_length",
         "trickle", "slow", "conn_limit"],
)
async def test_fault_devices_give_a_status_and_never_a_traceback(fault: Any, options: dict[str, Any],
                                                                 status: Status) -> None:
    async with simulated(None, fault) as (host, recorder, device):
        obs, link = await probe(host, options)
        await settled(recorder)
        sessions_left = device.open_sessions()
    assert obs.status is status, obs.error
    assert (obs.identity is None) == (status is not Status.IDENTIFIED)
    assert status is Status.IDENTIFIED or (obs.error and "Traceback" not in obs.error)
    assert 0 < link.packets_sent <= OpcuaProbe(options).max_packets()
    if fault not in ("refused", "reset"):  # what reaches a closed port or a reset socket is recorded by no device
        assert link.packets_sent == recorder.packet_count()
    assert recorder.violations() == []
    assert sessions_left == 0  # no session was ever left behind
    assert all(c.close_kind != "rst" for c in recorder.connections)  # the device may reset; the probe never


async def test_an_unanswered_request_is_the_last_one_sent() -> None:
    """No retry and no second request in flight: under a timeout the device saw exactly what the link announced."""
    async with simulated(None, "silent") as (host, recorder, _):
        obs, link = await probe(host, BUILD_INFO)
        await settled(recorder)
    assert obs.status is Status.TIMEOUT
    assert recorder.operations() == ["opcua:HEL"]
    assert link.packets_sent == recorder.packet_count() == 3  # connect, HEL, FIN
    assert [c.close_kind for c in recorder.connections] == ["fin"]


async def test_cancellation_mid_request_still_closes_with_fin() -> None:
    async with simulated(None, "silent") as (host, recorder, _):
        p = OpcuaProbe({"port": PORT})
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


# -- policy and budget ---------------------------------------------------------------------------------------------

def test_budget_and_options() -> None:
    assert OpcuaProbe().max_packets() == 6
    assert OpcuaProbe(BUILD_INFO).max_packets() == 10
    assert OpcuaProbe.Options is type(OpcuaProbe().options)
    with pytest.raises(ValueError, match="written reason"):
        OpcuaProbe({"intrusive": {"read_build_info": " "}})
    with pytest.raises(ValueError, match="safe operation"):
        OpcuaProbe({"intrusive": {"read": "why not"}})
    with pytest.raises(ValueError, match="session_timeout_s"):
        OpcuaProbe({"session_timeout_s": 1})


async def test_the_session_is_refused_by_the_link_unless_the_profile_enables_it() -> None:
    p = OpcuaProbe(BUILD_INFO)  # the probe's own options are not enough: the link asks the profile
    link = Link(p, Target("127.0.152.251"))
    with pytest.raises(ProbeContractError, match="not enabled"):
        async with link.op("read_build_info"):
            raise AssertionError("no session may be created")
    assert link.packets_sent == 0


class EvilOpcuaProbe(OpcuaProbe):
    operations = (
        *OpcuaProbe.operations,
        Operation("write", "ua:Write", description="Write service"),
        Operation("call", "ua:Call", description="Call service (methods)"),
        Operation("find_servers", "ua:FindServers", description="FindServers"),
    )


@pytest.mark.parametrize("op", ["write", "call", "find_servers"])
async def test_write_call_and_find_servers_are_refused_before_any_socket(op: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[Any] = []
    monkeypatch.setattr(socket.socket, "connect", lambda *a: created.append(a))
    link = Link(EvilOpcuaProbe(), Target("127.0.152.252"))
    with pytest.raises(PolicyViolation, match=f"ua:{op.title().replace('_', '')}"):
        async with link.op(op):
            raise AssertionError("the send must not run")
    assert link.packets_sent == 0 and created == []


def test_the_only_read_the_probe_can_build_is_of_build_info() -> None:
    channel = wire.SecureChannel("opc.tcp://127.0.152.1:4840", 750, channel_id=7, token_id=1)
    frame = channel.read_build_info()
    from simulators.opcua_sim import classify

    operation, allowed, detail = classify(frame)
    assert (operation, allowed) == ("opcua:Read", True)
    assert detail["nodes"] == [2261, 2262, 2263, 2264, 2265, 2266]
    assert not [name for name in dir(wire.SecureChannel) if name in ("call", "write", "browse", "find_servers")]


# -- reply parsers ---------------------------------------------------------------------------------------------------

CHANNEL, TOKEN = 41, 3


def _channel(request_id: int) -> wire.SecureChannel:
    return wire.SecureChannel("opc.tcp://127.0.152.1:4840", 750, channel_id=CHANNEL, token_id=TOKEN,
                              request_id=request_id)


def _msg(response: Any, request_id: int, body: bytes | None = None) -> bytes:
    payload = struct.pack("<III", CHANNEL, TOKEN, 9) + struct.pack("<I", request_id)
    payload += struct_to_binary(response) if body is None else body
    return b"MSGF" + struct.pack("<I", 8 + len(payload)) + payload


def _header(request_id: int) -> ua.ResponseHeader:
    return ua.ResponseHeader(RequestHandle=request_id, ServiceResult=ua.StatusCode(0))


def _endpoints_reply() -> bytes:
    config = parse_config({**S7_1500, "port": PORT})
    device = OpcuaDevice("127.0.152.1", config, Fault(), Recorder("x"))
    device.certificate = self_signed_certificate(config.certificate, config.application_uri)
    response = ua.GetEndpointsResponse()
    response.ResponseHeader = _header(3)
    response.Endpoints = device.endpoints()[:1]
    return _msg(response, 3)


def _read_reply() -> bytes:
    response = ua.ReadResponse()
    response.ResponseHeader = _header(6)
    response.Results = [ua.DataValue(ua.Variant("Siemens AG", ua.VariantType.String)) for _ in range(5)] + [
        ua.DataValue(ua.Variant(dt.datetime(2021, 6, 15, tzinfo=dt.UTC), ua.VariantType.DateTime))]
    return _msg(response, 6)


def _open_reply() -> bytes:
    response = ua.OpenSecureChannelResponse()
    response.ResponseHeader = _header(1)
    response.Parameters = ua.OpenSecureChannelResult(SecurityToken=ua.ChannelSecurityToken(ChannelId=CHANNEL,
                                                                                           TokenId=TOKEN))
    payload = (struct.pack("<I", CHANNEL) + struct_to_binary(ua.AsymmetricAlgorithmHeader(
        SecurityPolicyURI=wire.POLICY_NONE)) + struct.pack("<II", 1, 1) + struct_to_binary(response))
    return b"OPNF" + struct.pack("<I", 8 + len(payload)) + payload


ACK = uatcp_to_binary(ua.MessageType.Acknowledge, ua.Acknowledge(ReceiveBufferSize=8192, SendBufferSize=8192))
ENDPOINTS = _endpoints_reply()
READ = _read_reply()
OPN = _open_reply()
PARSERS: dict[bytes, Callable[[bytes], Any]] = {
    ACK: wire.parse_acknowledge,
    OPN: lambda frame: wire.parse_open(frame, wire.SecureChannel("u", 1, request_id=1)),
    ENDPOINTS: lambda frame: wire.parse_endpoints(frame, _channel(3)),
    READ: lambda frame: wire.parse_read(frame, _channel(6)),
}


def test_golden_replies_parse() -> None:
    assert wire.parse_acknowledge(ACK).SendBufferSize == 8192
    channel = wire.SecureChannel("u", 1, request_id=1)
    wire.parse_open(OPN, channel)
    assert (channel.channel_id, channel.token_id) == (CHANNEL, TOKEN)
    assert wire.parse_endpoints(ENDPOINTS, _channel(3))[0].Server.ProductUri == "https://www.siemens.com/s7-1500"
    info = wire.parse_read(READ, _channel(6))
    assert info["ManufacturerName"] == "Siemens AG" and info["BuildDate"] == "2021-06-15T00:00:00+00:00"
    with pytest.raises(ProtocolError, match="not to 4"):
        wire.parse_endpoints(ENDPOINTS, _channel(4))  # someone else's reply


def test_a_service_fault_is_a_refusal_with_its_status() -> None:
    fault = ua.ServiceFault()
    fault.ResponseHeader = ua.ResponseHeader(RequestHandle=3, ServiceResult=ua.StatusCode(0x80560000))
    with pytest.raises(wire.DeviceRefusal, match="BadTooManySessions") as refused:
        wire.parse_endpoints(_msg(fault, 3), _channel(3))
    assert refused.value.status == 0x80560000


def test_a_reply_larger_than_the_hel_allowed_is_refused_by_its_header() -> None:
    with pytest.raises(ProtocolError, match="65536 bytes"):
        wire.parse_header(b"MSGF" + struct.pack("<I", 65_536))
    with pytest.raises(ProtocolError, match="one final chunk"):
        wire.parse_header(b"MSGC" + struct.pack("<I", 100))


def _quick(parse: Callable[[], Any]) -> None:
    started = time.monotonic()
    with pytest.raises(ProtocolError):
        parse()
    assert time.monotonic() - started < 1.0


def test_a_null_array_of_two_billion_elements_is_refused_not_decoded() -> None:
    """asyncua's variant decoder loops 2**31 times over zero-byte elements here; the probe's reads it as refused."""
    body = nodeid_to_binary(ua.NodeId(wire.READ_RESPONSE)) + struct_to_binary(_header(6))
    body += struct.pack("<i", 6) + bytes([0x01, 0x80]) + struct.pack("<i", 2**31 - 1)
    _quick(lambda: wire.parse_read(_msg(None, 6, body), _channel(6)))


def test_a_list_of_strings_of_length_minus_4_is_refused_not_read_backwards() -> None:
    """asyncua's Buffer moves backwards on a negative length: the same string would be read 2**31 times."""
    null = struct.pack("<i", -1)
    # EndpointUrl, then the ApplicationDescription: ApplicationUri, ProductUri, ApplicationName (no text),
    # ApplicationType Server, GatewayServerUri, DiscoveryProfileUri, and DiscoveryUrls: 2**31 - 1 strings of length -4
    endpoint = struct.pack("<i", 4) + b"opc." + null * 2 + b"\x00" + struct.pack("<i", 0) + null * 2
    endpoint += struct.pack("<i", 2**31 - 1) + struct.pack("<i", -4)
    body = nodeid_to_binary(ua.NodeId(wire.GET_ENDPOINTS_RESPONSE)) + struct_to_binary(_header(3))
    _quick(lambda: wire.parse_endpoints(_msg(None, 3, body + struct.pack("<i", 1) + endpoint), _channel(3)))
    # a count that fits what is left does not help either: the first negative length is refused
    endpoint = endpoint[:-8] + struct.pack("<i", 2) + struct.pack("<i", -4) * 2
    _quick(lambda: wire.parse_endpoints(_msg(None, 3, body + struct.pack("<i", 1) + endpoint), _channel(3)))


def _hostile(golden: bytes) -> st.SearchStrategy[bytes]:
    cut = st.integers(0, len(golden)).map(lambda n: golden[:n])
    tail = st.binary(min_size=1, max_size=40).map(lambda extra: golden + extra)
    flip = st.tuples(st.integers(0, len(golden) - 1), st.integers(0, 255)).map(
        lambda p: golden[: p[0]] + bytes([p[1]]) + golden[p[0] + 1:])
    return st.one_of(st.binary(max_size=300), cut, tail, flip, flip.flatmap(lambda g: st.just(g[:-3])))


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(list(PARSERS)).flatmap(lambda golden: st.tuples(st.just(golden), _hostile(golden))))
def test_reply_parsers_raise_only_protocol_error(case: tuple[bytes, bytes]) -> None:
    golden, data = case
    with suppress(ProtocolError):
        PARSERS[golden](data)


@settings(max_examples=1000, deadline=None)
@given(st.binary(min_size=8, max_size=8))
def test_header_parser_raises_only_protocol_error(header: bytes) -> None:
    with suppress(ProtocolError):
        kind, size = wire.parse_header(header)
        assert kind in wire.REPLY_TYPES and wire.HEADER_LEN <= size <= wire.BUFFER_SIZE


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.integers(0, 880).map(
    lambda n: self_signed_certificate(parse_config({**S7_1500}).certificate, "urn:x")[:n])))
def test_certificate_parser_raises_only_protocol_error(data: bytes) -> None:
    with suppress(ProtocolError):
        wire.certificate_info(data)
