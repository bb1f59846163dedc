"""Identity of a simulated S7 CPU: the `s7:` plant section, its validation, and the SZL lists built from it.

Record layouts follow docs/protocols.md#s7comm and the replies of a real CPU 315-2 PN/DP
(tests/vectors/s7_captures.py): 0x0011 module identification (LENTHDR 28), 0x001C component identification
(LENTHDR 34, ten records, index 6 absent), 0x0424 current mode (one 20-byte record).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from simulators.s7_wire import bcd_date_and_time


class S7Mode(StrEnum):
    S300 = "s300"  # S7-300/400 (and S7-1500): answers SZL 0x001C, fragmented at PDU 240
    S1200 = "s1200"  # S7-1200: SZL 0x001C answers "object does not exist" while 0x0011 works


_VERSION = re.compile(r"([A-Z])?\s*(\d{1,3})\.(\d{1,3})\.(\d{1,3})")


@dataclass(frozen=True)
class Version:
    """Letter and three numbers, as SZL 0x0011 stores them: `56 03 02 07` = V3.2.7."""

    letter: str
    numbers: tuple[int, int, int]

    @classmethod
    def parse(cls, key: str, text: Any) -> Version:
        match = _VERSION.fullmatch(str(text).strip())
        numbers = tuple(int(n) for n in match.groups()[1:]) if match else ()
        if match is None or max(numbers) > 255:
            raise ValueError(f"{key}: expected a version like V3.2.7 (letter, three numbers 0-255), got {text!r}")
        return cls(match.group(1) or "V", (numbers[0], numbers[1], numbers[2]))

    def encode(self) -> bytes:
        return self.letter.encode() + bytes(self.numbers)

    def __str__(self) -> str:
        return self.letter + ".".join(map(str, self.numbers))


@dataclass(frozen=True)
class S7Config:
    order_code: str
    firmware: Version
    port: int = 102
    rack: int = 0
    slot: int = 2
    mode: S7Mode = S7Mode.S300
    pdu_size: int = 240
    hardware_version: int = 1
    bgtyp: int = 0x00C0  # module type id in SZL 0x0011: 0x00C0 on an S7-300, 0x0000 on an S7-1500
    firmware_ext: Version | None = None  # record 0x0081; "A32.9.9" is the 315-2 PN/DP boot loader (41 20 09 09)
    as_name: str = ""
    module_name: str = ""
    plant_id: str = ""
    copyright: str = "Original Siemens Equipment"
    serial: str = ""
    module_type_name: str = ""
    memory_card_serial: str = ""
    location: str = ""
    cpu_state: str = "run"

    def accepts(self, rack: int, slot: int) -> bool:
        """Whether a called TSAP's rack/slot reaches this CPU. S7-1200/1500 (slot 0 or 1) answer on both."""
        if (rack, slot) == (self.rack, self.slot):
            return True
        return rack == self.rack == 0 and {slot, self.slot} <= {0, 1}


_TEXT32 = ("as_name", "module_name", "plant_id", "copyright", "serial", "module_type_name", "memory_card_serial",
           "location")
_INTS = {"port": (1, 65535), "rack": (0, 7), "slot": (0, 31), "pdu_size": (240, 960), "hardware_version": (0, 0xFFFF),
         "bgtyp": (0, 0xFFFF)}
_KNOWN = {"order_code", "firmware", "firmware_ext", "mode", "cpu_state", *_TEXT32, *_INTS}


