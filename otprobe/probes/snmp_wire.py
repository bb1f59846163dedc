"""SNMP wire format for the snmp probe: the requests it builds and the hardened parsing of the replies it reads.

Built with pysnmp's message types (pysnmp.proto.api for v2c, the SNMPv3 message and USM parameter syntax for v3) and
pyasn1's BER codec; no pysnmp engine, dispatcher or transport is involved. Every parser here raises only
ProtocolError, whatever the bytes, and its messages never quote the reply: a v2c reply carries the community.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pyasn1.codec.ber import decoder, encoder
from pyasn1.type import univ
from pysnmp.proto import api, rfc1902, rfc1905
from pysnmp.proto.mpmod.rfc3412 import SNMPv3Message
from pysnmp.proto.secmod.rfc3414 import localkey
from pysnmp.proto.secmod.rfc3414.service import UsmSecurityParameters

from otprobe.errors import ProtocolError

OID = tuple[int, ...]
Kind = Literal["get", "getnext", "getbulk"]
AuthProtocol = Literal["md5", "sha"]

V2C, V3 = 1, 3
V2 = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]  # v2c's PDUs and value types, which v3 carries too
# Largest reply read. The probe asks for at most 32 varbinds of SnmpAdminString (<= 255 octets each), well under
# this; a bigger datagram is refused unparsed. Also the msgMaxSize a v3 request advertises.
MAX_REPLY = 16_384
MAX_TEXT = 255  # SnmpAdminString's limit (RFC 3411); a longer string is not an answer to these objects
USM = 3  # msgSecurityModel: the User-based Security Model (RFC 3414)
FLAG_AUTH, FLAG_REPORTABLE = 0x01, 0x04
AUTH_PARAMS_LEN = 12  # HMAC-MD5-96 and HMAC-SHA-96 both truncate to 12 octets
USM_STATS = (1, 3, 6, 1, 6, 3, 15, 1, 1)
# the USM counters an agent's Report names (RFC 3414 section 5)
REPORTS = {(*USM_STATS, 1, 0): "unsupported security level", (*USM_STATS, 2, 0): "not in time window",
           (*USM_STATS, 3, 0): "unknown user name", (*USM_STATS, 4, 0): "unknown engine id",
           (*USM_STATS, 5, 0): "wrong digest", (*USM_STATS, 6, 0): "decryption error"}
_PDUS = {"get": V2.GetRequestPDU, "getnext": V2.GetNextRequestPDU, "getbulk": V2.GetBulkRequestPDU}
_HASHES = {"md5": "md5", "sha": "sha1"}


class Missing(StrEnum):
    """The v2c exception values a varbind may carry instead of a value (RFC 3416)."""

    NO_SUCH_OBJECT = "noSuchObject"
    NO_SUCH_INSTANCE = "noSuchInstance"
    END_OF_MIB_VIEW = "endOfMibView"


Value = bytes | int | OID | Missing | None  # None: a type this probe does not read (IpAddress, Opaque, Null...)


@dataclass(frozen=True)
class Reply:
    """One decoded response or report PDU."""

    request_id: int
    error_status: int
    error_index: int
    varbinds: tuple[tuple[OID, Value], ...]
    report: str | None = None  # a v3 Report: which USM counter the agent named


@dataclass(frozen=True)
class Engine:
    """The agent's USM engine, from the discovery Report: what a v3 request must name to be accepted."""

    engine_id: bytes
    boots: int
    time: int


@dataclass(frozen=True)
class Auth:
    """authNoPriv: the user's key localised to the agent's engine id (RFC 3414 section 2.6)."""

    protocol: AuthProtocol
    key: bytes


def new_id() -> int:
    """A request id (or v3 msgID) no earlier exchange of ours used, as far as 31 random bits can tell."""
    return secrets.randbelow(2**31 - 1) + 1


def localized_key(protocol: AuthProtocol, passphrase: str, engine_id: bytes) -> Auth:
    """RFC 3414 A.2: the passphrase hashed over 1 MB, then bound to this engine (checked against A.3's vectors)."""
    derive = localkey.password_to_key_sha if protocol == "sha" else localkey.password_to_key_md5
    return Auth(protocol, bytes(derive(passphrase.encode(), univ.OctetString(engine_id))))


# -- requests ---------------------------------------------------------------------------------------------------------

