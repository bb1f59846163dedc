"""S7comm wire format for the S7 probe: request frames, reply parsers, SZL identity records.

Requests: the S7 PDUs come from python-snap7's `S7Protocol` builders (Setup Communication, Read SZL, SZL
continuation); this module adds the two framing layers snap7 keeps inside its blocking socket class
(TPKT + COTP, RFC 1006) so that the probe can send each packet on its own, announced and paced.

Replies: every parser here is a pure function of bytes that raises only `ProtocolError`; a well-formed
refusal (COTP DR, S7 error class, SZL "object does not exist") raises its subclass `DeviceRefusal`, so the
probe can tell "the device said no" from "the device said garbage". Byte layouts: docs/protocols.md#s7comm.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass

from otprobe.errors import ProtocolError

for _name in ("snap7", "s7"):
    logging.getLogger(_name).addHandler(logging.NullHandler())
    logging.getLogger(_name).propagate = False

TPKT_HEADER = 4
# No reply of a read-only identity exchange is anywhere near this; longer claims are hostile
# (docs/safety.md#hostile-replies-are-bounded).
MAX_FRAME = 4096
COTP_CR, COTP_CC, COTP_DR, COTP_DT, COTP_ER = 0xE0, 0xD0, 0x80, 0xF0, 0x70
ROSCTR_JOB, ROSCTR_ACK, ROSCTR_ACK_DATA, ROSCTR_USERDATA = 0x01, 0x02, 0x03, 0x07
CONNECTION_BASIC = 0x03  # high byte of the called TSAP: S7-basic, leaves the PG and OP slots free (docs/safety.md)
TPDU_1024 = 0x0A
SZL_GROUP = 0x04
SZL_READ = 0x01
SZL_RESPONSE = 0x80 | SZL_GROUP  # type 8 (response) | group 4 (SZL)


class DeviceRefusal(ProtocolError):
    """A well-formed reply that says no: COTP disconnect, S7 error class, SZL not available."""


# --- requests ------------------------------------------------------------------------------------------------


def called_tsap(rack: int, slot: int, connection_type: int = CONNECTION_BASIC) -> int:
    if not (0 <= rack <= 7 and 0 <= slot <= 31):
        raise ValueError(f"rack {rack} / slot {slot} outside 0-7 / 0-31")
    return (connection_type << 8) | (rack << 5) | slot


def tpkt(payload: bytes) -> bytes:
    return struct.pack(">BBH", 3, 0, len(payload) + TPKT_HEADER) + payload


def cotp_cr(tsap: int, *, calling_tsap: int = 0x0100, src_ref: int = 0x0001, tpdu_size: int = TPDU_1024) -> bytes:
    """TPKT + COTP Connection Request: class 0, calling TSAP, called TSAP, TPDU size (the order STEP 7 uses)."""
    params = struct.pack(">BBH", 0xC1, 2, calling_tsap) + struct.pack(">BBH", 0xC2, 2, tsap)
    params += struct.pack(">BBB", 0xC0, 1, tpdu_size)
    return tpkt(struct.pack(">BBHHB", 6 + len(params), COTP_CR, 0, src_ref, 0) + params)


def cotp_data(pdu: bytes) -> bytes:
    """TPKT + COTP DT header (LI 2, DT, EOT | TPDU 0) + one S7 PDU."""
    return tpkt(bytes((2, COTP_DT, 0x80)) + pdu)


class Requests:
    """Builds the probe's S7 request frames with snap7's builders; `ref` is the PDU reference of the last one."""

    def __init__(self) -> None:
        # snap7 is imported when a session starts, not with the module: registering the probe, reading a profile or
        # planning a scan loads no protocol library
        from snap7.s7protocol import S7Protocol

        self._s7 = S7Protocol()

    @property
    def ref(self) -> int:
        return self._s7.sequence

    def setup_communication(self, pdu_size: int) -> bytes:
        return cotp_data(self._s7.build_setup_communication_request(1, 1, pdu_size))

    def read_szl(self, szl_id: int, index: int = 0) -> bytes:
        return cotp_data(self._s7.build_read_szl_request(szl_id, index))

    def continuation(self, sequence: int) -> bytes:
        return cotp_data(self._s7.build_userdata_followup_request(SZL_GROUP, SZL_READ, sequence))


def request_code(frame: bytes) -> str:
    """The allowlist code of an outgoing request frame, read from its bytes (the names the simulators record).

    The probe checks its own frames against the operation it announced; tests use it on captured commands
    (PLC STOP is "s7:job:0x29", write var "s7:job:0x05") to show the allowlist refuses them.
    """
    cotp = _cotp_payload(frame)
    tpdu = cotp[1] & 0xF0
    if tpdu in (COTP_CR, COTP_DR):
        return "cotp:CR" if tpdu == COTP_CR else "cotp:DR"
    pdu = _dt_payload(cotp)
    rosctr, _ref, plen, _dlen, hlen = _s7_header_fields(pdu)
    param = pdu[hlen : hlen + plen]
    if rosctr == ROSCTR_JOB and param:
        return "s7:setup_communication" if param[0] == 0xF0 else f"s7:job:0x{param[0]:02X}"
    if rosctr == ROSCTR_USERDATA and len(param) >= 8:
        method, type_group, subfunction = param[4], param[5], param[6]
        if type_group != 0x40 | SZL_GROUP or subfunction != SZL_READ:
            return f"s7:userdata:0x{type_group & 0x0F:X}/0x{subfunction:02X}"
        if method == 0x12:
            return "szl:continuation"
        data = pdu[hlen + plen :]
        if len(data) < 8:
            raise ProtocolError("SZL read request without SZL id")
        return f"szl:0x{struct.unpack_from('>H', data, 4)[0]:04X}"
    raise ProtocolError(f"unrecognised S7 request (ROSCTR 0x{rosctr:02X})")


# --- framing -------------------------------------------------------------------------------------------------


def frame_length(header: bytes) -> int:
    """Total frame length from a 4-byte TPKT header."""
    if len(header) != TPKT_HEADER:
        raise ProtocolError(f"TPKT header must be 4 bytes, got {len(header)}")
    version, _reserved, length = struct.unpack(">BBH", header)
    if version != 3:
        raise ProtocolError(f"not a TPKT frame (version {version})")
    if not TPKT_HEADER + 3 <= length <= MAX_FRAME:
        raise ProtocolError(f"TPKT length {length} outside {TPKT_HEADER + 3}-{MAX_FRAME}")
    return length


def _cotp_payload(frame: bytes) -> bytes:
    if frame_length(frame[:TPKT_HEADER]) != len(frame):
        raise ProtocolError(f"TPKT length {frame_length(frame[:TPKT_HEADER])} but frame has {len(frame)} bytes")
    cotp = frame[TPKT_HEADER:]
    if cotp[0] + 1 > len(cotp) or cotp[0] < 2:
        raise ProtocolError(f"COTP length indicator {cotp[0]} does not fit the frame")
    return cotp


def _dt_payload(cotp: bytes) -> bytes:
    if cotp[1] != COTP_DT or cotp[0] != 2:
        raise ProtocolError(f"expected COTP data (F0, LI 2), got type 0x{cotp[1]:02X} LI {cotp[0]}")
    if cotp[2] != 0x80:
        raise ProtocolError("fragmented or numbered COTP data is not used by S7 identity replies")
    return cotp[3:]


@dataclass(frozen=True)
class CotpConfirm:
    dst_ref: int
    src_ref: int
    called_tsap: int | None
    tpdu_size: int | None


def parse_cotp_reply(frame: bytes) -> CotpConfirm:
    """A Connection Confirm; a Disconnect Request or Error TPDU (the device refuses this TSAP) is a DeviceRefusal."""
    cotp = _cotp_payload(frame)
    tpdu = cotp[1] & 0xF0
    if tpdu in (COTP_DR, COTP_ER):
        reason = cotp[6] if tpdu == COTP_DR and len(cotp) > 6 else 0
        raise DeviceRefusal(f"COTP {'DR' if tpdu == COTP_DR else 'ER'}: connection refused (reason 0x{reason:02X})")
    if tpdu != COTP_CC or cotp[0] < 6:
        raise ProtocolError(f"expected COTP Connection Confirm, got TPDU 0x{cotp[1]:02X}")
    dst_ref, src_ref = struct.unpack_from(">HH", cotp, 2)
    params: dict[int, bytes] = {}
    pos, end = 7, cotp[0] + 1
    while pos < end:
        if pos + 2 > end or pos + 2 + cotp[pos + 1] > end:
            raise ProtocolError("COTP parameter runs past the header")
        params[cotp[pos]] = cotp[pos + 2 : pos + 2 + cotp[pos + 1]]
        pos += 2 + cotp[pos + 1]
    called = params.get(0xC2)
    size = params.get(0xC0)
    return CotpConfirm(
        dst_ref,
        src_ref,
        int.from_bytes(called, "big") if called else None,
        1 << size[0] if size and len(size) == 1 and 7 <= size[0] <= 13 else None,
    )


def _s7_header_fields(pdu: bytes) -> tuple[int, int, int, int, int]:
    """(ROSCTR, PDU ref, param length, data length, header length), lengths checked against the PDU."""
    if len(pdu) < 10 or pdu[0] != 0x32:
        raise ProtocolError("not an S7 PDU (protocol id 0x32, 10-byte header)")
    rosctr, ref, plen, dlen = pdu[1], *struct.unpack_from(">HHH", pdu, 4)
    hlen = 12 if rosctr in (ROSCTR_ACK, ROSCTR_ACK_DATA) else 10
    if hlen + plen + dlen != len(pdu):
        raise ProtocolError(f"S7 header claims {hlen}+{plen}+{dlen} bytes, PDU has {len(pdu)}")
    return rosctr, ref, plen, dlen, hlen


@dataclass(frozen=True)
class S7Reply:
    rosctr: int
    ref: int
    param: bytes
    data: bytes


def parse_s7_reply(frame: bytes, expected_ref: int) -> S7Reply:
    """One S7 reply frame: TPKT + COTP DT + S7 header, PDU reference checked, S7 error class raised as refusal."""
    pdu = _dt_payload(_cotp_payload(frame))
    rosctr, ref, plen, _dlen, hlen = _s7_header_fields(pdu)
    if ref != expected_ref:
        raise ProtocolError(f"reply carries PDU reference {ref}, request had {expected_ref}")
    if rosctr in (ROSCTR_ACK, ROSCTR_ACK_DATA):
        error = struct.unpack_from(">H", pdu, 10)[0]
        if error:
            raise DeviceRefusal(f"S7 error class 0x{error >> 8:02X} code 0x{error & 0xFF:02X}")
    elif rosctr != ROSCTR_USERDATA:
        raise ProtocolError(f"unexpected S7 reply type ROSCTR 0x{rosctr:02X}")
    return S7Reply(rosctr, ref, pdu[hlen : hlen + plen], pdu[hlen + plen :])


def parse_setup_ack(frame: bytes, expected_ref: int) -> int:
    """The PDU size the device grants in its Setup Communication Ack_Data."""
    reply = parse_s7_reply(frame, expected_ref)
    if reply.rosctr != ROSCTR_ACK_DATA or len(reply.param) != 8 or reply.param[0] != 0xF0:
        raise ProtocolError("expected a Setup Communication Ack_Data (function F0, 8-byte parameter)")
    pdu_size = struct.unpack_from(">H", reply.param, 6)[0]
    if pdu_size < 64:
        raise ProtocolError(f"granted PDU size {pdu_size} is too small for any SZL reply")
    return pdu_size


# --- SZL replies ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SzlFragment:
    sequence: int  # echoed in the continuation request
    du_ref: int
    last: bool
    payload: bytes  # the data bytes after the 4-byte data header


def parse_szl_fragment(frame: bytes, expected_ref: int) -> SzlFragment:
    """One Read SZL userdata response (first answer or continuation); "not available" is a DeviceRefusal."""
    reply = parse_s7_reply(frame, expected_ref)
    param, data = reply.param, reply.data
    if reply.rosctr != ROSCTR_USERDATA or len(param) != 12 or param[:3] != b"\x00\x01\x12" or param[3] != 8:
        raise ProtocolError("expected a 12-byte userdata response parameter (00 01 12 08 ...)")
    if param[5] != SZL_RESPONSE or param[6] != SZL_READ:
        raise ProtocolError(f"not a Read SZL response (type/group 0x{param[5]:02X}, subfunction 0x{param[6]:02X})")
    error = struct.unpack_from(">H", param, 10)[0]
    if len(data) < 4:
        raise ProtocolError("SZL response without data header")
    return_code, length = data[0], struct.unpack_from(">H", data, 2)[0]
    if error or return_code != 0xFF:
        raise DeviceRefusal(f"SZL not available (error 0x{error:04X}, return code 0x{return_code:02X})")
    if length != len(data) - 4:
        raise ProtocolError(f"SZL data length {length} but {len(data) - 4} bytes follow")
    if param[9] not in (0, 1):
        raise ProtocolError(f"last-data-unit flag 0x{param[9]:02X} is neither 00 nor 01")
    return SzlFragment(param[7], param[8], param[9] == 0, data[4:])


@dataclass(frozen=True)
class SzlList:
    szl_id: int
    index: int
    record_length: int
    records: tuple[bytes, ...]
    # Why the records were not taken as the list header describes them (a header giving no lengths, records without
    # an index): the observation is then partial and says so.
    notes: tuple[str, ...] = ()

    def by_index(self) -> dict[int, bytes]:
        """Records keyed by their leading u16 index, first occurrence wins (parse by index, never by offset)."""
        keyed: dict[int, bytes] = {}
        for record in self.records:
            keyed.setdefault(struct.unpack_from(">H", record)[0], record)
        return keyed


@dataclass(frozen=True)
class _Layout:
    record_length: int
    order: tuple[int, ...]  # record indexes in the order a CPU sends them; () when records carry no index


# The identity lists as real CPUs send them (tests/vectors/s7_captures.py). Used only when a device's list does not
# describe itself: python-snap7's stock server answers 0x001C with a header of 0 records of 0 bytes followed by
# records whose index is left 0x0000; its clients read such lists at fixed offsets, so the records are where a CPU
# puts them.
_LAYOUTS = {
    0x11: _Layout(28, (0x0001, 0x0006, 0x0007, 0x0081)),
    0x1C: _Layout(34, (0x0001, 0x0002, 0x0003, 0x0004, 0x0005, 0x0007, 0x0008, 0x0009, 0x000A, 0x000B)),
    0x24: _Layout(20, ()),
}


def parse_szl_list(data: bytes, *, complete: bool = True) -> tuple[SzlList, int | None]:
    """SZL-ID, index, LENTHDR, N_DR and records from the reassembled fragments.

    Returns the list and the number of bytes still missing (LENTHDR x N_DR minus what is there); with
    `complete` (the device said "last data unit") anything but an exact fit is an error. A header that gives no
    record length or no record count although records follow is read with the record length CPUs use for that
    list, and nothing can be missing then (None): only the last-data-unit flag tells the end. Either way a note
    in `notes` says so.
    """
    if len(data) < 8:
        raise ProtocolError(f"SZL list header needs 8 bytes, got {len(data)}")
    szl_id, index, lenthdr, count = struct.unpack_from(">HHHH", data)
    body = data[8:]
    layout = _LAYOUTS.get(szl_id & 0x00FF)
    if (lenthdr == 0 or count == 0) and body and layout is not None:
        whole, rest = divmod(len(body), layout.record_length)
        records = tuple(body[i * layout.record_length : (i + 1) * layout.record_length] for i in range(whole))
        note = (f"SZL 0x{szl_id:04X} header announces {count} records of {lenthdr} bytes, yet {len(body)} bytes "
                f"follow: read as {whole} records of {layout.record_length} bytes, the length CPUs use"
                + (f" ({rest} trailing bytes ignored)" if rest else ""))
        return _indexed(SzlList(szl_id, index, layout.record_length, records, (note,)), layout), None
    if lenthdr < 2:
        raise ProtocolError(f"SZL record length {lenthdr} cannot hold a record index")
    missing = lenthdr * count - len(body)
    if missing < 0 or (complete and missing):
        raise ProtocolError(f"SZL 0x{szl_id:04X}: {count} x {lenthdr} bytes announced, {len(body)} received")
    whole = len(body) // lenthdr
    records = tuple(body[i * lenthdr : (i + 1) * lenthdr] for i in range(whole))
    return _indexed(SzlList(szl_id, index, lenthdr, records), layout), missing


def _indexed(lst: SzlList, layout: _Layout | None) -> SzlList:
    """The list with records that all carry index 0x0000 given the indexes a CPU sends in that order, noted."""
    if layout is None or not layout.order or not lst.records or any(r[:2] != b"\x00\x00" for r in lst.records):
        return lst
    records = tuple(
        (layout.order[i].to_bytes(2, "big") + r[2:]) if i < len(layout.order) else r for i, r in enumerate(lst.records)
    )
    note = (f"SZL 0x{lst.szl_id:04X} records all carry index 0x0000: taken in the order CPUs send them "
            f"({', '.join(f'0x{i:04X}' for i in layout.order[: len(records)])})")
    return SzlList(lst.szl_id, lst.index, lst.record_length, records, (*lst.notes, note))


class SzlReassembly:
    """Joins the fragments of one SZL answer: continuations resume mid-record with no SZL header."""

    def __init__(self, szl_id: int) -> None:
        self.szl_id = szl_id
        self._data = b""
        self._du_ref: int | None = None
        self.done = False
        self.sequence = 0

    def add(self, fragment: SzlFragment) -> None:
        if self.done:
            raise ProtocolError("fragment after the last data unit")
        if self._du_ref is not None and fragment.du_ref != self._du_ref:
            raise ProtocolError(f"data unit reference changed from {self._du_ref} to {fragment.du_ref}")
        self._du_ref = fragment.du_ref
        self._data += fragment.payload
        self.sequence = fragment.sequence
        self.done = fragment.last
        lst, missing = parse_szl_list(self._data, complete=False)
        if lst.szl_id != self.szl_id:
            raise ProtocolError(f"asked for SZL 0x{self.szl_id:04X}, got 0x{lst.szl_id:04X}")
        if missing is None:
            return  # the header counts nothing: the last-data-unit flag alone tells the end
        if self.done and missing:
            raise ProtocolError(f"SZL 0x{self.szl_id:04X} ended with {missing} bytes missing")
        if not self.done and not missing:
            raise ProtocolError(f"SZL 0x{self.szl_id:04X} is complete but the device announces more data")

    def result(self) -> SzlList:
        if not self.done:
            raise ProtocolError(f"SZL 0x{self.szl_id:04X} is incomplete")
        return parse_szl_list(self._data)[0]


def _text(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("latin-1").strip()


def version_text(raw: bytes) -> str | None:
    """Letter, major, minor, patch -> 'V3.2.7' (firmware) or 'A32.9.9' (S7-300 boot loader); None if no letter."""
    if len(raw) != 4 or not ord("A") <= raw[0] <= ord("Z"):
        return None
    return f"{chr(raw[0])}{raw[1]}.{raw[2]}.{raw[3]}"


@dataclass(frozen=True)
class ModuleId:
    """SZL 0x0011: order code and versions."""

    order_code: str | None
    hardware_version: int | None
    firmware: str | None  # record 0x0007
    firmware_ext: str | None  # record 0x0081: S7-1500 firmware (V3.3.0) or S7-300 boot loader (A32.9.9)
    notes: tuple[str, ...] = ()  # what a short record left out, and where a firmware found elsewhere came from


MODULE_RECORD = 28  # index, MLFB (20), BGTyp, Ausbg (hardware version), Ausbe: the record CPUs send
MLFB_END = 22


def parse_module_id(lst: SzlList) -> ModuleId:
    """Module (0x0001, else 0x0006 basic hardware), basic firmware 0x0007, boot loader/firmware 0x0081.

    Records shorter than 28 bytes still give the order code when they hold the whole MLFB (22 bytes and more).
    python-snap7's stock server sends one 26-byte record 0x0001 ending in a reserved byte and three version bytes,
    which its own clients read as the firmware version: without a record 0x0007, so does this parser, noted.
    """
    if lst.szl_id & 0x00FF != 0x11 or lst.record_length < MLFB_END:
        raise ProtocolError(f"SZL 0x{lst.szl_id:04X} ({lst.record_length}-byte records) is not module identification")
    records = lst.by_index()
    full = lst.record_length >= MODULE_RECORD
    module = records.get(0x0001) or records.get(0x0006)
    order_code = (_text(module[2:MLFB_END]) or None) if module is not None else None
    hardware = struct.unpack_from(">H", module, 24)[0] if module is not None and full else None
    firmware = version_text(records[0x0007][24:28]) if full and 0x0007 in records else None
    firmware_ext = version_text(records[0x0081][24:28]) if full and 0x0081 in records else None
    notes: list[str] = []
    if not full:
        why = f"SZL 0x0011 records are {lst.record_length} bytes, not {MODULE_RECORD}: no hardware version"
        trailer = module[MLFB_END + 1 : MLFB_END + 4] if module is not None else b""
        if len(trailer) == 3 and any(trailer):
            firmware = "V{}.{}.{}".format(*trailer)
            why += f"; firmware {firmware} read from bytes 23-25 of the module record, as python-snap7 clients do"
        notes.append(why)
    return ModuleId(order_code, hardware, firmware, firmware_ext, tuple(notes))


COMPONENT_FIELDS = {
    0x0001: "as_name",
    0x0002: "module_name",
    0x0003: "plant_id",
    0x0004: "copyright",
    0x0005: "serial",
    0x0007: "module_type_name",
    0x0008: "memory_card_serial",
    0x000B: "location",
}


def parse_component_id(lst: SzlList) -> dict[str, str]:
    """SZL 0x001C text records by index (0x0006 is absent, 0x0009/0x000A are binary and skipped)."""
    if lst.szl_id & 0x00FF != 0x1C or lst.record_length < _LAYOUTS[0x1C].record_length:
        raise ProtocolError(f"SZL 0x{lst.szl_id:04X} with {lst.record_length}-byte records is not component identity")
    fields: dict[str, str] = {}
    for index, record in lst.by_index().items():
        name = COMPONENT_FIELDS.get(index)
        if name and (text := _text(record[2:34])):
            fields[name] = text
    return fields


_MODES = {1: "STOP", 2: "STOP", 3: "STOP", 4: "STOP", 5: "STARTUP", 6: "STARTUP", 7: "STARTUP", 8: "RUN",
          0xA: "HOLD", 0xD: "DEFECT"}


def parse_cpu_state(lst: SzlList) -> tuple[str, int]:
    """SZL 0x0424 first record: (mode name, raw bzu-id byte); the low nibble of bzu-id is the current mode."""
    if lst.szl_id & 0x00FF != 0x24 or lst.record_length < 4 or not lst.records:
        raise ProtocolError("SZL 0x0424 reply without a mode record")
    bzu_id = lst.records[0][3]
    return _MODES.get(bzu_id & 0x0F, f"UNKNOWN(0x{bzu_id & 0x0F:X})"), bzu_id
