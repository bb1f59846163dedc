"""Simulated Modbus/TCP device: a pymodbus server behind the device's TcpFront.

The front owns the device's address and port, records every frame and applies the fault modes. Each
request for a unit id the device answers is forwarded, over one backend link per client connection, to a
private pymodbus `ModbusTcpServer` reached through pymodbus' in-process null modem, so the device shows
no listening port besides its own. pymodbus keeps the FC 0x2B/0x0E and FC 0x11 identity in a process-wide
singleton, so every device hands its server its own request classes (`custom_pdu`) answering from that
device's config. Those classes also add what pymodbus lacks: a configurable conformity
level, "no FC43 support", stream restart at object 0 for an unknown object id, and an FC 0x11 reply laid
out as real devices send it (`<server id> <run indicator> <data>`).

Unit ids the device does not answer get no reply at all (a plain TCP device), or with
`unknown_unit: exception` the exception 0x0B a gateway sends when its serial target is silent.
"""

from __future__ import annotations

import asyncio
import itertools
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.pdu.mei_message import ReadDeviceInformationRequest, ReadDeviceInformationResponse
from pymodbus.pdu.other_message import ReportDeviceIdRequest, ReportDeviceIdResponse
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.transport.transport import NULLMODEM_HOST, NullModem

from simulators.faults import Fault, FaultMode
from simulators.front import HUGE_LENGTH, ConnState, Framing, TcpFront
from simulators.recorder import Recorder

PROTOCOL = "modbus"

MAX_PDU = 253
FC_IDENTIFICATION, MEI_DEVICE_ID, FC_SERVER_ID = 0x2B, 0x0E, 0x11
# pymodbus pages when an object leaves no room at all, so the longest object that always fits a page is
# 253 - 6 (FC43 header) - 2 (object header) - 1
MAX_OBJECT_LEN = MAX_PDU - 6 - 2 - 1
BACKEND_TIMEOUT_S = 2.0
# null-modem "ports" are process-wide keys, not sockets: one per device
_null_ports = itertools.count(52_000)
OVERSIZED_PDU = 8192

OBJECT_KEYS = {
    "vendor_name": 0x00,
    "product_code": 0x01,
    "revision": 0x02,
    "vendor_url": 0x03,
    "product_name": 0x04,
    "model_name": 0x05,
    "user_application_name": 0x06,
}
MANDATORY = ("vendor_name", "product_code", "revision")
CONFORMITY_LEVELS = (0x01, 0x02, 0x03, 0x81, 0x82, 0x83)
# object ids each stream read code covers (1 basic, 2 regular, 3 extended)
STREAM_RANGES = {1: range(0x00, 0x03), 2: range(0x00, 0x80), 3: range(0x00, 0x100)}
READ_SPECIFIC = 4
UNKNOWN_UNIT_POLICIES = ("drop", "exception")
KNOWN_KEYS = {
    "port", "unit_ids", *OBJECT_KEYS, "extended", "conformity", "fc43", "fc17", "server_id", "server_data",
    "run_indicator", "unknown_unit",
}


@dataclass(frozen=True)
class ModbusConfig:
    port: int
    unit_ids: tuple[int, ...]
    objects: Mapping[int, bytes]  # FC43 object id -> ASCII value, ids ascending
    conformity: int
    fc43: bool
    fc17: bool
    server_id: bytes
    server_data: bytes
    run_indicator: bool
    unknown_unit: str

    @property
    def identity(self) -> str:
        return " ".join(self.objects[i].decode("ascii").strip() for i in range(3))


def _ascii(key: str, value: Any) -> bytes:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError(f"{key}: must be text")
    try:
        data = str(value).encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(f"{key}: must be ASCII (FC43 objects are ASCII strings)") from None
    if len(data) > MAX_OBJECT_LEN:
        raise ValueError(f"{key}: {len(data)} characters, at most {MAX_OBJECT_LEN} fit one FC43 reply")
    return data


def _int(key: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, str):
        try:
            value = int(value, 0)
        except ValueError:
            raise ValueError(f"{key}: {value!r} is not an integer") from None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{key}: {value!r} is not an integer in {low}..{high}")
    return value


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{key}: must be true or false")
    return value


