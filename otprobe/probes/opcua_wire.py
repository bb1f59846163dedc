"""OPC UA bytes for the identity probe: the messages it sends over opc.tcp, and hardened parsers for the replies.

Requests are encoded with asyncua's binary codec (`struct_to_binary`): a secure channel with SecurityPolicy None
(`SecureChannel`), whose chunks carry the sequence numbers and request ids the replies are matched against. Only the
requests the probe may send can be built: there is no generic service call, and the one Read reads the fixed
BuildInfo nodes (`BUILD_INFO_NODES`), never a node id from outside. The link sees "ua:Read", not node ids, so this
module is where a Read of anything else is made impossible.

Replies are decoded with asyncua's decoders only where that is safe, and every parser raises only `ProtocolError`
(`DeviceRefusal` for a well-formed ERR message, ServiceFault or bad service result). Two traps of asyncua 2.1's
decoders on hostile bytes shaped this module (docs/protocols.md#opc-ua):

- its `Buffer.read(n)` with a negative n moves backwards: a string of length -4 in a list is read again and again,
  so a list claiming 2**31 such strings never ends. `_Bytes` refuses negative sizes.
- a Variant array of type Null has elements of zero bytes: a claimed length of 2**31 is a loop of 2**31 steps.
  Variants (DataValues of a Read) and ExtensionObjects (a ResponseHeader's AdditionalHeader, which could name any
  type, Variants included) are therefore never given to asyncua: the first is read here, scalars only, the second
  skipped by its length.

Every other structure (endpoints, tokens, DiagnosticInfo) consumes at least one byte per element, so a reply the HEL
caps at BUFFER_SIZE bytes bounds the work.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import secrets
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from otprobe.errors import ProtocolError

T = TypeVar("T")

HEADER = struct.Struct("<3scI")  # message type, chunk type, message size (little-endian, the whole message)
HEADER_LEN = HEADER.size
# What the HEL announces as ReceiveBufferSize and MaxMessageSize, with MaxChunkCount 1: every reply is one chunk of
# at most this many bytes. A GetEndpoints reply of a PLC with seven endpoints, each with its ~1 KB certificate, is
# about 10 KB. A header claiming more is refused before anything is read.
BUFFER_SIZE = 65_535
SEND_BUFFER = 8_192  # the largest chunk the probe sends (the least a server must accept); requests are < 1 KB
REPLY_TYPES = frozenset({b"ACK", b"ERR", b"OPN", b"MSG", b"CLO"})
POLICY_NONE = "http://opcfoundation.org/UA/SecurityPolicy#None"
CHANNEL_LIFETIME_MS = 60_000
CLIENT_URI = "urn:otprobe:identity-probe"

# BuildInfo's six variables (OPC UA Part 5, ServerStatus/BuildInfo, i=2260), value attribute each
BUILD_INFO_NODES: dict[str, int] = {
    "ProductName": 2261,
    "ProductUri": 2262,
    "ManufacturerName": 2263,
    "SoftwareVersion": 2264,
    "BuildNumber": 2265,
    "BuildDate": 2266,
}
VALUE_ATTRIBUTE = 13

# binary encoding ids of the responses (OPC UA Part 6, NodeIds.csv)
SERVICE_FAULT = 397
OPEN_RESPONSE = 449
GET_ENDPOINTS_RESPONSE = 431
CREATE_SESSION_RESPONSE = 464
ACTIVATE_SESSION_RESPONSE = 470
CLOSE_SESSION_RESPONSE = 476
READ_RESPONSE = 634

# Variant types a BuildInfo value may have (Part 6, built-in type ids)
_STRING, _DATETIME, _LOCALIZED_TEXT = 12, 13, 21
_DATA_VALUE_TIMES = ((0x04, 8), (0x08, 8), (0x10, 2), (0x20, 2))  # source/server timestamps and picoseconds


class DeviceRefusal(ProtocolError):
    """A well-formed reply that refuses: an ERR message, a ServiceFault or a bad service result."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def status_text(code: int) -> str:
    """0x80550000 -> "0x80550000 BadSecurityPolicyRejected" (the name where asyncua knows the code)."""
    from asyncua.ua.status_codes import code_to_name_doc

    name = code_to_name_doc.get(code, ("",))[0]
    return f"0x{code:08X} {name}".rstrip()


