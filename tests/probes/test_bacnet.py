"""The BACnet/IP identity probe: request bytes, the reply parser (golden and Hypothesis), policy, and runs against
the simulated device (simulators.bacnet_sim), whose recorder is the judge of what reached it.

Every device listens on its own address in 127.0.150.1-127.0.150.250 (this file's range), on port 47808 like a real
controller; the probe sends from 127.0.0.1 (the kernel's source address for loopback), port 47808 unless a test
says otherwise. nmap's bacnet-info is a cross-check when installed.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import shutil
import socket
import struct
from contextlib import suppress
from pathlib import Path
from typing import Any

import identities
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from otprobe.contract import Operation, Timeouts
from otprobe.errors import PolicyViolation, ProtocolError
from otprobe.link import Link
from otprobe.model import Observation, Status, Target
from otprobe.probes import bacnet_wire as wire
from otprobe.probes.bacnet import BacnetProbe
from otprobe.safety import is_read_only
from simulators.recorder import Recorder

ROOT = Path(__file__).resolve().parents[2]
PORT = 47808
TIMEOUTS = Timeouts(connect_s=0.5, response_s=0.5)
_hosts = (f"127.0.150.{n}" for n in itertools.count(1))

PXC = identities.BACNET_PXC
BCX1 = {"device_instance": 10401, "object_name": "bCX1-PLANT-ROOM", "vendor_id": 10, "vendor_name": "TAC",
        "model_name": "bCX1-CR", "firmware_revision": "Bootloader 4.500065", "application_software_version": "4.500065",
        "serial_number": "BCX1-0042"}

# Requests as a real client sends them (the ReadProperty is byte for byte nmap bacnet-info's first, the
# ReadPropertyMultiple the identity read of ASHRAE 135 clause 15.7), written out by hand, not by the probe's encoder.
RP_VENDOR_NAME = bytes.fromhex("810a0011 0104 0005010c 0c023fffff 1979")
RPM_IDENTITY = bytes.fromhex("810a0022 0104 0005030e 0c023fffff 1e 094b 094d 0979 0978 0946 092c 090c 0a0174 1f")
# Replies, by hand: a ReadPropertyMultiple ACK (invoke 3) for device 2098177 with vendor-name, vendor-identifier
# and a failed serial-number; a ReadProperty ACK (invoke 1) of vendor-name; Error, Reject and Abort (invoke 3).
RPM_ACK = bytes.fromhex(
    "810a002d 0100 30030e 0c02200401 1e"
    "2979 4e 750800 5369656d656e73 4f"  # vendor-name "Siemens": CharacterString, extended length 8, UTF-8
    "2978 4e 2107 4f"  # vendor-identifier 7
    "2a0174 5e 9102 9120 5f"  # serial-number: property, unknown-property
    "1f")
RP_ACK = bytes.fromhex("810a001c 0100 30010c 0c02200401 1979 3e 750800 5369656d656e73 3f")
ERROR_UNKNOWN_OBJECT = bytes.fromhex("810a000d 0100 50030e 9101 911f")
REJECT_UNRECOGNIZED = bytes.fromhex("810a0009 0100 600309")
ABORT_SEGMENTATION = bytes.fromhex("810a0009 0100 710304")


def device(host: str, section: dict[str, Any], fault: Any = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": f"bms-{host.rsplit('.', 1)[1]}", "address": host, "class": "bms",
                            "bacnet": {"port": PORT, **section}}
    if fault is not None:
        spec["fault"] = fault
    return spec


async def simulated(start_plant: Any, section: dict[str, Any], fault: Any = None) -> tuple[str, Recorder]:
    host = next(_hosts)
    plant = await start_plant(device(host, section, fault))
    return host, plant[device(host, section)["name"]].recorder


async def probe(host: str, options: dict[str, Any] | None = None,
                timeouts: Timeouts = TIMEOUTS) -> tuple[Observation, Link]:
    p = BacnetProbe(options or {})
    link = Link(p, Target(host, "bms"), timeouts=timeouts)
    return await p.run(link, Target(host, "bms")), link


def assert_identity(obs: Observation, section: dict[str, Any]) -> None:
    assert obs.status is Status.IDENTIFIED, obs.error
    ident = obs.identity
    assert ident is not None
    assert (ident.vendor, ident.vendor_id) == (section["vendor_name"], section["vendor_id"])
    assert ident.model == ident.product_name == section["model_name"]
    assert ident.firmware == section["firmware_revision"]
    assert ident.serial == section.get("serial_number")
    assert ident.raw["instance"] == section["device_instance"]
    assert ident.raw["object_name"] == section["object_name"]
    assert ident.raw["application_software_version"] == section["application_software_version"]
    assert ident.raw["device_type"] == {"vendor_identifier": section["vendor_id"], "model_name": section["model_name"]}


def assert_clean(obs: Observation, link: Link, recorder: Recorder) -> None:
    assert link.packets_sent == recorder.packet_count() == obs.packets_sent
    assert recorder.violations() == []
    assert all(r.operation in ("confirmed:12", "confirmed:14") for r in recorder.requests)


# -- requests -----------------------------------------------------------------------------------------------------

def test_requests_are_the_hand_written_ones() -> None:
    assert wire.read_property_request(1, wire.WILDCARD_INSTANCE, wire.VENDOR_NAME) == RP_VENDOR_NAME
    assert wire.read_property_multiple_request(3, wire.WILDCARD_INSTANCE, wire.IDENTITY_PROPERTIES) == RPM_IDENTITY
    # no segmentation either way: octet 0 of the APDU has SEG, MOR and SA clear, octet 1 is max-segs 0, max-APDU 1476
    assert RPM_IDENTITY[6:8] == b"\x00\x05"
    # the real instance, once known: ObjectIdentifier (8 << 22) | 2098177
    assert wire.read_property_request(7, 2098177, 372)[10:18] == bytes.fromhex("0c02200401 1a0174")


# -- golden replies -------------------------------------------------------------------------------------------------

def test_rpm_ack_gives_values_and_per_property_errors() -> None:
    reply = wire.parse_reply(RPM_ACK, 3, wire.SERVICE_READ_PROPERTY_MULTIPLE)
    assert reply == wire.Properties(2098177, {121: "Siemens", 120: 7}, {372: "property: unknown-property"})


def test_rp_ack_error_reject_and_abort() -> None:
    assert wire.parse_reply(RP_ACK, 1, wire.SERVICE_READ_PROPERTY) == wire.Properties(2098177, {121: "Siemens"})
    error = wire.parse_reply(ERROR_UNKNOWN_OBJECT, 3, wire.SERVICE_READ_PROPERTY_MULTIPLE)
    assert error == wire.Refusal("error", "object: unknown-object") and error.object_refused
    assert wire.parse_reply(REJECT_UNRECOGNIZED, 3, 14) == wire.Refusal("reject", "unrecognized-service")
    assert wire.parse_reply(ABORT_SEGMENTATION, 3, 14) == wire.Refusal("abort", "segmentation-not-supported")


@pytest.mark.parametrize(("data", "invoke", "service", "match"), [
    (RP_ACK, 2, 12, "invoke id 1, ours is 2"),
    (RP_ACK, 1, 14, "service 12, ours is 14"),
    (RP_ACK[:-1], 1, 12, "BVLC length"),
    (RP_ACK[:6] + b"\x38" + RP_ACK[7:], 1, 12, "segmented"),  # a ComplexACK with the SEG bit set
    (RP_ACK + bytes(2100), 1, 12, "cap"),
    (bytes.fromhex("810a0009 0180 000000"), 1, 12, "network-layer"),
    (RP_ACK.replace(bytes.fromhex("0c02200401"), bytes.fromhex("0c00000001")), 1, 12, "not a Device object"),
])
def test_replies_that_are_not_ours_or_not_whole_are_protocol_errors(data: bytes, invoke: int, service: int,
                                                                    match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        wire.parse_reply(data, invoke, service)


def hostile(golden: bytes) -> st.SearchStrategy[bytes]:
    """Random bytes, truncations, oversized tails and single-byte corruptions of a real reply, BVLC length kept."""
    cut = st.integers(0, len(golden)).map(lambda n: golden[:n])
    tail = st.binary(min_size=1, max_size=300).map(lambda extra: golden + extra)
    flip = st.tuples(st.integers(0, len(golden) - 1), st.integers(0, 255)).map(
        lambda p: golden[: p[0]] + bytes([p[1]]) + golden[p[0] + 1:])
    # the BVLC length made to match, so that the corruption reaches the APDU decoder
    relength = st.one_of(cut, tail, flip).filter(lambda d: len(d) >= 4).map(
        lambda d: d[:2] + struct.pack(">H", len(d)) + d[4:])
    return st.one_of(st.binary(max_size=400), cut, tail, flip, relength)


@settings(max_examples=1000, deadline=None)
@given(st.one_of(hostile(RPM_ACK), hostile(RP_ACK), hostile(ERROR_UNKNOWN_OBJECT), hostile(REJECT_UNRECOGNIZED),
                 hostile(ABORT_SEGMENTATION)), st.sampled_from([1, 3]), st.sampled_from([12, 14]))
def test_reply_parser_only_raises_protocol_error(data: bytes, invoke: int, service: int) -> None:
    with suppress(ProtocolError):
        wire.parse_reply(data, invoke, service)


# -- policy ---------------------------------------------------------------------------------------------------------

class EvilBacnetProbe(BacnetProbe):
    operations = (
        *BacnetProbe.operations,
        Operation("write_property", "bacnet:confirmed:15"),
        Operation("who_is", "bacnet:unconfirmed:8"),
    )


@pytest.mark.parametrize("op", ["write_property", "who_is"])
async def test_link_refuses_write_property_and_who_is_before_any_socket(op: str, monkeypatch: Any) -> None:
    opened: list[Any] = []
    real = socket.socket.__init__

    def watched(self: socket.socket, *args: Any, **kwargs: Any) -> None:
        opened.append(args)
        real(self, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "__init__", watched)
    link = Link(EvilBacnetProbe(), Target("127.0.150.250"))
    reached = []
    with pytest.raises(PolicyViolation, match="not on the read-only allowlist"):
        async with link.op(op):
            reached.append(op)
    assert reached == [] and opened == [] and link.packets_sent == 0


def test_declared_operations_are_read_only_and_the_budget_is_nine() -> None:
    assert [op.code for op in BacnetProbe.operations] == ["bacnet:confirmed:14", "bacnet:confirmed:12"]
    assert all(is_read_only("bacnet", op.code) for op in BacnetProbe.operations)
    assert BacnetProbe().max_packets() == 9  # one ReadPropertyMultiple, then eight ReadProperty at most
    assert BacnetProbe().options.source_port == BacnetProbe().port == 47808
    assert BacnetProbe.Options is type(BacnetProbe().options)
    with pytest.raises(ValidationError, match="source_port"):
        BacnetProbe({"source_port": 70000})
    with pytest.raises(ValidationError, match="source_port"):
        BacnetProbe({"source_port": True})


# -- against the simulated device ---------------------------------------------------------------------------------

@pytest.mark.parametrize("section", [PXC, BCX1], ids=["pxc", "bcx1"])
async def test_one_read_property_multiple_reads_the_identity(start_plant: Any, section: dict[str, Any]) -> None:
    host, recorder = await simulated(start_plant, section)
    obs, link = await probe(host)
    assert_identity(obs, section)
    assert obs.identity is not None and obs.identity.raw["source"] == "read_property_multiple"
    assert recorder.operations() == ["confirmed:14"]
    assert recorder.requests[0].peer == "127.0.0.1:47808"  # sent from the standard port
    assert_clean(obs, link, recorder)
    assert link.packets_sent == 1
    if "serial_number" not in section:
        assert obs.identity.raw["missing"] == {"serial_number": "property: unknown-property"}


async def test_a_rejected_rpm_falls_back_to_one_read_property_each(start_plant: Any) -> None:
    host, recorder = await simulated(start_plant, {**BCX1, "rpm": False})
    obs, link = await probe(host)
    assert_identity(obs, BCX1)
    assert obs.identity is not None and obs.identity.raw["source"] == "read_property"
    assert "reject unrecognized-service" in obs.identity.raw["notes"][0]
    assert recorder.operations() == ["confirmed:14"] + ["confirmed:12"] * 8
    assert_clean(obs, link, recorder)
    assert link.packets_sent == link.budget == 9


async def test_an_abort_for_size_falls_back_and_the_real_instance_follows_the_wildcard(
        start_plant: Any, monkeypatch: Any) -> None:
    # max-APDU 50: the RPM answer does not fit and the device aborts (segmentation-not-supported), as asked
    host, recorder = await simulated(start_plant, {**PXC, "max_apdu": 50})
    sent: list[bytes] = []
    real_send = socket.socket.send

    def send(self: socket.socket, data: bytes, *args: Any) -> int:
        sent.append(bytes(data))
        return real_send(self, data, *args)

    monkeypatch.setattr(socket.socket, "send", send)
    obs, link = await probe(host)
    monkeypatch.undo()
    assert_identity(obs, PXC)
    assert obs.identity is not None and "abort segmentation-not-supported" in obs.identity.raw["notes"][0]
    assert_clean(obs, link, recorder)
    assert link.packets_sent == len(sent) == 9
    # the RPM and the first ReadProperty ask the wildcard, the others the instance its answer named
    instances = [struct.unpack_from(">I", data, 11)[0] & 0x3FFFFF for data in sent]
    assert instances == [wire.WILDCARD_INSTANCE] * 2 + [PXC["device_instance"]] * 7
    assert [data[9] for data in sent] == [14] + [12] * 8


async def test_a_device_that_answers_only_port_47808_is_read(start_plant: Any) -> None:
    host, recorder = await simulated(start_plant, {**PXC, "require_source_port": True})
    obs, link = await probe(host)
    assert_identity(obs, PXC)
    assert obs.identity is not None and obs.identity.raw["source_port"] == 47808
    assert_clean(obs, link, recorder)


async def test_port_47808_held_elsewhere_is_said_and_a_free_port_used(start_plant: Any) -> None:
    strict, strict_recorder = await simulated(start_plant, {**PXC, "require_source_port": True})
    lenient, lenient_recorder = await simulated(start_plant, BCX1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", PORT))  # another local BACnet stack, not sharing its port
        read, read_link = await probe(lenient)
        silent, silent_link = await probe(strict)
    assert_identity(read, BCX1)
    assert read.identity is not None and "source port 47808 unavailable" in read.identity.raw["notes"][0]
    assert read.identity.raw["source_port"] != 47808
    assert silent.status is Status.TIMEOUT
    assert silent.error is not None and "source port 47808 unavailable" in silent.error
    assert_clean(read, read_link, lenient_recorder)
    assert_clean(silent, silent_link, strict_recorder)


async def test_source_port_zero_sends_from_a_free_port(start_plant: Any) -> None:
    host, recorder = await simulated(start_plant, PXC)
    obs, link = await probe(host, {"source_port": 0})
    assert_identity(obs, PXC)
    assert obs.identity is not None and obs.identity.raw["notes"] == []
    assert recorder.requests[0].peer != "127.0.0.1:47808"
    assert_clean(obs, link, recorder)


async def test_devices_probed_at_once_share_port_47808(start_plant: Any) -> None:
    devices = [await simulated(start_plant, {**section, "require_source_port": True}) for section in (PXC, BCX1)]
    results = await asyncio.gather(*(probe(host) for host, _ in devices))
    for (obs, link), (_, recorder), section in zip(results, devices, (PXC, BCX1), strict=True):
        assert_identity(obs, section)
        assert_clean(obs, link, recorder)


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        ("silent", Status.TIMEOUT),
        ("refused", Status.REFUSED),
        ("malformed", Status.PROTOCOL_ERROR),
        ("truncated", Status.PROTOCOL_ERROR),
        ("oversized", Status.PROTOCOL_ERROR),
        ("wrong_tid", Status.PROTOCOL_ERROR),
        ({"mode": "slow", "latency_s": 1.0}, Status.TIMEOUT),
        # connection-level modes mean nothing to a datagram: the device answers as usual
        ("reset", Status.IDENTIFIED),
        ("conn_limit", Status.IDENTIFIED),
        ("stream", Status.IDENTIFIED),
        ("huge_length", Status.IDENTIFIED),
        ("trickle", Status.IDENTIFIED),
    ],
    ids=lambda v: v if isinstance(v, str) else (v["mode"] if isinstance(v, dict) else None),
)
async def test_every_fault_mode_gives_a_status_and_never_a_traceback(start_plant: Any, fault: Any,
                                                                     status: Status) -> None:
    host, recorder = await simulated(start_plant, PXC, fault)
    obs, link = await probe(host)
    assert obs.status is status, obs.error
    assert (obs.identity is None) == (status is not Status.IDENTIFIED)
    assert "Traceback" not in (obs.error or "")
    assert 0 < link.packets_sent <= link.budget
    assert recorder.violations() == []
    if fault != "refused":  # nothing listens: the kernel answers, no device records
        assert link.packets_sent == recorder.packet_count()


async def test_nothing_is_sent_after_a_timeout_that_the_pacer_did_not_grant(start_plant: Any) -> None:
    """bacpypes3's own client would resend 3 times, 3 s apart: the probe sends once and never again."""
    host, recorder = await simulated(start_plant, PXC, "silent")
    obs, link = await probe(host, timeouts=Timeouts(0.5, 0.3))
    await asyncio.sleep(1.0)  # well past where a retry would have left
    assert obs.status is Status.TIMEOUT
    assert link.packets_sent == recorder.packet_count() == 1


