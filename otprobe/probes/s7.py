"""Siemens S7comm identity probe (ISO-on-TCP). Probe card.

Port: TCP 102 (`port`). Options: `rack_slots` (default [[0, 2], [0, 1]]), `read_cpu_state` (default false),
`max_continuations` per SZL read (default 2): `S7Options`, the one schema of `protocols.s7:`. The profile's own
`cautions:` rules are added to the shipped ones (see otprobe/cautions.py).

Exchange, one packet per line, each announced to the link before it is sent (PDU ref counts up from 1):
 1. connect              tcp:connect    TCP connect
 2. cotp_connect         cotp:CR        03 00 00 16 | 11 E0 0000 0001 00 | C1 02 0100 | C2 02 03 <rack*32+slot> |
                                        C0 01 0A
        called TSAP type 0x03, an S7-basic connection: the CPU's reserved PG slot stays free for the engineering
        station (docs/safety.md). RST, FIN or COTP DR instead of a CC: this rack/slot is refused; close, next candidate.
 3. setup_communication  s7:setup_communication
                                        03 00 00 19 02 F0 80 | 32 01 0000 0001 0008 0000 | F0 00 0001 0001 00F0
        PDU 240, the smallest size CPUs grant: the least buffer asked of the device. A ten-record 0x001C answer
        (348 bytes) then comes in two fragments, i.e. one continuation, which the budget counts.
 4. read_module_id       szl:0x0011     03 00 00 21 02 F0 80 | 32 07 0000 0002 0008 0008 | 00 01 12 04 11 44 01 00 |
                                        FF 09 0004 0011 0000   order code, hardware version, firmware (0x0007, 0x0081)
 5. caution rules (otprobe/data/cautions.yaml + `cautions`) checked against order code and model: a rule that
    forbids an operation for this device skips it; raw["skipped"] names the rule and its source. Without an order
    code (no module record) every operation some rule names is skipped, with that reason: no rule can be checked.
 6. read_component_id    szl:0x001C     as 4 with SZL id 001C: names, serial, plant id, copyright, location.
                                        "Object does not exist" (S7-1200) is recorded in raw["unavailable"].
 7. read_cpu_state       szl:0x0424     only with `read_cpu_state`: RUN/STOP from the mode record.
    szl_continuation     szl:continuation   after any SZL answer marked "more follows", at most `max_continuations`:
                                        32 07 0000 <ref> 000C 0004 | 00 01 12 08 12 44 01 <seq> 00000000 | 0A 000000
 8. close                tcp:close      FIN. No COTP DR: a CPU handles a FIN as a normal disconnect, and DR would cost
                                        the device one more packet. When the device closed or reset first, our
                                        close is no packet it must handle and is not announced. What the device
                                        still sends after our FIN is drained (otprobe.probes.tcp_close).

Cost: a refused candidate costs at most 3 (connect, CR, FIN); the answering one 3 + setup + each read with its
continuations. max_packets = 3 x candidates + 1 + reads x (1 + max_continuations), reads = 2 (3 with cpu state):
13 by default. A CPU 315-2 PN/DP at slot 2 costs 7: connect, CR, setup, 0x0011, 0x001C, continuation, FIN.

Example result: vendor "Siemens", product_code "6ES7 315-2EH14-0AB0", model "CPU 315-2 PN/DP", firmware "V3.2.7",
hardware_version "3", serial "S C-B1U393142011", raw {as_name "S7300/ET200M station_1", module_name "PLC_1",
copyright "Original Siemens Equipment", memory_card_serial, firmware_ext "A32.9.9", rack 0, slot 2, tsap "0x0302",
pdu_size 240}. python-snap7's stock server sends 26-byte 0x0011 records and a 0x001C header of 0 records of 0 bytes
with records following: every field found is still read, and raw["partial"] lists per SZL what was read and why.

Design: python-snap7 (3.3, pure Python) is the named library, but its `connect()` sends TCP connect, COTP CR and
Setup in one call, and `read_szl()` sends its own continuations (up to 100) behind any limiter, with fixed 5 s
timeouts. So the probe drives the exchange itself over an asyncio stream: snap7's `S7Protocol` builders make the
S7 PDUs, s7_wire.py adds TPKT/COTP and parses every reply, and each packet gets its own link operation and
timeout (`link.timeouts`). Each outgoing frame is classified from its own bytes and must match the declared code.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, ClassVar

from pydantic import Field

from otprobe import cautions
from otprobe.contract import Flag, Int, Kind, Operation, Port, Probe, ProbeLink, ProbeOptions
from otprobe.errors import ProbeContractError, ProtocolError
from otprobe.model import Identity, Observation, Status, Target
from otprobe.probes import asset_type, tcp_close
from otprobe.probes import s7_wire as wire

PDU_SIZE = 240
SRC_REF = 0x0001

# Model names for CPUs whose SZL 0x001C is not read (S7-1200, caution rules), keyed by the order code up to the
# product version; identities of real CPUs (captures, python-snap7 issues). Other order codes stand for themselves.
_MODELS = {
    "6ES7 315-2EH14": "CPU 315-2 PN/DP",
    "6ES7 315-2AG10": "CPU 315-2 DP",
    "6ES7 315-2FJ14": "CPU 315F-2 PN/DP",
    "6ES7 317-2FK14": "CPU 317F-2 PN/DP",
    "6ES7 151-8AB01": "IM151-8 PN/DP CPU",
    "6ES7 212-1BE40": "CPU 1212C AC/DC/Rly",
    "6ES7 511-1FK02": "CPU 1511F-1 PN",
    "6ES7 512-1CK01": "CPU 1512C-1 PN",
    "6ES7 516-3FN02": "CPU 1516F-3 PN/DP",
}


def model_from_order_code(order_code: str) -> str:
    return _MODELS.get(order_code[:14], order_code)


class _PeerGone(Exception):
    """The device closed or reset the connection instead of answering."""


class _Connection:
    """One TCP connection: one request in flight, every reply read within the response timeout."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, response_s: float) -> None:
        self.reader, self.writer, self.response_s = reader, writer, response_s
        self.peer_gone = False

    async def exchange(self, frame: bytes) -> bytes:
        try:
            self.writer.write(frame)
            await self.writer.drain()
            async with asyncio.timeout(self.response_s):  # not wait_for: no task per reply (Python 3.11)
                return await self._read_frame()
        except ConnectionError as exc:
            self.peer_gone = True
            raise _PeerGone(f"connection reset by the device ({type(exc).__name__})") from None

    async def _read_frame(self) -> bytes:
        got = b""
        try:
            got = await self.reader.readexactly(wire.TPKT_HEADER)
            length = wire.frame_length(got)
            return got + await self.reader.readexactly(length - wire.TPKT_HEADER)
        except asyncio.IncompleteReadError as exc:
            self.peer_gone = True
            if got or exc.partial:
                received = len(got + exc.partial)
                raise ProtocolError(f"reply truncated: the device closed after {received} bytes") from None
            raise _PeerGone("connection closed by the device") from None

    async def close(self, link: ProbeLink) -> None:
        await tcp_close.close(link, self.writer.transport, device_ended=self.peer_gone)


