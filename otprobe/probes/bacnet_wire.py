"""BACnet/IP request bytes and hardened reply parsing for the identity read.

bacpypes3 is the codec: it encodes the ReadProperty / ReadPropertyMultiple request APDUs and decodes the ACK and
Error APDUs and the values inside them. Nothing else of it runs (no Application, no socket, no retries). It is
imported where a request is built or a reply read, not with this module, so that registering the probe or planning
a scan loads no protocol library. The BVLC and NPDU around an APDU are a few fixed octets and are written and checked
here by hand. Every parser raises only `ProtocolError`, whatever the bytes: a device's replies are hostile input.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from otprobe.errors import ProtocolError

WILDCARD_INSTANCE = 4194303  # "the Device object of whoever receives this" (ASHRAE 135 15.5.2, 15.7.2)
SERVICE_READ_PROPERTY, SERVICE_READ_PROPERTY_MULTIPLE = 12, 14

# The identity properties, in the order they are asked for.
OBJECT_IDENTIFIER, OBJECT_NAME, VENDOR_NAME, VENDOR_IDENTIFIER = 75, 77, 121, 120
MODEL_NAME, FIRMWARE_REVISION, APPLICATION_SOFTWARE_VERSION, SERIAL_NUMBER = 70, 44, 12, 372
IDENTITY_PROPERTIES = (OBJECT_IDENTIFIER, OBJECT_NAME, VENDOR_NAME, VENDOR_IDENTIFIER, MODEL_NAME,
                       FIRMWARE_REVISION, APPLICATION_SOFTWARE_VERSION, SERIAL_NUMBER)
PROPERTY_NAMES = {OBJECT_IDENTIFIER: "object_identifier", OBJECT_NAME: "object_name", VENDOR_NAME: "vendor_name",
                  VENDOR_IDENTIFIER: "vendor_identifier", MODEL_NAME: "model_name",
                  FIRMWARE_REVISION: "firmware_revision",
                  APPLICATION_SOFTWARE_VERSION: "application_software_version", SERIAL_NUMBER: "serial_number"}

BVLC_TYPE, BVLC_FORWARDED, BVLC_UNICAST = 0x81, 0x04, 0x0A
# Max-APDU code 5 = 1,476 octets, the largest unsegmented APDU on BACnet/IP; plus BVLC (4, 10 when forwarded) and an
# NPDU with both addresses (at most 2 + 2 * (3 + 255) + 1): no honest unsegmented reply is longer.
MAX_APDU_CODE = 5
MAX_REPLY = 1476 + 10 + 2 + 2 * 258 + 1
PDU_COMPLEX_ACK, PDU_ERROR, PDU_REJECT, PDU_ABORT = 3, 5, 6, 7
PDU_NAMES = {PDU_COMPLEX_ACK: "ComplexACK", PDU_ERROR: "Error", PDU_REJECT: "Reject", PDU_ABORT: "Abort"}
SEGMENTED = 0x08  # the SEG bit of a ComplexACK's first octet


@dataclass(frozen=True)
class Refusal:
    """An Error, Reject or Abort with the request's invoke id: the device speaks BACnet but did not answer this."""

    kind: str  # "error", "reject" or "abort"
    reason: str  # "object: unknown-object", "unrecognized-service", "segmentation-not-supported", ...

    @property
    def unknown_property(self) -> bool:
        return self.kind == "error" and self.reason.endswith("unknown-property")

    @property
    def object_refused(self) -> bool:
        """An Error of class object (unknown-object above all): the Device object itself was not found."""
        return self.kind == "error" and self.reason.startswith("object:")

    def __str__(self) -> str:
        return f"{self.kind} {self.reason}"


@dataclass(frozen=True)
class Properties:
    """The Device object's properties one ACK carried: values by property id, and per-property errors."""

    instance: int  # as the ACK names the object: the real instance, or the wildcard if the device echoes it
    values: dict[int, str | int] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)


Reply = Properties | Refusal


# -- requests -------------------------------------------------------------------------------------------------------

def _frame(apdu: Any, invoke_id: int) -> bytes:
    """BVLC Original-Unicast-NPDU + NPDU (version 1, expecting a reply, no routing) around a confirmed request."""
    apdu.apduInvokeID = invoke_id
    pdu = apdu.encode()
    # No segmentation either way: not segmented, more-follows clear, segmented-response-accepted clear, max-segments 0
    # (unspecified), max-APDU 1,476. A device whose answer does not fit must Abort, never send segments.
    pdu.apduSeg = pdu.apduMor = pdu.apduSA = False
    pdu.apduMaxSegs, pdu.apduMaxResp = 0, MAX_APDU_CODE
    payload = b"\x01\x04" + bytes(pdu.encode().pduData)
    return struct.pack(">BBH", BVLC_TYPE, BVLC_UNICAST, 4 + len(payload)) + payload


def _device(instance: int) -> Any:
    from bacpypes3.primitivedata import ObjectIdentifier, ObjectType

    return ObjectIdentifier((ObjectType.device, instance))


def read_property_multiple_request(invoke_id: int, instance: int, properties: tuple[int, ...]) -> bytes:
    from bacpypes3.apdu import ReadPropertyMultipleRequest
    from bacpypes3.basetypes import PropertyReference, ReadAccessSpecification

    spec = ReadAccessSpecification(objectIdentifier=_device(instance), listOfPropertyReferences=[
        PropertyReference(propertyIdentifier=pid) for pid in properties])
    return _frame(ReadPropertyMultipleRequest(listOfReadAccessSpecs=[spec]), invoke_id)


def read_property_request(invoke_id: int, instance: int, pid: int) -> bytes:
    from bacpypes3.apdu import ReadPropertyRequest

    return _frame(ReadPropertyRequest(objectIdentifier=_device(instance), propertyIdentifier=pid), invoke_id)


