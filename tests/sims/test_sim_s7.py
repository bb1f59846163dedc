"""The simulated S7 CPU, read back with the independent python-snap7 client and compared with real-CPU captures."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import identities
import pytest
from conftest import settled
from snap7.async_client import AsyncClient
from snap7.error import S7Error
from snap7.s7protocol import S7Protocol
from vectors import s7_captures as cap

from simulators import s7_wire as wire
from simulators.faults import Fault, FaultMode
from simulators.recorder import Recorder
from simulators.s7_identity import S7Config
from simulators.s7_sim import PROTOCOL, S7Device, S7Mode, parse_config

PORT = 11102
_hosts = (f"127.0.{30 + n // 250}.{n % 250 + 1}" for n in itertools.count())

CPU1516 = identities.CPU1516F
CPU1212 = {"mode": "s1200", "slot": 1, "order_code": "6ES7 212-1BE40-0XB0", "firmware": "V4.7.3",
           "module_type_name": "CPU 1212C AC/DC/Rly"}


@asynccontextmanager
async def plc(section: dict[str, Any], fault: Fault | None = None) -> AsyncIterator[tuple[S7Device, str]]:
    device = S7Device(next(_hosts), parse_config({**section, "port": PORT}), fault or Fault(), Recorder("plc"))
    await device.start()
    try:
        yield device, device.host
    finally:
        await device.stop()


@asynccontextmanager
async def client(host: str, slot: int, connection_type: int | None = None) -> AsyncIterator[AsyncClient]:
    c = AsyncClient()
    if connection_type is not None:
        c.set_connection_type(connection_type)
    try:
        await asyncio.wait_for(c.connect(host, 0, slot, tcp_port=PORT), 5)
        yield c
    finally:
        await c.disconnect()


def records(raw: bytes) -> dict[int, bytes]:
    """SZL list (LENTHDR, N_DR, records) by record index, checking the header against the length."""
    record_len, count = struct.unpack(">HH", raw[:4])
    assert len(raw) == 4 + record_len * count
    body = [raw[4 + i * record_len : 4 + (i + 1) * record_len] for i in range(count)]
    return {int.from_bytes(r[:2], "big"): r[2:] for r in body}


async def szl(c: AsyncClient, szl_id: int) -> bytes:
    result = await c.read_szl(szl_id, 0)
    return bytes(b & 0xFF for b in result.Data[: result.Header.LengthDR])


# -- identity through python-snap7 --------------------------------------------------------------------------------


async def test_order_code_and_module_identification_records() -> None:
    async with plc(cap.CPU315_SECTION) as (_, host), client(host, 2) as c:
        code = await c.get_order_code()
        ident = records(await szl(c, 0x0011))
    assert (code.OrderCode, code.V1, code.V2, code.V3) == (b"6ES7 315-2EH14-0AB0", 3, 2, 7)
    assert sorted(ident) == [0x0001, 0x0006, 0x0007, 0x0081]
    assert ident[0x0001] == ident[0x0006] == b"6ES7 315-2EH14-0AB0 " + bytes.fromhex("00c0 0003 0001")
    assert ident[0x0007] == b" " * 20 + bytes.fromhex("00c0") + b"V\x03\x02\x07"


async def test_firmware_extension_may_differ_from_firmware() -> None:
    async with plc(CPU1516) as (_, host), client(host, 1) as c:
        code = await c.get_order_code()
        ident = records(await szl(c, 0x0011))
    assert (code.OrderCode, code.V1, code.V2, code.V3) == (b"6ES7 516-3FN02-0AB0", 2, 9, 2)
    assert ident[0x0001][20:] == bytes.fromhex("0000 0002 0001")  # BGTyp 0 on an S7-1500, hardware version 2
    assert ident[0x0081] == b"Boot Loader".ljust(20) + b"\x00\x00V\x03\x03\x00"


async def test_component_identification_arrives_in_fragments() -> None:
    async with plc(CPU1516) as (device, host), client(host, 1) as c:
        info = await c.get_cpu_info()
        component = records(await szl(c, 0x001C))
    assert (info.ASName, info.ModuleName, info.Copyright, info.SerialNumber, info.ModuleTypeName) == (
        b"S71500/ET200MP station_1", b"PLC_Line2", b"Original Siemens Equipment", b"S V-L4HB12342019",
        b"CPU 1516F-3 PN/DP")
    texts = {i: r.rstrip(b"\x00").decode() for i, r in component.items() if i != 9}
    assert texts == {1: CPU1516["as_name"], 2: CPU1516["module_name"], 3: CPU1516["plant_id"],
                     4: "Original Siemens Equipment", 5: CPU1516["serial"], 7: CPU1516["module_type_name"],
                     8: CPU1516["memory_card_serial"], 10: "", 11: CPU1516["location"]}
    operations = device.recorder.operations()
    assert operations.count("szl:0x001C") == 2
    assert operations.count("szl:continuation") == 2  # one per read: 348 bytes do not fit PDU 240
    assert not device.recorder.violations()


async def test_s1200_mode_has_no_component_identification() -> None:
    async with plc(CPU1212) as (device, host), client(host, 1) as c:
        code = await c.get_order_code()
        with pytest.raises(S7Error, match="0xd401"):
            await c.read_szl(0x001C, 0)
    assert device.config.mode is S7Mode.S1200
    assert (code.OrderCode, code.V1, code.V2, code.V3) == (b"6ES7 212-1BE40-0XB0", 4, 7, 3)
    assert "szl:continuation" not in device.recorder.operations()


@pytest.mark.parametrize(("cpu_state", "mode_byte"), [("run", 0x08), ("stop", 0x04)])
async def test_current_mode_reports_cpu_state(cpu_state: str, mode_byte: int) -> None:
    async with plc({**CPU1212, "cpu_state": cpu_state}) as (_, host), client(host, 1) as c:
        raw = await szl(c, 0x0424)
    assert raw[:4] == bytes.fromhex("0014 0001")
    assert raw[7] == mode_byte


# -- connection type, rack and slot --------------------------------------------------------------------------------


@pytest.mark.parametrize(("connection_type", "name"), [(None, "PG"), (2, "OP"), (3, "basic")])
async def test_called_tsap_type_is_recorded(connection_type: int | None, name: str) -> None:
    async with plc(cap.CPU315_SECTION) as (device, host), client(host, 2, connection_type):
        pass
    request = device.recorder.requests[0]
    assert request.operation == "cotp:CR"
    assert request.detail == {"tsap_type": name, "rack": 0, "slot": 2, "refused": False}


# The captured CR with the called TSAP's slot changed from 2 to 1 (0x0102 -> 0x0101).
COTP_CR_SLOT_1 = cap.COTP_CR.replace(bytes.fromhex("c2020102"), bytes.fromhex("c2020101"))


async def test_wrong_slot_is_refused_without_confirm() -> None:
    async with plc(cap.CPU315_SECTION) as (device, host):
        with pytest.raises(S7Error):
            async with client(host, 1):
                pass
        async with raw(host) as r:  # the same refusal seen on the wire: a reset instead of a CC
            with pytest.raises(ConnectionResetError):
                await r.send(COTP_CR_SLOT_1)
    assert device.recorder.operations() == ["cotp:CR", "cotp:CR"]
    assert all(request.detail["refused"] for request in device.recorder.requests)
    assert [c.close_kind for c in device.recorder.connections] == ["server", "server"]


async def test_s7_1200_and_1500_answer_on_slot_0_and_1() -> None:
    async with plc(CPU1212) as (device, host), client(host, 0) as c:
        code = await c.get_order_code()
    assert code.OrderCode == b"6ES7 212-1BE40-0XB0"
    assert device.recorder.requests[0].detail["refused"] is False


# -- what otprobe must never do, and closing -----------------------------------------------------------------------


async def test_stop_write_read_and_other_szl_are_violations_answered_like_a_cpu() -> None:
    async with plc(cap.CPU315_SECTION) as (device, host), client(host, 2) as c:
        await c.db_write(1, 4, bytearray(b"\xbe\xef"))
        written = await c.db_read(1, 4, 2)
        await c.plc_stop()
        mode = (await szl(c, 0x0424))[7]
        with pytest.raises(S7Error):
            await c.read_szl(0x0131, 1)
    assert bytes(written) == b"\xbe\xef"
    assert mode == 0x04 and not device.running
    assert [(r.operation, r.allowed) for r in device.recorder.violations()] == [
        ("s7:job:0x05", False), ("s7:job:0x04", False), ("s7:job:0x29", False), ("szl:0x0131", False)]


async def test_block_upload_is_flagged_and_an_abandoned_one_forgotten() -> None:
    async with plc(cap.CPU315_SECTION) as (device, host):
        async with client(host, 2) as c:
            await c.upload(1)
        async with raw(host) as r:
            await r.send(cap.COTP_CR)
            await r.send(wire.data_frame(S7Protocol().build_start_upload_request(0x41, 1)))
            assert device.engine._upload_contexts  # the engine holds the transfer open for this connection
        await settled(device.recorder)
        assert not device.engine._upload_contexts
    assert [r.operation for r in device.recorder.violations()] == ["s7:job:0x1D", "s7:job:0x1E", "s7:job:0x1F",
                                                                    "s7:job:0x1D"]


async def test_client_disconnect_is_dr_then_fin() -> None:
    async with plc(cap.CPU315_SECTION) as (device, host):
        async with client(host, 2) as c:
            await c.get_order_code()
        await settled(device.recorder)  # let the front see the FIN
    assert device.recorder.operations()[-1] == "cotp:DR"
    assert [c.close_kind for c in device.recorder.connections] == ["fin"]


# -- golden: the reply bytes of the captured CPU 315-2 PN/DP -------------------------------------------------------


class Raw:
    """A bare TPKT conversation, to compare reply bytes with the capture."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, frame: bytes) -> bytes:
        self.writer.write(frame)
        return await self.receive()

    async def receive(self) -> bytes:
        header = await asyncio.wait_for(self.reader.readexactly(4), 5)
        return header + await asyncio.wait_for(self.reader.readexactly(int.from_bytes(header[2:], "big") - 4), 5)