# -- against a scripted stand-in, for replies the simulator does not give ---------------------------------------

async def scripted(reply: bytes) -> tuple[str, asyncio.DatagramTransport, list[bytes]]:
    """A device that answers every datagram with `reply`, its invoke id set to the request's."""
    host = next(_hosts)
    log: list[bytes] = []

    class Device(asyncio.DatagramProtocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: Any) -> None:
            log.append(data)
            self.transport.sendto(reply[:7] + data[8:9] + reply[8:], addr)  # APDU octet 1: the invoke id

    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(Device, local_addr=(host, PORT))
    return host, transport, log


async def test_a_device_without_the_wildcard_instance_has_no_identity() -> None:
    host, transport, log = await scripted(ERROR_UNKNOWN_OBJECT)
    try:
        obs, link = await probe(host)
    finally:
        transport.close()
    assert obs.status is Status.NO_IDENTITY
    assert obs.error is not None and "wildcard" in obs.error and "unknown-object" in obs.error
    assert len(log) == link.packets_sent == 1


async def test_a_device_that_rejects_every_read_stops_after_the_first_read_property() -> None:
    host, transport, log = await scripted(REJECT_UNRECOGNIZED)
    try:
        obs, link = await probe(host)
    finally:
        transport.close()
    assert obs.status is Status.NO_IDENTITY
    assert obs.error is not None and "ReadProperty refused (reject unrecognized-service)" in obs.error
    assert [data[9] for data in log] == [14, 12]  # one RPM, one ReadProperty, nothing more
    assert link.packets_sent == 2


