"""Modbus/TCP probe: golden replies, hostile bytes, options, and whole runs against the simulated devices.

Addresses 127.0.50.0-127.0.59.255 only (this file's range); every device gets its own address.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import struct
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import identities
import pytest
from conftest import settled
from fakes import PacerLog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vectors import modbus_vectors as vec

from otprobe.contract import Category, Kind, Operation, Timeouts
from otprobe.errors import PolicyViolation, ProbeContractError, ProtocolError
from otprobe.link import Link
from otprobe.model import Observation, Status, Target
from otprobe.probes.modbus import MAX_FOLLOW_UPS, PACKETS_PER_UNIT, ModbusProbe
from otprobe.probes.modbus_wire import (
    DeviceIdPage,
    ExceptionReply,
    ServerIdReply,
    identity_from_objects,
    identity_from_server_id,
    parse_adu,
    parse_device_id,
    parse_exception,
    parse_reply,
    parse_server_id,
    split_server_id,
)
from otprobe.safety import is_read_only
from simulators.faults import Fault
from simulators.modbus_sim import ModbusDevice, parse_config
from simulators.recorder import Recorder

PORT = 5020
FAST = Timeouts(connect_s=0.5, response_s=0.4)
_addresses = (f"127.0.{50 + n // 250}.{1 + n % 250}" for n in itertools.count())

M340 = {"unit_ids": [0, 1, 255], **identities.M340_OBJECTS, "user_application_name": "MCC_HALL_A"}
KBR = {
    "vendor_name": "KBR",
    "product_code": "multicomp F144-3  ",
    "revision": " 2.00r016",
    "conformity": 0x01,
    "fc17": False,
}
PM710 = {
    "vendor_name": "Schneider Electric",
    "product_code": "PM710",
    "revision": "v03.110",
    "fc43": False,
    "server_id": "FA",
    "server_data": "PM710PowerMeter",
}
# regular objects too long for one reply: the device pages with More Follows
PAGING = {
    "vendor_name": "Acme Industrial Controls",
    "product_code": "AIC-9000",
    "revision": "V1.04",
    "vendor_url": "http://acme.example/" + "u" * 100,
    "product_name": "Acme " + "P" * 150,
    "model_name": "AIC-9000-" + "M" * 150,
    "user_application_name": "LINE4_" + "A" * 150,
}


def frame(pdu: bytes, unit: int = 1, tid: int = 1) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


# -- golden replies -------------------------------------------------------------------------------------------------


def test_captured_fc17_reply_of_a_wingpath_device() -> None:
    adu = parse_adu(vec.FC17_WINGPATH_FRAME)
    assert adu is not None and (adu.tid, adu.unit) == (0, 10)
    reply = parse_reply(adu.pdu, 0x11)
    assert reply == ServerIdReply(b"\x00\xff" + b"Wingpath Limited", 0x12)
    identity = identity_from_server_id(reply, 10)
    assert identity.model == "Wingpath Limited"
    assert identity.raw["server_id"] == "00" and identity.raw["run_indicator"] == "on"
    assert identity.serial is None and identity.vendor is None


@pytest.mark.parametrize(
    ("captured", "function", "code"),
    [(vec.FC17_EXCEPTION_FRAME, 0x11, 0x03), (vec.FC43_EXCEPTION_FRAME, 0x2B, 0x01)],
)
def test_captured_exception_replies(captured: bytes, function: int, code: int) -> None:
    adu = parse_adu(captured)
    assert adu is not None
    reply = parse_reply(adu.pdu, function)
    assert reply == ExceptionReply(function, code)
    assert f"exception 0x{code:02X}" in reply.text


def test_a_captured_request_is_no_identification_reply() -> None:
    adu = parse_adu(vec.FC43_REQUEST_WITH_EXTRA_BYTE_FRAME)
    assert adu is not None and adu.pdu == bytes.fromhex("2b0e030100")
    with pytest.raises(ProtocolError, match="shorter than its 7-byte header"):
        parse_device_id(adu.pdu)


def test_kbr_basic_reply_keeps_padding_in_raw_and_strips_it_in_fields() -> None:
    page = parse_device_id(vec.KBR_BASIC)
    assert (page.read_code, page.conformity, page.more_follows, page.declared_count) == (1, 0x01, False, 3)
    identity = identity_from_objects(dict(page.objects), page.conformity, 1, "stream")
    assert identity.vendor == "KBR GmbH"
    assert identity.product_code == identity.model == "multicomp F144-3"
    assert identity.firmware == "2.00r016" and identity.firmware_version == (2, 0, 16)
    assert identity.raw["objects"] == {
        "vendor_name": "KBR GmbH",
        "product_code": "multicomp F144-3  ",
        "revision": " 2.00r016",
    }
    assert identity.raw["conformity"] == "0x01"


def test_spec_one_transaction_example() -> None:
    page = parse_device_id(vec.SPEC_ONE_TRANSACTION)
    assert dict(page.objects) == {0: b"Company identification", 1: b"Product code XX", 2: b"V2.11"}


def test_spec_erratum_count_says_three_bytes_carry_two() -> None:
    page = parse_device_id(vec.SPEC_PAGE_1)
    assert page.declared_count == 3
    assert [object_id for object_id, _ in page.objects] == [0, 1]
    assert page.more_follows and page.next_object_id == 2
    last = parse_device_id(vec.SPEC_PAGE_2)
    assert not last.more_follows and dict(last.objects) == {2: b"V2.11"}


def test_model_prefers_model_name_then_product_name_then_product_code() -> None:
    regular = dict(parse_device_id(vec.M340_REGULAR).objects)
    basic = {0: b"Schneider Electric", 1: b"BMX P34 2020", 2: b"v2.8"}
    full = identity_from_objects({**basic, **regular}, 0x83, 1, "stream")
    assert (full.model, full.product_name, full.product_code) == ("BMX P34 2020", "Modicon M340", "BMX P34 2020")
    assert full.raw["objects"]["vendor_url"] == "http://www.schneider-electric.com"
    assert full.raw["objects"]["user_application_name"] == "MCC_HALL_A"
    no_model = identity_from_objects({**basic, 4: b"Modicon M340"}, 0x82, 1, "stream")
    assert no_model.model == "Modicon M340"
    assert identity_from_objects({**basic, 0x80: b"x"}, 0x83, 1, "stream").raw["objects"]["0x80"] == "x"


def test_pm710_server_id_and_a_short_conpot_reply() -> None:
    pm710 = parse_server_id(vec.PM710_SERVER_ID)
    assert split_server_id(pm710.payload) == (b"\xfa", 0xFF, b"PM710PowerMeter")
    assert identity_from_server_id(pm710, 1).model == "PM710PowerMeter"
    conpot = parse_server_id(vec.CONPOT_SERVER_ID)
    assert conpot.payload == b"\x01\xff\x00" and conpot.declared_count == 0x11
    identity = identity_from_server_id(conpot, 1)
    assert identity.model is None and identity.raw["fc17_declared_count"] == 0x11


@pytest.mark.parametrize(
    ("pdu", "message"),
    [
        (bytes.fromhex("2b0e01010000010005") + b"abc", "claims 5 bytes, 3 left"),
        (bytes.fromhex("2b0e0101000001") + b"\x00", "object header cut off"),
        (bytes.fromhex("2b0e0101010000"), "neither 0x00 nor 0xFF"),
        (bytes.fromhex("2b0d0101000000"), "MEI 0x0D"),
    ],
)
def test_hostile_identification_replies_raise_protocol_error(pdu: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        parse_device_id(pdu)


def test_frames_are_bounded_by_their_header() -> None:
    whole = frame(vec.KBR_BASIC)
    assert parse_adu(whole[:-1]) is None
    with pytest.raises(ProtocolError, match="unexpected bytes"):
        parse_adu(whole + b"\x00")
    # an oversized claim is refused from the 7 header bytes alone, before any body arrives
    with pytest.raises(ProtocolError, match="MBAP length 8193"):
        parse_adu(struct.pack(">HHHB", 1, 0, 8193, 1))
    with pytest.raises(ProtocolError, match="protocol id 1"):
        parse_adu(struct.pack(">HHHB", 1, 1, 3, 1) + b"\x2b\x01")
    with pytest.raises(ProtocolError, match="reply function 0x03"):
        parse_reply(b"\x03\x02\x00\x00", 0x2B)


# -- hostile bytes (Hypothesis) ------------------------------------------------------------------------------------

GOLDEN_PDUS = [vec.KBR_BASIC, vec.SPEC_PAGE_1, vec.SPEC_PAGE_2, vec.M340_REGULAR, vec.PM710_SERVER_ID, b"\xab\x01"]


@st.composite
def hostile(draw: st.DrawFn, goldens: list[bytes]) -> bytes:
    """Random bytes, or a golden reply truncated, with bytes flipped, or with junk appended."""
    kind = draw(st.sampled_from(["random", "truncated", "flipped", "oversized"]))
    if kind == "random":
        return draw(st.binary(max_size=300))
    data = bytearray(draw(st.sampled_from(goldens)))
    if kind == "truncated":
        return bytes(data[: draw(st.integers(0, len(data)))])
    if kind == "flipped":
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    return bytes(data) + draw(st.binary(min_size=1, max_size=9000))


def only_protocol_error(parse: Callable[[bytes], Any], data: bytes) -> Any:
    try:
        return parse(data)
    except ProtocolError:
        return None


FUZZ = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(hostile([frame(pdu) for pdu in GOLDEN_PDUS] + [vec.FC17_WINGPATH_FRAME]))
def test_parse_adu_raises_only_protocol_error(data: bytes) -> None:
    adu = only_protocol_error(parse_adu, data)
    assert adu is None or len(adu.pdu) + 7 == len(data)


@FUZZ
@given(hostile(GOLDEN_PDUS))
def test_parse_device_id_raises_only_protocol_error_and_maps_cleanly(data: bytes) -> None:
    page = only_protocol_error(parse_device_id, data)
    if page is not None:
        assert sum(2 + len(value) for _, value in page.objects) == len(data) - 7
        identity_from_objects(dict(page.objects), page.conformity, 1, "stream").as_dict()


@FUZZ
@given(hostile(GOLDEN_PDUS))
def test_parse_server_id_raises_only_protocol_error_and_maps_cleanly(data: bytes) -> None:
    reply = only_protocol_error(parse_server_id, data)
    if reply is not None:
        assert 1 <= len(reply.payload) <= reply.declared_count
        identity_from_server_id(reply, 1).as_dict()


@FUZZ
@given(hostile(GOLDEN_PDUS))
def test_parse_exception_raises_only_protocol_error(data: bytes) -> None:
    reply = only_protocol_error(parse_exception, data)
    assert reply is None or (len(data) == 2 and reply.function == data[0] & 0x7F)


@FUZZ
@given(hostile(GOLDEN_PDUS), st.sampled_from([0x2B, 0x11]))
def test_parse_reply_raises_only_protocol_error(data: bytes, function: int) -> None:
    reply = only_protocol_error(lambda d: parse_reply(d, function), data)
    assert reply is None or isinstance(reply, DeviceIdPage | ServerIdReply | ExceptionReply)


# -- options and budget --------------------------------------------------------------------------------------------


def test_declared_operations_are_read_only_and_only_the_sweep_is_intrusive() -> None:
    assert all(is_read_only("modbus", op.code) for op in ModbusProbe.operations)
    intrusive = [op.name for op in ModbusProbe.operations if op.category is Category.INTRUSIVE]
    assert intrusive == ["unit_id_sweep"]
    assert {op.kind for op in ModbusProbe.operations if op.name in ("connect", "close")} == {Kind.CONNECT, Kind.CLOSE}


def test_budget_is_connect_close_and_eight_packets_per_unit() -> None:
    assert PACKETS_PER_UNIT == 2 + 2 * MAX_FOLLOW_UPS == 8
    assert ModbusProbe().max_packets() == 10
    assert list(ModbusProbe().units()) == [(1, "read_basic")]
    probe = ModbusProbe({"unit_ids": [1, 255, 1]})
    assert probe.unit_ids == (1, 255) and probe.max_packets() == 18


def test_sweep_covers_1_to_247_never_0_configured_ids_first() -> None:
    probe = ModbusProbe({"unit_ids": [5], "intrusive": {"unit_id_sweep": "commissioning audit, ticket 42"}})
    units = list(probe.units())
    assert units[0] == (5, "read_basic")
    assert [unit for unit, _ in units[1:]] == [u for u in range(1, 248) if u != 5]
    assert {op for _, op in units[1:]} == {"unit_id_sweep"}
    assert probe.max_packets() == 2 + 8 * 247


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"unit_ids": [0]}, "unit id 0"),
        ({"unit_ids": [1, 0]}, "unit id 0"),
        ({"unit_ids": []}, "at least 1 item"),
        ({"unit_ids": [256]}, "unit id 256 is outside 1-255"),
        ({"unit_ids": [True]}, "not a boolean"),
        ({"unit_ids": "1"}, "valid list"),
        ({"intrusive": {"unit_id_sweep": "  "}}, "written reason"),
        ({"intrusive": {"write_everything": "why not"}}, "not an operation of the modbus probe"),
        ({"intrusive": ["unit_id_sweep"]}, "valid dictionary"),
        ({"max_continuations": 1}, "Extra inputs"),  # another probe's key
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], message: str) -> None:
    # the probe's options model is the one `protocols.modbus:` is validated with: one schema, one set of messages
    with pytest.raises(ValueError, match=message):
        ModbusProbe(options)


# -- runs against simulated devices ------------------------------------------------------------------------------


@asynccontextmanager
async def device(config: dict[str, Any], fault: Any = None) -> AsyncIterator[tuple[str, Recorder]]:
    host, recorder = next(_addresses), Recorder("modbus-test")
    dev = ModbusDevice(host, parse_config({"port": PORT, **config}), Fault.from_spec(fault), recorder)
    await dev.start()
    try:
        yield host, recorder
    finally:
        await dev.stop()


async def probe_run(
    host: str, recorder: Recorder, options: dict[str, Any] | None = None, **link_kwargs: Any
) -> tuple[Observation, Link, ModbusProbe]:
    probe = ModbusProbe({"port": PORT, **(options or {})})
    link = Link(probe, Target(host, "plc"), timeouts=link_kwargs.pop("timeouts", FAST), **link_kwargs)
    observation = await probe.run(link, Target(host, "plc"))
    await settled(recorder)
    return observation, link, probe


def fc43_reads(recorder: Recorder) -> list[tuple[int, int, int]]:
    return [
        (r.detail["unit_id"], r.detail["read_code"], r.detail["object_id"])
        for r in recorder.requests
        if r.operation == "fc:0x2B/mei:0x0E"
    ]


def assert_clean(link: Link, recorder: Recorder, probe: ModbusProbe) -> None:
    assert link.packets_sent == recorder.packet_count() <= probe.max_packets()
    assert recorder.violations() == []
    assert [c.close_kind for c in recorder.connections] == ["fin"]
    assert all(r.detail.get("unit_id") != 0 for r in recorder.requests)


async def test_m340_regular_identity_equals_its_config() -> None:
    async with device(M340) as (host, recorder):
        observation, link, probe = await probe_run(host, recorder)
    assert observation.status is Status.IDENTIFIED and observation.error is None
    identity = observation.identity
    assert identity is not None
    assert (identity.vendor, identity.product_code, identity.firmware) == ("Schneider Electric", "BMX P34 2020", "v2.8")
    assert (identity.model, identity.product_name, identity.serial) == ("BMX P34 2020", "Modicon M340", None)
    assert identity.raw["objects"]["user_application_name"] == "MCC_HALL_A"
    assert identity.raw["conformity"] == "0x83" and identity.raw["unit_id"] == 1
    assert fc43_reads(recorder) == [(1, 1, 0), (1, 2, 3)]
    assert observation.packets_sent == link.packets_sent == 4
    assert observation.latency_s is not None and observation.latency_s < FAST.response_s
    assert_clean(link, recorder, probe)


async def test_kbr_basic_only_device_gets_one_request_and_keeps_its_padding() -> None:
    async with device(KBR) as (host, recorder):
        observation, link, probe = await probe_run(host, recorder)
    identity = observation.identity
    assert observation.status is Status.IDENTIFIED and identity is not None
    assert (identity.vendor, identity.product_code, identity.firmware) == ("KBR", "multicomp F144-3", "2.00r016")
    assert identity.raw["objects"]["product_code"] == KBR["product_code"]
    assert identity.raw["objects"]["revision"] == KBR["revision"]
    assert fc43_reads(recorder) == [(1, 1, 0)]  # conformity 0x01: no regular read
    assert_clean(link, recorder, probe)


async def test_pm710_without_fc43_answers_report_server_id() -> None:
    async with device(PM710) as (host, recorder):
        observation, link, probe = await probe_run(host, recorder)
    identity = observation.identity
    assert observation.status is Status.IDENTIFIED and identity is not None
    assert identity.model == "PM710PowerMeter"
    assert (identity.raw["server_id"], identity.raw["run_indicator"]) == ("fa", "on")
    assert "exception 0x01" in identity.raw["fc43"]
    assert recorder.operations() == ["fc:0x2B/mei:0x0E", "fc:0x11"]
    assert_clean(link, recorder, probe)


async def test_exception_replies_only_mean_speaks_modbus_without_identity() -> None:
    async with device({**PM710, "fc17": False}) as (host, recorder):
        observation, link, probe = await probe_run(host, recorder)
    assert observation.status is Status.NO_IDENTITY and observation.identity is None
    assert observation.error is not None
    assert "FC43 exception 0x01" in observation.error and "FC17 exception 0x01" in observation.error
    assert_clean(link, recorder, probe)


async def test_paging_device_is_read_page_by_page_with_rising_object_ids() -> None:
    async with device(PAGING) as (host, recorder):
        observation, link, probe = await probe_run(host, recorder)
    identity = observation.identity
    assert observation.status is Status.IDENTIFIED and identity is not None
    assert (identity.model, identity.product_name) == (PAGING["model_name"], PAGING["product_name"])
    assert identity.raw["objects"]["user_application_name"] == PAGING["user_application_name"]
    assert identity.raw["objects"]["vendor_url"] == PAGING["vendor_url"]
    regular = [object_id for _, code, object_id in fc43_reads(recorder) if code == 2]
    assert len(regular) >= 2 and regular == sorted(set(regular))
    assert identity.raw["pages"] == 1 + len(regular)
    assert "notes" not in identity.raw
    assert_clean(link, recorder, probe)


async def test_gateway_unit_without_device_gives_a_note_and_other_units_still_count() -> None:
    gateway = {**M340, "unit_ids": [1, 2], "unknown_unit": "exception"}
    async with device(gateway) as (host, recorder):
        observation, link, probe = await probe_run(host, recorder, {"unit_ids": [1, 7, 2]})
    assert observation.status is Status.IDENTIFIED and observation.identity is not None
    assert observation.identity.raw["unit_id"] == 1
    assert [other["raw"]["unit_id"] for other in observation.identity.raw["other_units"]] == [2]
    assert observation.error is not None and "unit 7: exception 0x0B" in observation.error
    assert [unit for unit, code, _ in fc43_reads(recorder) if code == 1] == [1, 7, 2]
    assert_clean(link, recorder, probe)


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        ("silent", Status.TIMEOUT),
        ("malformed", Status.PROTOCOL_ERROR),
        ("truncated", Status.PROTOCOL_ERROR),
        ("oversized", Status.PROTOCOL_ERROR),
        ("wrong_tid", Status.PROTOCOL_ERROR),
    ],
)
async def test_fault_modes_give_their_status_within_budget(
    fault: str, status: Status, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    async with device(M340, fault) as (host, recorder):
        started = time.monotonic()
        observation, link, probe = await probe_run(host, recorder)
    assert observation.status is status and observation.identity is None and observation.error
    assert time.monotonic() - started < FAST.connect_s + FAST.response_s + 1.0
    assert link.packets_sent == recorder.packet_count() <= probe.max_packets()
    assert recorder.violations() == []
    # the probe closes with FIN, except where the device closed first (truncated)
    assert [c.close_kind for c in recorder.connections] == ["server" if fault == "truncated" else "fin"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert "Traceback" not in capfd.readouterr().err


async def test_a_connection_the_device_ended_is_reported_to_the_pacer_instead_of_a_close() -> None:
    pacer = PacerLog()
    async with device(M340, "truncated") as (host, recorder):
        observation, _, _ = await probe_run(host, recorder, pacer=pacer)
    assert observation.status is Status.PROTOCOL_ERROR
    assert [c.close_kind for c in recorder.connections] == ["server"]
    assert pacer.events == [Kind.CONNECT, Kind.REQUEST, "ended"]  # no close of ours; the gap counts from the end


async def test_refused_and_reset() -> None:
    async with device(M340, "refused") as (host, recorder):
        refused, link, _ = await probe_run(host, recorder)
    assert refused.status is Status.REFUSED and link.packets_sent == 1 and recorder.packet_count() == 0
    async with device(M340, "reset") as (host, recorder):
        reset, link, _ = await probe_run(host, recorder)
    assert reset.status is Status.RESET and reset.error
    # the device reset right after accepting: a request racing its RST may be sent, never a reconnect
    assert recorder.packet_count() <= link.packets_sent <= 2
    assert len(recorder.connections) == 1 and recorder.violations() == []


async def test_endless_more_follows_stops_after_three_follow_ups_per_stream() -> None:
    async with device(M340, "endless_more_follows") as (host, recorder):
        observation, link, probe = await probe_run(host, recorder)
    assert observation.status is Status.IDENTIFIED and observation.identity is not None
    assert observation.identity.vendor == "Schneider Electric"
    reads = fc43_reads(recorder)
    basic = [object_id for _, code, object_id in reads if code == 1]
    regular = [object_id for _, code, object_id in reads if code == 2]
    assert basic == [0, 1, 2, 3] and regular == [3, 4, 5, 6]
    assert len(observation.identity.raw["notes"]) == 2
    assert link.packets_sent == probe.max_packets() == recorder.packet_count()
    assert [c.close_kind for c in recorder.connections] == ["fin"]


async def test_sweep_stops_at_the_first_gateway_exception() -> None:
    gateway = {**KBR, "unit_ids": [1, 2], "unknown_unit": "exception"}
    options = {"intrusive": {"unit_id_sweep": "find the meters behind gateway 4"}}
    async with device(gateway) as (host, recorder):
        observation, link, probe = await probe_run(
            host, recorder, options, enabled_intrusive=frozenset({("modbus", "unit_id_sweep")})
        )
    assert [unit for unit, _, _ in fc43_reads(recorder)] == [1, 2, 3]
    assert observation.status is Status.IDENTIFIED and observation.identity is not None
    assert [other["raw"]["unit_id"] for other in observation.identity.raw["other_units"]] == [2]
    assert_clean(link, recorder, probe)


async def test_sweep_stops_at_the_first_timeout() -> None:
    options = {"intrusive": {"unit_id_sweep": "find the meters behind gateway 4"}}
    async with device(KBR) as (host, recorder):
        observation, link, probe = await probe_run(
            host, recorder, options, enabled_intrusive=frozenset({("modbus", "unit_id_sweep")})
        )
    assert [unit for unit, _, _ in fc43_reads(recorder)] == [1, 2]
    assert observation.status is Status.IDENTIFIED and "no reply" in (observation.error or "")
    assert_clean(link, recorder, probe)


async def test_sweep_the_link_did_not_enable_is_refused_after_a_clean_close() -> None:
    options = {"intrusive": {"unit_id_sweep": "find the meters behind gateway 4"}}
    async with device(KBR) as (host, recorder):
        with pytest.raises(ProbeContractError, match="unit_id_sweep"):
            await probe_run(host, recorder, options)
        await settled(recorder)
    assert [unit for unit, _, _ in fc43_reads(recorder)] == [1]
    assert [c.close_kind for c in recorder.connections] == ["fin"]


class _EvilProbe(ModbusProbe):
    """Declares a write and tries it first: the link must refuse it before anything reaches the device."""

    operations = (*ModbusProbe.operations, Operation("write_register", "fc:0x06"))

    async def run(self, link: Link, target: Target) -> Observation:
        async with link.op("write_register"):
            _, writer = await asyncio.open_connection(target.ip, self.port)
            writer.write(vec.WRITE_REQUESTS[0x06])
            writer.close()
        raise AssertionError("unreachable: the link refuses FC 6")


async def test_a_declared_write_is_refused_and_the_device_sees_nothing() -> None:
    async with device(M340) as (host, recorder):
        probe = _EvilProbe({"port": PORT})
        link = Link(probe, Target(host))
        with pytest.raises(PolicyViolation, match="fc:0x06"):
            await probe.run(link, Target(host))
        await asyncio.sleep(0.05)
    assert link.packets_sent == 0
    assert recorder.connections == [] and recorder.requests == []


class _GrantLog:
    """A pacer that grants each packet 20 ms after asked and logs when: the device must see none before that."""

    def __init__(self) -> None:
        self.grants: list[tuple[float, Kind]] = []

    async def acquire(self, kind: Kind, packets: int) -> None:
        await asyncio.sleep(0.02)
        self.grants.extend([(time.monotonic(), kind)] * packets)

    async def depart(self, kind: Kind, packets: int) -> None:
        return None


async def test_every_packet_reaches_the_device_after_its_own_grant() -> None:
    pacer = _GrantLog()
    async with device(M340) as (host, recorder):
        observation, _, _ = await probe_run(host, recorder, pacer=pacer)
    assert observation.status is Status.IDENTIFIED
    seen = recorder.packet_times()
    assert [kind for _, kind in pacer.grants] == [Kind.CONNECT, Kind.REQUEST, Kind.REQUEST, Kind.CLOSE]
    assert len(seen) == len(pacer.grants)
    assert all(arrived >= granted for arrived, (granted, _) in zip(seen, pacer.grants, strict=True))


async def test_cancellation_mid_request_still_closes_with_fin() -> None:
    async with device(M340, "silent") as (host, recorder):
        probe = ModbusProbe({"port": PORT})
        link = Link(probe, Target(host), timeouts=Timeouts(1.0, 30.0))
        task = asyncio.create_task(probe.run(link, Target(host)))
        deadline = time.monotonic() + 2.0
        while not recorder.requests and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await settled(recorder)
    assert [c.close_kind for c in recorder.connections] == ["fin"]
    assert link.packets_sent == recorder.packet_count() == 3


# -- exact bytes and fallbacks, against a scripted device ----------------------------------------------------------

Script = Callable[[bytes], bytes | None]  # request PDU -> reply PDU (None: stay silent)


@asynccontextmanager
async def scripted(script: Script, reply_unit: int | None = None) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A bare Modbus/TCP responder (no pymodbus, no simulator): records request frames, answers per script."""
    host, received = next(_addresses), []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                header = await reader.readexactly(7)
                request = header + await reader.readexactly(struct.unpack(">H", header[4:6])[0] - 1)
                received.append(request)
                reply = script(request[7:])
                if reply is not None:
                    unit = request[6] if reply_unit is None else reply_unit
                    writer.write(request[:2] + struct.pack(">HHB", 0, len(reply) + 1, unit) + reply)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(serve, host, PORT)
    try:
        yield host, received
    finally:
        server.close()
        await server.wait_closed()