class S7Options(ProbeOptions):
    """`protocols.s7:` in a profile."""

    port: Port = 102
    rack_slots: list[tuple[Annotated[Int, Field(ge=0, le=7)], Annotated[Int, Field(ge=0, le=31)]]] = Field(
        default=[(0, 2), (0, 1)], min_length=1, max_length=8
    )
    read_cpu_state: Flag = False  # SZL 0x0424 is opt-in
    max_continuations: Int = Field(2, ge=0, le=8)  # per SZL read; the budget counts every one


class S7Probe(Probe):
    name: ClassVar[str] = "s7"
    transports: ClassVar[tuple[str, ...]] = ("tcp",)
    default_port: ClassVar[int] = 102
    Options = S7Options
    # SZL records come from the CPU itself: the most trusted identity source
    merge_rank = 3
    caution_operations = frozenset({"read_component_id", "read_cpu_state"})  # asked in `_Session._permitted`
    operations: ClassVar[tuple[Operation, ...]] = (
        Operation("connect", "tcp:connect", Kind.CONNECT, description="TCP connect"),
        Operation("cotp_connect", "cotp:CR", description="COTP Connection Request, S7-basic called TSAP (0x03)"),
        Operation("setup_communication", "s7:setup_communication", description="Setup Communication, PDU 240"),
        Operation("read_module_id", "szl:0x0011", description="Read SZL 0x0011: order code, hardware, firmware"),
        Operation("read_component_id", "szl:0x001C", description="Read SZL 0x001C: names, serial, plant id"),
        Operation("read_cpu_state", "szl:0x0424", description="Read SZL 0x0424: RUN/STOP (opt-in)"),
        Operation("szl_continuation", "szl:continuation", description="next fragment of an SZL answer"),
        Operation("close", "tcp:close", Kind.CLOSE, description="FIN"),
    )

    options: S7Options

    def __init__(self, options: S7Options | dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self.rack_slots = tuple(self.options.rack_slots)
        self.read_cpu_state = self.options.read_cpu_state
        self.max_continuations = self.options.max_continuations
        self.cautions = cautions.shipped_rules() + cautions.parse_rules(list(self.site_cautions), "cautions")

    def max_packets(self) -> int:
        reads = 3 if self.read_cpu_state else 2
        return 3 * len(self.rack_slots) + 1 + reads * (1 + self.max_continuations)

    def typical_packets(self) -> int:
        # the first rack/slot answers: connect, CR, setup, each read, one continuation (SZL 0x001C's records do not
        # fit a 240-byte PDU), FIN: 7 for a CPU 315-2 PN/DP
        reads = 3 if self.read_cpu_state else 2
        return 4 + reads + min(1, self.max_continuations)

    async def run(self, link: ProbeLink, target: Target) -> Observation:
        session = _Session(self, link, target.ip)
        started = time.monotonic()
        status, error = Status.IDENTIFIED, None
        try:
            await session.identify()
        except TimeoutError:
            limits = f"connect {link.timeouts.connect_s} s, reply {link.timeouts.response_s} s"
            status, error = Status.TIMEOUT, f"the device did not answer in time ({limits})"
        except ConnectionRefusedError as exc:
            status, error = Status.REFUSED, f"connection refused ({exc.strerror or exc})"
        except (_PeerGone, ConnectionError) as exc:
            status, error = Status.RESET, str(exc)
        except wire.DeviceRefusal as exc:
            status, error = Status.NO_IDENTITY, str(exc)
        except ProtocolError as exc:
            status, error = Status.PROTOCOL_ERROR, str(exc)
        except OSError as exc:
            status, error = Status.REFUSED, f"cannot connect: {exc}"
        return Observation(
            target=target.ip,
            protocol=self.name,
            port=self.port,
            status=status,
            identity=session.identity,
            latency_s=round(time.monotonic() - started, 6),
            packets_sent=link.packets_sent,
            error=error,
            device_class=target.device_class,
        )


def _note_partial(raw: dict[str, Any], lst: wire.SzlList, notes: tuple[str, ...], read: list[str]) -> None:
    """A list read other than its header says (python-snap7's stock server, say): what was read, and why, in raw."""
    if lst.notes or notes:
        entry = {"szl": f"0x{lst.szl_id:04X}", "read": read, "why": [*lst.notes, *notes]}
        raw.setdefault("partial", []).append(entry)


class _Session:
    """One run against one device; `identity` holds whatever was learned, also when a later step fails."""

    def __init__(self, probe: S7Probe, link: ProbeLink, ip: str) -> None:
        self.probe, self.link, self.ip = probe, link, ip
        self.requests = wire.Requests()
        self.identity: Identity | None = None

    async def identify(self) -> None:
        refusals: list[str] = []
        refused_by_device = False
        for rack, slot in self.probe.rack_slots:
            # asyncio.timeout, not wait_for: the SYN must leave in the link's step, not from a task a loop turn later
            async with self.link.op("connect"), asyncio.timeout(self.link.timeouts.connect_s):
                reader, writer = await asyncio.open_connection(self.ip, self.probe.port)
            conn = _Connection(reader, writer, self.link.timeouts.response_s)
            try:
                tsap = wire.called_tsap(rack, slot)
                try:
                    confirm = wire.parse_cotp_reply(await self._request(conn, "cotp_connect", wire.cotp_cr(tsap)))
                except (_PeerGone, wire.DeviceRefusal) as exc:
                    refusals.append(f"rack {rack} slot {slot}: {exc}")
                    refused_by_device |= isinstance(exc, wire.DeviceRefusal)
                    continue
                if confirm.dst_ref != SRC_REF:
                    raise ProtocolError(f"COTP CC for reference 0x{confirm.dst_ref:04X}, we sent 0x{SRC_REF:04X}")
                await self._read_identity(conn, {"rack": rack, "slot": slot, "tsap": f"0x{tsap:04X}"})
                return
            finally:
                await conn.close(self.link)
        summary = "every rack/slot candidate was refused: " + "; ".join(refusals)
        raise wire.DeviceRefusal(summary) if refused_by_device else _PeerGone(summary)

    async def _request(self, conn: _Connection, operation: str, frame: bytes) -> bytes:
        code = wire.request_code(frame)
        if code != self.probe.operation(operation).code:
            raise ProbeContractError(f"s7 frame for {operation} encodes {code}, not its declared code")
        async with self.link.op(operation):
            return await conn.exchange(frame)

    async def _read_identity(self, conn: _Connection, where: dict[str, Any]) -> None:
        setup = self.requests.setup_communication(PDU_SIZE)
        pdu_size = wire.parse_setup_ack(await self._request(conn, "setup_communication", setup), self.requests.ref)
        module_list = await self._read_szl(conn, "read_module_id", 0x0011)
        module = wire.parse_module_id(module_list)
        if not module.order_code and not module.firmware:
            raise wire.DeviceRefusal("SZL 0x0011 holds neither an order code nor a firmware version")
        raw: dict[str, Any] = {**where, "pdu_size": pdu_size}
        read = {"product_code": module.order_code, "firmware": module.firmware,
                "hardware_version": module.hardware_version}
        _note_partial(raw, module_list, module.notes, [name for name, value in read.items() if value is not None])
        if module.firmware_ext:
            raw["firmware_ext"] = module.firmware_ext
        model = model_from_order_code(module.order_code) if module.order_code else None
        self.identity = ident = Identity(
            vendor="Siemens",
            product_code=module.order_code,
            model=model,
            asset_type=asset_type.s7(module.order_code, model),
            firmware=module.firmware,
            hardware_version=None if module.hardware_version is None else str(module.hardware_version),
            raw=raw,
        )
        if self._permitted("read_component_id"):
            components = await self._optional(conn, "read_component_id", 0x001C)
            if components is not None:
                fields = wire.parse_component_id(components)
                _note_partial(raw, components, (), sorted(fields))
                ident.serial = fields.pop("serial", None)
                ident.model = fields.pop("module_type_name", None) or ident.model
                raw.update(fields)
                # the CPU's own type name ("CPU 1214FC ...") says fail-safe where its order code does not
                ident.asset_type = asset_type.s7(ident.product_code, ident.model)
        if self.probe.read_cpu_state and self._permitted("read_cpu_state"):
            state = await self._optional(conn, "read_cpu_state", 0x0424)
            if state is not None:
                raw["cpu_state"], raw["cpu_state_code"] = wire.parse_cpu_state(state)

    def _permitted(self, operation: str) -> bool:
        ident = self.identity
        assert ident is not None
        skip: dict[str, str] | None
        if not ident.product_code and any(rule.skip == operation for rule in self.probe.cautions):
            # Without the order code (nor the model named after it) no rule can match: skip rather than fail open.
            skip = {"operation": operation, "reason": "order code unknown; caution rules cannot be checked"}
        else:
            rule = cautions.forbidding(self.probe.cautions, operation, (ident.product_code, ident.model))
            skip = None if rule is None else rule.as_dict()
        if skip is not None:
            ident.raw.setdefault("skipped", []).append(skip)
        return skip is None

    async def _optional(self, conn: _Connection, operation: str, szl_id: int) -> wire.SzlList | None:
        """An SZL list the device may lack (S7-1200: 0x001C "object does not exist"); None then, noted in raw."""
        assert self.identity is not None
        try:
            return await self._read_szl(conn, operation, szl_id)
        except wire.DeviceRefusal as exc:
            self.identity.raw.setdefault("unavailable", {})[operation] = str(exc)
            return None

    async def _read_szl(self, conn: _Connection, operation: str, szl_id: int) -> wire.SzlList:
        answer = wire.SzlReassembly(szl_id)
        frame = await self._request(conn, operation, self.requests.read_szl(szl_id))
        answer.add(wire.parse_szl_fragment(frame, self.requests.ref))
        for _ in range(self.probe.max_continuations):
            if answer.done:
                break
            frame = await self._request(conn, "szl_continuation", self.requests.continuation(answer.sequence))
            answer.add(wire.parse_szl_fragment(frame, self.requests.ref))
        if not answer.done:
            raise ProtocolError(f"SZL 0x{szl_id:04X} needs more than {self.probe.max_continuations} continuations")
        return answer.result()
