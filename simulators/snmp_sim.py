"""The simulated SNMP agent: a managed switch's system group and ENTITY-MIB physical table over UDP.

It owns the `snmp:` plant section (parse_config), the classification of each datagram against the read-only
allowlist (Get, GetNext, GetBulk and the SNMPv3 engine discovery), the agent's small MIB and the replies a real agent
gives. Datagrams go through simulators.udp_front.

pysnmp serves as a codec only (pysnmp.proto.api message classes, the SNMPv3 message and USM parameter syntax, pyasn1's
BER): its agent is not used, because its dispatcher consumes datagrams internally (a wrong community or an unknown
user vanishes inside it) where the recorder cannot see and classify every one, it answers a 1.3.6 view with its own
defaults ("PySNMP engine" sysDescr, enterprise 20408, USM user names), and it would apply a SetRequest.

Behaviour, as real agents have it:
* SNMPv1 and v2c with the configured communities only; any other community gets silence (and is recorded).
* SNMPv3 noAuthNoPriv for the configured users: a request without this agent's engine id gets a Report of
  usmStatsUnknownEngineIDs carrying the engine id, boots and time (the discovery); an unknown user a Report of
  usmStatsUnknownUserNames; a request asking for authentication or privacy a Report of usmStatsUnsupportedSecLevels.
* Get answers noSuchObject / noSuchInstance (v1: error noSuchName); GetNext and GetBulk walk the MIB in OID order up to
  endOfMibView; GetBulk returns at most MAX_BULK_VARBINDS varbinds.
* SetRequest is a violation and is never applied: error noAccess (v1: noSuchName), as with a read-only community.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api, rfc1905
from pysnmp.proto.mpmod.rfc3412 import SNMPv3Message
from pysnmp.proto.secmod.rfc3414.service import UsmSecurityParameters

from simulators.faults import Fault
from simulators.recorder import Recorder
from simulators.sections import known_keys
from simulators.udp_front import Address, DatagramCodec, Exchange, UdpDevice, UdpFront

PROTOCOL = "snmp"
DEFAULT_PORT = 161
V1, V2C, V3 = 0, 1, 3
V2 = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]  # the value types and the PDUs v3 carries
MAX_BULK_VARBINDS = 64
NO_SUCH_NAME, NO_ACCESS = 2, 6
FLAG_AUTH, FLAG_PRIV, FLAG_REPORTABLE = 0x01, 0x02, 0x04
USM = 3
MSG_MAX_SIZE = 65507

OID = tuple[int, ...]
SYSTEM = (1, 3, 6, 1, 2, 1, 1)
SYS_DESCR, SYS_OBJECT_ID, SYS_UPTIME, SYS_CONTACT, SYS_NAME, SYS_LOCATION = ((*SYSTEM, n, 0) for n in range(1, 7))
ENT_PHYSICAL_ENTRY = (1, 3, 6, 1, 2, 1, 47, 1, 1, 1, 1)
USM_STATS = (1, 3, 6, 1, 6, 3, 15, 1, 1)
UNSUPPORTED_SEC_LEVELS, UNKNOWN_USER_NAMES, UNKNOWN_ENGINE_IDS = ((*USM_STATS, n, 0) for n in (1, 3, 4))

# entPhysicalClass (RFC 6933)
ENTITY_CLASSES = {"other": 1, "unknown": 2, "chassis": 3, "backplane": 4, "container": 5, "powerSupply": 6, "fan": 7,
                  "sensor": 8, "module": 9, "port": 10, "stack": 11, "cpu": 12}
# entPhysicalEntry columns: (plant key, column number), strings unless named below
ENTITY_COLUMNS = (("descr", 2), ("vendor_type", 3), ("contained_in", 4), ("class", 5), ("name", 7),
                  ("hardware_rev", 8), ("firmware_rev", 9), ("software_rev", 10), ("serial", 11), ("mfg_name", 12),
                  ("model_name", 13))
PDU_KINDS = {"GetRequestPDU": "get", "GetNextRequestPDU": "getnext", "GetBulkRequestPDU": "getbulk",
             "SetRequestPDU": "set", "GetResponsePDU": "response", "ResponsePDU": "response", "TrapPDU": "trap",
             "SNMPv2TrapPDU": "trap", "InformRequestPDU": "inform", "ReportPDU": "report"}
READS = ("get", "getnext", "getbulk")
EXCEPTIONS = (rfc1905.noSuchObject, rfc1905.noSuchInstance, rfc1905.endOfMibView)  # the MIB returns these very objects


# -- configuration ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Entity:
    index: int
    values: dict[str, Any]  # plant key of ENTITY_COLUMNS -> value (strings, vendor_type an OID, ints)


@dataclass(frozen=True)
class SnmpConfig:
    port: int
    sys_descr: str
    sys_object_id: OID
    sys_name: str
    sys_contact: str = ""
    sys_location: str = ""
    communities: tuple[str, ...] = ("public",)
    v3_users: tuple[str, ...] = ()
    engine_id: bytes = b""
    engine_boots: int = 1
    entities: tuple[Entity, ...] = field(default_factory=tuple)


_KEYS = ("port", "sys_descr", "sys_object_id", "sys_name", "sys_contact", "sys_location", "communities", "v3_users",
         "engine_id", "engine_boots", "entities")
_ENTITY_KEYS = ("index", *(key for key, _ in ENTITY_COLUMNS))


def _oid(value: Any, key: str) -> OID:
    arcs = str(value).strip(".").split(".")
    if not all(arc.isdigit() for arc in arcs) or len(arcs) < 2:
        raise ValueError(f"snmp.{key}: {value!r} is not a dotted OID such as 1.3.6.1.4.1.248.14")
    return tuple(int(arc) for arc in arcs)


def _text(section: dict[str, Any], key: str, required: bool = False) -> str:
    value = section.get(key, None if required else "")
    if not isinstance(value, str) or (required and not value) or len(value.encode()) > 255:
        raise ValueError(f"snmp.{key}: {'required, ' if required else ''}a string of at most 255 bytes")
    return value


def _names(section: dict[str, Any], key: str, default: tuple[str, ...], limit: int) -> tuple[str, ...]:
    value = section.get(key, list(default))
    if not isinstance(value, list) or not all(isinstance(v, str) and 0 < len(v.encode()) <= limit for v in value):
        raise ValueError(f"snmp.{key}: must be a list of non-empty strings of at most {limit} bytes")
    return tuple(value)


def _int(section: dict[str, Any], key: str, low: int, high: int, default: int | None = None) -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"snmp.{key}: must be an integer {low}-{high} (got {value!r})")
    return value


def _entity(where: str, row: Any, indexes: set[int]) -> Entity:
    known_keys(row, f"snmp.{where}", _ENTITY_KEYS, shape=", ".join(_ENTITY_KEYS))
    index = _int(row, "index", 1, 2**31 - 1) if "index" in row else None
    if index is None or index in indexes:
        raise ValueError(f"snmp.{where}.index: required, an entPhysicalIndex used once (1 or more)")
    indexes.add(index)
    klass = row.get("class", "unknown")
    if klass not in ENTITY_CLASSES:
        raise ValueError(f"snmp.{where}.class: {klass!r} is not one of {', '.join(ENTITY_CLASSES)}")
    values: dict[str, Any] = {"class": ENTITY_CLASSES[klass],
                              "vendor_type": _oid(row.get("vendor_type", "0.0"), f"{where}.vendor_type"),
                              "contained_in": _int(row, "contained_in", 0, 2**31 - 1, 0)}
    for key, _ in ENTITY_COLUMNS:
        if key not in values:
            try:
                values[key] = _text(row, key)
            except ValueError:
                raise ValueError(f"snmp.{where}.{key}: a string of at most 255 bytes") from None
    return Entity(index, values)


def parse_config(section: dict[str, Any]) -> SnmpConfig:
    """Validate an `snmp:` plant section. Raises ValueError("snmp.<key>: ...") naming the offending key."""
    known_keys(section, "snmp", _KEYS)
    if "sys_object_id" not in section:
        raise ValueError("snmp.sys_object_id: required")
    sys_object_id = _oid(section["sys_object_id"], "sys_object_id")
    engine_id = section.get("engine_id")
    if engine_id is None:
        # RFC 3411 text format: 0x80000000 | the vendor's enterprise number (from sysObjectID), 4, the system name
        enterprise = sys_object_id[6] if len(sys_object_id) > 6 else 0
        engine = (0x80000000 | enterprise).to_bytes(4, "big") + b"\x04" + _text(section, "sys_name", True).encode()
        engine_id = engine[:32]
    else:
        try:
            engine_id = bytes.fromhex(str(engine_id))
        except ValueError:
            raise ValueError(f"snmp.engine_id: {engine_id!r} is not hex") from None
        if not 5 <= len(engine_id) <= 32:
            raise ValueError("snmp.engine_id: must be 5-32 octets (RFC 3411)")
    rows = section.get("entities", [])
    if not isinstance(rows, list):
        raise ValueError("snmp.entities: must be a list of entPhysicalTable rows")
    indexes: set[int] = set()
    return SnmpConfig(
        port=_int(section, "port", 0, 65535, DEFAULT_PORT),  # 0: a free port, for tests
        sys_descr=_text(section, "sys_descr", True),
        sys_object_id=sys_object_id,
        sys_name=_text(section, "sys_name", True),
        sys_contact=_text(section, "sys_contact"),
        sys_location=_text(section, "sys_location"),
        communities=_names(section, "communities", ("public",), 255),
        v3_users=_names(section, "v3_users", (), 32),
        engine_id=engine_id,
        engine_boots=_int(section, "engine_boots", 1, 2**31 - 1, 1),
        entities=tuple(_entity(f"entities[{i}]", row, indexes) for i, row in enumerate(rows)),
    )


# -- the MIB ---------------------------------------------------------------------------------------------------------

class Mib:
    """The agent's objects in OID order; sysUpTime counts from the agent's start."""

    def __init__(self, config: SnmpConfig, started: float) -> None:
        objects: dict[OID, Callable[[], Any]] = {
            SYS_DESCR: lambda: V2.OctetString(config.sys_descr),
            SYS_OBJECT_ID: lambda: V2.ObjectIdentifier(config.sys_object_id),
            SYS_UPTIME: lambda: V2.TimeTicks(int((time.monotonic() - started) * 100) % 2**32),
            SYS_CONTACT: lambda: V2.OctetString(config.sys_contact),
            SYS_NAME: lambda: V2.OctetString(config.sys_name),
            SYS_LOCATION: lambda: V2.OctetString(config.sys_location),
        }
        for entity in config.entities:
            for key, column in ENTITY_COLUMNS:
                objects[(*ENT_PHYSICAL_ENTRY, column, entity.index)] = _constant(entity.values[key])
        self.objects = objects
        self.oids = sorted(objects)

    def get(self, oid: OID) -> Any:
        """The value, or the v2c exception: noSuchInstance when the object type exists, noSuchObject otherwise."""
        if oid in self.objects:
            return self.objects[oid]()
        parent = oid[:-1]
        known_type = any(o[: len(parent)] == parent and len(o) == len(oid) for o in self.oids)
        return rfc1905.noSuchInstance if known_type else rfc1905.noSuchObject

    def next(self, oid: OID) -> tuple[OID, Any]:
        """The first object after oid in OID order, or (oid, endOfMibView)."""
        i = bisect.bisect_right(self.oids, oid)
        if i == len(self.oids):
            return oid, rfc1905.endOfMibView
        return self.oids[i], self.objects[self.oids[i]]()


def _constant(value: Any) -> Callable[[], Any]:
    if isinstance(value, tuple):
        return lambda: V2.ObjectIdentifier(value)
    if isinstance(value, int):
        return lambda: V2.Integer(value)
    return lambda: V2.OctetString(value)


# -- the codec -------------------------------------------------------------------------------------------------------

def _kind(pdu: Any) -> str:
    return PDU_KINDS.get(type(pdu).__name__, "other")


class SnmpCodec(DatagramCodec):
    protocol = PROTOCOL
    header_len = 2  # the outer SEQUENCE's tag and first length octet stay intact in a malformed reply

    def __init__(self, config: SnmpConfig) -> None:
        self.config = config
        self.started = time.monotonic()
        self.mib = Mib(config, self.started)
        self.usm_counters = {UNSUPPORTED_SEC_LEVELS: 0, UNKNOWN_USER_NAMES: 0, UNKNOWN_ENGINE_IDS: 0}

    def exchange(self, data: bytes, peer: Address) -> Exchange:
        try:
            version = int(api.decodeMessageVersion(data))
            if version == V3:
                return self._v3(data)
            p = api.PROTOCOL_MODULES[version]
            message, _ = decoder.decode(data, asn1Spec=p.Message())
        except Exception:  # pyasn1 and pysnmp raise their own errors, KeyError for an unknown version
            return Exchange("snmp:bad-frame", False)
        pdu = p.apiMessage.get_pdu(message)
        kind = _kind(pdu)
        label = "v1" if version == V1 else "v2c"
        community = bytes(p.apiMessage.get_community(message)).decode("latin-1")
        exchange = Exchange(f"{label}:{kind}", kind in READS, detail={"community_ok": True})
        if community not in self.config.communities:
            exchange.detail["community_ok"] = False  # a real agent drops it silently (and may count or trap it)
            return exchange
        if kind in (*READS, "set"):
            response = p.apiMessage.get_response(message)
            self._answer(p, pdu, p.apiMessage.get_pdu(response), kind, version)
            exchange.replies = [encoder.encode(response)]
        return exchange

    def _answer(self, p: Any, request: Any, response: Any, kind: str, version: int) -> None:
        """Fill a response PDU (request id already set) for a Get, GetNext, GetBulk or Set request."""
        requested = [(tuple(oid), value) for oid, value in p.apiPDU.get_varbinds(request)]
        if kind == "set":  # never applied
            p.apiPDU.set_error_status(response, NO_SUCH_NAME if version == V1 else NO_ACCESS)
            p.apiPDU.set_error_index(response, 1)
            p.apiPDU.set_varbinds(response, requested)
            return
        if kind == "getbulk":
            varbinds = self._bulk(request, [oid for oid, _ in requested])
        elif kind == "getnext":
            varbinds = [self.mib.next(oid) for oid, _ in requested]
        else:
            varbinds = [(oid, self.mib.get(oid)) for oid, _ in requested]
        if version == V1:
            missing = [i for i, (_, value) in enumerate(varbinds) if any(value is e for e in EXCEPTIONS)]
            if missing:  # v1 has no exception values: the whole request fails on the first missing name
                p.apiPDU.set_error_status(response, NO_SUCH_NAME)
                p.apiPDU.set_error_index(response, missing[0] + 1)
                p.apiPDU.set_varbinds(response, requested)
                return
        p.apiPDU.set_varbinds(response, varbinds)

    def _bulk(self, request: Any, oids: list[OID]) -> list[tuple[OID, Any]]:
        bulk = api.v2c.apiBulkPDU
        non_repeaters = max(0, min(int(bulk.get_non_repeaters(request)), len(oids)))
        repetitions = max(0, int(bulk.get_max_repetitions(request)))
        varbinds = [self.mib.next(oid) for oid in oids[:non_repeaters]]
        cursor = oids[non_repeaters:]
        for _ in range(repetitions):
            if not cursor or len(varbinds) + len(cursor) > MAX_BULK_VARBINDS:
                break
            row = [self.mib.next(oid) for oid in cursor]
            varbinds += row
            if all(value is rfc1905.endOfMibView for _, value in row):
                break
            cursor = [oid for oid, _ in row]
        return varbinds

    # -- SNMPv3 --

    def _v3(self, data: bytes) -> Exchange:
        message, _ = decoder.decode(data, asn1Spec=SNMPv3Message())
        header = message["msgGlobalData"]
        flags = bytes(header["msgFlags"])[0]
        if int(header["msgSecurityModel"]) != USM:
            return Exchange("v3:bad-security-model", False)
        usm, _ = decoder.decode(bytes(message["msgSecurityParameters"]), asn1Spec=UsmSecurityParameters())
        engine, user = bytes(usm["msgAuthoritativeEngineId"]), bytes(usm["msgUserName"]).decode("latin-1")
        scoped = message["msgData"]
        plain = scoped.getName() == "plaintext"
        pdu = scoped["plaintext"]["data"].getComponent() if plain else None
        kind = _kind(pdu) if pdu is not None else "encrypted"
        discovery = engine == b"" and user == ""
        exchange = Exchange("v3:discovery" if discovery else f"v3:{kind}", discovery or kind in READS,
                            detail={"user": user})
        report = None
        if engine != self.config.engine_id:
            report = UNKNOWN_ENGINE_IDS
        elif user not in self.config.v3_users:
            report = UNKNOWN_USER_NAMES
        elif flags & (FLAG_AUTH | FLAG_PRIV) or not plain:
            report = UNSUPPORTED_SEC_LEVELS  # the configured users are noAuthNoPriv
        request_id = V2.apiPDU.get_request_id(pdu) if pdu is not None else 0
        if report is not None:
            if not flags & FLAG_REPORTABLE:
                return exchange
            self.usm_counters[report] += 1
            reply = V2.ReportPDU()
            V2.apiPDU.set_defaults(reply)
            V2.apiPDU.set_request_id(reply, request_id)
            V2.apiPDU.set_varbinds(reply, [(report, V2.Counter32(self.usm_counters[report]))])
            exchange.detail["report"] = ".".join(map(str, report))
        elif kind in (*READS, "set"):
            reply = V2.ResponsePDU()
            V2.apiPDU.set_defaults(reply)
            V2.apiPDU.set_request_id(reply, request_id)
            self._answer(V2, pdu, reply, kind, V3)
        else:
            return exchange
        context = scoped["plaintext"]["contextName"] if plain else b""
        exchange.replies = [self._v3_message(int(header["msgID"]), user, context, reply)]
        return exchange

    def _v3_message(self, msg_id: int, user: str, context: Any, pdu: Any) -> bytes:
        usm = UsmSecurityParameters()
        usm["msgAuthoritativeEngineId"] = self.config.engine_id
        usm["msgAuthoritativeEngineBoots"] = self.config.engine_boots
        usm["msgAuthoritativeEngineTime"] = int(time.monotonic() - self.started) % 2**31
        usm["msgUserName"] = user.encode("latin-1")
        usm["msgAuthenticationParameters"] = b""
        usm["msgPrivacyParameters"] = b""
        message = SNMPv3Message()
        message["msgVersion"] = V3
        header = message["msgGlobalData"]
        header["msgID"] = msg_id
        header["msgMaxSize"] = MSG_MAX_SIZE
        header["msgFlags"] = b"\x00"  # a response or report is never reportable, and noAuthNoPriv
        header["msgSecurityModel"] = USM
        message["msgSecurityParameters"] = encoder.encode(usm)
        scoped = message["msgData"]["plaintext"]
        scoped["contextEngineId"] = self.config.engine_id
        scoped["contextName"] = context
        scoped["data"].setComponentByType(pdu.tagSet, pdu)
        return encoder.encode(message)

    # -- fault modes --

    def _rewrite(self, reply: bytes, change: Callable[[Any], None]) -> bytes:
        """Decode one of this agent's own replies, change its PDU, encode it again."""
        if api.decodeMessageVersion(reply) == V3:
            message, _ = decoder.decode(reply, asn1Spec=SNMPv3Message())
            change(message["msgData"]["plaintext"]["data"].getComponent())
            return encoder.encode(message)
        p = api.PROTOCOL_MODULES[int(api.decodeMessageVersion(reply))]
        message, _ = decoder.decode(reply, asn1Spec=p.Message())
        change(p.apiMessage.get_pdu(message))
        return encoder.encode(message)

    def wrong_id(self, reply: bytes) -> bytes:
        """Another request's reply: its request id changed."""
        def change(pdu: Any) -> None:
            V2.apiPDU.set_request_id(pdu, (int(V2.apiPDU.get_request_id(pdu)) + 0x5A5A) % 2**31)
        return self._rewrite(reply, change)

    def oversized(self, reply: bytes) -> bytes:
        """A well-formed reply of about 60 kB: one more varbind carrying a huge string."""
        def change(pdu: Any) -> None:
            varbinds = [(tuple(oid), value) for oid, value in V2.apiPDU.get_varbinds(pdu)]
            V2.apiPDU.set_varbinds(pdu, [*varbinds, (SYS_DESCR, V2.OctetString(b"x" * 60_000))])
        return self._rewrite(reply, change)


# -- the device ------------------------------------------------------------------------------------------------------

class SnmpDevice(UdpDevice):
    def __init__(self, host: str, config: SnmpConfig, fault: Fault, recorder: Recorder) -> None:
        super().__init__(UdpFront(host, config.port, SnmpCodec(config), recorder, fault))
        self.config = config

    def summary(self) -> str:
        c = self.config
        users = f" v3 users {','.join(c.v3_users)}" if c.v3_users else ""
        return (f"snmp udp/{self.port}: {c.sys_descr!r} {'.'.join(map(str, c.sys_object_id))} name {c.sys_name!r} "
                f"{len(c.entities)} entities, communities {len(c.communities)}{users}")
