"""S7comm wire format for the simulated S7 CPU: TPKT/COTP frames, S7 headers, SZL userdata replies.

Pure functions over bytes, with no sockets and no device state, so that the operation the front records and the
reply the device sends come from one reading of the frame. Layouts follow docs/protocols.md#s7comm and captures of a
real CPU 315-2 PN/DP (tests/vectors/s7_captures.py). Constants that python-snap7 already names are taken from it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from snap7.s7protocol import S7Function, S7PDUType, S7UserDataGroup, S7UserDataSubfunction

TPKT_VERSION = 3
COTP_CR, COTP_CC, COTP_DR, COTP_DT = 0xE0, 0xD0, 0x80, 0xF0
PARAM_TPDU_SIZE, PARAM_CALLING_TSAP, PARAM_CALLED_TSAP = 0xC0, 0xC1, 0xC2
S7_ID = 0x32
METHOD_REQUEST, METHOD_FOLLOWUP = 0x11, 0x12  # userdata: a first request / a continuation request
IDENTITY_SZL_IDS = frozenset({0x0011, 0x001C, 0x0424})  # the SZL lists on the read-only allowlist
ERR_NO_OBJECT = 0xD401  # userdata param error "invalid SZL id"; the data part says 0x0A "object does not exist"
_USERDATA_PARAM_LEN = 12
_REPLY_OVERHEAD = 10 + _USERDATA_PARAM_LEN + 4  # S7 header, userdata param, data header FF 09 <len>


def tpkt_length(header: bytes) -> int:
    """Frame length announced by a TPKT header (ValueError if it is not one)."""
    if header[0] != TPKT_VERSION or header[1] != 0:
        raise ValueError("not a TPKT header")
    return int.from_bytes(header[2:4], "big")


def tpkt(payload: bytes) -> bytes:
    return struct.pack(">BBH", TPKT_VERSION, 0, len(payload) + 4) + payload


def data_frame(pdu: bytes) -> bytes:
    """An S7 PDU in one COTP DT TPDU (LI 2, DT, EOT set)."""
    return tpkt(bytes((2, COTP_DT, 0x80)) + pdu)


def cotp_type(frame: bytes) -> int | None:
    """COTP TPDU code of a TPKT frame, None if the frame is too short to carry one."""
    if len(frame) < 6 or frame[4] < 1 or len(frame) < 5 + frame[4]:
        return None
    return frame[5] & 0xF0  # the low nibble of a CR/CC is the credit, not the type


def tsap_type_name(kind: int) -> str:
    """Connection type in the high byte of a called TSAP: 1 PG, 2 OP, 3-0x10 S7 basic."""
    return {1: "PG", 2: "OP"}.get(kind) or ("basic" if 3 <= kind <= 0x10 else f"0x{kind:02X}")


@dataclass(frozen=True)
class ConnectRequest:
    src_ref: int
    params: dict[int, bytes]

    @property
    def called(self) -> tuple[int, int, int] | None:
        """(connection type, rack, slot) of a two-byte called TSAP; None for text TSAPs or none at all."""
        tsap = self.params.get(PARAM_CALLED_TSAP, b"")
        if len(tsap) != 2:
            return None
        return tsap[0], tsap[1] >> 5, tsap[1] & 0x1F


def parse_connect_request(frame: bytes) -> ConnectRequest:
    cotp = frame[5 : 5 + frame[4]]  # type, dst-ref, src-ref, class, then variable parameters
    params: dict[int, bytes] = {}
    offset = 6
    while offset + 2 <= len(cotp):
        code, size = cotp[offset], cotp[offset + 1]
        params[code] = cotp[offset + 2 : offset + 2 + size]
        offset += 2 + size
    return ConnectRequest(int.from_bytes(cotp[3:5], "big"), params)


def connection_confirm(request: ConnectRequest, own_ref: int) -> bytes:
    """CC echoing the TPDU size and both TSAPs, in the order a CPU sends them (size first)."""
    echoed = [(PARAM_TPDU_SIZE, request.params.get(PARAM_TPDU_SIZE, b"\x0a"))]
    echoed += [(code, request.params[code]) for code in (PARAM_CALLING_TSAP, PARAM_CALLED_TSAP)
               if code in request.params]
    body = struct.pack(">BHHB", COTP_CC, request.src_ref, own_ref, 0)
    body += b"".join(bytes((code, len(value))) + value for code, value in echoed)
    return tpkt(bytes((len(body),)) + body)


@dataclass(frozen=True)
class S7Pdu:
    raw: bytes
    rosctr: int
    ref: int
    param: bytes
    data: bytes

    @property
    def function(self) -> int | None:
        """Job/ack function code (0xF0 setup, 0x04 read var, 0x05 write var, 0x29 PLC stop...)."""
        return self.param[0] if self.param else None

    @property
    def userdata(self) -> tuple[int, int, int, int] | None:
        """(method, group, subfunction, sequence number) of a userdata PDU."""
        if self.rosctr != S7PDUType.USERDATA or len(self.param) < 8:
            return None
        return self.param[4], self.param[5] & 0x0F, self.param[6], self.param[7]

    @property
    def szl_request(self) -> tuple[int, int] | None:
        """(SZL id, index) of a first Read SZL request."""
        ud = self.userdata
        if ud is None or ud[:3] != (METHOD_REQUEST, S7UserDataGroup.SZL, S7UserDataSubfunction.READ_SZL):
            return None
        if len(self.data) < 8:
            return None
        szl_id, index = struct.unpack(">HH", self.data[4:8])
        return szl_id, index

    @property
    def is_szl_continuation(self) -> bool:
        ud = self.userdata
        return ud is not None and ud[:3] == (METHOD_FOLLOWUP, S7UserDataGroup.SZL, S7UserDataSubfunction.READ_SZL)


def parse_s7(frame: bytes) -> S7Pdu | None:
    """The S7 PDU in a COTP DT frame, None if the DT is empty or carries something else."""
    pdu = frame[5 + frame[4] :]
    if len(pdu) < 10 or pdu[0] != S7_ID:
        return None
    rosctr, ref, param_len, data_len = pdu[1], *struct.unpack(">HHH", pdu[4:10])
    start = 12 if rosctr in (S7PDUType.ACK, S7PDUType.ACK_DATA) else 10
    data_start = start + param_len
    return S7Pdu(pdu, rosctr, ref, pdu[start:data_start], pdu[data_start : data_start + data_len])


def classify(frame: bytes) -> tuple[str, bool, dict[str, Any]]:
    """(operation, on the read-only allowlist, detail) of one request frame; never raises."""
    kind = cotp_type(frame)
    if kind == COTP_CR:
        called = parse_connect_request(frame).called
        if called is None:
            return "cotp:CR", True, {"tsap_type": None, "rack": None, "slot": None}
        return "cotp:CR", True, {"tsap_type": tsap_type_name(called[0]), "rack": called[1], "slot": called[2]}
    if kind == COTP_DR:
        return "cotp:DR", True, {}
    if kind is None:
        return "cotp:short-frame", False, {}
    if kind != COTP_DT:
        return f"cotp:0x{kind:02X}", False, {}
    pdu = parse_s7(frame)
    if pdu is None:
        # STEP 7 sends empty DTs between requests (capture COTP_EMPTY_DT); they ask nothing of the device.
        empty = len(frame) == 5 + frame[4]
        return ("cotp:DT-empty", True, {}) if empty else ("s7:not-s7", False, {})
    if pdu.rosctr == S7PDUType.REQUEST:
        if pdu.function == S7Function.SETUP_COMMUNICATION and len(pdu.param) >= 8:
            return "s7:setup_communication", True, {"pdu_size": int.from_bytes(pdu.param[6:8], "big")}
        return f"s7:job:0x{pdu.function or 0:02X}", False, {}
    szl = pdu.szl_request
    if szl is not None:
        return f"szl:0x{szl[0]:04X}", szl[0] in IDENTITY_SZL_IDS, {"szl_id": szl[0], "szl_index": szl[1]}
    if pdu.is_szl_continuation:
        return "szl:continuation", True, {"sequence": pdu.param[7]}
    if pdu.userdata is not None:
        _, group, subfunction, _ = pdu.userdata
        return f"s7:userdata:0x{group:X}/0x{subfunction:02X}", False, {}
    return f"s7:rosctr:0x{pdu.rosctr:02X}", False, {}


def setup_reply(ref: int, granted_pdu: int) -> bytes:
    """Ack-Data of Setup Communication: AmQ 1/1 and the granted PDU size."""
    header = struct.pack(">BBHHHHBB", S7_ID, S7PDUType.ACK_DATA, 0, ref, 8, 0, 0, 0)
    return data_frame(header + struct.pack(">BBHHH", S7Function.SETUP_COMMUNICATION, 0, 1, 1, granted_pdu))


def szl_reply(ref: int, seq: int, chunk: bytes, du_ref: int = 0, more: bool = False) -> bytes:
    """One Read SZL response (or fragment of one): param `12 84 01 <seq> <DU ref> <last DU> 0000`, data `FF 09`."""
    data = b"\xff\x09" + len(chunk).to_bytes(2, "big") + chunk
    return _userdata_reply(ref, seq, du_ref, int(more), 0, data)


def szl_error(ref: int, seq: int, error: int = ERR_NO_OBJECT) -> bytes:
    """Read SZL refused: param error code, data `0A 00 00 00` (object does not exist), as captured."""
    return _userdata_reply(ref, seq, 0, 0, error, b"\x0a\x00\x00\x00")


def _userdata_reply(ref: int, seq: int, du_ref: int, last_du: int, error: int, data: bytes) -> bytes:
    group = 0x80 | S7UserDataGroup.SZL  # type 8 (response) | group
    param = struct.pack(">BBBBBBBBBBH", 0, 1, 0x12, 8, 0x12, group, S7UserDataSubfunction.READ_SZL, seq, du_ref,
                        last_du, error)
    header = struct.pack(">BBHHHH", S7_ID, S7PDUType.USERDATA, 0, ref, len(param), len(data))
    return data_frame(header + param + data)


def fragments(szl: bytes, pdu_size: int) -> list[bytes]:
    """Split an SZL answer (id, index, header, records) into the data parts of replies that fit the PDU size.

    A real CPU fills each reply up to the negotiated PDU and resumes the next one mid-record, without header.
    """
    size = pdu_size - _REPLY_OVERHEAD
    return [szl[i : i + size] for i in range(0, len(szl), size)] or [b""]


def bcd_date_and_time(when: datetime) -> bytes:
    """S7 DATE_AND_TIME: BCD year..second, milliseconds as three BCD digits, weekday (1 = Sunday)."""
    ms = when.microsecond // 1000
    digits = [when.year % 100, when.month, when.day, when.hour, when.minute, when.second, ms // 10]
    weekday = when.isoweekday() % 7 + 1
    return bytes((d // 10) << 4 | d % 10 for d in digits) + bytes(((ms % 10) << 4 | weekday,))