def _is_bad(code: int) -> bool:
    return bool(code & 0x80000000)  # severity bits 10: Bad (Part 4, StatusCode)


# -- requests ------------------------------------------------------------------------------------------------------

def _message(kind: bytes, body: bytes) -> bytes:
    return HEADER.pack(kind, b"F", HEADER_LEN + len(body)) + body


def hello(endpoint_url: str) -> bytes:
    """HEL: protocol 0, our buffer sizes, one chunk per message, the endpoint URL."""
    from asyncua import ua
    from asyncua.ua.ua_binary import struct_to_binary

    return _message(b"HEL", struct_to_binary(ua.Hello(
        ProtocolVersion=0, ReceiveBufferSize=BUFFER_SIZE, SendBufferSize=SEND_BUFFER, MaxMessageSize=BUFFER_SIZE,
        MaxChunkCount=1, EndpointUrl=endpoint_url)))


@dataclass
class SecureChannel:
    """One secure channel with SecurityPolicy None: ids, numbering, and the session's token once there is one."""

    endpoint_url: str
    timeout_ms: int  # TimeoutHint of every request: the probe's own response timeout
    channel_id: int = 0
    token_id: int = 0
    sequence: int = 0  # of the last chunk sent
    request_id: int = 0  # of the last request sent; its reply must carry it
    auth_token: Any = None  # the session's AuthenticationToken (a NodeId), once CreateSession answered

    def _chunk(self, kind: bytes, security: bytes, body: bytes) -> bytes:
        self.sequence += 1
        self.request_id += 1
        payload = struct.pack("<I", self.channel_id) + security + struct.pack("<II", self.sequence,
                                                                               self.request_id) + body
        return _message(kind, payload)

    def _header(self) -> Any:
        from asyncua import ua

        return ua.RequestHeader(AuthenticationToken=self.auth_token or ua.NodeId(), Timestamp=dt.datetime.now(dt.UTC),
                                RequestHandle=self.request_id + 1, TimeoutHint=self.timeout_ms)

    def open(self) -> bytes:
        """OPN: issue a channel token, SecurityPolicy None, no certificates."""
        from asyncua import ua
        from asyncua.ua.ua_binary import struct_to_binary

        request = ua.OpenSecureChannelRequest(RequestHeader=self._header(), Parameters=ua.OpenSecureChannelParameters(
            ClientProtocolVersion=0, RequestType=ua.SecurityTokenRequestType.Issue,
            SecurityMode=ua.MessageSecurityMode.None_, ClientNonce=b"", RequestedLifetime=CHANNEL_LIFETIME_MS))
        security = struct_to_binary(ua.AsymmetricAlgorithmHeader(SecurityPolicyURI=POLICY_NONE))
        return self._chunk(b"OPN", security, struct_to_binary(request))

    def _service(self, request: Any) -> bytes:
        from asyncua.ua.ua_binary import struct_to_binary

        request.RequestHeader = self._header()
        return self._chunk(b"MSG", struct.pack("<I", self.token_id), struct_to_binary(request))

    def get_endpoints(self) -> bytes:
        from asyncua import ua

        request = ua.GetEndpointsRequest()
        request.Parameters.EndpointUrl = self.endpoint_url
        return self._service(request)

    def create_session(self, session_timeout_s: float) -> bytes:
        from asyncua import ua

        request = ua.CreateSessionRequest()
        request.Parameters = ua.CreateSessionParameters(
            ClientDescription=ua.ApplicationDescription(
                ApplicationUri=CLIENT_URI, ProductUri=CLIENT_URI, ApplicationName=ua.LocalizedText("otprobe"),
                ApplicationType=ua.ApplicationType.Client),
            EndpointUrl=self.endpoint_url, SessionName="otprobe identity read", ClientNonce=secrets.token_bytes(32),
            RequestedSessionTimeout=session_timeout_s * 1000, MaxResponseMessageSize=BUFFER_SIZE)
        return self._service(request)

    def activate_session(self, policy_id: str) -> bytes:
        """ActivateSession with an anonymous identity token of the server's own anonymous policy id."""
        from asyncua import ua

        request = ua.ActivateSessionRequest()
        request.Parameters.UserIdentityToken = ua.AnonymousIdentityToken(PolicyId=policy_id)
        return self._service(request)

    def read_build_info(self) -> bytes:
        """One Read of the value of BUILD_INFO_NODES, in their order: the only Read this module can build."""
        from asyncua import ua

        request = ua.ReadRequest()
        request.Parameters.NodesToRead = [ua.ReadValueId(NodeId=ua.NodeId(node), AttributeId=VALUE_ATTRIBUTE)
                                          for node in BUILD_INFO_NODES.values()]
        return self._service(request)

    def close_session(self) -> bytes:
        from asyncua import ua

        return self._service(ua.CloseSessionRequest(DeleteSubscriptions=True))

    def close(self) -> bytes:
        """CLO: the server answers nothing and closes the channel."""
        from asyncua import ua
        from asyncua.ua.ua_binary import struct_to_binary

        request = ua.CloseSecureChannelRequest(RequestHeader=self._header())
        return self._chunk(b"CLO", struct.pack("<I", self.token_id), struct_to_binary(request))