# -- an outside client ------------------------------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("nmap") is None, reason="nmap is not installed")
async def test_nmap_bacnet_info_agrees_on_the_standard_plant_device(start_plant: Any) -> None:
    """The standard plant's BACnet controller on 47808, moved to this file's range. nmap's bacnet-info binds 47808
    as its source when it can; with the device holding 47808 on this host it sends from another port instead."""
    plant = yaml.safe_load((ROOT / "simulators" / "plants" / "standard.yaml").read_text(encoding="utf-8"))
    spec = next(d for d in plant["devices"] if "bacnet" in d)
    assert plant["ports"]["bacnet"] == PORT
    host, _ = await simulated(start_plant, spec["bacnet"])
    obs, _ = await probe(host, {"source_port": 0})
    process = await asyncio.create_subprocess_exec(
        "nmap", "-n", "-Pn", "-sU", "-p", str(PORT), "--script", "bacnet-info", host,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    if process.returncode != 0 and b"root" in err:
        pytest.skip("nmap -sU needs root here")
    found = dict(re.findall(r"\|[_ ]\s+(Vendor Name|Model Name|Firmware): (.*)", out.decode()))
    assert obs.identity is not None, obs.error
    assert found == {"Vendor Name": obs.identity.vendor, "Model Name": obs.identity.model,
                     "Firmware": obs.identity.firmware}, out.decode()