def parse_config(section: Mapping[str, Any]) -> ModbusConfig:
    """Validate a plant file's `modbus:` section; ValueError("<key>: <message>") names the bad key."""
    unknown = sorted(set(section) - KNOWN_KEYS, key=str)
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown key (known: {', '.join(sorted(KNOWN_KEYS))})")
    for key in MANDATORY:
        if key not in section:
            raise ValueError(f"{key}: missing (FC43 objects 0-2 are mandatory)")
    objects = {oid: _ascii(key, section[key]) for key, oid in OBJECT_KEYS.items() if key in section}
    extended = section.get("extended") or {}
    if not isinstance(extended, Mapping):
        raise ValueError("extended: must map object ids 0x80-0xFF to text")
    for raw_id, value in extended.items():
        oid = _int(f"extended.{raw_id}", raw_id, 0x80, 0xFF)
        objects[oid] = _ascii(f"extended.{raw_id}", value)
    unit_ids = section.get("unit_ids", [1])
    if not isinstance(unit_ids, list) or not unit_ids:
        raise ValueError("unit_ids: must be a non-empty list of unit ids (0-255)")
    conformity = _int("conformity", section.get("conformity", 0x83), 0, 0xFF)
    if conformity not in CONFORMITY_LEVELS:
        levels = ", ".join(f"0x{c:02X}" for c in CONFORMITY_LEVELS)
        raise ValueError(f"conformity: 0x{conformity:02X} is not one of {levels}")
    server_id_hex = section.get("server_id", objects[0x01].hex())
    try:
        server_id = bytes.fromhex(str(server_id_hex))
    except ValueError:
        raise ValueError(f"server_id: {server_id_hex!r} is not a hex string") from None
    server_data = _ascii("server_data", section.get("server_data", ""))
    if not server_id or len(server_id) + 1 + len(server_data) > MAX_PDU - 2:
        raise ValueError("server_id: FC17 server id must be 1 byte or more and fit one reply with server_data")
    unknown_unit = section.get("unknown_unit", "drop")
    if unknown_unit not in UNKNOWN_UNIT_POLICIES:
        raise ValueError(f"unknown_unit: must be one of {', '.join(UNKNOWN_UNIT_POLICIES)} (got {unknown_unit!r})")
    return ModbusConfig(
        port=_int("port", section.get("port", 502), 0, 65535),
        unit_ids=tuple(_int(f"unit_ids[{i}]", u, 0, 255) for i, u in enumerate(unit_ids)),
        objects=dict(sorted(objects.items())),
        conformity=conformity,
        fc43=_bool("fc43", section.get("fc43", True)),
        fc17=_bool("fc17", section.get("fc17", True)),
        server_id=server_id,
        server_data=server_data,
        run_indicator=_bool("run_indicator", section.get("run_indicator", True)),
        unknown_unit=unknown_unit,
    )


# -- identity answers (run inside the pymodbus server) -------------------------------------------


def identification_reply(config: ModbusConfig, mei_type: int, read_code: int, object_id: int) -> ModbusPDU:
    """The FC 0x2B reply a device with this config gives (MODBUS Application Protocol V1.1b3 §6.21)."""
    if mei_type != MEI_DEVICE_ID or not config.fc43:
        return ExceptionResponse(FC_IDENTIFICATION, ExcCodes.ILLEGAL_FUNCTION)
    if read_code == READ_SPECIFIC:
        if not config.conformity & 0x80:  # stream access only
            return ExceptionResponse(FC_IDENTIFICATION, ExcCodes.ILLEGAL_VALUE)
        if object_id not in config.objects:
            return ExceptionResponse(FC_IDENTIFICATION, ExcCodes.ILLEGAL_ADDRESS)
        information = {object_id: config.objects[object_id]}
    elif read_code in STREAM_RANGES:
        # a code above the conformity level is answered at the device's own level
        read_code = min(read_code, config.conformity & 0x7F)
        ids = [oid for oid in config.objects if oid in STREAM_RANGES[read_code]]
        start = object_id if object_id in ids else 0x00  # unknown object id: restart at object 0
        information = {oid: config.objects[oid] for oid in ids if oid >= start}
    else:
        return ExceptionResponse(FC_IDENTIFICATION, ExcCodes.ILLEGAL_VALUE)
    # pymodbus' response class does the paging (More Follows + Next Object Id) when objects overflow
    reply = ReadDeviceInformationResponse(read_code=read_code, information=information)
    reply.conformity = config.conformity
    return reply