def _pdu(kind: Kind, request_id: int, oids: Sequence[OID], max_repetitions: int) -> Any:
    pdu = _PDUS[kind]()
    if kind == "getbulk":
        V2.apiBulkPDU.set_defaults(pdu)
        V2.apiBulkPDU.set_non_repeaters(pdu, 0)
        V2.apiBulkPDU.set_max_repetitions(pdu, max_repetitions)
    else:
        V2.apiPDU.set_defaults(pdu)
    V2.apiPDU.set_request_id(pdu, request_id)
    V2.apiPDU.set_varbinds(pdu, [(oid, V2.Null("")) for oid in oids])
    return pdu


def v2c_request(kind: Kind, community: bytes, request_id: int, oids: Sequence[OID], max_repetitions: int = 0) -> bytes:
    message = V2.Message()
    V2.apiMessage.set_defaults(message)
    V2.apiMessage.set_community(message, community)
    V2.apiMessage.set_pdu(message, _pdu(kind, request_id, oids, max_repetitions))
    return bytes(encoder.encode(message))


def v3_request(kind: Kind, msg_id: int, request_id: int, oids: Sequence[OID], *, user: bytes = b"",
               engine: Engine | None = None, auth: Auth | None = None, max_repetitions: int = 0) -> bytes:
    """A plaintext (never encrypted) SNMPv3 request. No engine and no user: the discovery request (RFC 3414 4)."""
    usm = UsmSecurityParameters()
    usm["msgAuthoritativeEngineId"] = engine.engine_id if engine else b""
    usm["msgAuthoritativeEngineBoots"] = engine.boots if engine else 0
    usm["msgAuthoritativeEngineTime"] = engine.time if engine else 0
    usm["msgUserName"] = user
    # authNoPriv: a placeholder of zeros is hashed, then replaced by the MAC (RFC 3414 6.3.1)
    usm["msgAuthenticationParameters"] = bytes(AUTH_PARAMS_LEN) if auth else b""
    usm["msgPrivacyParameters"] = b""
    message = SNMPv3Message()
    message["msgVersion"] = V3
    header = message["msgGlobalData"]
    header["msgID"] = msg_id
    header["msgMaxSize"] = MAX_REPLY
    header["msgFlags"] = bytes([FLAG_REPORTABLE | (FLAG_AUTH if auth else 0)])
    header["msgSecurityModel"] = USM
    security = bytes(encoder.encode(usm))
    message["msgSecurityParameters"] = security
    scoped = message["msgData"]["plaintext"]
    scoped["contextEngineId"] = engine.engine_id if engine else b""
    scoped["contextName"] = b""
    pdu = _pdu(kind, request_id, oids, max_repetitions)
    scoped["data"].setComponentByType(pdu.tagSet, pdu)
    whole = bytes(encoder.encode(message))
    if auth is None:
        return whole
    # The authentication parameters are the last but one USM field, before the empty privacy parameters (04 00):
    # their place in the encoded message follows from the end of the security parameters, never from a search for
    # twelve zero octets that an engine id could also contain.
    end = whole.index(security) + len(security)
    start = end - 2 - AUTH_PARAMS_LEN
    mac = hmac.new(auth.key, whole, _HASHES[auth.protocol]).digest()[:AUTH_PARAMS_LEN]
    return whole[:start] + mac + whole[end - 2:]


# -- replies ----------------------------------------------------------------------------------------------------------

def _decode(data: bytes, spec: Any, what: str) -> Any:
    if len(data) > MAX_REPLY:
        raise ProtocolError(f"{what}: {len(data)} bytes, more than the {MAX_REPLY} this probe reads")
    try:
        value, rest = decoder.decode(data, asn1Spec=spec)
    except Exception:  # pyasn1 raises its own errors and, on hostile input, ValueError, TypeError, RecursionError...
        raise ProtocolError(f"{what}: not valid BER for its type") from None
    if rest:
        raise ProtocolError(f"{what}: {len(rest)} bytes after its end")
    return value


def _value(value: Any) -> Value:
    if isinstance(value, rfc1905.NoSuchObject):
        return Missing.NO_SUCH_OBJECT
    if isinstance(value, rfc1905.NoSuchInstance):
        return Missing.NO_SUCH_INSTANCE
    if isinstance(value, rfc1905.EndOfMibView):
        return Missing.END_OF_MIB_VIEW
    if isinstance(value, univ.ObjectIdentifier):
        return tuple(value)
    if isinstance(value, rfc1902.IpAddress | rfc1902.Opaque | rfc1902.Bits):  # octet strings, but not text
        return None
    if isinstance(value, univ.OctetString):
        return bytes(value)
    if isinstance(value, univ.Integer):
        return int(value)
    return None


