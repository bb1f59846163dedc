"""The central allowlist of read-only operations. Nothing else may ever leave otprobe.

A probe's own declaration is not enough: the link checks every announced operation against this
table, so a probe that declares a write (Modbus FC 6, an S7 PLC STOP, a CIP Set_Attribute) is still
refused before any byte is sent. Codes are written the way the wire spells them.

The table is keyed by wire protocol, not by probe: a second probe that speaks Modbus (one installed by another
package, say) may send exactly what Modbus may. A probe is checked twice: when the registry loads it (every code it
declares must be listed here, or the probe is refused whole) and on the wire (every operation it announces).
Adding a code is a reviewed change to this file; docs/design.md says what the review asks for.
"""

from __future__ import annotations

from collections.abc import Iterable

from otprobe.errors import PolicyViolation

# (protocol, code) pairs. Transport steps (connect, close, session setup and teardown) are listed too
# because they cost the device a packet and a connection slot.
READ_ONLY_OPERATIONS: frozenset[tuple[str, str]] = frozenset(
    {
        # Modbus/TCP
        ("modbus", "tcp:connect"),
        ("modbus", "tcp:close"),
        ("modbus", "fc:0x2B/mei:0x0E"),  # Read Device Identification
        ("modbus", "fc:0x11"),  # Report Server ID (only where FC43 is unsupported)
        # S7comm over ISO-on-TCP
        ("s7", "tcp:connect"),
        ("s7", "cotp:CR"),
        ("s7", "s7:setup_communication"),
        ("s7", "szl:0x0011"),  # module identification
        ("s7", "szl:0x001C"),  # component identification
        ("s7", "szl:0x0424"),  # current CPU mode
        ("s7", "szl:continuation"),  # next fragment of an SZL answer
        ("s7", "tcp:close"),
        # EtherNet/IP
        ("enip", "udp:0x63"),  # ListIdentity, one unicast datagram
        ("enip", "tcp:connect"),
        ("enip", "enip:0x63"),  # ListIdentity over TCP
        ("enip", "enip:0x65"),  # RegisterSession
        ("enip", "cip:0x01/class:0x01"),  # Get_Attributes_All, Identity object
        ("enip", "enip:0x66"),  # UnRegisterSession
        ("enip", "tcp:close"),
        # BACnet/IP: confirmed services, unicast datagrams to the Device object
        ("bacnet", "bacnet:confirmed:12"),  # ReadProperty, one property (where ReadPropertyMultiple is refused)
        ("bacnet", "bacnet:confirmed:14"),  # ReadPropertyMultiple, the identity properties at once
        # SNMP: unicast datagrams, configured credentials only; never SetRequest
        ("snmp", "snmp:get"),  # GetRequest: the system group, and the SNMPv3 discovery (no varbind)
        ("snmp", "snmp:getnext"),  # GetNextRequest: the next ENTITY-MIB row, where GetBulk is not used
        ("snmp", "snmp:getbulk"),  # GetBulkRequest: a few ENTITY-MIB rows at once (max-repetitions bounded)
        # OPC UA over opc.tcp: discovery on an unsecured channel; the session only for the intrusive BuildInfo read
        ("opcua", "tcp:connect"),
        ("opcua", "uacp:HEL"),  # Hello: buffer sizes and endpoint URL (Part 6, 7.1.2.3)
        ("opcua", "uasc:OPN"),  # OpenSecureChannel, SecurityPolicy None (Part 4, 5.5.2)
        ("opcua", "ua:GetEndpoints"),  # the server's endpoints, application and certificate (Part 4, 5.4.4)
        ("opcua", "ua:CreateSession"),  # an anonymous session for BuildInfo, intrusive: a scarce slot (Part 4, 5.6.2)
        ("opcua", "ua:ActivateSession"),  # with an anonymous identity token (Part 4, 5.6.3)
        ("opcua", "ua:Read"),  # BuildInfo's variables i=2261-2266 only: the probe can build no other Read (5.10.2)
        ("opcua", "ua:CloseSession"),  # frees the session slot (Part 4, 5.6.4)
        ("opcua", "uasc:CLO"),  # CloseSecureChannel, no reply (Part 4, 5.5.3)
        ("opcua", "tcp:close"),
    }
)


def is_read_only(protocol: str, code: str) -> bool:
    return (protocol, code) in READ_ONLY_OPERATIONS


def require_read_only(protocol: str, code: str) -> None:
    """Raise PolicyViolation unless (protocol, code) is on the allowlist."""
    if not is_read_only(protocol, code):
        raise PolicyViolation(f"{protocol} operation {code} is not on the read-only allowlist; refused")


def require_declared_read_only(probe: str, protocol: str, codes: Iterable[str]) -> None:
    """At load: refuse a probe (described by `probe`, e.g. "probe 'x' from package y 1.0") that declares any code
    the allowlist lacks, so that it never runs at all instead of failing on the wire half-way through a scan."""
    for code in codes:
        if not is_read_only(protocol, code):
            raise PolicyViolation(f"{probe} declares {protocol} code {code}, which is not on the read-only "
                                  "allowlist (otprobe/safety.py); the probe is refused")