class _ServerIdResponse(ReportDeviceIdResponse):
    """FC 0x11 reply as devices send it: byte count, server id, run indicator, device-specific data."""

    def __init__(self, payload: bytes) -> None:
        super().__init__()
        self.payload = payload

    def encode(self) -> bytes:
        return bytes([len(self.payload)]) + self.payload


def server_id_reply(config: ModbusConfig) -> ModbusPDU:
    if not config.fc17:
        return ExceptionResponse(FC_SERVER_ID, ExcCodes.ILLEGAL_FUNCTION)
    run = b"\xff" if config.run_indicator else b"\x00"
    return _ServerIdResponse(config.server_id + run + config.server_data)


def identity_pdu_classes(config: ModbusConfig) -> list[type[ModbusPDU]]:
    """Request classes for one server's `custom_pdu`, answering from `config` rather than the singleton."""

    class DeviceIdentificationRequest(ReadDeviceInformationRequest):
        sub_function_code = -1  # stops the decoder swapping in pymodbus' own (global-identity) class

        def decode(self, data: bytes) -> None:
            self.mei_type, self.read_code, self.object_id = struct.unpack(">BBB", data[:3])

        async def datastore_update(self, context: Any, device_id: int) -> ModbusPDU:
            return identification_reply(config, self.mei_type, self.read_code, self.object_id)

    class ServerIdRequest(ReportDeviceIdRequest):
        async def datastore_update(self, context: Any, device_id: int) -> ModbusPDU:
            return server_id_reply(config)

    return [DeviceIdentificationRequest, ServerIdRequest]


# -- framing -------------------------------------------------------------------------------------


def exception_frame(request: bytes, code: int) -> bytes:
    tid, unit, fc = struct.unpack(">H", request[:2])[0], request[6], request[7]
    return struct.pack(">HHHBBB", tid, 0, 3, unit, fc | 0x80, code)


class ModbusFraming(Framing):
    """MBAP framing: `TID u16 | PID u16 = 0 | LEN u16 | UNIT u8`, then the PDU (at most 253 bytes)."""

    protocol = PROTOCOL
    header_len = 7

    def frame_length(self, header: bytes) -> int:
        _tid, pid, length, _unit = struct.unpack(">HHHB", header)
        if pid != 0 or not 2 <= length <= MAX_PDU + 1:
            raise ValueError(f"not an MBAP header: protocol {pid}, length {length}")
        return 6 + length

    def classify(self, frame: bytes) -> tuple[str, bool, dict[str, Any]]:
        tid, unit, pdu = struct.unpack(">H", frame[:2])[0], frame[6], frame[7:]
        detail: dict[str, Any] = {"unit_id": unit, "tid": tid}
        fc = pdu[0]
        if fc == FC_IDENTIFICATION and len(pdu) >= 2:
            detail.update(mei_type=pdu[1])
            if len(pdu) == 4:
                detail.update(read_code=pdu[2], object_id=pdu[3])
            # only a complete Read Device Identification request is on the allowlist
            return f"fc:0x2B/mei:0x{pdu[1]:02X}", pdu[1] == MEI_DEVICE_ID and len(pdu) == 4, detail
        return f"fc:0x{fc:02X}", fc == FC_SERVER_ID and len(pdu) == 1, detail

    def malformed(self, reply: bytes) -> bytes:
        # MBAP and function code intact, the rest garbage
        return reply[:8] + b"\xff" * (len(reply) - 8)

    def oversized(self, reply: bytes) -> bytes:
        pdu = reply[7:].ljust(OVERSIZED_PDU, b"\x00")
        return reply[:4] + struct.pack(">H", 1 + len(pdu)) + reply[6:7] + pdu

    def huge_length(self, reply: bytes) -> bytes:
        # the MBAP length counts the bytes after itself: the unit id and the PDU
        return (reply[:4] + struct.pack(">H", HUGE_LENGTH) + reply[6:]).ljust(6 + HUGE_LENGTH, b"\x00")

    def wrong_id(self, reply: bytes) -> bytes:
        tid = struct.unpack(">H", reply[:2])[0]
        return struct.pack(">H", (tid + 1) & 0xFFFF) + reply[2:]

    def endless(self, request: bytes, reply: bytes) -> bytes:
        # FC43 stream replies only: More Follows 0xFF and a next object id, whatever the device holds
        if len(reply) < 14 or reply[7] != FC_IDENTIFICATION or reply[8] != MEI_DEVICE_ID or len(request) < 11:
            return reply
        return reply[:11] + bytes([0xFF, (request[10] + 1) & 0xFF]) + reply[13:]


