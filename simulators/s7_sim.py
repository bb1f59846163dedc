"""Simulated Siemens S7 CPU (S7comm over ISO-on-TCP), behind the shared TcpFront.

Design: the front owns the device's socket; this module answers the identity path itself (COTP CR/CC with the
rack/slot check, Setup Communication, Read SZL 0x0011/0x001C/0x0424 with fragmentation and continuations, SZL
errors) and hands every other S7 PDU (read/write var, PLC stop/start, block and clock services, uploads) to an
in-process python-snap7 3.3 `Server`, whose `_process_request` answers them as its emulated CPU does.

Why not snap7's server as a socket backend behind the front: its ISO layer accepts any TSAP (no rack/slot refusal),
it grants PDU min(requested, 480) and answers one reply per request, so negotiating 240 and fragmenting 0x001C meant
overriding setup, the SZL handler, the SZL data and the userdata error builder, with per-connection fragment state
keyed by the relay's source port: the whole identity path rewritten anyway, plus a relay socket, a thread per client
and an internal port per device (snap7 binds with SO_REUSEPORT, so a clash would silently load-balance). Calling its
PDU engine in-process keeps what it does well, answering the services otprobe must never use, with no extra socket.

Behaviour a real CPU shows and this one copies (captures in tests/vectors/s7_captures.py):
* CC echoes TPDU size and both TSAPs; a called TSAP for another rack/slot gets RST and no CC, as S7-300/400 CPUs
  do (client libraries report ECONNRESET for a wrong slot: plcpeople/nodeS7 #47, st-one-io/node-red-contrib-s7 #25).
* Setup grants min(requested, pdu_size), AmQ 1/1. SZL replies carry sequence number 2 and, when fragmented, a data
  unit reference counted per device (0xD5 then 0xD6 on the captured CPU); fragments fill the PDU and resume
  mid-record. COTP DR gets no reply (class 0 has no DC): the client closes TCP next.
* A PLC STOP job is acknowledged and the CPU then reports STOP in SZL 0x0424.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from snap7.server import CPUState, Server
from snap7.type import SrvArea

from simulators import s7_wire as wire
from simulators.faults import Fault
from simulators.front import HUGE_LENGTH, ConnState, Framing, TcpFront
from simulators.recorder import Recorder
from simulators.s7_identity import S7Config, S7Mode, parse_config, szl_001c, szl_0011, szl_0424

__all__ = ["PROTOCOL", "S7Config", "S7Device", "S7Framing", "S7Mode", "parse_config"]

PROTOCOL = "s7"
SZL_SEQUENCE = 0x02  # what the captured CPU 315-2 PN/DP puts in every SZL reply of a connection


class S7Framing(Framing):
    protocol = PROTOCOL
    header_len = 4

    def __init__(self, config: S7Config) -> None:
        self.config = config

    def frame_length(self, header: bytes) -> int:
        return wire.tpkt_length(header)

    def classify(self, frame: bytes) -> tuple[str, bool, dict[str, Any]]:
        operation, allowed, detail = wire.classify(frame)
        if operation == "cotp:CR":
            detail["refused"] = detail["rack"] is None or not self.config.accepts(detail["rack"], detail["slot"])
        return operation, allowed, detail

    def malformed(self, reply: bytes) -> bytes:
        """TPKT and COTP header intact, garbage from the S7 header on."""
        return reply[:7] + bytes([0xFF]) * (len(reply) - 7)

    def oversized(self, reply: bytes) -> bytes:
        """A TPKT claiming the largest length there is, and that many bytes."""
        return self.huge_length(reply)

    def huge_length(self, reply: bytes) -> bytes:
        """The TPKT length counts the whole frame, its own header included."""
        return b"\x03\x00" + HUGE_LENGTH.to_bytes(2, "big") + reply[4:].ljust(HUGE_LENGTH - 4, b"\x00")

    def wrong_id(self, reply: bytes) -> bytes:
        """Another PDU reference in an S7 reply; another destination reference in a CC."""
        offset = 11 if wire.cotp_type(reply) == wire.COTP_DT else 6
        wrong = (int.from_bytes(reply[offset : offset + 2], "big") + 0x0101) & 0xFFFF
        return reply[:offset] + wrong.to_bytes(2, "big") + reply[offset + 2 :]


class S7Device:
    def __init__(self, host: str, config: S7Config, fault: Fault, recorder: Recorder) -> None:
        self.host, self.config, self.recorder = host, config, recorder
        self.engine = Server(log=False)
        self.engine.register_area(SrvArea.DB, 1, bytearray(256))  # a DB1 for read/write jobs to hit, as on a CPU
        self.engine.cpu_state = CPUState.RUN if config.cpu_state == "run" else CPUState.STOP
        self._mode_since = (self.engine.cpu_state, datetime.now())
        self._du_ref = 0
        self._conn_ref = 0
        self.front = TcpFront(host, config.port, S7Framing(config), self._handle, recorder, fault, self._closed)

    async def start(self) -> None:
        await self.front.start()

    async def stop(self) -> None:
        await self.front.stop()

    def summary(self) -> str:
        c = self.config
        state = "RUN" if self.running else "STOP"
        return (f"s7 tcp/{c.port} {c.mode} rack {c.rack} slot {c.slot} PDU {c.pdu_size}: {c.order_code.strip()} "
                f"HW{c.hardware_version} {c.firmware} {c.module_type_name!r} {state}")

    @property
    def running(self) -> bool:
        return self.engine.cpu_state == CPUState.RUN

    async def _handle(self, frame: bytes, state: ConnState) -> list[bytes]:
        kind = wire.cotp_type(frame)
        if kind == wire.COTP_CR:
            return self._connect(frame, state)
        if kind == wire.COTP_DR:
            return []
        if kind != wire.COTP_DT or not state.data.get("connected"):
            state.data["close_after_reply"] = "rst"
            return []
        pdu = wire.parse_s7(frame)
        if pdu is None:
            return []
        if pdu.rosctr == wire.S7PDUType.REQUEST and pdu.function == wire.S7Function.SETUP_COMMUNICATION:
            # a CPU grants the smaller of what is asked and what it supports (never below 240 on its side)
            state.data["pdu_size"] = min(int.from_bytes(pdu.param[6:8], "big"), self.config.pdu_size)
            return [wire.setup_reply(pdu.ref, state.data["pdu_size"])]
        if pdu.szl_request is not None:
            return [self._read_szl(pdu, *pdu.szl_request, state)]
        if pdu.is_szl_continuation:
            return [self._continue_szl(pdu, state)]
        if pdu.userdata is not None and pdu.userdata[1] == wire.S7UserDataGroup.SZL:
            return [wire.szl_error(pdu.ref, SZL_SEQUENCE)]  # snap7 would answer its stock SZL data here
        return self._delegate(pdu, state)

    def _connect(self, frame: bytes, state: ConnState) -> list[bytes]:
        request = wire.parse_connect_request(frame)
        called = request.called
        if called is None or not self.config.accepts(called[1], called[2]):
            state.data["close_after_reply"] = "rst"
            return []
        state.data["connected"] = True
        self._conn_ref = self._conn_ref % 0xFFFF + 1
        return [wire.connection_confirm(request, self._conn_ref)]

    def _szl_list(self, szl_id: int, index: int) -> bytes | None:
        """SZL id, index and list, or None where this CPU has no such list."""
        if szl_id == 0x0011:
            return szl_id.to_bytes(2, "big") + index.to_bytes(2, "big") + szl_0011(self.config)
        if szl_id == 0x001C and self.config.mode is S7Mode.S300:
            return szl_id.to_bytes(2, "big") + index.to_bytes(2, "big") + szl_001c(self.config)
        if szl_id == 0x0424:  # the captured CPU answers index 0 whatever index was asked
            return b"\x04\x24\x00\x00" + szl_0424(self.running, self._mode_since[1])
        return None

    def _read_szl(self, pdu: wire.S7Pdu, szl_id: int, index: int, state: ConnState) -> bytes:
        answer = self._szl_list(szl_id, index)
        if answer is None:
            return wire.szl_error(pdu.ref, SZL_SEQUENCE)
        first, *rest = wire.fragments(answer, state.data.get("pdu_size", self.config.pdu_size))
        du_ref = 0
        if rest:
            self._du_ref = self._du_ref % 0xFF + 1
            du_ref = self._du_ref
        state.data["szl_pending"] = (du_ref, rest)
        return wire.szl_reply(pdu.ref, SZL_SEQUENCE, first, du_ref, more=bool(rest))

    def _continue_szl(self, pdu: wire.S7Pdu, state: ConnState) -> bytes:
        du_ref, rest = state.data.get("szl_pending", (0, []))
        if not rest:
            return wire.szl_error(pdu.ref, SZL_SEQUENCE)
        state.data["szl_pending"] = (du_ref, rest[1:])
        return wire.szl_reply(pdu.ref, SZL_SEQUENCE, rest[0], du_ref, more=len(rest) > 1)

    def _delegate(self, pdu: wire.S7Pdu, state: ConnState) -> list[bytes]:
        reply = self.engine._process_request(pdu.raw, _address(state))
        if self.engine.cpu_state != self._mode_since[0]:
            self._mode_since = (self.engine.cpu_state, datetime.now())
        return [wire.data_frame(reply)] if reply else []

    async def _closed(self, state: ConnState) -> None:
        """Forget the engine's upload/download state for the connection, as its own client thread would."""
        self.engine._upload_contexts.pop(_address(state), None)
        self.engine._download_contexts.pop(_address(state), None)


def _address(state: ConnState) -> tuple[str, int]:
    host, _, port = state.peer.rpartition(":")
    return host, int(port or 0)