@asynccontextmanager
async def raw(host: str) -> AsyncIterator[Raw]:
    reader, writer = await asyncio.open_connection(host, PORT)
    try:
        yield Raw(reader, writer)
    finally:
        writer.close()


def masked(frame: bytes, *fields: int | slice) -> bytes:
    out = bytearray(frame)
    for field in fields:
        span = range(*field.indices(len(out))) if isinstance(field, slice) else [field]
        for i in span:
            out[i] = 0
    return bytes(out)


async def test_golden_connect_setup_and_identity_replies_match_the_capture() -> None:
    async with plc(cap.CPU315_SECTION) as (_, host), raw(host) as r:
        cc = await r.send(cap.COTP_CR)
        assert masked(cc, cap.COTP_CC_SRC_REF) == masked(cap.COTP_CC, cap.COTP_CC_SRC_REF)
        assert await r.send(cap.SETUP_REQUEST) == cap.SETUP_REPLY  # PDU 480 asked, 240 granted
        assert await r.send(cap.SZL_0011_REQUEST) == cap.SZL_0011_REPLY
        first = await r.send(cap.SZL_001C_REQUEST)
        second = await r.send(cap.SZL_001C_CONTINUATION)
        mode = await r.send(cap.SZL_0424_REQUEST)
    assert masked(first, cap.USERDATA_DU_REF) == masked(cap.SZL_001C_REPLY_1, cap.USERDATA_DU_REF)
    assert masked(second, cap.USERDATA_DU_REF) == masked(cap.SZL_001C_REPLY_2, cap.USERDATA_DU_REF)
    assert first[cap.USERDATA_DU_REF] == second[cap.USERDATA_DU_REF] != 0
    assert (first[cap.USERDATA_LAST_DU], second[cap.USERDATA_LAST_DU]) == (1, 0)
    assert masked(mode, cap.SZL_0424_TIMESTAMP) == masked(cap.SZL_0424_REPLY, cap.SZL_0424_TIMESTAMP)


