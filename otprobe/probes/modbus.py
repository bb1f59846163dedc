"""Modbus/TCP identity probe (pymodbus): FC 0x2B/0x0E Read Device Identification, FC 0x11 as the fallback.

Probe card
----------
Port 502 (option `port`). Unit ids from option `unit_ids` (default [1]; 0, the serial broadcast id, is refused).
One TCP connection; one request in flight; every packet announced to the link before it is sent:

1. connect                                    TCP connect                       1 packet
2. per unit id U, in the order given:
   a. read_basic    `<tid> 0000 0005 U 2B 0E 01 00`  basic stream from object 0      1
   b. read_more     `... 2B 0E <code> <next id>`     while More Follows 0xFF, at most 3 follow-ups per
                                                      stream, next object ids strictly increasing   <= 3
   c. read_regular  `... 2B 0E 02 03`                regular stream from object 3, only when the
                                                      conformity level (low 7 bits) is 2 or 3       1
      (from object 3 so a paging device's basic objects are not read twice; a device without object 3
      restarts at object 0, as the spec says, and the first value of each object is kept)
      (+ read_more follow-ups as in b)                                                              <= 3
   Fallbacks, decided by the exception to (a):
   - 0x01 illegal function (FC43 unsupported): report_server_id `<tid> 0000 0002 U 11`              1
   - 0x02 / 0x03 (the device refuses stream access): read_object `... 2B 0E 04 <id>` for objects
     0, 1, 2, stopping at the first exception                                                     <= 3
   - anything else (0x04 failure, 0x06 busy, 0x0A/0x0B gateway): no identity, nothing more to that unit.
3. close                                      FIN, then drain (otprobe.probes.tcp_close)  1 packet

max_packets() = 2 + 8 x (unit ids tried). A timeout, a reset or an unparseable reply ends the run (close
rather than reuse). Intrusive `unit_id_sweep` (enabled with `intrusive: {unit_id_sweep: <reason>}` in the
options AND by the link) then tries ids 1..247 not in `unit_ids`, each one's first request announced as
`unit_id_sweep`, and stops at exception 0x0A/0x0B or the first timeout (docs/safety.md#modbus-unit-id-0-is-never-sent).

Example result: `identified`, vendor "Schneider Electric", product_code and model "BMX P34 2020", firmware "v2.8",
raw {"unit_id": 1, "access": "stream", "conformity": "0x83", "objects": {"vendor_name": ..., ...}}.

Mapping: VendorName -> vendor, ProductCode -> product_code, MajorMinorRevision -> firmware, ProductName ->
product_name, model = ModelName, else ProductName, else ProductCode (the most specific name the device gives).
Normalised fields are stripped of surrounding blanks and NULs; `raw["objects"]` keeps every object exactly as
received (latin-1), padding included (" 2.00r016"). FC17 yields raw server id / run indicator / data (hex) and
a best-effort model: the longest printable text in the reply; a valid FC17 reply counts as identified. Modbus
carries no serial number. With several unit ids, identity is the first identified unit's, the others go to
`raw["other_units"]`; status is identified if any unit was, no_identity if any unit answered at all.

Statuses: exception replies only -> no_identity; refused connect -> refused; no reply (or a connect that does
not complete) within link.timeouts -> timeout; connection closed or reset before any reply byte -> reset;
an unparseable reply, one for another transaction or unit, an oversized MBAP length, bytes beyond the reply, or
a reply cut off by the device closing -> protocol_error. Endless More Follows ends after the follow-up cap with
the objects read so far (identified, with a note in `raw["notes"]`).

How pymodbus is used: `AsyncModbusTcpClient(retries=0, reconnect_delay=0)`'s transport connects once (its
`call_create`, awaited in the probe's own task) and frames and sends each request PDU (`pdu_send`), so each packet
leaves in the loop step the link cleared it in; the connection ends through the shared close
(otprobe.probes.tcp_close: FIN, drain, close) on pymodbus' own asyncio transport. Replies never reach pymodbus'
decoders: on hostile bytes (a cut-off object list) they raise ModbusIOException inside asyncio's `data_received`,
which logs a traceback and drops the connection. Instead its `trace_packet` hook hands each reply to `modbus_wire`
(hardened, only `ProtocolError`) and gives pymodbus nothing. The probe enforces `link.timeouts`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, Field

from otprobe.contract import Category, Int, Kind, Operation, Port, Probe, ProbeLink, ProbeOptions, Timeouts
from otprobe.errors import ProtocolError
from otprobe.model import Identity, Observation, Status
from otprobe.probes import tcp_close
from otprobe.probes.modbus_wire import (
    FC_DEVICE_ID,
    FC_SERVER_ID,
    READ_BASIC,
    READ_OBJECT,
    READ_REGULAR,
    Adu,
    DeviceIdPage,
    ExceptionReply,
    Reply,
    ServerIdReply,
    identity_from_objects,
    identity_from_server_id,
    parse_adu,
    parse_reply,
)

if TYPE_CHECKING:
    from pymodbus.pdu import ModbusPDU

    from otprobe.model import Target

_pymodbus_log = logging.getLogger("pymodbus")
_pymodbus_log.addHandler(logging.NullHandler())
_pymodbus_log.propagate = False

FC43 = "fc:0x2B/mei:0x0E"
MAX_FOLLOW_UPS = 3  # More Follows pages per stream read: hostile replies are bounded
INDIVIDUAL_OBJECTS = (0x00, 0x01, 0x02)
PACKETS_PER_UNIT = 2 + 2 * MAX_FOLLOW_UPS  # basic and regular streams, each with its follow-ups
SWEEP_IDS = range(1, 248)  # serial addresses behind a gateway
ILLEGAL_FUNCTION = 0x01
STREAM_REFUSED = (0x02, 0x03)
GATEWAY_EXCEPTIONS = (0x0A, 0x0B)
FIRST_REGULAR_OBJECT = 0x03
STREAM_NAMES = {READ_BASIC: "basic stream", READ_REGULAR: "regular stream"}
# pymodbus drops any read larger than one ADU (264 B) before trace_packet sees it, which would turn an
# oversized reply into a silent timeout; let the guard see it (and refuse it by its MBAP length) instead.
# 256 KiB is the most asyncio reads at once.
_GUARD_BUFFER = 256 * 1024


@dataclass
class _UnitResult:
    unit: int
    identity: Identity | None = None
    note: str | None = None
    gateway_silent: bool = False  # exception 0x0A/0x0B: nothing answers behind this gateway id


@dataclass
class _Objects:
    """FC43 objects gathered over pages (first value wins), with the first page's conformity level."""

    values: dict[int, bytes] = field(default_factory=dict)
    conformity: int | None = None
    pages: int = 0
    notes: list[str] = field(default_factory=list)

    def add(self, page: DeviceIdPage) -> None:
        if self.conformity is None:
            self.conformity = page.conformity
        self.pages += 1
        for object_id, value in page.objects:
            self.values.setdefault(object_id, value)

    def identity(self, unit: int, access: str) -> Identity:
        identity = identity_from_objects(self.values, self.conformity, unit, access)
        identity.raw["pages"] = self.pages
        if self.notes:
            identity.raw["notes"] = list(self.notes)
        return identity