# -- decoding --------------------------------------------------------------------------------------------------------

@functools.cache
def _buffer_type() -> type:
    from asyncua.common.utils import Buffer

    class _Bytes(Buffer):
        """asyncua's Buffer, refusing the negative sizes its own read() and skip() would move backwards with."""

        def read(self, size: int) -> bytes:
            if size < 0:
                raise ProtocolError(f"negative length {size}")
            return bytes(super().read(size))

        def skip(self, size: int) -> None:
            if size < 0:
                raise ProtocolError(f"negative length {size}")
            super().skip(size)

        def copy(self, size: int = -1) -> Buffer:
            if size < -1:
                raise ProtocolError(f"negative length {size}")
            return _Bytes(self._data, self._cur_pos, self._size if size == -1 or size > self._size else size)

    return _Bytes


def _reader(data: bytes) -> Any:
    return _buffer_type()(data)  # asyncua is imported when the first reply is read, not with this module


@contextmanager
def _decoding(what: str) -> Iterator[None]:
    """Whatever asyncua's decoders raise on hostile bytes (struct.error, NotEnoughData, UnicodeDecodeError,
    OverflowError, RecursionError on nested DiagnosticInfos...) becomes one ProtocolError naming the message."""
    try:
        yield
    except ProtocolError:
        raise
    except Exception as exc:  # the decoder is a library's: any exception it raises means "undecodable"
        raise ProtocolError(f"{what}: undecodable ({type(exc).__name__}: {exc})") from None


def _u32(buf: Any) -> int:
    value: int = struct.unpack("<I", buf.read(4))[0]
    return value


def _array(buf: Any, read: Callable[[Any], T]) -> list[T]:
    """An array (Int32 count, -1 = null) whose elements take at least one byte each: the count is checked against
    what is left before the first element is read."""
    count = struct.unpack("<i", buf.read(4))[0]
    if count < -1 or count > len(buf):
        raise ProtocolError(f"array of {count} elements in {len(buf)} bytes")
    return [read(buf) for _ in range(max(count, 0))]


def _decode(cls: Any) -> Callable[[Any], Any]:
    from asyncua.ua.ua_binary import struct_from_binary

    return lambda buf: struct_from_binary(cls, buf)


def _string(buf: Any) -> str | None:
    from asyncua.ua.ua_binary import Primitives

    value: str | None = Primitives.String.unpack(buf)
    return value


def _bytestring(buf: Any) -> bytes | None:
    from asyncua.ua.ua_binary import Primitives

    value: bytes | None = Primitives.ByteString.unpack(buf)
    return value


def _end(buf: Any, what: str) -> None:
    if len(buf):
        raise ProtocolError(f"{what}: {len(buf)} bytes after the message")


def parse_header(header: bytes) -> tuple[bytes, int]:
    """(message type, message size) of an 8-byte message header; refuses anything but one final chunk that fits
    the buffer the HEL announced."""
    if len(header) != HEADER_LEN:
        raise ProtocolError(f"message header of {len(header)} bytes")
    kind, chunk, size = HEADER.unpack(header)
    if kind not in REPLY_TYPES:
        raise ProtocolError(f"not an OPC UA reply: message type {kind!r}")
    if chunk != b"F":
        raise ProtocolError(f"chunk type {chunk!r} where the HEL allowed one final chunk per message")
    if not HEADER_LEN <= size <= BUFFER_SIZE:
        raise ProtocolError(f"message claims {size} bytes (HEL allowed {BUFFER_SIZE})")
    return kind, size