async def test_golden_plc_stop_is_acknowledged_as_the_captured_cpu_did() -> None:
    async with plc(cap.CPU315_SECTION) as (device, host), raw(host) as r:
        await r.send(cap.COTP_CR)
        await r.send(cap.SETUP_REQUEST)
        assert await r.send(cap.PLC_STOP_REQUEST) == cap.PLC_STOP_REPLY
    assert device.recorder.violations()[0].operation == "s7:job:0x29"


async def test_golden_missing_szl_error_has_the_captured_layout() -> None:
    async with plc({**cap.CPU315_SECTION, "mode": "s1200"}) as (_, host), raw(host) as r:
        await r.send(cap.COTP_CR)
        await r.send(cap.SETUP_REQUEST)
        reply = await r.send(cap.SZL_001C_REQUEST)
    # the captured error (frame 198) answered request ref 0x0064 with seq 03 and D4 02 (invalid index)
    expected = bytearray(cap.SZL_ERROR_REPLY)
    expected[cap.PDU_REF] = cap.SZL_001C_REQUEST[cap.PDU_REF]
    expected[cap.USERDATA_SEQ] = 0x02
    expected[cap.USERDATA_ERROR] = b"\xd4\x01"  # invalid SZL id: object does not exist
    assert reply == bytes(expected)


