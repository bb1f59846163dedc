"""The simulated BACnet/IP device: one Device object answering ReadProperty and ReadPropertyMultiple over UDP.

It owns the `bacnet:` plant section (parse_config), the classification of each datagram against the read-only
allowlist (confirmed services ReadProperty 12 and ReadPropertyMultiple 14), and the replies a real controller gives,
error replies included. Datagrams go through simulators.udp_front.

bacpypes3 serves as a codec only: it decodes the NPDU and the request APDUs and encodes the ComplexACKs and the I-Am.
Its Application and socket layer are not used: on 127.* its datagram server keeps packets to its own port local, and
its request handlers compare the wildcard instance wrongly, so this module owns the socket and the dispatch. Error,
Reject and Abort replies are a few fixed bytes and are written by hand.

Behaviour, as ASHRAE 135 and real controllers have it:
* Device instance 4194303 is the wildcard: it names this device's own Device object. ACKs name the real instance.
* An unknown property is an Error (property, unknown-property), an unknown object an Error (object, unknown-object);
  inside a ReadPropertyMultiple ACK each failed property carries its own error and the others their values.
* No segmentation: a reply larger than the client's (or the device's) max-APDU is an Abort segmentation-not-supported,
  and so is a segmented request.
* `rpm: false` rejects ReadPropertyMultiple as an unrecognized service, as some controllers do.
* `require_source_port: true` answers only datagrams sent from port 47808, as some controllers do.
* Everything else is recorded as a violation: WriteProperty gets Error (property, write-access-denied) and is never
  applied, Who-Is gets an I-Am (unicast, to the sender) when its range covers this device, other confirmed services a
  Reject unrecognized-service, other unconfirmed services, network-layer messages and undecodable datagrams nothing.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from bacpypes3.apdu import (
    APDU,
    APCISequence,
    IAmRequest,
    ReadPropertyACK,
    ReadPropertyMultipleACK,
    ReadPropertyMultipleRequest,
    ReadPropertyRequest,
    WhoIsRequest,
)
from bacpypes3.basetypes import ErrorType, ReadAccessResult, ReadAccessResultElement, ReadAccessResultElementChoice
from bacpypes3.constructeddata import Any as AnyValue
from bacpypes3.npdu import NPDU
from bacpypes3.pdu import PDU
from bacpypes3.pdu import Address as BacnetAddress
from bacpypes3.primitivedata import CharacterString, Enumerated, ObjectIdentifier, ObjectType, Unsigned

from simulators.faults import Fault
from simulators.recorder import Recorder
from simulators.sections import known_keys
from simulators.udp_front import Address, DatagramCodec, Exchange, UdpDevice, UdpFront

PROTOCOL = "bacnet"
DEFAULT_PORT = 47808  # 0xBAC0; also the only source port some devices answer
WILDCARD_INSTANCE = 4194303
MAX_APDU_SIZES = (50, 128, 206, 480, 1024, 1476)  # the 4-bit max-APDU code of a confirmed request indexes this

BVLC_TYPE, BVLC_UNICAST, BVLC_BROADCAST = 0x81, 0x0A, 0x0B
# BVLC functions of a BBMD or foreign-device registration: a device that is no BBMD NAKs them with a BVLC-Result
BVLC_NAK = {0x01: 0x0010, 0x02: 0x0020, 0x05: 0x0030, 0x06: 0x0040, 0x08: 0x0050, 0x09: 0x0060}

CONFIRMED, UNCONFIRMED = 0, 1
SERVICE_RP, SERVICE_RPM, SERVICE_WP = 12, 14, 15
ALLOWED_SERVICES = (SERVICE_RP, SERVICE_RPM)
UNCONFIRMED_WHO_IS = 8
SEGMENTED_REQUEST = 0x08  # the SEG bit of a confirmed request's first octet

# error class / code, reject and abort reasons (ASHRAE 135 clause 21)
CLASS_OBJECT, CLASS_PROPERTY = 1, 2
UNKNOWN_OBJECT, UNKNOWN_PROPERTY, WRITE_ACCESS_DENIED, NOT_AN_ARRAY = 31, 32, 40, 50
REJECT_INVALID_TAG, REJECT_UNRECOGNIZED_SERVICE = 4, 9
ABORT_SEGMENTATION_NOT_SUPPORTED = 4

# property identifiers
OBJECT_IDENTIFIER, OBJECT_NAME, OBJECT_TYPE, VENDOR_NAME, VENDOR_IDENTIFIER = 75, 77, 79, 121, 120
MODEL_NAME, FIRMWARE_REVISION, APPLICATION_SOFTWARE_VERSION, SERIAL_NUMBER = 70, 44, 12, 372
DESCRIPTION, LOCATION, MAX_APDU_LENGTH_ACCEPTED, SEGMENTATION_SUPPORTED = 28, 58, 62, 107
PROPERTY_ALL, PROPERTY_OPTIONAL, PROPERTY_REQUIRED = 8, 80, 105
OPTIONAL_PROPERTIES = (DESCRIPTION, LOCATION, SERIAL_NUMBER)
NO_SEGMENTATION = 3


# -- configuration ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BacnetConfig:
    port: int
    device_instance: int
    object_name: str
    vendor_id: int
    vendor_name: str
    model_name: str
    firmware_revision: str
    application_software_version: str
    serial_number: str | None = None
    description: str | None = None
    location: str | None = None
    max_apdu: int = 1476
    rpm: bool = True
    require_source_port: bool = False


_STRINGS = ("object_name", "vendor_name", "model_name", "firmware_revision", "application_software_version")
_OPTIONAL_STRINGS = ("serial_number", "description", "location")
_KEYS = ("port", "device_instance", "vendor_id", *_STRINGS, *_OPTIONAL_STRINGS, "max_apdu", "rpm",
         "require_source_port")


def _int(section: dict[str, Any], key: str, low: int, high: int, default: int | None = None) -> int:
    value = section.get(key, default)
    if value is None:
        raise ValueError(f"bacnet.{key}: required")
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"bacnet.{key}: must be an integer {low}-{high} (got {value!r})")
    return value


def _string(section: dict[str, Any], key: str, required: bool) -> str | None:
    value = section.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value.encode()) > 255:
        raise ValueError(f"bacnet.{key}: {'required, ' if required else ''}a non-empty string of at most 255 bytes")
    return value


def _bool(section: dict[str, Any], key: str, default: bool) -> bool:
    value = section.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"bacnet.{key}: must be true or false (got {value!r})")
    return value


def parse_config(section: dict[str, Any]) -> BacnetConfig:
    """Validate a `bacnet:` plant section. Raises ValueError("bacnet.<key>: ...") naming the offending key."""
    known_keys(section, "bacnet", _KEYS)
    max_apdu = section.get("max_apdu", 1476)
    if max_apdu not in MAX_APDU_SIZES or isinstance(max_apdu, bool):
        raise ValueError(f"bacnet.max_apdu: must be one of {', '.join(map(str, MAX_APDU_SIZES))} (got {max_apdu!r})")
    strings = {key: _string(section, key, True) for key in _STRINGS}
    optional = {key: _string(section, key, False) for key in _OPTIONAL_STRINGS}
    return BacnetConfig(
        port=_int(section, "port", 0, 65535, DEFAULT_PORT),  # 0: a free port, for tests
        # 4194303 is the wildcard, no device's own instance
        device_instance=_int(section, "device_instance", 0, WILDCARD_INSTANCE - 1),
        vendor_id=_int(section, "vendor_id", 0, 65535),
        max_apdu=max_apdu,
        rpm=_bool(section, "rpm", True),
        require_source_port=_bool(section, "require_source_port", False),
        **strings,
        **optional,
    )


# -- wire ------------------------------------------------------------------------------------------------------------

def bvlc(apdu: bytes) -> bytes:
    """An Original-Unicast-NPDU carrying one APDU, no routing, expecting no reply (as every reply is)."""
    payload = b"\x01\x00" + apdu
    return struct.pack(">BBH", BVLC_TYPE, BVLC_UNICAST, 4 + len(payload)) + payload


def error_apdu(invoke_id: int, service: int, error_class: int, code: int) -> bytes:
    return bytes([0x50, invoke_id, service, 0x91, error_class, 0x91, code])  # 0x91: application tag 9, 1 octet


def reject_apdu(invoke_id: int, reason: int) -> bytes:
    return bytes([0x60, invoke_id, reason])


def abort_apdu(invoke_id: int, reason: int) -> bytes:
    return bytes([0x71, invoke_id, reason])  # 0x01: sent by the server


def _encoded(sequence: APCISequence) -> bytes:
    """The APDU bytes of a bacpypes3 ACK or unconfirmed request (its encoder needs the flags set, even if unused)."""
    apdu = sequence.encode()
    apdu.apduSeg = apdu.apduMor = False
    return bytes(apdu.encode().pduData)


class BacnetCodec(DatagramCodec):
    protocol = PROTOCOL
    header_len = 6  # BVLC and NPDU stay intact in a malformed reply

    def __init__(self, config: BacnetConfig) -> None:
        self.config = config
        self.object_id = ObjectIdentifier((ObjectType.device, config.device_instance))
        c = config
        values: dict[int, Any] = {
            OBJECT_IDENTIFIER: self.object_id,
            OBJECT_NAME: CharacterString(c.object_name),
            OBJECT_TYPE: ObjectType.device,
            VENDOR_NAME: CharacterString(c.vendor_name),
            VENDOR_IDENTIFIER: Unsigned(c.vendor_id),
            MODEL_NAME: CharacterString(c.model_name),
            FIRMWARE_REVISION: CharacterString(c.firmware_revision),
            APPLICATION_SOFTWARE_VERSION: CharacterString(c.application_software_version),
            MAX_APDU_LENGTH_ACCEPTED: Unsigned(c.max_apdu),
            SEGMENTATION_SUPPORTED: Enumerated(NO_SEGMENTATION),
        }
        for pid, text in ((SERIAL_NUMBER, c.serial_number), (DESCRIPTION, c.description), (LOCATION, c.location)):
            if text is not None:
                values[pid] = CharacterString(text)
        self.values = values

    # -- classification and replies --

    def exchange(self, data: bytes, peer: Address) -> Exchange:
        if len(data) < 4 or data[0] != BVLC_TYPE or struct.unpack_from(">H", data, 2)[0] != len(data):
            return Exchange("bvlc:bad-frame", False)
        function = data[1]
        if function not in (BVLC_UNICAST, BVLC_BROADCAST):
            nak = BVLC_NAK.get(function)
            replies = [struct.pack(">BBHH", BVLC_TYPE, 0x00, 6, nak)] if nak is not None else []
            return Exchange(f"bvlc:0x{function:02X}", False, replies)
        try:
            npdu = NPDU.decode(PDU(data[4:]))
        except Exception:
            return Exchange("npdu:bad-frame", False)
        if npdu.npduNetMessage is not None:
            return Exchange(f"npdu:0x{npdu.npduNetMessage:02X}", False)  # network layer: this device routes nothing
        # a global broadcast (DNET 0xFFFF) reaches this device too; a datagram for another network is a router's
        if npdu.npduDADR is not None and npdu.npduDADR.addrType != BacnetAddress.globalBroadcastAddr:
            return Exchange("npdu:routed", False, detail={"dnet": npdu.npduDADR.addrNet})
        apdu_bytes = bytes(npdu.pduData)
        if not apdu_bytes:
            return Exchange("apdu:bad-frame", False)
        exchange = self._apdu(apdu_bytes)
        if function == BVLC_BROADCAST:
            exchange.detail["broadcast"] = True
        if self.config.require_source_port and peer[1] != DEFAULT_PORT and exchange.replies:
            exchange.replies = []
            exchange.detail["ignored_source_port"] = peer[1]
        return exchange

    def _apdu(self, apdu_bytes: bytes) -> Exchange:
        pdu_type = apdu_bytes[0] >> 4
        if pdu_type == UNCONFIRMED and len(apdu_bytes) >= 2:
            return self._unconfirmed(apdu_bytes)
        if pdu_type != CONFIRMED or len(apdu_bytes) < 4:
            return Exchange(f"apdu:type{pdu_type}", False)
        segmented = apdu_bytes[0] & SEGMENTED_REQUEST
        invoke_id = apdu_bytes[2]
        service = apdu_bytes[5 if segmented and len(apdu_bytes) > 5 else 3]
        operation, allowed = f"confirmed:{service}", service in ALLOWED_SERVICES
        detail: dict[str, Any] = {"invoke_id": invoke_id}
        if segmented:
            return Exchange(operation, allowed, [bvlc(abort_apdu(invoke_id, ABORT_SEGMENTATION_NOT_SUPPORTED))], detail)
        if service == SERVICE_WP:
            return Exchange(operation, False, [bvlc(error_apdu(invoke_id, service, CLASS_PROPERTY,
                                                                WRITE_ACCESS_DENIED))], detail)
        if not allowed or (service == SERVICE_RPM and not self.config.rpm):
            return Exchange(operation, allowed, [bvlc(reject_apdu(invoke_id, REJECT_UNRECOGNIZED_SERVICE))], detail)
        try:
            request = APCISequence.decode(APDU.decode(PDU(apdu_bytes)))
        except Exception:  # bacpypes3 decoding raises anything from AttributeError to its own RejectException
            return Exchange(operation, allowed, [bvlc(reject_apdu(invoke_id, REJECT_INVALID_TAG))], detail)
        client_max = MAX_APDU_SIZES[min(apdu_bytes[1] & 0x0F, len(MAX_APDU_SIZES) - 1)]
        reply = self._read(request)
        if len(reply) > min(client_max, self.config.max_apdu):
            reply = abort_apdu(invoke_id, ABORT_SEGMENTATION_NOT_SUPPORTED)
        return Exchange(operation, allowed, [bvlc(reply)], detail)

    def _unconfirmed(self, apdu_bytes: bytes) -> Exchange:
        service = apdu_bytes[1]
        exchange = Exchange(f"unconfirmed:{service}", False)
        if service != UNCONFIRMED_WHO_IS:
            return exchange
        try:
            who_is = APCISequence.decode(APDU.decode(PDU(apdu_bytes)))
        except Exception:
            return exchange
        assert isinstance(who_is, WhoIsRequest)  # what unconfirmed service 8 decodes to
        low, high = who_is.deviceInstanceRangeLowLimit, who_is.deviceInstanceRangeHighLimit
        if low is None or low <= self.config.device_instance <= high:
            exchange.replies = [bvlc(_encoded(IAmRequest(
                iAmDeviceIdentifier=self.object_id, maxAPDULengthAccepted=self.config.max_apdu,
                segmentationSupported="no-segmentation", vendorID=self.config.vendor_id)))]
        return exchange

    def _is_me(self, object_id: ObjectIdentifier) -> bool:
        object_type, instance = object_id
        return object_type == ObjectType.device and instance in (self.config.device_instance, WILDCARD_INSTANCE)

    def _read(self, request: APCISequence) -> bytes:
        """The APDU answering a decoded ReadProperty or ReadPropertyMultiple request."""
        if isinstance(request, ReadPropertyRequest):
            if not self._is_me(request.objectIdentifier):
                return error_apdu(request.apduInvokeID, SERVICE_RP, CLASS_OBJECT, UNKNOWN_OBJECT)
            pid = int(request.propertyIdentifier)
            if pid not in self.values:
                return error_apdu(request.apduInvokeID, SERVICE_RP, CLASS_PROPERTY, UNKNOWN_PROPERTY)
            if request.propertyArrayIndex is not None:
                return error_apdu(request.apduInvokeID, SERVICE_RP, CLASS_PROPERTY, NOT_AN_ARRAY)
            ack = ReadPropertyACK(objectIdentifier=self.object_id, propertyIdentifier=pid,
                                  propertyValue=AnyValue(self.values[pid]))
        else:
            assert isinstance(request, ReadPropertyMultipleRequest)
            ack = ReadPropertyMultipleACK(listOfReadAccessResults=[
                self._access_result(spec.objectIdentifier, spec.listOfPropertyReferences)
                for spec in request.listOfReadAccessSpecs])
        ack.apduInvokeID = request.apduInvokeID
        return _encoded(ack)

    def _access_result(self, object_id: ObjectIdentifier, references: list[Any]) -> ReadAccessResult:
        me = self._is_me(object_id)
        results = []
        for reference in references:
            pid = int(reference.propertyIdentifier)
            # all / required / optional expand to the properties this device has, as the standard asks
            expanded = {PROPERTY_ALL: list(self.values),
                        PROPERTY_REQUIRED: [p for p in self.values if p not in OPTIONAL_PROPERTIES],
                        PROPERTY_OPTIONAL: [p for p in self.values if p in OPTIONAL_PROPERTIES]}.get(pid, [pid])
            for one in expanded if me else [pid]:
                if not me:
                    choice = ReadAccessResultElementChoice(
                        propertyAccessError=ErrorType(errorClass="object", errorCode="unknown-object"))
                elif one not in self.values:
                    choice = ReadAccessResultElementChoice(
                        propertyAccessError=ErrorType(errorClass="property", errorCode="unknown-property"))
                else:
                    choice = ReadAccessResultElementChoice(propertyValue=AnyValue(self.values[one]))
                results.append(ReadAccessResultElement(propertyIdentifier=one, readResult=choice))
        return ReadAccessResult(objectIdentifier=self.object_id if me else object_id, listOfResults=results)

    # -- fault modes --

    def oversized(self, reply: bytes) -> bytes:
        """A datagram far beyond any max-APDU, its BVLC length claiming all of it."""
        body = reply[4:] + bytes(8_000)
        return struct.pack(">BBH", BVLC_TYPE, reply[1], 4 + len(body)) + body

    def wrong_id(self, reply: bytes) -> bytes:
        """The reply to another request: the invoke id (the APDU's second octet) changed. An I-Am has none."""
        if reply[1] != BVLC_UNICAST or len(reply) < 8 or reply[6] >> 4 == UNCONFIRMED:
            return reply
        return reply[:7] + bytes([reply[7] ^ 0x80]) + reply[8:]


# -- the device ------------------------------------------------------------------------------------------------------

class BacnetDevice(UdpDevice):
    def __init__(self, host: str, config: BacnetConfig, fault: Fault, recorder: Recorder) -> None:
        super().__init__(UdpFront(host, config.port, BacnetCodec(config), recorder, fault))
        self.config = config

    def summary(self) -> str:
        c = self.config
        options = "".join((" no-rpm" if not c.rpm else "", " src-47808-only" if c.require_source_port else "",
                           f" max-apdu {c.max_apdu}" if c.max_apdu != 1476 else ""))
        return (f"bacnet udp/{self.port}: device {c.device_instance} {c.object_name!r} vendor {c.vendor_id} "
                f"{c.vendor_name!r} model {c.model_name!r} fw {c.firmware_revision!r}{options}")