def parse_config(section: dict[str, Any]) -> S7Config:
    """Validate an `s7:` plant section; ValueError("<key>: <message>") names the offending key."""
    if not isinstance(section, dict):
        raise ValueError("s7: must be a mapping")
    unknown = sorted(set(section) - _KNOWN)
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown key (known: {', '.join(sorted(_KNOWN))})")
    for key in ("order_code", "firmware"):
        if key not in section:
            raise ValueError(f"{key}: required")
    values: dict[str, Any] = {"order_code": _text(section, "order_code", 20)}
    values["firmware"] = Version.parse("firmware", section["firmware"])
    if section.get("firmware_ext") is not None:
        values["firmware_ext"] = Version.parse("firmware_ext", section["firmware_ext"])
    values |= {key: _text(section, key, 32) for key in _TEXT32 if key in section}
    values |= {key: _int(section, key, *bounds) for key, bounds in _INTS.items() if key in section}
    values["mode"] = _choice(section, "mode", S7Mode.S300, [m.value for m in S7Mode])
    values["cpu_state"] = _choice(section, "cpu_state", "run", ["run", "stop"])
    return S7Config(**values)


def _text(section: dict[str, Any], key: str, size: int) -> str:
    value = section[key]
    if value is None:
        return ""
    if not isinstance(value, str) or not value.isascii():
        raise ValueError(f"{key}: must be ASCII text")
    if len(value) > size:
        raise ValueError(f"{key}: at most {size} characters, got {len(value)}")
    return value


def _int(section: dict[str, Any], key: str, low: int, high: int) -> int:
    value = section[key]
    if isinstance(value, str):
        try:
            value = int(value, 0)
        except ValueError:
            raise ValueError(f"{key}: must be an integer, got {value!r}") from None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{key}: must be an integer in {low}..{high}, got {value!r}")
    return value


def _choice(section: dict[str, Any], key: str, default: str, allowed: list[str]) -> Any:
    value = section.get(key, default)
    if value not in allowed:
        raise ValueError(f"{key}: must be one of {', '.join(allowed)}, got {value!r}")
    return S7Mode(value) if key == "mode" else value


# -- SZL lists: LENTHDR u16, N_DR u16, records (the caller prepends SZL id and index) ---------------------------------


def _list(record_len: int, records: list[bytes]) -> bytes:
    return struct.pack(">HH", record_len, len(records)) + b"".join(records)


def szl_0011(config: S7Config) -> bytes:
    """Module identification: 0x0001 module and 0x0006 basic hardware (MLFB, BGTyp, HW version, Ausbe 1),
    0x0007 basic firmware (blank MLFB, 'V' x.y.z), optional 0x0081 (labelled "Boot Loader" as on the 315-2 PN/DP)."""
    mlfb = config.order_code.ljust(20).encode()
    hardware = struct.pack(">20sHHH", mlfb, config.bgtyp, config.hardware_version, 1)
    records = [b"\x00\x01" + hardware, b"\x00\x06" + hardware,
               b"\x00\x07" + b" " * 20 + struct.pack(">H", config.bgtyp) + config.firmware.encode()]
    if config.firmware_ext is not None:
        records.append(b"\x00\x81" + b"Boot Loader".ljust(20) + b"\x00\x00" + config.firmware_ext.encode())
    return _list(28, records)


# Record 0x0009 (manufacturer and profile): binary, identical on every Siemens CPU captured.
_MANUFACTURER = bytes.fromhex("002af6000001")


def szl_001c(config: S7Config) -> bytes:
    """Component identification: ten 34-byte records by index, texts NUL padded to 32 bytes."""
    texts = {1: config.as_name, 2: config.module_name, 3: config.plant_id, 4: config.copyright, 5: config.serial,
             7: config.module_type_name, 8: config.memory_card_serial, 11: config.location}
    fields = {index: text.encode() for index, text in texts.items()} | {9: _MANUFACTURER, 10: b""}
    return _list(34, [struct.pack(">H32s", index, fields[index]) for index in sorted(fields)])


def szl_0424(running: bool, since: datetime) -> bytes:
    """Current mode: event 0x5144 (as captured), bzu-id 0x08 RUN or 0x04 STOP, time of the last mode change."""
    record = struct.pack(">HBB8x", 0x5144, 0xFF, 0x08 if running else 0x04) + bcd_date_and_time(since)
    return _list(20, [record])