def _error(frame: bytes) -> DeviceRefusal:
    """An ERR message: a status code and a reason, after which the server closes the connection."""
    buf = _reader(frame[HEADER_LEN:])
    with _decoding("ERR"):
        code, reason = _u32(buf), _string(buf)
    return DeviceRefusal(f"ERR {status_text(code)}: {reason or 'no reason given'}", code)


def _kind(frame: bytes, expected: bytes) -> None:
    kind = parse_header(frame[:HEADER_LEN])[0]
    if len(frame) != struct.unpack_from("<I", frame, 4)[0]:
        raise ProtocolError(f"{kind.decode()} of {len(frame)} bytes, its header says otherwise")
    if kind == b"ERR":
        raise _error(frame)
    if kind != expected:
        raise ProtocolError(f"{kind.decode()} where {expected.decode()} was due")


def parse_acknowledge(frame: bytes) -> Any:
    """ACK (five UInt32: protocol version, buffer sizes, max message size, max chunk count) -> ua.Acknowledge."""
    from asyncua import ua

    _kind(frame, b"ACK")
    buf = _reader(frame[HEADER_LEN:])
    with _decoding("ACK"):
        ack = _decode(ua.Acknowledge)(buf)
    _end(buf, "ACK")
    if ack.SendBufferSize > BUFFER_SIZE:  # the server's chunks must fit the buffer the HEL announced (Part 6, 7.1.2.4)
        raise ProtocolError(f"ACK: the server would send chunks of {ack.SendBufferSize} bytes (HEL allowed "
                            f"{BUFFER_SIZE})")
    return ack


def _response_header(buf: Any, what: str) -> tuple[int, int]:
    """(RequestHandle, ServiceResult). The AdditionalHeader, an ExtensionObject of any type, is skipped unread."""
    from asyncua import ua
    from asyncua.ua.ua_binary import nodeid_from_binary

    buf.skip(8)  # Timestamp
    handle, result = _u32(buf), _u32(buf)
    _decode(ua.DiagnosticInfo)(buf)
    _array(buf, _string)  # StringTable
    nodeid_from_binary(buf)
    encoding = buf.read(1)[0]
    if encoding & 0x03:  # a body follows: binary (1) or XML (2), Int32-prefixed
        length = struct.unpack("<i", buf.read(4))[0]
        if length > 0:
            buf.skip(length)
    if encoding & ~0x03:
        raise ProtocolError(f"{what}: AdditionalHeader encoding 0x{encoding:02X}")
    return handle, result


def _service(frame: bytes, kind: bytes, channel: SecureChannel, expected: int, what: str) -> Any:
    """Check the secure-channel layer of an OPN or MSG reply and the response's type and header; the body after the
    ResponseHeader, or DeviceRefusal for a ServiceFault or a bad service result."""
    from asyncua.ua.ua_binary import nodeid_from_binary

    _kind(frame, kind)
    buf = _reader(frame[HEADER_LEN:])
    with _decoding(what):
        channel_id = _u32(buf)
        if kind == b"OPN":
            policy = _string(buf)
            if policy != POLICY_NONE:
                raise ProtocolError(f"{what}: security policy URI {policy!r}, not {POLICY_NONE}")
            _bytestring(buf)  # sender certificate and
            _bytestring(buf)  # receiver thumbprint: both null with policy None
        else:
            token = _u32(buf)
            if (channel_id, token) != (channel.channel_id, channel.token_id):
                raise ProtocolError(f"{what}: reply on channel {channel_id} token {token}, "
                                    f"not {channel.channel_id} token {channel.token_id}")
        _u32(buf)  # sequence number
        request_id = _u32(buf)
        if request_id != channel.request_id:
            raise ProtocolError(f"{what}: reply to request {request_id}, not to {channel.request_id}")
        type_id = nodeid_from_binary(buf)
        if type_id.NamespaceIndex != 0 or type_id.Identifier not in (expected, SERVICE_FAULT):
            raise ProtocolError(f"{what}: a reply of type {type_id.to_string()}")
        handle, result = _response_header(buf, what)
    if type_id.Identifier == SERVICE_FAULT or _is_bad(result):
        raise DeviceRefusal(f"{what} refused: {status_text(result)}", result)
    if handle != channel.request_id:
        raise ProtocolError(f"{what}: reply to request handle {handle}, not to {channel.request_id}")
    if kind == b"OPN":
        channel.channel_id = channel_id
    return buf