# -- replies ----------------------------------------------------------------------------------------------------------

def apdu_of(data: bytes) -> bytes:
    """The APDU of a BVLC datagram: length checked, an NPDU that is no network-layer message, addresses skipped."""
    if len(data) > MAX_REPLY:
        raise ProtocolError(f"reply over the {MAX_REPLY}-byte cap of an unsegmented reply")
    if len(data) < 6 or data[0] != BVLC_TYPE:
        raise ProtocolError("not a BACnet/IP datagram (BVLC type 0x81 expected)")
    length = struct.unpack_from(">H", data, 2)[0]
    if length != len(data):
        raise ProtocolError(f"BVLC length {length} but {len(data)} bytes received")
    if data[1] not in (BVLC_UNICAST, BVLC_FORWARDED):
        raise ProtocolError(f"BVLC function 0x{data[1]:02X} is no NPDU for us")
    at = 4 if data[1] == BVLC_UNICAST else 10  # a Forwarded-NPDU carries the original source's B/IP address first
    if len(data) < at + 2 or data[at] != 0x01:
        raise ProtocolError("NPDU version 1 expected")
    control = data[at + 1]
    at += 2
    if control & 0x80:
        raise ProtocolError("a network-layer message, not an APDU")
    for present in (control & 0x20, control & 0x08):  # destination, then source: net u16, length u8, address
        if present:
            if len(data) < at + 3:
                raise ProtocolError("NPDU address cut short")
            at += 3 + data[at + 2]
    if control & 0x20:
        at += 1  # hop count
    if len(data) <= at:
        raise ProtocolError("no APDU after the NPDU")
    return data[at:]


def parse_reply(data: bytes, invoke_id: int, service: int) -> Reply:
    """The answer to our confirmed request `service` with `invoke_id`: its properties, or the device's refusal."""
    apdu = apdu_of(data)
    pdu_type = apdu[0] >> 4
    if pdu_type not in PDU_NAMES or len(apdu) < 3:
        raise ProtocolError(f"APDU type {pdu_type} is no answer to a read")
    if pdu_type == PDU_COMPLEX_ACK and apdu[0] & SEGMENTED:
        raise ProtocolError("a segmented reply, though no segmentation was accepted")
    if apdu[1] != invoke_id:
        raise ProtocolError(f"reply for invoke id {apdu[1]}, ours is {invoke_id}")
    if pdu_type in (PDU_COMPLEX_ACK, PDU_ERROR) and apdu[2] != service:
        raise ProtocolError(f"reply to service {apdu[2]}, ours is {service}")
    try:
        return _decoded(apdu, pdu_type)
    except ProtocolError:
        raise
    except Exception as exc:  # bacpypes3 raises anything from IndexError to its own DecodingError and InvalidTag
        raise ProtocolError(f"undecodable {PDU_NAMES[pdu_type]} ({type(exc).__name__}: {exc})") from None


def _decoded(apdu: bytes, pdu_type: int) -> Reply:
    from bacpypes3.apdu import APDU, APCISequence, ReadPropertyACK, ReadPropertyMultipleACK
    from bacpypes3.pdu import PDU

    pdu = APDU.decode(PDU(apdu))
    if pdu_type in (PDU_REJECT, PDU_ABORT):
        return Refusal("reject" if pdu_type == PDU_REJECT else "abort", str(pdu.apduAbortRejectReason))
    decoded = APCISequence.decode(pdu)
    if pdu_type == PDU_ERROR:
        return Refusal("error", f"{decoded.errorClass}: {decoded.errorCode}")
    if isinstance(decoded, ReadPropertyACK):
        instance = _device_instance(decoded.objectIdentifier)
        return Properties(instance, {int(decoded.propertyIdentifier): _value(decoded.propertyIdentifier,
                                                                            decoded.propertyValue)})
    if not isinstance(decoded, ReadPropertyMultipleACK) or len(decoded.listOfReadAccessResults) != 1:
        raise ProtocolError("a ReadPropertyMultiple ACK for exactly one object expected")
    result = decoded.listOfReadAccessResults[0]
    instance = _device_instance(result.objectIdentifier)
    values: dict[int, str | int] = {}
    errors: dict[int, str] = {}
    for element in result.listOfResults or []:
        pid, outcome = int(element.propertyIdentifier), element.readResult
        if outcome.propertyAccessError is not None:
            error = outcome.propertyAccessError
            errors[pid] = f"{error.errorClass}: {error.errorCode}"
        else:
            values[pid] = _value(element.propertyIdentifier, outcome.propertyValue)
    if not values and errors and all(reason.startswith("object:") for reason in errors.values()):
        # every property failed on the object itself: the device has no Device object by that instance
        return Refusal("error", next(iter(errors.values())))
    return Properties(instance, values, errors)


def _device_instance(object_id: Any) -> int:
    object_type, instance = object_id
    if str(object_type) != "device":
        raise ProtocolError(f"the reply names object {object_type},{instance}, not a Device object")
    return int(instance)


def _value(pid: Any, value: Any) -> str | int:
    """One identity property's value, in the datatype ASHRAE 135 gives it; other datatypes are a protocol error."""
    from bacpypes3.primitivedata import CharacterString, ObjectIdentifier, Unsigned

    if value is None:
        raise ProtocolError(f"property {pid} without a value")
    number = int(pid)
    if number == OBJECT_IDENTIFIER:
        return _device_instance(value.cast_out(ObjectIdentifier))
    if number == VENDOR_IDENTIFIER:
        return int(value.cast_out(Unsigned))
    if number in PROPERTY_NAMES:
        return str(value.cast_out(CharacterString))
    raise ProtocolError(f"property {pid} was not asked for")