async def run_scripted(host: str) -> tuple[Observation, Link]:
    probe = ModbusProbe({"port": PORT})
    link = Link(probe, Target(host), timeouts=FAST)
    return await probe.run(link, Target(host)), link


async def test_first_request_bytes_are_the_documented_basic_read() -> None:
    async with scripted(lambda pdu: vec.KBR_BASIC) as (host, received):
        observation, _ = await run_scripted(host)
    assert received == [vec.BASIC_REQUEST_FRAME]
    assert observation.identity is not None and observation.identity.firmware == "2.00r016"


async def test_spec_multi_transaction_example_through_the_probe() -> None:
    pages = {bytes.fromhex("2b0e0100"): vec.SPEC_PAGE_1, bytes.fromhex("2b0e0102"): vec.SPEC_PAGE_2}
    async with scripted(pages.get) as (host, received):
        observation, link = await run_scripted(host)
    identity = observation.identity
    assert identity is not None
    assert (identity.vendor, identity.product_code, identity.firmware) == (
        "Company identification",
        "Product code XXXXXXXXXXXXXXXX",
        "V2.11",
    )
    assert [r[7:] for r in received] == list(pages)
    assert identity.raw["pages"] == 2 and link.packets_sent == 4


def _stream_refused(pdu: bytes) -> bytes:
    if pdu[2] != 4:
        return b"\xab\x03"
    values = {0: b"Beckhoff Automation", 1: b"BK9000", 2: b"B9"}
    return bytes([0x2B, 0x0E, 4, 0x81, 0, 0, 1, pdu[3], len(values[pdu[3]])]) + values[pdu[3]]