def parse_open(frame: bytes, channel: SecureChannel) -> None:
    """OPN reply: the channel id and token the next messages carry (stored in `channel`)."""
    from asyncua import ua

    buf = _service(frame, b"OPN", channel, OPEN_RESPONSE, "OpenSecureChannel")
    with _decoding("OpenSecureChannel"):
        _u32(buf)  # ServerProtocolVersion
        token = _decode(ua.ChannelSecurityToken)(buf)
        _bytestring(buf)  # ServerNonce
    _end(buf, "OpenSecureChannel")
    if token.ChannelId != channel.channel_id:
        raise ProtocolError(f"OpenSecureChannel: token for channel {token.ChannelId} in a chunk of channel "
                            f"{channel.channel_id}")
    channel.token_id = token.TokenId


def parse_endpoints(frame: bytes, channel: SecureChannel) -> list[Any]:
    """GetEndpoints reply -> its ua.EndpointDescription list (no Variant, no ExtensionObject inside)."""
    from asyncua import ua

    buf = _service(frame, b"MSG", channel, GET_ENDPOINTS_RESPONSE, "GetEndpoints")
    with _decoding("GetEndpoints"):
        endpoints = _array(buf, _decode(ua.EndpointDescription))
    _end(buf, "GetEndpoints")
    if not endpoints:
        raise DeviceRefusal("GetEndpoints: the server lists no endpoint")
    return endpoints


def parse_create_session(frame: bytes, channel: SecureChannel) -> float:
    """CreateSession reply: stores the AuthenticationToken in `channel`; the revised session timeout in seconds."""
    from asyncua import ua

    buf = _service(frame, b"MSG", channel, CREATE_SESSION_RESPONSE, "CreateSession")
    with _decoding("CreateSession"):
        result = _decode(ua.CreateSessionResult)(buf)
    _end(buf, "CreateSession")
    channel.auth_token = result.AuthenticationToken
    return float(result.RevisedSessionTimeout) / 1000


def parse_activate_session(frame: bytes, channel: SecureChannel) -> None:
    from asyncua import ua

    buf = _service(frame, b"MSG", channel, ACTIVATE_SESSION_RESPONSE, "ActivateSession")
    with _decoding("ActivateSession"):
        _decode(ua.ActivateSessionResult)(buf)
    _end(buf, "ActivateSession")


def parse_close_session(frame: bytes, channel: SecureChannel) -> None:
    buf = _service(frame, b"MSG", channel, CLOSE_SESSION_RESPONSE, "CloseSession")
    _end(buf, "CloseSession")


def _variant(buf: Any) -> str | None:
    """A scalar String, LocalizedText or DateTime (as ISO 8601 text), or None; any other Variant is refused, since
    its length cannot be known without decoding it (and an array of Null costs no bytes per element)."""
    from asyncua import ua
    from asyncua.ua.ua_binary import Primitives, struct_from_binary

    encoding = buf.read(1)[0]
    kind = encoding & 0x3F
    if encoding & 0xC0:
        raise ProtocolError(f"an array of type {kind} where a single BuildInfo value is due")
    if kind == 0:
        return None
    if kind == _STRING:
        return _string(buf)
    if kind == _LOCALIZED_TEXT:
        text: str | None = struct_from_binary(ua.LocalizedText, buf).Text
        return text
    if kind == _DATETIME:
        return str(Primitives.DateTime.unpack(buf).isoformat())
    raise ProtocolError(f"a value of built-in type {kind} where text or a date is due")


def _data_value(buf: Any) -> tuple[str | None, int]:
    """(value, status code) of one DataValue; timestamps are skipped."""
    mask = buf.read(1)[0]
    value = _variant(buf) if mask & 0x01 else None
    status = _u32(buf) if mask & 0x02 else 0
    for bit, size in _DATA_VALUE_TIMES:
        if mask & bit:
            buf.skip(size)
    return value, status


