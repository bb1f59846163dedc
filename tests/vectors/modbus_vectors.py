"""Modbus/TCP golden vectors: real replies from captures, and identity replies built from documented layouts.

Captured frames (full MBAP frames, hex): derived from ITI/ICS-Security-Tools pcaps/ModbusTCP/modbus_test_data_part1.pcap
and pcaps/ModbusTCP/modbus_test_data_part2.pcap (commit 9b826091e7ba3fbdd5997d31e116f29e09cbbb48), CC-BY-4.0.
Those captures hold no successful FC43 reply (no public capture we know of does), so the FC43 identity replies below are
built byte by byte from the layouts in docs/protocols.md#modbustcp, the MODBUS Application Protocol Specification
V1.1b3 §6.21 examples, and the KBR multicomp manual's example reply (reframed from RTU to MBAP: address and CRC
dropped). They are PDUs (function code first) unless named *_FRAME.
"""

from __future__ import annotations


def _objects(*items: tuple[int, bytes]) -> bytes:
    return b"".join(bytes([object_id, len(value)]) + value for object_id, value in items)


# -- captured (CC-BY-4.0, see above) --------------------------------------------------------------------------------

# part1 frame 40: FC17 reply of a Wingpath simulator, unit 10: byte count 0x12, server id 0x00, run 0xFF, text.
FC17_WINGPATH_FRAME = bytes.fromhex("0000000000150a111200ff57696e6770617468204c696d69746564")
# part2 frame 51: FC17 answered with exception 03 (illegal data value), unit 1.
FC17_EXCEPTION_FRAME = bytes.fromhex("000000000003019103")
# part2 frame 119: FC43 (with MEI type 0x00) answered with exception 01 (illegal function), unit 1.
FC43_EXCEPTION_FRAME = bytes.fromhex("00000000000301ab01")
# part1 frame 31: a client's FC43 request, extended stream from object 1, with one stray trailing byte.
FC43_REQUEST_WITH_EXTRA_BYTE_FRAME = bytes.fromhex("0001000000060a2b0e030100")
# part1 frame 65 (FC 0x06 write single register 5 = 11) and frame 59 (FC 0x05 write coil 2 off), unit 10:
# writes, which must never leave otprobe.
WRITE_REQUESTS = {
    0x06: bytes.fromhex("0001000000060a060005000b"),
    0x05: bytes.fromhex("0001000000060a0500020000"),
}

# -- FC 0x2B / MEI 0x0E, Read Device Identification -------------------------------------------------------------

# "frame 00 01 00 00 00 05 01 2B 0E 01 00 = TID 1, unit 1, basic, from object 0": the probe's first request.
BASIC_REQUEST_FRAME = bytes.fromhex("000100000005012b0e0100")

# KBR multicomp F144-3 (KBR manual): basic only, conformity 0x01, padding kept.
KBR_BASIC = bytes.fromhex("2b0e0101000003") + _objects(
    (0x00, b"KBR GmbH"), (0x01, b"multicomp F144-3  "), (0x02, b" 2.00r016")
)

# Spec §6.21, basic identification in one transaction (lengths as the strings really are).
SPEC_ONE_TRANSACTION = bytes.fromhex("2b0e0101000003") + _objects(
    (0x00, b"Company identification"), (0x01, b"Product code XX"), (0x02, b"V2.11")
)

# Spec §6.21, the multi-transaction example: page 1 says More Follows, next object 0x02, and "3 objects" while it
# carries 2 (the erratum: trust the bytes); page 2, asked from object 0x02, carries the revision.
SPEC_PAGE_1 = bytes.fromhex("2b0e0101ff0203") + _objects(
    (0x00, b"Company identification"), (0x01, b"Product code XXXXXXXXXXXXXXXX")
)
SPEC_PAGE_2 = bytes.fromhex("2b0e0101000001") + _objects((0x02, b"V2.11"))

# M340 with the regular objects (as Greenbone's detection script reports them), conformity 0x83.
M340_REGULAR = bytes.fromhex("2b0e0283000004") + _objects(
    (0x03, b"http://www.schneider-electric.com"),
    (0x04, b"Modicon M340"),
    (0x05, b"BMX P34 2020"),
    (0x06, b"MCC_HALL_A"),
)

# -- FC 0x11, Report Server ID -----------------------------------------------------------------------------------

# PM710 power meter (nmap modbus-discover documentation): server id 0xFA, run 0xFF, then its name.
PM710_SERVER_ID = bytes.fromhex("1111faff") + b"PM710PowerMeter"
# conpot 0.6.0: declares 0x11 bytes but sends 3 (bound by the bytes received).
CONPOT_SERVER_ID = bytes.fromhex("1111") + b"\x01\xff\x00"
