"""The S7 probe: golden bytes of a real CPU 315-2 PN/DP, hostile-input parsing, the safety allowlist on captured
commands, and full runs against the simulated CPUs (identity, packet contract, caution rules, fault modes)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any, ClassVar

import identities
import pytest
from conftest import settled
from fakes import PacerLog
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from vectors import s7probe_captures as cap

from otprobe.contract import Kind, Operation, Timeouts
from otprobe.errors import PolicyViolation, ProfileError, ProtocolError
from otprobe.link import Link
from otprobe.model import Observation, Status, Target
from otprobe.probes import s7_wire as wire
from otprobe.probes.s7 import S7Probe
from otprobe.safety import require_read_only
from simulators.faults import Fault, FaultMode
from simulators.recorder import Recorder
from simulators.s7_sim import S7Device, parse_config

PORT = 10102
_hosts = (f"127.0.{60 + n // 250}.{n % 250 + 1}" for n in itertools.count())
FAST = Timeouts(connect_s=0.5, response_s=0.5)

CPU315 = {  # the captured CPU (tests/vectors/s7_captures.py), at PDU 240 so that 0x001C comes in two fragments
    "order_code": "6ES7 315-2EH14-0AB0",
    "hardware_version": 3,
    "firmware": "V3.2.7",
    "firmware_ext": "A32.9.9",
    "as_name": "S7300/ET200M station_1",
    "module_name": "PLC_1",
    "plant_id": "Line 1 filling",
    "serial": "S C-B1U393142011",
    "module_type_name": "CPU 315-2 PN/DP",
    "memory_card_serial": "MMC 4A1AC019",
    "location": "Hall A cabinet 2",
    "pdu_size": 240,
}
CPU1516F = {**identities.CPU1516F, "pdu_size": 480}
CPU1212C = {"mode": "s1200", "slot": 1, "order_code": "6ES7 212-1BE40-0XB0", "firmware": "V4.7.3",
            "hardware_version": 4, "module_type_name": "CPU 1212C AC/DC/Rly"}
CPU317F = {"order_code": "6ES7 317-2FK14-0AB0", "firmware": "V3.2.8", "hardware_version": 5,
           "serial": "S C-F7TS55512014", "module_type_name": "CPU 317F-2 PN/DP"}


# --- golden: a real CPU's replies ----------------------------------------------------------------------------


def _szl(szl_id: int, *frames_and_refs: tuple[bytes, int]) -> wire.SzlList:
    answer = wire.SzlReassembly(szl_id)
    for frame, ref in frames_and_refs:
        answer.add(wire.parse_szl_fragment(frame, ref))
    return answer.result()


def test_capture_replies_give_the_cpu_identity() -> None:
    assert wire.parse_setup_ack(cap.SETUP_ACK, 0) == 240
    module = wire.parse_module_id(_szl(0x0011, (cap.SZL_0011_REPLY, 0x0100)))
    assert module == wire.ModuleId("6ES7 315-2EH14-0AB0", 3, "V3.2.7", "A32.9.9")
    components = wire.parse_component_id(_szl(0x001C, (cap.SZL_001C_REPLY_1, 0x0200), (cap.SZL_001C_REPLY_2, 0x0300)))
    assert components == {
        "as_name": "S7300/ET200M station_1",
        "module_name": "PLC_1",
        "copyright": "Original Siemens Equipment",
        "serial": "S C-B1U393142011",
        "module_type_name": "CPU 315-2 PN/DP",
        "memory_card_serial": "MMC 4A1AC019",
    }
    assert wire.parse_cpu_state(_szl(0x0424, (cap.SZL_0424_REPLY, 0x0500))) == ("RUN", 0x08)


def test_fragmented_reply_is_checked_against_its_list_header() -> None:
    first = wire.parse_szl_fragment(cap.SZL_001C_REPLY_1, 0x0200)
    assert not first.last and first.sequence == 2 and first.du_ref == 0xD5
    answer = wire.SzlReassembly(0x001C)
    answer.add(first)
    with pytest.raises(ProtocolError, match="incomplete"):
        answer.result()
    # a "last" fragment that leaves the 10 x 34 bytes short is refused, not padded
    short_last = wire.SzlFragment(2, 0xD5, True, wire.parse_szl_fragment(cap.SZL_001C_REPLY_2, 0x0300).payload[:-1])
    with pytest.raises(ProtocolError, match="1 bytes missing"):
        answer.add(short_last)


def test_cotp_confirm_of_the_capture() -> None:
    assert wire.parse_cotp_reply(cap.COTP_CC_STEP7) == wire.CotpConfirm(0x000F, 0x0003, 0x0102, 1024)


def test_request_encoding_matches_the_capture() -> None:
    # the COTP encoder reproduces STEP 7's CR byte for byte when given its TSAP and reference
    assert wire.cotp_cr(0x0102, src_ref=0x000F) == cap.COTP_CR_STEP7
    assert wire.called_tsap(0, 2) == 0x0302 and wire.called_tsap(0, 1) == 0x0301  # S7-basic, never PG 0x01
    # snap7's builders behind wire.Requests: same layout; only the PDU reference (bytes 11-12) differs, as the
    # captured client numbers them 0x0100, 0x0200 ... and ours 1, 2 ...
    requests = wire.Requests()
    setup = requests.setup_communication(240)
    assert setup[:11] + setup[13:-2] == cap.SETUP_REQUEST[:11] + cap.SETUP_REQUEST[13:-2]
    assert setup[-2:] == b"\x00\xf0" and setup[11:13] == b"\x00\x01"
    for expected, build in ((cap.SZL_0011_REQUEST, lambda: requests.read_szl(0x0011)),
                            (cap.SZL_001C_REQUEST, lambda: requests.read_szl(0x001C)),
                            (cap.SZL_CONTINUATION_REQUEST, lambda: requests.continuation(2)),
                            (cap.SZL_0424_REQUEST, lambda: requests.read_szl(0x0424))):
        frame = build()
        assert frame[:11] + frame[13:] == expected[:11] + expected[13:]
        assert int.from_bytes(frame[11:13], "big") == requests.ref


# --- the allowlist against captured commands ---------------------------------------------------------------------


def test_captured_stop_and_write_jobs_are_refused() -> None:
    assert wire.request_code(cap.PLC_STOP_JOB) == "s7:job:0x29"
    assert wire.request_code(cap.WRITE_VAR_JOB) == "s7:job:0x05"
    for frame in (cap.PLC_STOP_JOB, cap.WRITE_VAR_JOB):
        with pytest.raises(PolicyViolation):
            require_read_only("s7", wire.request_code(frame))
    for frame in (cap.COTP_CR_STEP7, cap.SETUP_REQUEST, cap.SZL_0011_REQUEST, cap.SZL_001C_REQUEST,
                  cap.SZL_CONTINUATION_REQUEST, cap.SZL_0424_REQUEST):
        require_read_only("s7", wire.request_code(frame))


class _EvilS7Probe(S7Probe):
    operations: ClassVar[tuple[Operation, ...]] = (
        *S7Probe.operations,
        Operation("plc_stop", "s7:job:0x29"),
        Operation("write_var", "s7:job:0x05"),
    )


@pytest.mark.parametrize("operation", ["plc_stop", "write_var"])
async def test_link_refuses_declared_stop_and_write(operation: str) -> None:
    probe = _EvilS7Probe()
    link = Link(probe, Target("127.0.60.254"))
    sent = []
    with pytest.raises(PolicyViolation):
        async with link.op(operation):
            sent.append(cap.PLC_STOP_JOB)
    assert sent == [] and link.packets_sent == 0


# --- hostile input: only ProtocolError escapes -----------------------------------------------------------------


def _hostile(*seeds: bytes) -> st.SearchStrategy[bytes]:
    seed = st.sampled_from(seeds)
    return st.one_of(
        st.binary(max_size=600),
        st.builds(lambda s, n: s[:n], seed, st.integers(0, 400)),  # truncated
        st.builds(lambda s, extra: s + extra, seed, st.binary(min_size=1, max_size=300)),  # oversized
        st.builds(lambda s, i, b: s[: i % len(s)] + bytes([b]) + s[i % len(s) + 1 :], seed,
                  st.integers(0, 10_000), st.integers(0, 255)),  # one byte changed
    )


def _only_protocol_error(parse: Callable[[], object]) -> None:
    with suppress(ProtocolError):
        parse()


@settings(max_examples=1000, deadline=None)
@given(st.one_of(st.binary(max_size=8), st.sampled_from([cap.SETUP_ACK[:4], cap.COTP_CC_STEP7[:4]])))
def test_fuzz_tpkt_header(data: bytes) -> None:
    _only_protocol_error(lambda: wire.frame_length(data))


@settings(max_examples=1000, deadline=None)
@given(_hostile(cap.COTP_CC_STEP7, cap.COTP_CR_STEP7))
def test_fuzz_cotp_reply(data: bytes) -> None:
    _only_protocol_error(lambda: wire.parse_cotp_reply(data))


@settings(max_examples=1000, deadline=None)
@given(_hostile(cap.SETUP_ACK, cap.SZL_0424_REPLY))
def test_fuzz_s7_header_and_setup(data: bytes) -> None:
    _only_protocol_error(lambda: wire.parse_s7_reply(data, 0x0500))
    _only_protocol_error(lambda: wire.parse_setup_ack(data, 0))


@settings(max_examples=1000, deadline=None)
@given(_hostile(cap.SZL_0011_REPLY, cap.SZL_001C_REPLY_1, cap.SZL_001C_REPLY_2, cap.SZL_0424_REPLY))
def test_fuzz_szl_fragment(data: bytes) -> None:
    for ref in (0x0100, 0x0200, 0x0300, 0x0500):
        _only_protocol_error(lambda ref=ref: wire.parse_szl_fragment(data, ref))


def _list_bytes(*frames_and_refs: tuple[bytes, int]) -> bytes:
    """SZL id, index, LENTHDR, N_DR and records: the data of the reply fragments, joined."""
    return b"".join(wire.parse_szl_fragment(frame, ref).payload for frame, ref in frames_and_refs)


@settings(max_examples=1000, deadline=None)
@given(_hostile(_list_bytes((cap.SZL_0011_REPLY, 0x0100))))
def test_fuzz_szl_0011_records(data: bytes) -> None:
    _only_protocol_error(lambda: wire.parse_module_id(wire.parse_szl_list(data)[0]))


@settings(max_examples=1000, deadline=None)
@given(_hostile(_list_bytes((cap.SZL_001C_REPLY_1, 0x0200), (cap.SZL_001C_REPLY_2, 0x0300))))
def test_fuzz_szl_001c_records(data: bytes) -> None:
    _only_protocol_error(lambda: wire.parse_component_id(wire.parse_szl_list(data)[0]))


@settings(max_examples=1000, deadline=None)
@given(_hostile(_list_bytes((cap.SZL_0424_REPLY, 0x0500))))
def test_fuzz_szl_0424_record(data: bytes) -> None:
    _only_protocol_error(lambda: wire.parse_cpu_state(wire.parse_szl_list(data)[0]))


_GOOD_FRAGMENTS = (wire.parse_szl_fragment(cap.SZL_001C_REPLY_1, 0x0200),
                   wire.parse_szl_fragment(cap.SZL_001C_REPLY_2, 0x0300))


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.one_of(
    st.sampled_from(_GOOD_FRAGMENTS),
    st.builds(wire.SzlFragment, st.integers(0, 255), st.integers(0, 255), st.booleans(), st.binary(max_size=300)),
), max_size=5))
def test_fuzz_fragment_reassembly(fragments: list[wire.SzlFragment]) -> None:
    answer = wire.SzlReassembly(0x001C)

    def assemble() -> None:
        for fragment in fragments:
            answer.add(fragment)
        wire.parse_component_id(answer.result())

    _only_protocol_error(assemble)



# --- against the simulated CPUs ------------------------------------------------------------------------------


@asynccontextmanager
async def plc(section: dict[str, Any], fault: Fault | None = None) -> AsyncIterator[tuple[S7Device, Recorder]]:
    recorder = Recorder("plc")
    device = S7Device(next(_hosts), parse_config({**section, "port": PORT}), fault or Fault(), recorder)
    await device.start()
    try:
        yield device, recorder
    finally:
        await device.stop()


async def scan(device: S7Device, options: dict[str, Any] | None = None,
               timeouts: Timeouts = FAST, pacer: Any = None,
               cautions: list[dict[str, str]] | None = None) -> tuple[Observation, Link]:
    probe = S7Probe({"port": PORT, **(options or {})}, cautions=cautions or [])
    link = Link(probe, Target(device.host, "plc"), timeouts=timeouts, pacer=pacer)
    observation = await probe.run(link, Target(device.host, "plc"))
    return observation, link


def assert_clean_contract(observation: Observation, link: Link, recorder: Recorder) -> None:
    assert link.packets_sent == recorder.packet_count() == observation.packets_sent
    assert link.packets_sent <= link.probe.max_packets()
    assert recorder.violations() == []
    assert [c.close_kind for c in recorder.connections if c.close_kind == "rst"] == []
    assert {r.detail.get("tsap_type") for r in recorder.requests if r.operation == "cotp:CR"} == {"basic"}


async def test_s7_300_identity_with_fragmented_component_list() -> None:
    async with plc(CPU315) as (device, recorder):
        observation, link = await scan(device)
        await settled(recorder)
    assert observation.status is Status.IDENTIFIED, observation.error
    ident = observation.identity
    assert ident is not None
    assert (ident.vendor, ident.product_code, ident.model, ident.serial, ident.firmware, ident.hardware_version) == (
        "Siemens", CPU315["order_code"], CPU315["module_type_name"], CPU315["serial"], CPU315["firmware"], "3")
    assert ident.firmware_version == (3, 2, 7)
    for key in ("as_name", "module_name", "plant_id", "memory_card_serial", "location", "firmware_ext"):
        assert ident.raw[key] == CPU315[key]
    assert ident.raw["copyright"] == "Original Siemens Equipment"
    assert (ident.raw["rack"], ident.raw["slot"], ident.raw["tsap"], ident.raw["pdu_size"]) == (0, 2, "0x0302", 240)
    assert "cpu_state" not in ident.raw  # 0x0424 is opt-in
    assert recorder.operations() == ["cotp:CR", "s7:setup_communication", "szl:0x0011", "szl:0x001C",
                                     "szl:continuation"]
    assert [c.close_kind for c in recorder.connections] == ["fin"]
    assert_clean_contract(observation, link, recorder)
    assert link.packets_sent == 7


async def test_s7_1200_on_slot_1_without_component_list() -> None:
    async with plc(CPU1212C) as (device, recorder):
        observation, link = await scan(device)
        await settled(recorder)
    assert observation.status is Status.IDENTIFIED, observation.error
    ident = observation.identity
    assert ident is not None
    assert (ident.product_code, ident.firmware, ident.hardware_version, ident.serial) == (
        "6ES7 212-1BE40-0XB0", "V4.7.3", "4", None)
    assert ident.model == "CPU 1212C AC/DC/Rly"  # from the order code: the device never names itself
    assert ident.raw["slot"] == 1 and "read_component_id" in ident.raw["unavailable"]
    # rack 0 slot 2 was refused with a reset (no FIN of ours is counted there), then slot 1 answered
    assert [r.detail["slot"] for r in recorder.requests if r.operation == "cotp:CR"] == [2, 1]
    assert_clean_contract(observation, link, recorder)


async def test_s7_1500_keeps_both_firmware_records_and_honours_rack_slot_option() -> None:
    async with plc(CPU1516F) as (device, recorder):
        observation, link = await scan(device, {"rack_slots": [[0, 1]], "read_cpu_state": True})
        await settled(recorder)
    assert observation.status is Status.IDENTIFIED, observation.error
    ident = observation.identity
    assert ident is not None
    assert (ident.firmware, ident.raw["firmware_ext"], ident.model) == ("V2.9.2", "V3.3.0", "CPU 1516F-3 PN/DP")
    assert ident.raw["cpu_state"] == "RUN" and ident.raw["pdu_size"] == 240
    assert recorder.operations()[-1] == "szl:0x0424"
    assert len(recorder.connections) == 1
    assert_clean_contract(observation, link, recorder)


async def test_cpu_state_stop_is_reported() -> None:
    async with plc({**CPU315, "cpu_state": "stop"}) as (device, recorder):
        observation, link = await scan(device, {"read_cpu_state": True})
        await settled(recorder)
    assert observation.identity is not None and observation.identity.raw["cpu_state"] == "STOP"
    assert_clean_contract(observation, link, recorder)


async def test_fail_safe_317f_never_receives_component_read() -> None:
    async with plc(CPU317F) as (device, recorder):
        observation, link = await scan(device, {"read_cpu_state": True})
        await settled(recorder)
    assert observation.status is Status.IDENTIFIED, observation.error
    assert "szl:0x001C" not in recorder.operations()
    assert recorder.operations() == ["cotp:CR", "s7:setup_communication", "szl:0x0011", "szl:0x0424"]
    ident = observation.identity
    assert ident is not None
    assert (ident.product_code, ident.model, ident.serial) == ("6ES7 317-2FK14-0AB0", "CPU 317F-2 PN/DP", None)
    skipped = ident.raw["skipped"]
    assert [s["operation"] for s in skipped] == ["read_component_id"]
    assert "python-snap7 #467" in skipped[0]["source"]
    assert_clean_contract(observation, link, recorder)


async def test_unknown_order_code_skips_every_operation_a_caution_rule_names() -> None:
    blank = {**CPU317F, "order_code": None}  # a blank MLFB: the fail-safe CPU cannot be recognised
    async with plc(blank) as (device, recorder):
        observation, link = await scan(device, {"read_cpu_state": True})
        await settled(recorder)
    assert observation.status is Status.IDENTIFIED, observation.error
    assert observation.identity is not None and observation.identity.product_code is None
    assert recorder.operations() == ["cotp:CR", "s7:setup_communication", "szl:0x0011", "szl:0x0424"]  # no 0x001C
    assert observation.identity.raw["skipped"] == [
        {"operation": "read_component_id", "reason": "order code unknown; caution rules cannot be checked"}]
    assert_clean_contract(observation, link, recorder)


async def test_profile_added_caution_rule_skips_the_read() -> None:
    rule = {"pattern": r"315-2EH1\d", "skip": "read_component_id", "source": "site note 2024-17"}
    async with plc(CPU315) as (device, recorder):
        observation, link = await scan(device, cautions=[rule])
        await settled(recorder)
    assert observation.status is Status.IDENTIFIED
    assert "szl:0x001C" not in recorder.operations()
    assert observation.identity is not None
    assert observation.identity.raw["skipped"] == [
        {"operation": "read_component_id", "pattern": r"315-2EH1\d", "source": "site note 2024-17"}]
    assert_clean_contract(observation, link, recorder)


async def test_every_candidate_refused_is_reported_without_identity() -> None:
    async with plc({**CPU315, "slot": 3}) as (device, recorder):
        observation, link = await scan(device)
        await settled(recorder)
    assert observation.status is Status.RESET and observation.identity is None
    assert "rack 0 slot 2" in (observation.error or "") and "rack 0 slot 1" in (observation.error or "")
    assert recorder.operations() == ["cotp:CR", "cotp:CR"]
    assert_clean_contract(observation, link, recorder)  # 2 x (connect, CR): the device reset both


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        (Fault(FaultMode.SILENT), Status.TIMEOUT),
        (Fault(FaultMode.SLOW, latency_s=1.0), Status.TIMEOUT),
        (Fault(FaultMode.REFUSED), Status.REFUSED),
        (Fault(FaultMode.RESET), Status.RESET),
        (Fault(FaultMode.MALFORMED), Status.PROTOCOL_ERROR),
        (Fault(FaultMode.TRUNCATED), Status.PROTOCOL_ERROR),
        (Fault(FaultMode.OVERSIZED), Status.PROTOCOL_ERROR),
        (Fault(FaultMode.WRONG_ID), Status.PROTOCOL_ERROR),
        (Fault(FaultMode.CONN_LIMIT, limit=0), Status.RESET),
    ],
    ids=lambda v: v.mode.value if isinstance(v, Fault) else str(v),
)
async def test_fault_modes_give_a_status_not_a_traceback(fault: Fault, status: Status) -> None:
    async with plc(CPU315, fault) as (device, recorder):
        observation, link = await scan(device)
        await settled(recorder)
    assert observation.status is status, observation.error
    assert observation.error
    assert recorder.packet_count() <= link.packets_sent <= link.probe.max_packets()
    assert recorder.violations() == []
    assert all(c.close_kind != "rst" for c in recorder.connections)


@pytest.mark.parametrize("mode", [FaultMode.RESET, FaultMode.TRUNCATED])
async def test_a_connection_the_device_ended_is_reported_to_the_pacer_instead_of_a_close(mode: FaultMode) -> None:
    pacer = PacerLog()
    async with plc(CPU315, Fault(mode)) as (device, recorder):
        observation, _ = await scan(device, pacer=pacer)
        await settled(recorder)
    assert observation.status in (Status.RESET, Status.PROTOCOL_ERROR)
    # each connection ended by the device, none by a close of ours: the connection gap counts from those ends
    connections = pacer.events.count(Kind.CONNECT)
    assert connections >= 1 and pacer.events.count("ended") == connections
    assert Kind.CLOSE not in pacer.events
    assert pacer.events[-1] == "ended"


async def test_cancelled_run_still_closes_with_fin() -> None:
    async with plc(CPU315, Fault(FaultMode.SILENT)) as (device, recorder):
        probe = S7Probe({"port": PORT})
        link = Link(probe, Target(device.host), timeouts=Timeouts(connect_s=1.0, response_s=30.0))
        task = asyncio.create_task(probe.run(link, Target(device.host)))
        while "cotp:CR" not in recorder.operations():
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await settled(recorder)
    assert [c.close_kind for c in recorder.connections] == ["fin"]
    assert link.packets_sent == recorder.packet_count() == 3  # connect, CR, FIN


def test_options_are_validated_and_budget_follows_them() -> None:
    assert S7Probe().max_packets() == 13  # 3 x 2 candidates + 1 + 2 reads x (1 + 2 continuations)
    assert S7Probe({"rack_slots": [[0, 2]], "read_cpu_state": True, "max_continuations": 1}).max_packets() == 10
    for bad in ({"rack_slots": [[0, 32]]}, {"rack_slots": []}, {"rack_slots": [[0]]}, {"max_continuations": -1},
                {"max_continuations": 9}, {"cautions": []}):
        with pytest.raises(ValidationError, match=next(iter(bad))):
            S7Probe(bad)
    with pytest.raises(ProfileError, match=r"cautions\[0\]\.pattern: invalid regular expression"):
        S7Probe(cautions=[{"pattern": "(", "skip": "read_component_id", "source": "x"}])


def test_reply_for_another_request_is_refused() -> None:
    with pytest.raises(ProtocolError, match="PDU reference"):
        wire.parse_szl_fragment(cap.SZL_0011_REPLY, 0x0101)
    with pytest.raises(ProtocolError, match="asked for SZL 0x001C"):
        wire.SzlReassembly(0x001C).add(wire.parse_szl_fragment(cap.SZL_0011_REPLY, 0x0100))


@settings(max_examples=1000, deadline=None)
@given(_hostile(cap.PLC_STOP_JOB, cap.WRITE_VAR_JOB, cap.SZL_CONTINUATION_REQUEST, cap.COTP_CR_STEP7))
def test_fuzz_request_classifier(data: bytes) -> None:
    _only_protocol_error(lambda: wire.request_code(data))


class _Spacing:
    """A pacer that keeps every packet `gap` seconds after the previous one and logs what it granted."""

    def __init__(self, gap: float) -> None:
        self.gap, self._last = gap, float("-inf")
        self.granted: list[tuple[Any, int]] = []

    async def acquire(self, kind: Any, packets: int) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, self._last + self.gap - loop.time()))
        self._last = loop.time()
        self.granted.append((kind, packets))

    async def depart(self, kind: Kind, packets: int) -> None:
        return None


async def test_every_packet_is_paced_separately_at_the_receiver() -> None:
    gap = 0.1
    async with plc(CPU315) as (device, recorder):
        probe = S7Probe({"port": PORT})
        pacer = _Spacing(gap)
        link = Link(probe, Target(device.host), pacer=pacer, timeouts=FAST)
        observation = await probe.run(link, Target(device.host))
        await settled(recorder)
    assert observation.status is Status.IDENTIFIED
    times = recorder.packet_times()
    assert len(times) == len(pacer.granted) == link.packets_sent == 7
    assert min(b - a for a, b in itertools.pairwise(times)) >= gap * 0.8