def parse_read(frame: bytes, channel: SecureChannel) -> dict[str, str | None]:
    """Read reply to `read_build_info` -> BUILD_INFO_NODES' field names -> value (None where the server gave a bad
    status or no value; its status goes to "<field>_status")."""
    from asyncua import ua

    buf = _service(frame, b"MSG", channel, READ_RESPONSE, "Read")
    with _decoding("Read"):
        results = _array(buf, _data_value)
        _array(buf, _decode(ua.DiagnosticInfo))
    _end(buf, "Read")
    if len(results) != len(BUILD_INFO_NODES):
        raise ProtocolError(f"Read: {len(results)} values for {len(BUILD_INFO_NODES)} nodes")
    info: dict[str, str | None] = {}
    for name, (value, status) in zip(BUILD_INFO_NODES, results, strict=True):
        info[name] = None if _is_bad(status) else value
        if _is_bad(status):
            info[f"{name}_status"] = status_text(status)
    return info


# -- what the endpoints say --------------------------------------------------------------------------------------

MODES = {1: "None", 2: "Sign", 3: "SignAndEncrypt"}
TOKEN_TYPES = {0: "Anonymous", 1: "UserName", 2: "Certificate", 3: "IssuedToken"}
APPLICATION_TYPES = {0: "Server", 1: "Client", 2: "ClientAndServer", 3: "DiscoveryServer"}


def _name(table: dict[int, str], value: Any) -> str:
    return table.get(int(value), f"unknown ({int(value)})")


def endpoint_summary(endpoint: Any) -> dict[str, Any]:
    return {
        "url": endpoint.EndpointUrl,
        "security_mode": _name(MODES, endpoint.SecurityMode),
        "security_policy": (endpoint.SecurityPolicyUri or "").rpartition("#")[2] or None,
        "security_level": endpoint.SecurityLevel,
        "user_tokens": [_name(TOKEN_TYPES, token.TokenType) for token in endpoint.UserIdentityTokens or ()],
    }


def anonymous_policy(endpoints: list[Any]) -> str | None:
    """The PolicyId of an anonymous user token on an endpoint without security (what a session over this probe's
    unsecured channel needs), or None: the server offers no such session."""
    for endpoint in endpoints:
        if int(endpoint.SecurityMode) == 1 and endpoint.SecurityPolicyUri == POLICY_NONE:
            for token in endpoint.UserIdentityTokens or ():
                if int(token.TokenType) == 0:
                    return str(token.PolicyId or "")
    return None


def _first_der(data: bytes) -> bytes:
    """The first certificate of a ServerCertificate that may be a chain (DER certificates one after the other)."""
    if len(data) < 2 or data[0] != 0x30:
        raise ProtocolError("certificate: not a DER SEQUENCE")
    size = data[1]
    if size < 0x80:
        return data[: 2 + size]
    octets = size & 0x7F
    if not 1 <= octets <= 4 or len(data) < 2 + octets:
        raise ProtocolError("certificate: bad DER length")
    return data[: 2 + octets + int.from_bytes(data[2 : 2 + octets], "big")]


def certificate_info(data: bytes) -> dict[str, Any]:
    """Subject, issuer, validity, signature hash, SAN URIs and SHA-1 thumbprint (how OPC UA names a certificate) of
    the server's application instance certificate."""
    from cryptography import x509

    der = _first_der(data)
    try:
        cert = x509.load_der_x509_certificate(der)
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            uris = san.get_values_for_type(x509.UniformResourceIdentifier)
        except x509.ExtensionNotFound:
            uris = []
        try:
            hash_name = cert.signature_hash_algorithm.name if cert.signature_hash_algorithm else None
        except Exception:  # an algorithm cryptography does not support: named by its OID below
            hash_name = None
        return {
            "subject": cert.subject.rfc4514_string(),
            "issuer": cert.issuer.rfc4514_string(),
            "self_signed": cert.subject == cert.issuer,
            "not_before": cert.not_valid_before_utc.isoformat(),
            "not_after": cert.not_valid_after_utc.isoformat(),
            "signature_hash": hash_name,
            "signature_algorithm": cert.signature_algorithm_oid.dotted_string,
            "san_uris": list(uris),
            "serial": f"{cert.serial_number:X}",
            "thumbprint_sha1": hashlib.sha1(der, usedforsecurity=False).hexdigest(),
            "der_bytes": len(data),  # more than the certificate's own length: a chain follows it
        }
    except Exception as exc:  # cryptography's parser: ValueError mostly, but any failure means "unreadable"
        raise ProtocolError(f"certificate: unreadable ({type(exc).__name__}: {exc})") from None
