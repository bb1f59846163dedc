"""The simulated OPC UA server: discovery, an anonymous session and the server's identity nodes, over opc.tcp.

It owns the `opcua:` plant section (parse_config), the classification of each request against the read-only
allowlist, the session table (a scarce resource on real servers: each session holds a connection resource until it
is closed or times out, and small controllers allow only a handful) and the replies, including the ServiceFaults and
ERR messages a real server gives. Frames are encoded and decoded with asyncua's binary codec only; asyncua's Client
and Server are not used (the Client reads server state every second on its own, the Server cannot report to the
recorder).

Supported, as on the allowlist: HEL (answered with ACK), OPN with SecurityPolicy None, GetEndpoints,
CreateSession, ActivateSession with an anonymous identity, Read of the ServerStatus (i=2256) and BuildInfo
(i=2260..2266) nodes, CloseSession, CLO. Anything else (Write, Call, Browse, FindServers, a Read of another node) is
recorded as a violation and answered with a ServiceFault (BadServiceUnsupported, or BadUserAccessDenied for a
Read) without being applied. An undecodable message or a broken handshake gets an ERR message, then FIN.

A session lives in the server, not in the connection: a client that drops its connection without CloseSession leaves
the session open until its timeout, and shows in the recorder as sessions_registered > sessions_unregistered.
Beyond `max_sessions` open sessions, CreateSession gets BadTooManySessions. After CLO the channel is closed and the
server waits for the client's FIN (rather than closing first), so what the device records does not depend on which
side's close arrives first.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import secrets
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import nodeid_from_binary, struct_from_binary, struct_to_binary, uatcp_to_binary
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from simulators.faults import Fault
from simulators.front import HUGE_LENGTH, ConnState, Framing, TcpFront
from simulators.recorder import Recorder
from simulators.sections import known_keys

PROTOCOL = "opcua"
DEFAULT_PORT = 4840
HEADER_LEN = 8  # message type (3), chunk type (1), message size u32 LE
REQUEST_TYPES = (b"HEL", b"OPN", b"MSG", b"CLO")
POLICY_NONE = "http://opcfoundation.org/UA/SecurityPolicy#None"
POLICY_SECURE = "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256"  # what secured endpoints offer
TRANSPORT_PROFILE = "http://opcfoundation.org/UA-Profile/Transport/uatcp-uasc-uabinary"
BUFFER_SIZE = 65_535  # what the ACK grants: below the front's largest frame
OVERSIZE = 60_000
MODES = {"None": ua.MessageSecurityMode.None_, "Sign": ua.MessageSecurityMode.Sign,
         "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt}

_ids = ua.ObjectIds
BUILD_INFO_FIELDS = {  # child node of BuildInfo -> its field in the BuildInfo structure
    _ids.Server_ServerStatus_BuildInfo_ProductName: "ProductName",
    _ids.Server_ServerStatus_BuildInfo_ProductUri: "ProductUri",
    _ids.Server_ServerStatus_BuildInfo_ManufacturerName: "ManufacturerName",
    _ids.Server_ServerStatus_BuildInfo_SoftwareVersion: "SoftwareVersion",
    _ids.Server_ServerStatus_BuildInfo_BuildNumber: "BuildNumber",
    _ids.Server_ServerStatus_BuildInfo_BuildDate: "BuildDate",
}
IDENTITY_NODES = frozenset({_ids.Server_ServerStatus, _ids.Server_ServerStatus_BuildInfo, *BUILD_INFO_FIELDS})
ALLOWED_SERVICES = frozenset({"GetEndpoints", "CreateSession", "ActivateSession", "Read", "CloseSession"})

# Decoding hostile bytes: asyncua's field decoders raise whatever the failing field's parser raises.
MALFORMED = (ua.UaError, struct.error, ValueError, IndexError, KeyError, TypeError, UnicodeDecodeError,
             AttributeError, OverflowError)


# -- configuration ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CertificateSpec:
    """The server's self-signed certificate, generated at start: subject = issuer, SAN URI = ApplicationUri."""

    common_name: str
    organization: str
    not_before: dt.datetime
    valid_days: int
    # "sha256" or "sha384". Many installed controllers still present SHA-1 signed certificates, but cryptography no
    # longer signs with SHA-1, so this server cannot reproduce them.
    hash_name: str


