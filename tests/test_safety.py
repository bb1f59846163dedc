"""The read-only allowlist is binding: a declared write still never reaches the wire.

The rule and its reasons: docs/safety.md#read-only-allowlist.
"""

from __future__ import annotations

import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otprobe.contract import Operation
from otprobe.errors import PolicyViolation
from otprobe.link import Link
from otprobe.model import Target
from otprobe.probes import probe_class, probe_classes
from otprobe.safety import READ_ONLY_OPERATIONS, is_read_only, require_read_only

FORBIDDEN = [
    ("modbus", "fc:0x05"),  # write single coil
    ("modbus", "fc:0x06"),  # write single register
    ("modbus", "fc:0x0F"),  # write multiple coils
    ("modbus", "fc:0x10"),  # write multiple registers
    ("modbus", "fc:0x08"),  # diagnostics: restart communications, listen-only mode
    ("modbus", "fc:0x5A"),  # Schneider UMAS
    ("s7", "s7:job:0x29"),  # PLC STOP
    ("s7", "s7:job:0x05"),  # write variable
    ("s7", "s7:job:0x28"),  # PLC control (start, copy RAM to ROM...)
    ("enip", "cip:0x10/class:0x01"),  # Set_Attribute_Single
    ("enip", "cip:0x02/class:0x01"),  # Set_Attributes_All
    ("enip", "cip:0x05/class:0x01"),  # Reset
    ("enip", "cip:0x07/class:0x8E"),  # Stop (the captured CIP stop request)
    ("enip", "cip:0x54/class:0x06"),  # Forward_Open
    ("bacnet", "bacnet:confirmed:15"),  # WriteProperty
    ("bacnet", "bacnet:unconfirmed:8"),  # Who-Is (a broadcast by design)
    ("snmp", "snmp:set"),  # SetRequest
    ("opcua", "ua:Write"),  # Write service
    ("opcua", "ua:Call"),  # Call: methods, e.g. a server state change
    ("opcua", "ua:FindServers"),  # discovery beyond the one server asked
]


def evil(protocol: str, code: str) -> type:
    """A probe of this protocol that declares the forbidden operation beside its own."""
    base = probe_class(protocol)
    return type(f"Evil{base.__name__}", (base,), {"operations": (*base.operations, Operation("evil", code))})


@pytest.mark.parametrize(("protocol", "code"), FORBIDDEN)
async def test_a_declared_write_is_refused_before_any_socket(protocol, code, monkeypatch):
    created = []
    monkeypatch.setattr(socket.socket, "connect", lambda *a: created.append(a))
    probe = evil(protocol, code)()
    link = Link(probe, Target("127.0.9.99"))
    with pytest.raises(PolicyViolation, match=code.replace("/", ".")):
        async with link.op("evil"):
            raise AssertionError("the library call must not run")
    assert link.packets_sent == 0 and created == []


def test_allowlist_names_only_identity_operations_and_transport_steps():
    assert not any(is_read_only(protocol, code) for protocol, code in FORBIDDEN)
    for _protocol, code in READ_ONLY_OPERATIONS:
        kind, _, rest = code.partition(":")
        assert kind in {"tcp", "fc", "cotp", "s7", "szl", "udp", "enip", "cip", "bacnet", "snmp",
                        "uacp", "uasc", "ua"}, code
        if kind == "s7":
            assert rest == "setup_communication"  # never a job: no read, write, control or up/download
        if kind == "cip":
            assert rest.endswith("/class:0x01")  # the Identity object only
        if kind == "bacnet":
            assert rest in {"confirmed:12", "confirmed:14"}  # ReadProperty and ReadPropertyMultiple only
        if kind == "snmp":
            assert rest in {"get", "getnext", "getbulk"}  # reads only: never set, never a trap or inform
        if kind == "ua":  # discovery, the anonymous session and the BuildInfo Read: never Write, Call or Browse
            assert rest in {"GetEndpoints", "CreateSession", "ActivateSession", "Read", "CloseSession"}


def test_allowlist_is_exactly_what_the_probes_declare():
    # An entry no probe declares is a permission nobody reviewed against a probe card: none may exist.
    declared = {(probe.name, op.code) for probe in probe_classes() for op in probe.operations}
    assert declared == READ_ONLY_OPERATIONS


@settings(max_examples=1000)
@given(protocol=st.sampled_from([p.name for p in probe_classes()]), code=st.text(max_size=30))
def test_anything_off_the_allowlist_is_refused(protocol, code):
    if (protocol, code) in READ_ONLY_OPERATIONS:
        require_read_only(protocol, code)
    else:
        with pytest.raises(PolicyViolation):
            require_read_only(protocol, code)


def test_the_test_suite_itself_can_only_reach_loopback():
    """conftest guards every socket: a test that tried any other address would fail instead of sending."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        with pytest.raises(AssertionError, match=r"127\.0\.0\.0/8 only"):
            sock.sendto(b"", ("126.0.0.1", 9))  # never sent: the guard raises first
        sock.sendto(b"", ("127.0.0.1", 9))  # loopback passes (nothing listens on the discard port)