class _BackendLink:
    """Client end of one null-modem connection to the device's pymodbus server: collects whole MBAP frames."""

    def __init__(self, null_port: int) -> None:
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()
        self._buffer = b""
        self.transport, _ = NullModem.set_connection(null_port, self)  # type: ignore[arg-type]

    # the parts of pymodbus' ModbusProtocol interface NullModem calls
    def handle_new_connection(self) -> _BackendLink:
        return self

    def connection_made(self, transport: NullModem) -> None:
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        pass

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= 7 and len(self._buffer) >= 6 + struct.unpack(">H", self._buffer[4:6])[0]:
            end = 6 + struct.unpack(">H", self._buffer[4:6])[0]
            self.replies.put_nowait(self._buffer[:end])
            self._buffer = self._buffer[end:]

    async def exchange(self, frame: bytes) -> bytes:
        self.transport.write(frame)
        return await asyncio.wait_for(self.replies.get(), BACKEND_TIMEOUT_S)


# -- the device ----------------------------------------------------------------------------------


class ModbusDevice:
    def __init__(self, host: str, config: ModbusConfig, fault: Fault, recorder: Recorder) -> None:
        self.host, self.config, self.fault, self.recorder = host, config, fault, recorder
        self._backend: ModbusTcpServer | None = None
        self._null_port = next(_null_ports)
        self._front = TcpFront(host, config.port, ModbusFraming(), self._handle, recorder, fault, self._close_backend)

    @property
    def port(self) -> int:
        return self._front.port

    async def start(self) -> None:
        if self.fault.mode is not FaultMode.REFUSED:
            # a holding-register block so reads and writes behave as on a real device (writes are recorded as
            # violations by the front; pymodbus accepts them)
            registers = SimDevice(id=0, simdata=[SimData(0, count=100, values=0, datatype=DataType.REGISTERS)])
            self._backend = ModbusTcpServer(
                registers, address=(NULLMODEM_HOST, self._null_port), custom_pdu=identity_pdu_classes(self.config)
            )
            await self._backend.serve_forever(background=True)
        try:
            await self._front.start()
        except OSError:
            await self.stop()  # the plant only stops devices that started: leave no backend behind
            raise

    async def stop(self) -> None:
        await self._front.stop()
        if self._backend is not None:
            await self._backend.shutdown()
            self._backend = None

    def summary(self) -> str:
        cfg = self.config
        fc43 = f"conformity 0x{cfg.conformity:02X}" if cfg.fc43 else "no FC43"
        units = ",".join(str(u) for u in cfg.unit_ids)
        return f"modbus tcp/{self.port} unit {units}: {cfg.identity!r} {fc43}"

    async def _handle(self, frame: bytes, state: ConnState) -> list[bytes]:
        if frame[6] not in self.config.unit_ids:
            if self.config.unknown_unit == "exception":
                return [exception_frame(frame, ExcCodes.GATEWAY_NO_RESPONSE)]
            return []
        if "backend" not in state.data:
            state.data["backend"] = _BackendLink(self._null_port)
        try:
            reply = await state.data["backend"].exchange(frame)
        except TimeoutError:
            # pymodbus dropped a frame it could not decode: a real device stays silent too, and a fresh
            # link keeps a late reply from answering the next request
            await self._close_backend(state)
            return []
        if reply[7] == 0x80:
            # pymodbus answers an unknown function code with function code 0x80; devices echo fc | 0x80
            return [exception_frame(frame, reply[8])]
        return [reply]

    async def _close_backend(self, state: ConnState) -> None:
        backend = state.data.pop("backend", None)
        if backend is not None:
            backend.transport.close()