def _reply(pdu: Any) -> Reply:
    """The fields of a response or report PDU, every access inside the caller's translation of pyasn1 errors."""
    varbinds = tuple((tuple(oid), _value(value)) for oid, value in V2.apiPDU.get_varbinds(pdu))
    report = None
    if isinstance(pdu, V2.ReportPDU):
        report = REPORTS.get(varbinds[0][0], "unknown report") if varbinds else "empty report"
    return Reply(int(V2.apiPDU.get_request_id(pdu)), int(V2.apiPDU.get_error_status(pdu)),
                 int(V2.apiPDU.get_error_index(pdu)), varbinds, report)


def _checked(reply: Reply, request_id: int, sent: int) -> Reply:
    if reply.request_id != request_id and not (reply.report and reply.request_id == 0):
        raise ProtocolError("reply to another request (request id differs)")
    if reply.report is None and reply.error_status == 0 and len(reply.varbinds) < sent:
        raise ProtocolError(f"reply carries {len(reply.varbinds)} varbinds for the {sent} asked")
    return reply


def parse_v2c_reply(data: bytes, community: bytes, request_id: int, sent: int) -> Reply:
    """The Response to our v2c request `request_id` with `sent` varbinds; ProtocolError for anything else."""
    message = _decode(data, V2.Message(), "SNMPv2c reply")
    try:
        version = int(message["version"])
        echoed = bytes(message["community"])
        pdu = message["data"].getComponent()
        if not isinstance(pdu, V2.ResponsePDU):
            raise ProtocolError(f"SNMPv2c reply is a {type(pdu).__name__}, not a Response")
        reply = _reply(pdu)
    except ProtocolError:
        raise
    except Exception:  # a field pyasn1 decoded as absent or of another type raises on access
        raise ProtocolError("SNMPv2c reply: a required field is missing or malformed") from None
    if version != V2C:
        raise ProtocolError(f"reply is SNMP version {version}, not the v2c asked")
    if not hmac.compare_digest(echoed, community):
        raise ProtocolError("reply carries another community than the request's")
    return _checked(reply, request_id, sent)


def parse_v3_reply(data: bytes, msg_id: int, request_id: int, sent: int) -> tuple[Reply, Engine]:
    """The Response or Report to our v3 message `msg_id`, and the engine it names; ProtocolError for anything else."""
    message = _decode(data, SNMPv3Message(), "SNMPv3 reply")
    try:
        version = int(message["msgVersion"])
        header = message["msgGlobalData"]
        answered, model = int(header["msgID"]), int(header["msgSecurityModel"])
        security = bytes(message["msgSecurityParameters"])
        scoped = message["msgData"]
        if scoped.getName() != "plaintext":
            raise ProtocolError("SNMPv3 reply is encrypted, though no privacy was asked")
        pdu = scoped["plaintext"]["data"].getComponent()
        if not isinstance(pdu, V2.ResponsePDU | V2.ReportPDU):
            raise ProtocolError(f"SNMPv3 reply is a {type(pdu).__name__}, not a Response or Report")
        reply = _reply(pdu)
    except ProtocolError:
        raise
    except Exception:  # as in parse_v2c_reply
        raise ProtocolError("SNMPv3 reply: a required field is missing or malformed") from None
    if version != V3 or model != USM:
        raise ProtocolError(f"reply is SNMP version {version}, security model {model}: not the v3/USM asked")
    if answered != msg_id:
        raise ProtocolError("reply to another message (msgID differs)")
    usm = _decode(security, UsmSecurityParameters(), "SNMPv3 security parameters")
    try:
        engine = Engine(bytes(usm["msgAuthoritativeEngineId"]), int(usm["msgAuthoritativeEngineBoots"]),
                        int(usm["msgAuthoritativeEngineTime"]))
    except Exception:  # as above
        raise ProtocolError("SNMPv3 security parameters: a required field is missing or malformed") from None
    if not 5 <= len(engine.engine_id) <= 32:  # RFC 3411's SnmpEngineID; an empty one can be no discovery answer
        raise ProtocolError(f"SNMPv3 reply names an engine id of {len(engine.engine_id)} octets (5-32 expected)")
    return _checked(reply, request_id, sent), engine


def text(value: Value) -> str | None:
    """A DisplayString / SnmpAdminString as text: None when absent, empty or not a string; NULs and padding cut."""
    if not isinstance(value, bytes):
        return None
    if len(value) > MAX_TEXT:
        raise ProtocolError(f"a text value of {len(value)} octets (at most {MAX_TEXT} expected)")
    cleaned = value.split(b"\0", 1)[0].decode("utf-8", errors="replace").strip()
    return cleaned or None