async def test_empty_data_tpdu_gets_no_answer() -> None:
    async with plc(cap.CPU315_SECTION) as (device, host), raw(host) as r:
        await r.send(cap.COTP_CR)
        r.writer.write(cap.COTP_EMPTY_DT)
        assert await r.send(cap.SETUP_REQUEST) == cap.SETUP_REPLY  # the next frame read is the setup reply
    assert device.recorder.operations() == ["cotp:CR", "cotp:DT-empty", "s7:setup_communication"]


async def test_data_before_connect_is_reset() -> None:
    async with plc(cap.CPU315_SECTION) as (device, host), raw(host) as r:
        r.writer.write(cap.SETUP_REQUEST)
        with pytest.raises(ConnectionResetError):  # a reset, not an orderly FIN
            await r.receive()
    assert device.recorder.operations() == ["s7:setup_communication"]
    assert device.recorder.connections[0].close_kind == "server"


@pytest.mark.skipif(shutil.which("nmap") is None, reason="nmap is not installed")
async def test_nmap_s7_info_reads_the_identity() -> None:
    async with plc(cap.CPU315_SECTION) as (device, host):
        # "+" runs s7-info although the port is not 102
        nmap = await asyncio.create_subprocess_exec(
            "nmap", "-Pn", "-n", "-sT", "-p", str(PORT), "--script", "+s7-info", host,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        out, _ = await asyncio.wait_for(nmap.communicate(), 60)
    report = out.decode()
    assert "Module: 6ES7 315-2EH14-0AB0" in report
    assert "Version: 3.2.7" in report
    assert "Serial Number: S C-B1U393142011" in report
    assert not device.recorder.violations()


# -- fault modes with S7 framing -----------------------------------------------------------------------------------


async def test_wrong_id_changes_the_pdu_reference() -> None:
    async with plc(cap.CPU315_SECTION, Fault(FaultMode.WRONG_ID)) as (_, host), raw(host) as r:
        await r.send(cap.COTP_CR)
        reply = await r.send(cap.SZL_0011_REQUEST)
    assert reply[cap.PDU_REF] != cap.SZL_0011_REQUEST[cap.PDU_REF]
    assert masked(reply, cap.PDU_REF) == masked(cap.SZL_0011_REPLY, cap.PDU_REF)


async def test_malformed_keeps_tpkt_and_cotp_only() -> None:
    async with plc(cap.CPU315_SECTION, Fault(FaultMode.MALFORMED)) as (_, host), raw(host) as r:
        await r.send(cap.COTP_CR)
        reply = await r.send(cap.SZL_0011_REQUEST)
    assert reply[:7] == cap.SZL_0011_REPLY[:7]
    assert set(reply[7:]) == {0xFF}


async def test_oversized_claims_the_largest_tpkt() -> None:
    async with plc(cap.CPU315_SECTION, Fault(FaultMode.OVERSIZED)) as (_, host), raw(host) as r:
        await r.send(cap.COTP_CR)
        reply = await r.send(cap.SZL_0011_REQUEST)
    assert len(reply) == 0xFFFF
    assert reply[4 : len(cap.SZL_0011_REPLY)] == cap.SZL_0011_REPLY[4:]


async def test_truncated_reply_breaks_the_client() -> None:
    async with plc(cap.CPU315_SECTION, Fault(FaultMode.TRUNCATED)) as (device, host):
        with pytest.raises(S7Error):
            async with client(host, 2):
                pass
    assert device.recorder.connections[0].close_kind == "server"


# -- configuration and start -----------------------------------------------------------------------------------------


def test_parse_config_defaults_and_protocol() -> None:
    config = parse_config({"order_code": "6ES7 315-2EH14-0AB0", "firmware": "V3.2.7"})
    assert PROTOCOL == "s7"
    assert isinstance(config, S7Config)
    assert (config.port, config.rack, config.slot, config.mode, config.pdu_size) == (102, 0, 2, S7Mode.S300, 240)
    assert (config.copyright, config.cpu_state, config.firmware_ext) == ("Original Siemens Equipment", "run", None)
    assert str(config.firmware) == "V3.2.7"


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"colour": "red"}, "colour"),
        ({"order_code": None}, "order_code"),
        ({"firmware": "3.2"}, "firmware"),
        ({"firmware_ext": "V3.300.0"}, "firmware_ext"),
        ({"serial": "S" * 33}, "serial"),
        ({"order_code": "6ES7 315-2EH14-0AB0 XX"}, "order_code"),
        ({"pdu_size": 128}, "pdu_size"),
        ({"mode": "s1500"}, "mode"),
        ({"cpu_state": "halt"}, "cpu_state"),
        ({"slot": "two"}, "slot"),
    ],
)
def test_parse_config_names_the_bad_key(change: dict[str, Any], key: str) -> None:
    section = {**cap.CPU315_SECTION, **change}
    if change.get("order_code", "") is None:
        del section["order_code"]
    with pytest.raises(ValueError, match=rf"^{key}: "):
        parse_config(section)


async def test_start_is_quick() -> None:
    began = time.perf_counter()
    async with plc(cap.CPU315_SECTION) as (device, _):
        started = time.perf_counter() - began
        assert "6ES7 315-2EH14-0AB0 HW3 V3.2.7 'CPU 315-2 PN/DP' RUN" in device.summary()
    assert started < 0.1


async def test_a_pdu_smaller_than_the_cpus_is_granted_as_asked_and_fragments_follow_it() -> None:
    setup_200 = cap.SETUP_REQUEST[:-2] + (200).to_bytes(2, "big")
    async with plc(cap.CPU315_SECTION) as (device, host), raw(host) as r:
        await r.send(cap.COTP_CR)
        reply = await r.send(setup_200)
        assert int.from_bytes(reply[-2:], "big") == 200
        first = await r.send(cap.SZL_001C_REQUEST)
        assert len(first) - 7 <= 200  # the S7 PDU (after TPKT and COTP) fits the granted size
        assert first[cap.USERDATA_LAST_DU] == 1  # more follows
    assert device.recorder.violations() == []