def _fail(pending: asyncio.Future[Adu], exc: BaseException) -> None:
    if not pending.done():
        pending.set_exception(exc)


class _Session:
    """One pymodbus connection whose replies are taken by a guard in front of pymodbus' decoder."""

    def __init__(self, host: str, port: int, timeouts: Timeouts) -> None:
        # pymodbus is imported when a session starts, not with the module: registering the probe, reading a
        # profile or planning a scan loads no protocol library
        from pymodbus.client import AsyncModbusTcpClient

        self.timeouts = timeouts
        self.client = AsyncModbusTcpClient(
            host,
            port=port,
            retries=0,
            reconnect_delay=0,
            timeout=timeouts.connect_s,  # pymodbus' own connect and execute are never called: the probe times both
            trace_packet=self._trace_packet,
            trace_connect=self._trace_connect,
        )
        self.client.ctx.max_buffer_size = _GUARD_BUFFER
        self.first_reply_s: float | None = None
        self._pending: asyncio.Future[Adu] | None = None
        self._sent: tuple[int, int] | None = None  # (tid, unit) of the request in flight
        self._received = 0  # bytes of the current reply seen so far
        self.opened = False  # a connection was established (it may since have been closed by the device)

    @property
    def connected(self) -> bool:
        return self.client.connected

    async def connect(self) -> None:
        """Open the connection, the SYN leaving before the first await (the link stamps the departure just before).

        pymodbus' own connect() wraps the socket connect in `wait_for`, a task that runs a loop turn later; its
        transport's `call_create` (loop.create_connection with pymodbus' protocol) is awaited here directly instead.
        """
        ctx = self.client.ctx
        ctx.is_closing = False
        try:
            async with asyncio.timeout(self.timeouts.connect_s):
                ctx.transport, _ = await ctx.call_create()
        except TimeoutError:
            raise
        except OSError as exc:
            refused = ConnectionRefusedError(exc.strerror or "connection refused")
            refused.errno = exc.errno  # the link tells an unreachable host from a refusal by it
            raise refused from None
        self.opened = True

    async def close(self, link: ProbeLink) -> None:
        """FIN and drain through the shared close (pymodbus' transport is an asyncio one), then pymodbus forgets
        the connection; when the device ended it first, pymodbus already has."""
        if not self.opened:
            return
        try:
            await tcp_close.close(link, self.client.ctx.transport, device_ended=not self.connected)
        finally:
            self.client.close()  # idempotent; the socket itself is closed by now

    async def request(self, pdu: ModbusPDU) -> Adu:
        """Send one request PDU and wait for its reply frame, at most `response_s`.

        pymodbus frames and writes it (`pdu_send`) before the first await, in the loop step the link cleared it in;
        its `execute()` would write a loop turn later, from a task of its own.
        """
        if not self.client.connected:
            raise ConnectionResetError("connection closed by the device")
        self._pending = pending = asyncio.get_running_loop().create_future()
        self._sent, self._received = None, 0
        started = time.monotonic()
        ctx = self.client.ctx
        pdu.transaction_id = ctx.getNextTID()
        ctx.pdu_send(pdu)
        try:
            # asyncio.timeout, not wait_for: no waiter future and callback hop between the reply and this task
            async with asyncio.timeout(self.timeouts.response_s):
                adu = await pending
        finally:
            self._pending = None
        if self._sent is None or (adu.tid, adu.unit) != self._sent:
            raise ProtocolError(f"reply for transaction {adu.tid} unit {adu.unit}, expected {self._sent}")
        if self.first_reply_s is None:
            self.first_reply_s = time.monotonic() - started
        return adu

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if sending:
            self._sent = (int.from_bytes(data[:2], "big"), data[6])
            return data
        pending = self._pending
        if pending is not None and not pending.done():
            self._received = len(data)  # pymodbus passes its whole receive buffer, which it keeps
            try:
                adu = parse_adu(data)
            except ProtocolError as exc:
                pending.set_exception(exc)
            else:
                if adu is not None:
                    pending.set_result(adu)
        return b""

    def _trace_connect(self, connected: bool) -> None:
        pending = self._pending
        if connected or pending is None:
            return
        if self._received:
            _fail(pending, ProtocolError(f"connection closed after {self._received} bytes of a reply (truncated)"))
        else:
            _fail(pending, ConnectionResetError("connection closed by the device"))