@dataclass(frozen=True)
class OpcuaConfig:
    port: int
    application_uri: str
    application_name: str
    product_uri: str
    build_info: ua.BuildInfo
    security_modes: tuple[str, ...]
    anonymous: bool
    max_sessions: int
    max_session_timeout_s: float
    certificate: CertificateSpec


HASHES: dict[str, type[hashes.HashAlgorithm]] = {"sha256": hashes.SHA256, "sha384": hashes.SHA384}
_KEYS = ("port", "application_uri", "application_name", "product_uri", "manufacturer_name", "product_name",
         "software_version", "build_number", "build_date", "security_modes", "anonymous", "max_sessions",
         "max_session_timeout_s", "certificate")
_CERT_KEYS = ("common_name", "organization", "not_before", "valid_days", "hash")


def _text(section: dict[str, Any], key: str, default: str | None = None, where: str = "opcua") -> str:
    value = section.get(key, default)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}.{key}: required, a non-empty string")
    return value


def _number(section: dict[str, Any], key: str, default: float, low: float, high: float, where: str = "opcua") -> Any:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"{where}.{key}: must be a number {low:g}-{high:g} (got {value!r})")
    return value


def _date(section: dict[str, Any], key: str, default: dt.datetime, where: str) -> dt.datetime:
    """A YAML date or timestamp, or an ISO 8601 string; naive values are UTC."""
    value = section.get(key, default)
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{where}.{key}: not an ISO 8601 date: {value!r}") from None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if not isinstance(value, dt.datetime):
        raise ValueError(f"{where}.{key}: must be a date (got {value!r})")
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _certificate(spec: Any, application_name: str) -> CertificateSpec:
    spec = known_keys({} if spec is None else spec, "opcua.certificate", _CERT_KEYS)
    hash_name = spec.get("hash", "sha256")
    if hash_name not in HASHES:
        raise ValueError(f"opcua.certificate.hash: must be {' or '.join(HASHES)} (got {hash_name!r})")
    where = "opcua.certificate"
    return CertificateSpec(
        common_name=_text(spec, "common_name", application_name, where),
        organization=_text(spec, "organization", "OPC UA server", where),
        not_before=_date(spec, "not_before", dt.datetime(2024, 1, 1, tzinfo=dt.UTC), where),
        valid_days=int(_number(spec, "valid_days", 3650, 1, 36_500, where)),
        hash_name=hash_name,
    )


def parse_config(section: dict[str, Any]) -> OpcuaConfig:
    """Validate an `opcua:` plant section. Raises ValueError("opcua.<key>: ...") naming the offending key."""
    known_keys(section, "opcua", _KEYS)
    port = section.get("port", DEFAULT_PORT)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65_535:
        raise ValueError(f"opcua.port: must be 1-65535 (got {port!r})")
    modes = section.get("security_modes", ["None"])
    if not isinstance(modes, list) or not modes or any(m not in MODES for m in modes) or len(set(modes)) < len(modes):
        raise ValueError(f"opcua.security_modes: a list of distinct modes among {', '.join(MODES)} (got {modes!r})")
    anonymous = section.get("anonymous", True)
    if not isinstance(anonymous, bool):
        raise ValueError(f"opcua.anonymous: must be true or false (got {anonymous!r})")
    name = _text(section, "application_name")
    build_info = ua.BuildInfo(
        ProductUri=_text(section, "product_uri"),
        ManufacturerName=_text(section, "manufacturer_name"),
        ProductName=_text(section, "product_name"),
        SoftwareVersion=_text(section, "software_version"),
        BuildNumber=_text(section, "build_number"),
        BuildDate=_date(section, "build_date", dt.datetime(2024, 1, 1, tzinfo=dt.UTC), "opcua"),
    )
    return OpcuaConfig(
        port=port,
        application_uri=_text(section, "application_uri"),
        application_name=name,
        product_uri=build_info.ProductUri,
        build_info=build_info,
        security_modes=tuple(modes),
        anonymous=anonymous,
        max_sessions=int(_number(section, "max_sessions", 10, 1, 1000)),
        max_session_timeout_s=float(_number(section, "max_session_timeout_s", 60.0, 1.0, 3600.0)),
        certificate=_certificate(section.get("certificate"), name),
    )