async def test_stream_refused_falls_back_to_individual_access() -> None:
    async with scripted(_stream_refused) as (host, received):
        observation, link = await run_scripted(host)
    identity = observation.identity
    assert observation.status is Status.IDENTIFIED and identity is not None
    assert (identity.vendor, identity.product_code, identity.firmware) == ("Beckhoff Automation", "BK9000", "B9")
    assert identity.raw["access"] == "individual" and "exception 0x03" in identity.raw["notes"][0]
    assert [r[7:] for r in received] == [bytes.fromhex(h) for h in ("2b0e0100", "2b0e0400", "2b0e0401", "2b0e0402")]
    assert link.packets_sent == 6


async def test_a_next_object_id_that_does_not_rise_ends_paging() -> None:
    looping = bytes.fromhex("2b0e0101ff0001") + b"\x00\x04ACME"
    async with scripted(lambda pdu: looping) as (host, received):
        observation, _ = await run_scripted(host)
    identity = observation.identity
    assert observation.status is Status.IDENTIFIED and identity is not None and identity.vendor == "ACME"
    assert len(received) == 1
    assert "does not increase" in identity.raw["notes"][0]


async def test_a_reply_from_another_unit_is_a_protocol_error() -> None:
    async with scripted(lambda pdu: vec.KBR_BASIC, reply_unit=9) as (host, received):
        observation, link = await run_scripted(host)
    assert observation.status is Status.PROTOCOL_ERROR and "unit 9" in (observation.error or "")
    assert len(received) == 1 and link.packets_sent == 3