def _unit_id(value: int) -> int:
    if value == 0:
        raise ValueError("unit id 0 is the broadcast id on serial gateways and is never used (pick 1-255)")
    if not 1 <= value <= 255:
        raise ValueError(f"unit id {value} is outside 1-255")
    return value


class ModbusOptions(ProbeOptions):
    """`protocols.modbus:` in a profile."""

    port: Port = 502
    unit_ids: list[Annotated[Int, AfterValidator(_unit_id)]] = Field(default=[1], min_length=1, max_length=16)


class ModbusProbe(Probe):
    name = "modbus"
    transports = ("tcp",)
    default_port = 502
    Options = ModbusOptions
    # FC43's objects are whatever the integrator or gateway configured: the least trusted identity source
    merge_rank = 1
    operations = (
        Operation("connect", "tcp:connect", Kind.CONNECT, description="TCP connect"),
        Operation("read_basic", FC43, description="FC43 basic stream (code 01) from object 0"),
        Operation("read_regular", FC43, description="FC43 regular stream (code 02) from object 3"),
        Operation("read_more", FC43, description="FC43 More Follows page from the next object id"),
        Operation("read_object", FC43, description="FC43 individual access (code 04) to object 0, 1 or 2"),
        Operation("report_server_id", "fc:0x11", description="FC17, only after FC43 exception 0x01"),
        Operation(
            "unit_id_sweep",
            FC43,
            category=Category.INTRUSIVE,
            description="FC43 basic stream to a unit id outside unit_ids (ids 1-247)",
        ),
        Operation("close", "tcp:close", Kind.CLOSE, description="FIN"),
    )

    options: ModbusOptions

    def __init__(self, options: ModbusOptions | dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self.unit_ids = tuple(dict.fromkeys(self.options.unit_ids))  # each id once, in the order given
        self.sweep = "unit_id_sweep" in self.options.intrusive

    def units(self) -> Iterator[tuple[int, str]]:
        """(unit id, operation that opens it) in the order tried."""
        for unit in self.unit_ids:
            yield unit, "read_basic"
        if self.sweep:
            for unit in SWEEP_IDS:
                if unit not in self.unit_ids:
                    yield unit, "unit_id_sweep"

    def max_packets(self) -> int:
        return 2 + PACKETS_PER_UNIT * sum(1 for _ in self.units())

    def typical_packets(self) -> int:
        # connect and FIN; a listed unit id answers its basic and regular streams without paging (the M340 case),
        # a swept id is asked its basic stream once
        return 2 + sum(2 if opener == "read_basic" else 1 for _, opener in self.units())

    async def run(self, link: ProbeLink, target: Target) -> Observation:
        session = _Session(target.ip, self.port, link.timeouts)
        exchange = _Exchange(link, session)
        results: list[_UnitResult] = []
        failure: tuple[Status, str] | None = None
        try:
            async with link.op("connect"):
                await session.connect()
            for unit, opener in self.units():
                result = await exchange.identify(unit, opener)
                results.append(result)
                if result.gateway_silent and opener == "unit_id_sweep":
                    break
        except TimeoutError:
            failure = (Status.TIMEOUT, "no reply within the timeout" if session.connected else "connect timed out")
        except ConnectionRefusedError as exc:
            failure = (Status.REFUSED, str(exc))
        except ConnectionError as exc:
            failure = (Status.RESET, str(exc) or type(exc).__name__)
        except ProtocolError as exc:
            failure = (Status.PROTOCOL_ERROR, str(exc))
        finally:
            await session.close(link)
        return Observation(
            target=target.ip,
            protocol=self.name,
            port=self.port,
            device_class=target.device_class,
            packets_sent=link.packets_sent,
            latency_s=session.first_reply_s,
            **_verdict(results, failure),
        )


class _Exchange:
    """The per-unit request sequence of one run, every request announced to the link."""

    def __init__(self, link: ProbeLink, session: _Session) -> None:
        self.link, self.session = link, session

    async def ask(self, op: str, function: int, pdu: ModbusPDU) -> Reply:
        # checked before announcing, so that a connection the device already dropped costs no phantom packet
        if not self.session.connected:
            raise ConnectionResetError("connection closed by the device")
        async with self.link.op(op):
            adu = await self.session.request(pdu)
        return parse_reply(adu.pdu, function)

    async def device_id(self, op: str, unit: int, read_code: int, object_id: int) -> DeviceIdPage | ExceptionReply:
        from pymodbus.pdu.mei_message import ReadDeviceInformationRequest  # pymodbus only once a session runs

        reply = await self.ask(op, FC_DEVICE_ID, ReadDeviceInformationRequest(read_code, object_id, dev_id=unit))
        assert not isinstance(reply, ServerIdReply)  # parse_reply(FC_DEVICE_ID) gives a page or an exception
        return reply

    async def identify(self, unit: int, opener: str) -> _UnitResult:
        first = await self.device_id(opener, unit, READ_BASIC, 0x00)
        if isinstance(first, ExceptionReply):
            if first.code == ILLEGAL_FUNCTION:
                return await self.server_id(unit, first)
            if first.code in STREAM_REFUSED:
                return await self.individual(unit, first)
            return _UnitResult(unit, note=f"unit {unit}: {first.text}", gateway_silent=first.code in GATEWAY_EXCEPTIONS)
        objects = _Objects()
        objects.add(first)
        await self.follow(unit, READ_BASIC, 0x00, first, objects)
        if objects.conformity is not None and objects.conformity & 0x7F >= READ_REGULAR:
            regular = await self.device_id("read_regular", unit, READ_REGULAR, FIRST_REGULAR_OBJECT)
            if isinstance(regular, ExceptionReply):
                objects.notes.append(f"regular stream: {regular.text}")
            else:
                objects.add(regular)
                await self.follow(unit, READ_REGULAR, FIRST_REGULAR_OBJECT, regular, objects)
        return _UnitResult(unit, objects.identity(unit, "stream"))

    async def follow(self, unit: int, read_code: int, asked: int, page: DeviceIdPage, objects: _Objects) -> None:
        """Fetch More Follows pages: at most MAX_FOLLOW_UPS, each from a strictly higher object id."""
        stream = STREAM_NAMES[read_code]
        for _ in range(MAX_FOLLOW_UPS):
            if not page.more_follows:
                return
            if page.next_object_id <= asked:
                objects.notes.append(f"{stream}: next object id 0x{page.next_object_id:02X} does not increase")
                return
            asked = page.next_object_id
            reply = await self.device_id("read_more", unit, read_code, asked)
            if isinstance(reply, ExceptionReply):
                objects.notes.append(f"{stream} page 0x{asked:02X}: {reply.text}")
                return
            objects.add(reply)
            page = reply
        if page.more_follows:
            objects.notes.append(f"{stream}: stopped after {MAX_FOLLOW_UPS} follow-ups; listing may be incomplete")

    async def individual(self, unit: int, refused: ExceptionReply) -> _UnitResult:
        """Stream access refused (0x02/0x03): read the mandatory objects one by one (code 04)."""
        objects = _Objects(notes=[f"stream access: {refused.text}"])
        for object_id in INDIVIDUAL_OBJECTS:
            reply = await self.device_id("read_object", unit, READ_OBJECT, object_id)
            if isinstance(reply, ExceptionReply):
                objects.notes.append(f"object 0x{object_id:02X}: {reply.text}")
                break
            objects.add(reply)
        if not objects.values:
            return _UnitResult(unit, note=f"unit {unit}: {'; '.join(objects.notes)}")
        return _UnitResult(unit, objects.identity(unit, "individual"))

    async def server_id(self, unit: int, refused: ExceptionReply) -> _UnitResult:
        """FC43 unsupported (0x01): one Report Server ID."""
        from pymodbus.pdu.other_message import ReportDeviceIdRequest  # pymodbus only once a session runs

        reply = await self.ask("report_server_id", FC_SERVER_ID, ReportDeviceIdRequest(dev_id=unit))
        if isinstance(reply, ServerIdReply):
            identity = identity_from_server_id(reply, unit)
            identity.raw["fc43"] = refused.text
            return _UnitResult(unit, identity)
        assert isinstance(reply, ExceptionReply)
        return _UnitResult(unit, note=f"unit {unit}: FC43 {refused.text}; FC17 {reply.text}")


def _verdict(results: list[_UnitResult], failure: tuple[Status, str] | None) -> dict[str, Any]:
    """Status, identity and error of a run: identified if any unit was; else "speaks Modbus" if any unit
    answered; else the failure that ended the run."""
    notes = [result.note for result in results if result.note]
    if failure is not None:
        notes.append(failure[1])
    identified = [result for result in results if result.identity is not None]
    if identified:
        identity = identified[0].identity
        assert identity is not None
        if len(identified) > 1:
            identity.raw["other_units"] = [result.identity.as_dict() for result in identified[1:] if result.identity]
        status = Status.IDENTIFIED
    else:
        identity = None
        status = Status.NO_IDENTITY if results else (failure[0] if failure else Status.NO_IDENTITY)
    return {"status": status, "identity": identity, "error": "; ".join(notes) or None}