@functools.cache
def _rsa_key() -> rsa.RSAPrivateKey:
    # One key per process: a 2048-bit key costs tens of milliseconds and no test looks at the key itself.
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def self_signed_certificate(spec: CertificateSpec, application_uri: str) -> bytes:
    """DER of a self-signed application instance certificate, as a server generates on first start."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, spec.common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, spec.organization)])
    key = _rsa_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(spec.not_before)
        .not_valid_after(spec.not_before + dt.timedelta(days=spec.valid_days))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(application_uri)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, HASHES[spec.hash_name]())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


# -- decoding and classification ---------------------------------------------------------------------------------------

@dataclass
class Message:
    """One request frame, decoded: a Hello, an OpenSecureChannelRequest or a service request (MSG, CLO)."""

    kind: bytes  # HEL, OPN, MSG, CLO
    chunk: bytes  # F final, C intermediate, A abort
    channel: int = 0
    token: int = 0
    policy: str = ""
    sequence: ua.SequenceHeader = field(default_factory=ua.SequenceHeader)
    body: Any = None

    @property
    def service(self) -> str:
        """Service name of an MSG: "Read", "Write"...; "i=<id>" for a type this codec does not know."""
        if isinstance(self.body, UnknownService):
            return f"i={self.body.type_id}"
        return type(self.body).__name__.removesuffix("Request")


class UnknownService:
    """A service request of a type the codec has no class for; only its type id is known."""

    def __init__(self, type_id: int) -> None:
        self.type_id = type_id
        self.RequestHeader = ua.RequestHeader()


def decode(frame: bytes) -> Message:
    """Decode one request frame; raises one of MALFORMED."""
    kind, chunk = frame[:3], frame[3:4]
    if kind not in REQUEST_TYPES:
        raise ValueError(f"not a request message type: {kind!r}")
    buf = Buffer(frame[HEADER_LEN:])
    if kind == b"HEL":
        return Message(kind, chunk, body=struct_from_binary(ua.Hello, buf))
    message = Message(kind, chunk, channel=struct.unpack("<I", buf.read(4))[0])
    if kind == b"OPN":
        message.policy = struct_from_binary(ua.AsymmetricAlgorithmHeader, buf).SecurityPolicyURI or ""
    else:
        message.token = struct_from_binary(ua.SymmetricAlgorithmHeader, buf).TokenId
    message.sequence = struct_from_binary(ua.SequenceHeader, buf)
    if chunk != b"F":
        return message  # a part of a larger message: this server takes single-chunk requests only
    type_id = nodeid_from_binary(buf.copy())
    cls = ua.extension_objects_by_typeid.get(type_id)
    message.body = struct_from_binary(cls, buf) if cls is not None else UnknownService(type_id.Identifier)
    return message


def classify(frame: bytes) -> tuple[str, bool, dict[str, Any]]:
    """(operation, allowed, detail) of one request frame."""
    try:
        message = decode(frame)
    except MALFORMED:
        return f"opcua:{frame[:3].decode('latin-1')}", False, {"malformed": True}
    if message.chunk != b"F":
        return f"opcua:{message.kind.decode()}/chunk:{message.chunk.decode('latin-1')}", False, {}
    operation = f"opcua:{message.service if message.kind == b'MSG' else message.kind.decode()}"
    detail: dict[str, Any] = {}
    if message.kind == b"OPN":
        detail["policy"] = message.policy
    if message.kind != b"MSG":
        return operation, True, detail
    allowed = message.service in ALLOWED_SERVICES
    if isinstance(message.body, ua.ReadRequest):
        nodes = [_node(item.NodeId) for item in message.body.Parameters.NodesToRead]
        detail["nodes"] = nodes
        allowed = bool(nodes) and all(node in IDENTITY_NODES for node in nodes)
    return operation, allowed, detail


def _node(node_id: ua.NodeId) -> int | str:
    """A namespace-0 numeric node as its number, any other as its string form."""
    if node_id.NamespaceIndex == 0 and isinstance(node_id.Identifier, int):
        return node_id.Identifier
    return node_id.to_string()


class OpcuaFraming(Framing):
    """8-byte little-endian header: message type, chunk type, size of the whole message."""

    protocol = PROTOCOL
    header_len = HEADER_LEN

    def frame_length(self, header: bytes) -> int:
        if header[:3] not in REQUEST_TYPES or header[3:4] not in (b"F", b"C", b"A"):
            raise ValueError(header[:4])
        return struct.unpack_from("<I", header, 4)[0]

    def classify(self, frame: bytes) -> tuple[str, bool, dict[str, Any]]:
        return classify(frame)

    def huge_length(self, reply: bytes) -> bytes:
        return reply[:4] + struct.pack("<I", HUGE_LENGTH) + reply[HEADER_LEN:].ljust(HUGE_LENGTH - HEADER_LEN, b"\0")

    def oversized(self, reply: bytes) -> bytes:
        """A reply whose size field claims, and whose body carries, far more than any identity reply."""
        body = reply[HEADER_LEN:] + bytes(OVERSIZE)
        return reply[:4] + struct.pack("<I", HEADER_LEN + len(body)) + body

    def wrong_id(self, reply: bytes) -> bytes:
        """Someone else's reply: another RequestId in the sequence header of an OPN or MSG reply."""
        if reply[:3] == b"MSG":
            offset = 12 + 4 + 4  # header, channel id, token id, sequence number
        elif reply[:3] == b"OPN":
            policy_len = struct.unpack_from("<i", reply, 12)[0]
            offset = 12 + 4 + max(policy_len, 0) + 4 + 4 + 4  # policy, certificate (-1), thumbprint (-1), sequence
        else:
            return reply
        request_id = struct.unpack_from("<I", reply, offset)[0] ^ 0x5A5A
        return reply[:offset] + struct.pack("<I", request_id) + reply[offset + 4 :]


