"""EtherNet/IP golden and negative vectors taken from real captures.

Derived from ITI/ICS-Security-Tools pcaps/EthernetIP/enip_test.pcap and pcaps/EthernetIP/cip_stop_plc.pcap
(commit 9b826091e7ba3fbdd5997d31e116f29e09cbbb48), CC-BY-4.0. Only the TCP payloads are kept, as hex.

pcaps/openics/EIP-ViewDeviceStatus.pcap, named as a Get_Attributes_All source, carries no EtherNet/IP at all (DNP3 on
TCP 20000 and a protocol on TCP 5450), so the Get_Attributes_All expectation below is derived from the ListIdentity
reply instead: both encode Identity attributes 1-7 identically (vendor UINT, device type UINT, product code UINT,
revision USINT USINT, status WORD, serial UDINT, product name SHORT_STRING).
The IPv4 addresses below are data inside captured replies (the devices' own configured addresses): nothing is
ever sent to them; every test talks to 127.0.0.0/8 only.
"""

# enip_test.pcap frame 6, nmap enip-info 10.1.1.167:5262 -> 10.1.1.164:44818: ListIdentity, context c1debed100000000.
LIST_IDENTITY_REQUEST = bytes.fromhex("63000000000000000000000000000000c1debed100000000")

# enip_test.pcap frame 7: the reply of a 1756-ENBT/A at 10.1.1.164.
LIST_IDENTITY_REPLY = bytes.fromhex(
    "63003300000000000000000000000000c1debed100000000"  # header: ListIdentity, 51 bytes, context echoed
    "0100"  # one CPF item
    "0c002d00"  # type 0x0C CIP identity, 45 bytes
    "0100"  # encapsulation protocol version 1
    "0002af120a0101a40000000000000000"  # sockaddr (big-endian): AF_INET, port 44818, 10.1.1.164, 8 zero bytes
    "01000c003a00040330008e4d52000b313735362d454e42542f41"  # identity attributes 1-7
    "03"  # state: operational
)
LIST_IDENTITY_SOCKADDR = slice(32, 48)  # where the sockaddr sits in LIST_IDENTITY_REPLY
CAPTURE_ADDRESS = ("10.1.1.164", 44818)

# The identity of that 1756-ENBT/A as an `enip:` plant section.
ENBT_SECTION = {
    "vendor_id": 1,
    "device_type": 12,
    "product_code": 58,
    "revision": "4.3",
    "status": 0x0030,
    "serial": 0x00524D8E,
    "product_name": "1756-ENBT/A",
    "state": 3,
}

# Get_Attributes_All data of the same identity without a configured state (attributes 1-7), cut from the reply.
ENBT_ATTRIBUTES_1_7 = LIST_IDENTITY_REPLY[48:-1]

# cip_stop_plc.pcap frame 1, 192.168.1.69 -> 192.168.1.30:44818: SendUnitData (0x70) on session 0x002A0001,
# connected address item (connection id 0xFF954022), connected data item: sequence 0x0106, service 0x07 (Stop)
# to class 0x8E instance 1. Must be refused and recorded as a violation.
CIP_STOP_REQUEST = bytes.fromhex(
    "70001c0001002a00000000000000000000000000000000000000000001000200a1000400224095ffb100080006010702208e2401"
)
CIP_STOP_SESSION = 0x002A0001
