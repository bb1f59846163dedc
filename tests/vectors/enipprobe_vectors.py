"""EtherNet/IP replies for the identity probe's parser tests, beside the captured ones in vectors.enip_captures.

The captured ListIdentity exchange (a 1756-ENBT/A) and the CIP Stop request are imported from
vectors.enip_captures: Derived from ITI/ICS-Security-Tools pcaps/EthernetIP/enip_test.pcap and
pcaps/EthernetIP/cip_stop_plc.pcap, CC-BY-4.0.

No public capture here holds a Get_Attributes_All reply (pcaps/openics/EIP-ViewDeviceStatus.pcap carries DNP3 and
another protocol, no EtherNet/IP), so the Get_Attributes_All replies below are written out by hand, byte by byte,
from the Identity object layout (docs/protocols.md#ethernetip) with two real identities: a captured 1756-L61/B and
the PowerFlex 753 of cpppo's test vectors, whose name is space padded to 32. They are hex literals on purpose:
not produced by the code under test.
The IPv4 addresses below are data inside captured replies (the devices' own configured addresses): nothing is
ever sent to them; every test talks to 127.0.0.0/8 only.
"""

from vectors.enip_captures import CAPTURE_ADDRESS, CIP_STOP_REQUEST, LIST_IDENTITY_REPLY, LIST_IDENTITY_REQUEST

__all__ = [
    "CAPTURE_ADDRESS",
    "CIP_STOP_REQUEST",
    "ENBT",
    "GAA_L61",
    "GAA_L61_FRAME",
    "GAA_SERVICE_NOT_SUPPORTED",
    "ICSNPP_MISREAD",
    "LIST_IDENTITY_REFUSED",
    "LIST_IDENTITY_REPLY",
    "LIST_IDENTITY_REQUEST",
    "NMAP_CONTEXT",
    "OUR_CONTEXT",
    "POWERFLEX_LIST_IDENTITY",
    "SESSION",
]

# The sender context nmap used in enip_test.pcap; the reply echoes it.
NMAP_CONTEXT = bytes.fromhex("00000000c1debed1")

# What the captured reply says, as the probe reports it.
ENBT = {
    "vendor_id": 1,
    "vendor": "Rockwell Automation/Allen-Bradley",
    "device_type_id": 12,
    "device_type": "Communications Adapter",
    "product_code": "58",
    "firmware": "4.3",
    "revision": [4, 3],
    "status": 0x0030,
    "serial": "00524D8E",
    "product_name": "1756-ENBT/A",
    "state": 3,
}

# cisagov/icsnpp-enip's example cip_identity.log reads the capture's sockaddr little-endian: a ready negative test.
ICSNPP_MISREAD = ("164.1.1.10", 4783)

# Sender context of a probe advertising a 500 ms Max Response Delay: f4 01, then the tag "otprob".
OUR_CONTEXT = bytes.fromhex("f401") + b"otprob"
SESSION = 0x12345678

# Get_Attributes_All reply body from the 1756-L61/B LOGIX5561 (vendor 1, type 14, code 54, rev 16.20, status 0x3060,
# serial 0x0051823F), attributes 1-7 only, as that capture had no state byte.
GAA_L61 = bytes.fromhex(
    "0100"  # vendor 1
    "0e00"  # device type 14
    "3600"  # product code 54
    "1014"  # revision 16.20
    "6030"  # status 0x3060
    "3f825100"  # serial 0x0051823F
    "14" + b"1756-L61/B LOGIX5561".hex()  # SHORT_STRING, 20 characters
)
GAA_L61_FRAME = (
    bytes.fromhex("6f003700" "78563412" "00000000") + OUR_CONTEXT + bytes.fromhex("00000000")  # header, 55 bytes
    + bytes.fromhex("00000000" "0000")  # interface handle, timeout
    + bytes.fromhex("0200" "00000000" "b2002700")  # 2 items: null address; unconnected data, 39 bytes
    + bytes.fromhex("81000000")  # reply to service 0x01, general status 0, no extended status
    + GAA_L61
)

# The same exchange answered "service not supported" (general status 0x08, no extended status).
GAA_SERVICE_NOT_SUPPORTED = (
    bytes.fromhex("6f001400" "78563412" "00000000") + OUR_CONTEXT + bytes.fromhex("00000000")
    + bytes.fromhex("00000000" "0000" "0200" "00000000" "b2000400" "81000800")
)

# An old 1756-ENET's answer to ListIdentity (pycomm3 #294): encapsulation status 0x0001, no data.
LIST_IDENTITY_REFUSED = bytes.fromhex("63000000" "00000000" "01000000") + OUR_CONTEXT + bytes.fromhex("00000000")

# ListIdentity reply of a PowerFlex 753 (vendor 1, type 123, code 1168, rev 11.1, status 0x0561, serial 0x80491D15,
# state 0xFF) whose name is "PowerFlex 753" space padded to 32, from 192.168.1.20:44818.
POWERFLEX_LIST_IDENTITY = (
    bytes.fromhex("63004800" "00000000" "00000000") + OUR_CONTEXT + bytes.fromhex("00000000")  # 72 bytes follow
    + bytes.fromhex("0100" "0c004200" "0100")  # 1 item, type 0x0C, 66 bytes; encapsulation version 1
    + bytes.fromhex("0002af12" "c0a80114" "0000000000000000")  # sockaddr, big-endian
    + bytes.fromhex("0100" "7b00" "9004" "0b01" "6105" "151d4980")  # ids, revision 11.1, status, serial
    + b"\x20" + b"PowerFlex 753".ljust(32)
    + b"\xff"  # state
)