# -- the device --------------------------------------------------------------------------------------------------------

@dataclass
class Session:
    session_id: ua.NodeId
    token: ua.NodeId
    timeout_s: float
    last_used: float
    activated: bool = False

    def expired(self, now: float) -> bool:
        return now - self.last_used > self.timeout_s


class ServiceError(Exception):
    """A request the server refuses with a ServiceFault carrying this status code."""

    def __init__(self, code: int) -> None:
        super().__init__(f"status 0x{code:08X}")
        self.code = code


class OpcuaDevice:
    def __init__(self, host: str, config: OpcuaConfig, fault: Fault, recorder: Recorder) -> None:
        self.host, self.config, self.recorder = host, config, recorder
        self.front = TcpFront(host, config.port, OpcuaFraming(), self._handle, recorder, fault)
        self.certificate = b""
        self.sessions: dict[bytes, Session] = {}  # by authentication token
        self.refused_sessions = 0  # CreateSession answered BadTooManySessions
        self._channels = itertools.count(secrets.randbelow(1 << 16) + 1)
        self._session_ids = itertools.count(1)
        self._started = dt.datetime.now(dt.UTC)

    @property
    def port(self) -> int:
        return self.front.port

    @property
    def endpoint_url(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}"

    async def start(self) -> None:
        self.certificate = self_signed_certificate(self.config.certificate, self.config.application_uri)
        self._started = dt.datetime.now(dt.UTC)
        await self.front.start()

    async def stop(self) -> None:
        await self.front.stop()

    def summary(self) -> str:
        c, b = self.config, self.config.build_info
        return (f"opcua tcp/{self.port}: {c.application_uri} {b.ManufacturerName!r} {b.ProductName!r} "
                f"{b.SoftwareVersion} modes {'/'.join(c.security_modes)} max sessions {c.max_sessions}")

    def open_sessions(self) -> int:
        """Sessions the server still holds (created, neither closed nor timed out)."""
        self._expire(time.monotonic())
        return len(self.sessions)

    # -- transport and secure channel ----------------------------------------------------------------------------

    async def _handle(self, frame: bytes, state: ConnState) -> list[bytes]:
        data = state.data
        if (frame[:3] == b"HEL") == bool(data.get("hello")):
            return self._error(state, ua.StatusCodes.BadTcpMessageTypeInvalid, "HEL first, and only once")
        try:
            message = decode(frame)
        except MALFORMED:
            return self._error(state, ua.StatusCodes.BadDecodingError, "undecodable message")
        if message.chunk != b"F":
            return self._error(state, ua.StatusCodes.BadRequestTooLarge, "multi-chunk requests are not supported")
        if message.kind == b"HEL":
            data["hello"] = True
            hello: ua.Hello = message.body
            ack = ua.Acknowledge(ProtocolVersion=0, ReceiveBufferSize=min(hello.SendBufferSize, BUFFER_SIZE),
                                 SendBufferSize=min(hello.ReceiveBufferSize, BUFFER_SIZE), MaxMessageSize=0,
                                 MaxChunkCount=1)
            return [uatcp_to_binary(ua.MessageType.Acknowledge, ack)]
        if message.kind == b"OPN":
            return self._open(message, state)
        if data.get("channel") is None or message.channel != data["channel"] or message.token != data["token"]:
            return self._error(state, ua.StatusCodes.BadSecureChannelIdInvalid, "no such secure channel")
        if message.kind == b"CLO":
            data["channel"] = None  # closed; the client's FIN comes next
            return []
        return [self._reply(state, message, self._service(message))]

    def _open(self, message: Message, state: ConnState) -> list[bytes]:
        request = message.body
        if message.policy != POLICY_NONE or not isinstance(request, ua.OpenSecureChannelRequest):
            return self._error(state, ua.StatusCodes.BadSecurityPolicyRejected, "only SecurityPolicy None here")
        params = request.Parameters
        renew = params.RequestType == ua.SecurityTokenRequestType.Renew
        if renew and message.channel != state.data.get("channel"):
            return self._error(state, ua.StatusCodes.BadSecureChannelIdInvalid, "renew of another channel")
        if not renew:
            state.data["channel"] = next(self._channels)
        state.data["token"] = state.data.get("token", 0) + 1
        token = ua.ChannelSecurityToken(ChannelId=state.data["channel"], TokenId=state.data["token"],
                                        CreatedAt=dt.datetime.now(dt.UTC),
                                        RevisedLifetime=min(max(params.RequestedLifetime, 60_000), 3_600_000))
        response = ua.OpenSecureChannelResponse()
        response.ResponseHeader = self._header(request.RequestHeader)
        response.Parameters = ua.OpenSecureChannelResult(ServerProtocolVersion=0, SecurityToken=token,
                                                         ServerNonce=b"")
        body = (struct_to_binary(ua.AsymmetricAlgorithmHeader(SecurityPolicyURI=POLICY_NONE))
                + self._sequence(state, message) + struct_to_binary(response))
        return [self._chunk(b"OPN", state.data["channel"], body)]

    def _error(self, state: ConnState, code: int, reason: str) -> list[bytes]:
        """An ERR message, after which a server closes the connection."""
        state.data["close_after_reply"] = True
        return [uatcp_to_binary(ua.MessageType.Error, ua.ErrorMessage(Error=ua.StatusCode(code), Reason=reason))]

    def _sequence(self, state: ConnState, message: Message) -> bytes:
        state.data["sequence"] = state.data.get("sequence", 0) + 1
        return struct_to_binary(ua.SequenceHeader(SequenceNumber=state.data["sequence"],
                                                  RequestId=message.sequence.RequestId))

    @staticmethod
    def _chunk(kind: bytes, channel: int, body: bytes) -> bytes:
        return kind + b"F" + struct.pack("<II", HEADER_LEN + 4 + len(body), channel) + body

    def _reply(self, state: ConnState, message: Message, response: Any) -> bytes:
        body = struct.pack("<I", state.data["token"]) + self._sequence(state, message) + struct_to_binary(response)
        return self._chunk(b"MSG", state.data["channel"], body)

    @staticmethod
    def _header(request: ua.RequestHeader, code: int = ua.StatusCodes.Good) -> ua.ResponseHeader:
        return ua.ResponseHeader(Timestamp=dt.datetime.now(dt.UTC), RequestHandle=request.RequestHandle,
                                 ServiceResult=ua.StatusCode(code))

    # -- services ----------------------------------------------------------------------------------------------------

    def _service(self, message: Message) -> Any:
        request = message.body
        handlers = {
            "GetEndpoints": self._get_endpoints,
            "CreateSession": self._create_session,
            "ActivateSession": self._activate_session,
            "Read": self._read,
            "CloseSession": self._close_session,
        }
        handler = handlers.get(message.service)
        try:
            if handler is None:
                raise ServiceError(ua.StatusCodes.BadServiceUnsupported)
            return handler(request)
        except ServiceError as exc:
            fault = ua.ServiceFault()
            # a message of a type that is no request at all has no header to echo
            fault.ResponseHeader = self._header(getattr(request, "RequestHeader", ua.RequestHeader()), exc.code)
            return fault

    def endpoints(self) -> list[ua.EndpointDescription]:
        c = self.config
        server = ua.ApplicationDescription(
            ApplicationUri=c.application_uri, ProductUri=c.product_uri,
            ApplicationName=ua.LocalizedText(c.application_name), ApplicationType=ua.ApplicationType.Server,
            DiscoveryUrls=[self.endpoint_url])
        tokens = [ua.UserTokenPolicy(PolicyId="Anonymous", TokenType=ua.UserTokenType.Anonymous)] if c.anonymous else []
        tokens.append(ua.UserTokenPolicy(PolicyId="UserName", TokenType=ua.UserTokenType.UserName,
                                         SecurityPolicyUri=POLICY_SECURE))
        return [
            ua.EndpointDescription(
                EndpointUrl=self.endpoint_url, Server=server, ServerCertificate=self.certificate,
                SecurityMode=MODES[mode], SecurityPolicyUri=POLICY_NONE if mode == "None" else POLICY_SECURE,
                UserIdentityTokens=tokens, TransportProfileUri=TRANSPORT_PROFILE,
                SecurityLevel=(0, 1, 2)[list(MODES).index(mode)])
            for mode in c.security_modes
        ]

    def _get_endpoints(self, request: ua.GetEndpointsRequest) -> ua.GetEndpointsResponse:
        response = ua.GetEndpointsResponse()
        response.ResponseHeader = self._header(request.RequestHeader)
        response.Endpoints = self.endpoints()
        return response

    def _expire(self, now: float) -> None:
        for key in [key for key, session in self.sessions.items() if session.expired(now)]:
            del self.sessions[key]

    def _create_session(self, request: ua.CreateSessionRequest) -> ua.CreateSessionResponse:
        if "None" not in self.config.security_modes:
            # the channel is unsecured and no endpoint offers that: discovery only, as on a hardened server
            raise ServiceError(ua.StatusCodes.BadSecurityModeRejected)
        now = time.monotonic()
        self._expire(now)
        if len(self.sessions) >= self.config.max_sessions:
            self.refused_sessions += 1
            raise ServiceError(ua.StatusCodes.BadTooManySessions)
        timeout_s = min(max(request.Parameters.RequestedSessionTimeout / 1000, 1.0), self.config.max_session_timeout_s)
        token = ua.NodeId(secrets.token_bytes(32), 0, ua.NodeIdType.ByteString)
        session = Session(ua.NodeId(next(self._session_ids), 1), token, timeout_s, now)
        self.sessions[token.Identifier] = session
        self.recorder.session(True)
        response = ua.CreateSessionResponse()
        response.ResponseHeader = self._header(request.RequestHeader)
        response.Parameters = ua.CreateSessionResult(
            SessionId=session.session_id, AuthenticationToken=token, RevisedSessionTimeout=timeout_s * 1000,
            ServerNonce=secrets.token_bytes(32), ServerCertificate=self.certificate, ServerEndpoints=self.endpoints(),
            ServerSignature=ua.SignatureData(), MaxRequestMessageSize=0)
        return response

    def _session(self, request: Any, *, activated: bool = True) -> Session:
        now = time.monotonic()
        self._expire(now)
        token = request.RequestHeader.AuthenticationToken
        session = self.sessions.get(token.Identifier) if isinstance(token.Identifier, bytes) else None
        if session is None:
            raise ServiceError(ua.StatusCodes.BadSessionIdInvalid)
        if activated and not session.activated:
            raise ServiceError(ua.StatusCodes.BadSessionNotActivated)
        session.last_used = now
        return session

    def _activate_session(self, request: ua.ActivateSessionRequest) -> ua.ActivateSessionResponse:
        session = self._session(request, activated=False)
        identity = request.Parameters.UserIdentityToken
        # a null identity token means anonymous (OPC UA Part 4, ActivateSession)
        if not self.config.anonymous or not (identity is None or isinstance(identity, ua.AnonymousIdentityToken)):
            raise ServiceError(ua.StatusCodes.BadIdentityTokenRejected)
        session.activated = True
        response = ua.ActivateSessionResponse()
        response.ResponseHeader = self._header(request.RequestHeader)
        response.Parameters = ua.ActivateSessionResult(ServerNonce=secrets.token_bytes(32))
        return response

    def _read(self, request: ua.ReadRequest) -> ua.ReadResponse:
        nodes = [_node(item.NodeId) for item in request.Parameters.NodesToRead]
        if not nodes or any(node not in IDENTITY_NODES for node in nodes):
            raise ServiceError(ua.StatusCodes.BadUserAccessDenied)
        self._session(request)
        response = ua.ReadResponse()
        response.ResponseHeader = self._header(request.RequestHeader)
        response.Results = [self._value(item) for item in request.Parameters.NodesToRead]
        return response

    def _value(self, item: ua.ReadValueId) -> ua.DataValue:
        now = dt.datetime.now(dt.UTC)
        if item.AttributeId != ua.AttributeIds.Value:
            # this server keeps no address space beyond the identity values
            return ua.DataValue(StatusCode=ua.StatusCode(ua.StatusCodes.BadAttributeIdInvalid), ServerTimestamp=now)
        build_info, node = self.config.build_info, item.NodeId.Identifier
        if node == _ids.Server_ServerStatus:
            value = ua.Variant(ua.ServerStatusDataType(
                StartTime=self._started, CurrentTime=now, State=ua.ServerState.Running, BuildInfo=build_info,
                SecondsTillShutdown=0, ShutdownReason=ua.LocalizedText()))
        elif node == _ids.Server_ServerStatus_BuildInfo:
            value = ua.Variant(build_info)
        elif BUILD_INFO_FIELDS[node] == "BuildDate":
            value = ua.Variant(build_info.BuildDate, ua.VariantType.DateTime)
        else:
            value = ua.Variant(getattr(build_info, BUILD_INFO_FIELDS[node]), ua.VariantType.String)
        return ua.DataValue(Value=value, SourceTimestamp=now, ServerTimestamp=now)

    def _close_session(self, request: ua.CloseSessionRequest) -> ua.CloseSessionResponse:
        session = self._session(request, activated=False)
        del self.sessions[session.token.Identifier]
        self.recorder.session(False)
        response = ua.CloseSessionResponse()
        response.ResponseHeader = self._header(request.RequestHeader)
        return response
