"""The simulated OPC UA server, read back with a raw client built on asyncua's binary codec (no otprobe, no asyncua
Client): discovery, the anonymous session path, identity and certificate, the allowlist at the receiver, session
counting and the fault modes."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import identities
import pytest
from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import nodeid_from_binary, struct_from_binary, struct_to_binary
from conftest import settled
from cryptography import x509
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from simulators.faults import Fault, FaultMode
from simulators.opcua_sim import (
    IDENTITY_NODES,
    MALFORMED,
    POLICY_NONE,
    POLICY_SECURE,
    OpcuaDevice,
    classify,
    decode,
    parse_config,
)
from simulators.plant import PlantError, load_plant
from simulators.recorder import Recorder

PORT = 14840
_hosts = (f"127.0.142.{n}" for n in itertools.count(100))
S7_1500 = identities.OPCUA_S7_1500
BUILD_INFO = ua.ObjectIds.Server_ServerStatus_BuildInfo
PRODUCT_NAME = ua.ObjectIds.Server_ServerStatus_BuildInfo_ProductName
_hello = struct_to_binary(ua.Hello(ReceiveBufferSize=65535, SendBufferSize=65535))
HELLO = b"HELF" + struct.pack("<I", 8 + len(_hello)) + _hello


@asynccontextmanager
async def server(section: dict[str, Any] | None = None, fault: Fault | None = None
                 ) -> AsyncIterator[tuple[OpcuaDevice, Recorder]]:
    recorder = Recorder("opcua")
    device = OpcuaDevice(next(_hosts), parse_config({**S7_1500, "port": PORT, **(section or {})}),
                         fault or Fault(), recorder)
    await device.start()
    try:
        yield device, recorder
    finally:
        await device.stop()


class RawClient:
    """One opc.tcp connection driven frame by frame, as the reference get_endpoints exchange does."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, url: str) -> None:
        self.reader, self.writer, self.url = reader, writer, url
        self.channel, self.token, self.sequence = 0, 0, 0
        self.auth = ua.NodeId()

    @classmethod
    async def connect(cls, device: OpcuaDevice) -> RawClient:
        reader, writer = await asyncio.open_connection(device.host, device.port)
        return cls(reader, writer, device.endpoint_url)

    async def read_message(self) -> tuple[bytes, Buffer]:
        kind, _, size = struct.unpack("<3scI", await asyncio.wait_for(self.reader.readexactly(8), 2))
        body = Buffer(await asyncio.wait_for(self.reader.readexactly(size - 8), 2))
        if kind in (b"OPN", b"MSG", b"CLO"):
            body.skip(4)
        return kind, body

    def _chunk(self, kind: bytes, security: bytes, body: bytes) -> bytes:
        self.sequence += 1
        payload = security + struct.pack("<II", self.sequence, self.sequence) + body
        return kind + b"F" + struct.pack("<II", 12 + len(payload), self.channel) + payload

    async def hello(self) -> ua.Acknowledge:
        h = struct_to_binary(ua.Hello(ReceiveBufferSize=65535, SendBufferSize=65535, EndpointUrl=self.url))
        self.writer.write(b"HELF" + struct.pack("<I", 8 + len(h)) + h)
        kind, body = await self.read_message()
        assert kind == b"ACK", struct_from_binary(ua.ErrorMessage, body)
        return struct_from_binary(ua.Acknowledge, body)

    async def open(self, policy: str = POLICY_NONE) -> tuple[bytes, Buffer]:
        params = ua.OpenSecureChannelParameters(RequestType=ua.SecurityTokenRequestType.Issue,
                                                SecurityMode=ua.MessageSecurityMode.None_, ClientNonce=b"",
                                                RequestedLifetime=60000)
        self.writer.write(self._chunk(b"OPN", struct_to_binary(ua.AsymmetricAlgorithmHeader(SecurityPolicyURI=policy)),
                                      struct_to_binary(ua.OpenSecureChannelRequest(Parameters=params))))
        kind, body = await self.read_message()
        if kind == b"OPN":
            struct_from_binary(ua.AsymmetricAlgorithmHeader, body)
            struct_from_binary(ua.SequenceHeader, body)
            token = struct_from_binary(ua.OpenSecureChannelResponse, body.copy()).Parameters.SecurityToken
            self.channel, self.token = token.ChannelId, token.TokenId
        return kind, body

    def send(self, request: Any) -> None:
        request.RequestHeader.AuthenticationToken = self.auth
        request.RequestHeader.RequestHandle = self.sequence + 1
        self.writer.write(self._chunk(b"MSG", struct.pack("<I", self.token), struct_to_binary(request)))

    async def call(self, request: Any, response_type: type) -> Any:
        """Send a service request; its response, or the ServiceFault the server gave instead."""
        self.send(request)
        kind, body = await self.read_message()
        assert kind == b"MSG", (kind, struct_from_binary(ua.ErrorMessage, body) if kind == b"ERR" else None)
        body.skip(4)
        sequence = struct_from_binary(ua.SequenceHeader, body)
        assert sequence.RequestId == self.sequence
        if nodeid_from_binary(body.copy()).Identifier == ua.ObjectIds.ServiceFault_Encoding_DefaultBinary:
            return struct_from_binary(ua.ServiceFault, body)
        return struct_from_binary(response_type, body)

    async def session(self) -> None:
        """CreateSession then ActivateSession with the server's anonymous policy."""
        create = ua.CreateSessionRequest()
        create.Parameters.EndpointUrl, create.Parameters.SessionName = self.url, "raw"
        create.Parameters.ClientNonce, create.Parameters.RequestedSessionTimeout = bytes(32), 30_000
        created = await self.call(create, ua.CreateSessionResponse)
        assert isinstance(created, ua.CreateSessionResponse), created
        self.auth = created.Parameters.AuthenticationToken
        policy = next(t.PolicyId for e in created.Parameters.ServerEndpoints for t in e.UserIdentityTokens
                      if t.TokenType == ua.UserTokenType.Anonymous)
        activate = ua.ActivateSessionRequest()
        activate.Parameters.UserIdentityToken = ua.AnonymousIdentityToken(PolicyId=policy)
        activated = await self.call(activate, ua.ActivateSessionResponse)
        assert isinstance(activated, ua.ActivateSessionResponse), activated

    async def read(self, *nodes: int, attribute: int = ua.AttributeIds.Value) -> Any:
        request = ua.ReadRequest()
        request.Parameters.NodesToRead = [ua.ReadValueId(NodeId=ua.NodeId(n), AttributeId=attribute) for n in nodes]
        return await self.call(request, ua.ReadResponse)

    async def close_session(self) -> Any:
        return await self.call(ua.CloseSessionRequest(DeleteSubscriptions=True), ua.CloseSessionResponse)

    async def close(self) -> None:
        """CLO, then FIN."""
        self.writer.write(self._chunk(b"CLO", struct.pack("<I", self.token),
                                      struct_to_binary(ua.CloseSecureChannelRequest())))
        await self.finish()

    async def finish(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def channel(device: OpcuaDevice) -> RawClient:
    client = await RawClient.connect(device)
    await client.hello()
    kind, _ = await client.open()
    assert kind == b"OPN"
    return client


def fault_code(response: Any) -> int:
    assert isinstance(response, ua.ServiceFault), response
    return response.ResponseHeader.ServiceResult.value


# -- discovery -------------------------------------------------------------------------------------------------------


async def test_get_endpoints_gives_identity_security_modes_and_certificate() -> None:
    async with server() as (device, recorder):
        client = await channel(device)
        request = ua.GetEndpointsRequest()
        request.Parameters.EndpointUrl = client.url
        endpoints = (await client.call(request, ua.GetEndpointsResponse)).Endpoints
        await client.close()
        await settled(recorder)
    assert [(e.SecurityMode, e.SecurityPolicyUri) for e in endpoints] == [
        (ua.MessageSecurityMode.None_, POLICY_NONE), (ua.MessageSecurityMode.SignAndEncrypt, POLICY_SECURE)]
    app = endpoints[0].Server
    assert app.ApplicationUri == "urn:SIMATIC.S7-1500.OPC-UA.Application:PLC_1"
    assert app.ProductUri == "https://www.siemens.com/s7-1500"
    assert app.ApplicationName.Text == "SIMATIC.S7-1500.OPC-UA.Application:PLC_1"
    assert [t.TokenType for t in endpoints[0].UserIdentityTokens] == [ua.UserTokenType.Anonymous,
                                                                      ua.UserTokenType.UserName]
    cert = x509.load_der_x509_certificate(endpoints[0].ServerCertificate)
    assert cert.subject == cert.issuer  # self-signed
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "PLC_1/OPCUA"
    assert cert.signature_hash_algorithm is not None and cert.signature_hash_algorithm.name == "sha384"
    assert cert.not_valid_before_utc == dt.datetime(2023, 3, 1, 8, tzinfo=dt.UTC)
    assert cert.not_valid_after_utc == dt.datetime(2023, 3, 1, 8, tzinfo=dt.UTC) + dt.timedelta(days=7300)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [app.ApplicationUri]
    # at the receiver: exactly the discovery exchange, each frame allowed, and the client's FIN
    assert recorder.operations() == ["opcua:HEL", "opcua:OPN", "opcua:GetEndpoints", "opcua:CLO"]
    assert recorder.violations() == []
    assert recorder.requests[1].detail == {"policy": POLICY_NONE}
    assert [c.close_kind for c in recorder.connections] == ["fin"]
    assert recorder.packet_count() == 6  # connect, 4 frames, FIN


async def test_opn_with_a_security_policy_is_refused_with_err_then_fin() -> None:
    async with server() as (device, recorder):
        client = await RawClient.connect(device)
        await client.hello()
        kind, body = await client.open(POLICY_SECURE)
        error = struct_from_binary(ua.ErrorMessage, body)
        eof = await client.reader.read()
        await client.finish()
        await settled(recorder)
    assert kind == b"ERR" and error.Error.value == ua.StatusCodes.BadSecurityPolicyRejected
    assert eof == b""  # the server closed after its ERR
    assert [c.close_kind for c in recorder.connections] == ["server"]


# -- the session path -----------------------------------------------------------------------------------------------


async def test_session_reads_build_info_and_server_status_and_is_counted() -> None:
    async with server() as (device, recorder):
        client = await channel(device)
        await client.session()
        assert device.open_sessions() == 1
        children = await client.read(*sorted(IDENTITY_NODES - {ua.ObjectIds.Server_ServerStatus, BUILD_INFO}))
        whole = await client.read(BUILD_INFO, ua.ObjectIds.Server_ServerStatus)
        closed = await client.close_session()
        await client.close()
        await settled(recorder)
    values = {r.Value.Value for r in children.Results}
    assert values == {"SIMATIC S7-1500", "https://www.siemens.com/s7-1500", "Siemens AG", "V2.9.2", "2.9.2.4",
                      dt.datetime(2021, 6, 15, tzinfo=dt.UTC)}
    build_info, status = (r.Value.Value for r in whole.Results)
    assert (build_info.ManufacturerName, build_info.ProductName, build_info.SoftwareVersion) == (
        "Siemens AG", "SIMATIC S7-1500", "V2.9.2")
    assert status.State == ua.ServerState.Running and status.BuildInfo == build_info
    assert isinstance(closed, ua.CloseSessionResponse)
    assert (recorder.sessions_registered, recorder.sessions_unregistered, device.open_sessions()) == (1, 1, 0)
    assert recorder.operations() == ["opcua:HEL", "opcua:OPN", "opcua:CreateSession", "opcua:ActivateSession",
                                     "opcua:Read", "opcua:Read", "opcua:CloseSession", "opcua:CLO"]
    assert recorder.violations() == []


async def test_read_before_activation_is_refused() -> None:
    async with server() as (device, _):
        client = await channel(device)
        create = ua.CreateSessionRequest()
        create.Parameters.RequestedSessionTimeout = 30_000
        client.auth = (await client.call(create, ua.CreateSessionResponse)).Parameters.AuthenticationToken
        refused = await client.read(PRODUCT_NAME)
        await client.close()
    assert fault_code(refused) == ua.StatusCodes.BadSessionNotActivated


@pytest.mark.parametrize("request_type", ["write", "call", "browse", "find_servers", "read_other_node"])
async def test_forbidden_requests_are_violations_answered_with_a_fault_and_never_applied(request_type: str) -> None:
    write = ua.WriteRequest()
    write.Parameters.NodesToWrite = [ua.WriteValue(NodeId=ua.NodeId(PRODUCT_NAME), AttributeId=ua.AttributeIds.Value,
                                                   Value=ua.DataValue(ua.Variant("HACKED", ua.VariantType.String)))]
    call = ua.CallRequest()
    call.Parameters.MethodsToCall = [ua.CallMethodRequest(ObjectId=ua.NodeId(ua.ObjectIds.Server),
                                                          MethodId=ua.NodeId(ua.ObjectIds.Server_RequestServerStateChange))]
    browse = ua.BrowseRequest()
    browse.Parameters.NodesToBrowse = [ua.BrowseDescription(NodeId=ua.NodeId(ua.ObjectIds.ObjectsFolder))]
    read_other = ua.ReadRequest()
    read_other.Parameters.NodesToRead = [ua.ReadValueId(NodeId=ua.NodeId(ua.ObjectIds.Server_ServerStatus_State),
                                                        AttributeId=ua.AttributeIds.Value)]
    requests = {"write": (write, "opcua:Write", ua.StatusCodes.BadServiceUnsupported),
                "call": (call, "opcua:Call", ua.StatusCodes.BadServiceUnsupported),
                "browse": (browse, "opcua:Browse", ua.StatusCodes.BadServiceUnsupported),
                "find_servers": (ua.FindServersRequest(), "opcua:FindServers", ua.StatusCodes.BadServiceUnsupported),
                "read_other_node": (read_other, "opcua:Read", ua.StatusCodes.BadUserAccessDenied)}
    request, operation, code = requests[request_type]
    async with server() as (device, recorder):
        client = await channel(device)
        await client.session()
        refused = await client.call(request, ua.ResponseHeader)
        after = await client.read(PRODUCT_NAME)
        await client.close_session()
        await client.close()
        await settled(recorder)
    assert fault_code(refused) == code
    assert after.Results[0].Value.Value == "SIMATIC S7-1500"  # nothing was applied
    assert [(v.operation, v.allowed) for v in recorder.violations()] == [(operation, False)]
    if request_type == "read_other_node":
        assert recorder.violations()[0].detail["nodes"] == [ua.ObjectIds.Server_ServerStatus_State]


async def test_a_request_type_the_codec_does_not_know_is_a_violation() -> None:
    async with server() as (device, recorder):
        client = await channel(device)
        client.sequence += 1
        body = b"\x01\x00" + struct.pack("<H", 60_000) + struct_to_binary(ua.RequestHeader())
        client.writer.write(b"MSGF" + struct.pack("<II", 12 + 12 + len(body), client.channel)
                            + struct.pack("<III", client.token, client.sequence, client.sequence) + body)
        kind, reply = await client.read_message()
        reply.skip(4)
        struct_from_binary(ua.SequenceHeader, reply)
        fault = struct_from_binary(ua.ServiceFault, reply)
        await client.close()
        await settled(recorder)
    assert kind == b"MSG" and fault_code(fault) == ua.StatusCodes.BadServiceUnsupported
    assert [v.operation for v in recorder.violations()] == ["opcua:i=60000"]


async def test_session_limit_and_sessions_left_open_by_dropped_connections() -> None:
    async with server({"max_sessions": 2}) as (device, recorder):
        dropped = []
        for _ in range(2):  # two clients that drop the connection without CloseSession
            client = await channel(device)
            await client.session()
            dropped.append(client)
            await client.finish()
        late = await channel(device)
        create = ua.CreateSessionRequest()
        create.Parameters.RequestedSessionTimeout = 30_000
        refused = await late.call(create, ua.CreateSessionResponse)
        await late.close()
        await settled(recorder)
        still_open = device.open_sessions()
    assert fault_code(refused) == ua.StatusCodes.BadTooManySessions
    assert (recorder.sessions_registered, recorder.sessions_unregistered, still_open) == (2, 0, 2)
    assert device.refused_sessions == 1


async def test_sessions_time_out_and_free_their_slot() -> None:
    async with server({"max_sessions": 1, "max_session_timeout_s": 1}) as (device, recorder):
        client = await channel(device)
        await client.session()
        await client.finish()
        assert device.open_sessions() == 1
        await asyncio.sleep(1.2)
        assert device.open_sessions() == 0
        again = await channel(device)
        await again.session()
        await again.close_session()
        await again.close()
        await settled(recorder)
    assert (recorder.sessions_registered, recorder.sessions_unregistered) == (2, 1)


async def test_secure_only_server_gives_endpoints_but_no_session() -> None:
    async with server({"security_modes": ["Sign", "SignAndEncrypt"], "anonymous": False}) as (device, recorder):
        client = await channel(device)
        request = ua.GetEndpointsRequest()
        endpoints = (await client.call(request, ua.GetEndpointsResponse)).Endpoints
        refused = await client.call(ua.CreateSessionRequest(), ua.CreateSessionResponse)
        await client.close()
    assert {e.SecurityPolicyUri for e in endpoints} == {POLICY_SECURE}
    assert all(t.TokenType != ua.UserTokenType.Anonymous for e in endpoints for t in e.UserIdentityTokens)
    assert fault_code(refused) == ua.StatusCodes.BadSecurityModeRejected
    assert recorder.sessions_registered == 0


# -- fault modes ---------------------------------------------------------------------------------------------------


async def test_silent_server_records_but_never_answers() -> None:
    async with server(fault=Fault(FaultMode.SILENT)) as (device, recorder):
        client = await RawClient.connect(device)
        with pytest.raises(TimeoutError):
            await client.hello()
        await client.finish()
        await settled(recorder)
    assert recorder.operations() == ["opcua:HEL"]


async def test_slow_server_answers_after_its_latency() -> None:
    async with server(fault=Fault(FaultMode.SLOW, latency_s=0.3)) as (device, _):
        client = await RawClient.connect(device)
        started = asyncio.get_running_loop().time()
        await client.hello()
        elapsed = asyncio.get_running_loop().time() - started
        await client.finish()
    assert 0.3 <= elapsed < 1.5


@pytest.mark.parametrize("mode", [FaultMode.MALFORMED, FaultMode.WRONG_ID, FaultMode.OVERSIZED, FaultMode.TRUNCATED])
async def test_reply_faults_change_the_opn_reply(mode: FaultMode) -> None:
    async with server(fault=Fault(mode)) as (device, _):
        client = await RawClient.connect(device)
        client.writer.write(HELLO)
        first = await asyncio.wait_for(client.reader.read(1 << 20), 2)
        await client.finish()
    good = struct_to_binary(ua.Acknowledge(ReceiveBufferSize=65535, SendBufferSize=65535, MaxChunkCount=1))
    if mode is FaultMode.TRUNCATED:
        assert len(first) < 8 + len(good)
    elif mode is FaultMode.OVERSIZED:
        assert struct.unpack_from("<I", first, 4)[0] > 60_000
    elif mode is FaultMode.MALFORMED:
        assert first[:4] == b"ACKF" and first[8:] == b"\xff" * len(good)
    else:  # an ACK has no request id: the reply stands
        assert first == b"ACKF" + struct.pack("<I", 8 + len(good)) + good


async def test_wrong_id_fault_gives_another_request_id() -> None:
    async with server(fault=Fault(FaultMode.WRONG_ID)) as (device, _):
        client = await RawClient.connect(device)
        await client.hello()
        await client.open()
        request = ua.GetEndpointsRequest()
        client.send(request)
        kind, body = await client.read_message()
        body.skip(4)
        sequence = struct_from_binary(ua.SequenceHeader, body)
        await client.finish()
    assert kind == b"MSG" and sequence.RequestId != client.sequence


async def test_huge_length_reply_claims_65535_bytes() -> None:
    async with server(fault=Fault(FaultMode.HUGE_LENGTH)) as (device, _):
        client = await RawClient.connect(device)
        client.writer.write(HELLO)
        header = await asyncio.wait_for(client.reader.readexactly(8), 2)
        rest = await asyncio.wait_for(client.reader.readexactly(0xFFFF - 8), 5)
        await client.finish()
    assert header[:4] == b"ACKF" and struct.unpack_from("<I", header, 4)[0] == 0xFFFF and len(rest) == 0xFFFF - 8


@pytest.mark.parametrize("mode", [FaultMode.RESET, FaultMode.REFUSED])
async def test_reset_and_refused(mode: FaultMode) -> None:
    async with server(fault=Fault(mode)) as (device, _):
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            client = await RawClient.connect(device)
            await client.hello()


async def test_conn_limit_refuses_the_connection_beyond_it() -> None:
    async with server(fault=Fault(FaultMode.CONN_LIMIT, limit=1)) as (device, recorder):
        first = await channel(device)
        second = await RawClient.connect(device)
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await second.hello()
        await first.close()
        await settled(recorder)
    assert [c.close_kind for c in recorder.connections] == ["fin", "server"]


async def test_bad_frames_get_err_or_rst() -> None:
    async with server() as (device, recorder):
        # a MSG before HEL: ERR, then FIN from the server
        client = await RawClient.connect(device)
        client.writer.write(b"MSGF" + struct.pack("<II", 12, 0))
        kind, body = await client.read_message()
        assert kind == b"ERR"
        assert struct_from_binary(ua.ErrorMessage, body).Error.value == ua.StatusCodes.BadTcpMessageTypeInvalid
        await client.finish()
        # not an OPC UA header at all (an HTTP request): RST
        other = await RawClient.connect(device)
        other.writer.write(b"GET / HTTP/1.0\r\n\r\n")
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await other.read_message()
        other.writer.close()  # already reset by the server: nothing left to close cleanly
        await settled(recorder)
    assert [(r.protocol, r.operation) for r in recorder.requests] == [("opcua", "opcua:MSG"), ("opcua", "bad-frame")]
    assert [c.close_kind for c in recorder.connections] == ["server", "server"]
    assert all(not r.allowed for r in recorder.requests)


# -- configuration and plant -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "message"), [
    ({"port": 0}, "opcua.port"),
    ({"security_modes": ["Encrypt"]}, "opcua.security_modes"),
    ({"anonymous": "yes"}, "opcua.anonymous"),
    ({"max_sessions": 0}, "opcua.max_sessions"),
    ({"build_date": "yesterday"}, "opcua.build_date"),
    ({"certificate": {"hash": "md5"}}, "opcua.certificate.hash"),
    ({"certificate": {"subject": "x"}}, "opcua.certificate.subject"),
    ({"application_uri": ""}, "opcua.application_uri"),
    ({"colour": "red"}, "opcua.colour"),
])
def test_config_errors_name_the_key(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        parse_config({**S7_1500, **change})


def test_plant_errors_name_file_and_key() -> None:
    device = {"name": "ua", "address": "127.0.142.90", "class": "plc", "opcua": {**S7_1500, "max_sessions": -1}}
    with pytest.raises(PlantError, match=r"^<plant p>: devices\[0\]\.opcua\.max_sessions: "):
        load_plant({"plant": "p", "devices": [device]})


def test_demo_plant_has_an_opcua_server_on_its_own_address() -> None:
    spec = load_plant("simulators/plants/demo.yaml")
    servers = [d for d in spec.devices if "opcua" in d.protocols]
    assert len(servers) == 1
    addresses = [d.address for d in spec.devices]
    assert addresses.count(servers[0].address) == 1
    assert servers[0].protocols["opcua"].application_uri.startswith("urn:SIMATIC.S7-1500.OPC-UA.Application:")


_OPN = (b"OPNF" + struct.pack("<II", 0, 0)
        + struct_to_binary(ua.AsymmetricAlgorithmHeader(SecurityPolicyURI=POLICY_NONE))
        + struct.pack("<II", 1, 1) + struct_to_binary(ua.OpenSecureChannelRequest()))
_READ = (b"MSGF" + struct.pack("<II", 0, 1) + struct.pack("<III", 1, 2, 2)
         + struct_to_binary(ua.ReadRequest(Parameters=ua.ReadParameters(NodesToRead=[ua.ReadValueId()]))))


@settings(max_examples=1000, deadline=None)
@given(st.one_of(
    st.binary(max_size=200),
    st.builds(lambda seed, n, extra: seed[:n] + extra, st.sampled_from([HELLO, _OPN, _READ]), st.integers(0, 200),
              st.binary(max_size=50)),
    st.builds(lambda seed, i, b: seed[: i % len(seed)] + bytes([b]) + seed[i % len(seed) + 1 :],
              st.sampled_from([HELLO, _OPN, _READ]), st.integers(0, 1000), st.integers(0, 255)),
))
def test_fuzz_decoder_and_classifier_raise_only_malformed(data: bytes) -> None:
    with contextlib.suppress(*MALFORMED):
        decode(data)
    operation, _allowed, _ = classify(data)  # never raises: an undecodable frame is a recorded violation
    assert operation.startswith("opcua:")
