"""Every fault mode of the TcpFront, shown on a simulated Modbus device with raw sockets, plus the recorder's
view of how connections end (FIN, RST, closed by the device)."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import struct
import time
from typing import Any

import pytest

from simulators.faults import Fault, FaultMode
from simulators.recorder import Recorder

PORT = 15020
READ_BASIC = bytes([0x2B, 0x0E, 0x01, 0x00])  # Read Device Identification, basic stream, from object 0
IDENTITY = {"vendor_name": "Acme Controls", "product_code": "AC-100", "revision": "v1.0"}
# the healthy reply to READ_BASIC: 2B 0E 01 83 00 00 03 + three objects
HEALTHY_PDU = bytes([0x2B, 0x0E, 0x01, 0x83, 0x00, 0x00, 0x03]) + b"".join(
    bytes([i, len(v)]) + v.encode() for i, v in enumerate(IDENTITY.values())
)


def device(address: str, fault: Any) -> dict[str, Any]:
    return {"name": f"dev-{address.split('.')[-1]}", "address": address, "class": "plc", "fault": fault,
            "modbus": {"port": PORT, **IDENTITY}}


async def connect(host: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(host, PORT)


async def ask(modbus_raw: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tid: int = 1,
              pdu: bytes = READ_BASIC, timeout: float = 1.0) -> bytes:
    writer.write(modbus_raw.frame(pdu, tid=tid))
    return await modbus_raw.read(reader, timeout)


async def test_no_fault_reply_is_the_reference(start_plant: Any, modbus_raw: Any) -> None:
    await start_plant(device("127.0.26.1", None))
    reply = await modbus_raw.exchange("127.0.26.1", PORT, READ_BASIC, tid=7)
    assert reply == struct.pack(">HHHB", 7, 0, 1 + len(HEALTHY_PDU), 1) + HEALTHY_PDU


async def test_silent_accepts_reads_never_answers(start_plant: Any, modbus_raw: Any, eventually: Any) -> None:
    plant = await start_plant(device("127.0.26.2", "silent"))
    reader, writer = await connect("127.0.26.2")
    with pytest.raises(TimeoutError):
        await ask(modbus_raw, reader, writer, timeout=0.5)
    recorder = plant["dev-2"].recorder
    assert recorder.operations() == ["fc:0x2B/mei:0x0E"]  # it did read the request
    writer.close()
    await eventually(lambda: recorder.connections[0].close_kind == "fin")


async def test_slow_fixed_latency(start_plant: Any, modbus_raw: Any) -> None:
    await start_plant(device("127.0.26.3", {"mode": "slow", "latency_s": 0.3}))
    reader, writer = await connect("127.0.26.3")
    for tid in (1, 2):
        began = time.monotonic()
        reply = await ask(modbus_raw, reader, writer, tid=tid)
        assert 0.3 <= time.monotonic() - began < 0.6
        assert reply[7:] == HEALTHY_PDU
    writer.close()


async def test_slow_latency_grows_with_load(start_plant: Any, modbus_raw: Any) -> None:
    await start_plant(device("127.0.26.4", {"mode": "slow", "load_s": 0.1}))
    reader, writer = await connect("127.0.26.4")
    delays = []
    for tid in range(1, 5):
        began = time.monotonic()
        await ask(modbus_raw, reader, writer, tid=tid)
        delays.append(time.monotonic() - began)
    writer.close()
    # 0.1 s more for each request the device saw in the last second: about 0, 0.1, 0.2, 0.3
    for seen_before, delay in enumerate(delays):
        assert 0.1 * seen_before <= delay < 0.1 * seen_before + 0.15, delays


async def test_refused_has_no_listener(start_plant: Any) -> None:
    plant = await start_plant(device("127.0.26.5", "refused"))
    with pytest.raises(ConnectionRefusedError):
        await connect("127.0.26.5")
    assert plant["dev-5"].recorder.connections == []


async def test_reset_right_after_accept(start_plant: Any) -> None:
    plant = await start_plant(device("127.0.26.6", "reset"))
    reader, writer = await connect("127.0.26.6")
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(1), 1.0)
    writer.close()
    assert [c.close_kind for c in plant["dev-6"].recorder.connections] == ["server"]


async def test_malformed_keeps_header_garbles_body(start_plant: Any, modbus_raw: Any) -> None:
    await start_plant(device("127.0.26.7", "malformed"))
    reply = await modbus_raw.exchange("127.0.26.7", PORT, READ_BASIC, tid=9)
    assert reply[:8] == struct.pack(">HHHB", 9, 0, 1 + len(HEALTHY_PDU), 1) + b"\x2b"
    assert reply[8:] == b"\xff" * (len(HEALTHY_PDU) - 1)


async def test_truncated_sends_half_then_fin(start_plant: Any, modbus_raw: Any) -> None:
    plant = await start_plant(device("127.0.26.8", "truncated"))
    reader, writer = await connect("127.0.26.8")
    writer.write(modbus_raw.frame(READ_BASIC))
    received = await asyncio.wait_for(reader.read(), 1.0)  # read() returns at EOF: the device sent FIN
    full = 7 + len(HEALTHY_PDU)
    assert received == (struct.pack(">HHHB", 1, 0, 1 + len(HEALTHY_PDU), 1) + HEALTHY_PDU)[: full // 2]
    writer.close()
    assert [c.close_kind for c in plant["dev-8"].recorder.connections] == ["server"]


async def test_oversized_claims_and_sends_more_than_a_pdu(start_plant: Any) -> None:
    await start_plant(device("127.0.26.9", "oversized"))
    reader, writer = await connect("127.0.26.9")
    writer.write(struct.pack(">HHHB", 1, 0, 5, 1) + READ_BASIC)
    header = await asyncio.wait_for(reader.readexactly(7), 1.0)
    length = struct.unpack(">H", header[4:6])[0]
    assert length > 254  # a Modbus PDU is at most 253 bytes
    body = await asyncio.wait_for(reader.readexactly(length - 1), 1.0)
    assert body.startswith(HEALTHY_PDU)
    writer.close()


async def test_endless_more_follows(start_plant: Any, modbus_raw: Any) -> None:
    await start_plant(device("127.0.26.10", "endless_more_follows"))
    reader, writer = await connect("127.0.26.10")
    object_id = 0
    for tid in range(1, 6):
        reply = await ask(modbus_raw, reader, writer, tid=tid, pdu=bytes([0x2B, 0x0E, 0x03, object_id]))
        more_follows, next_id = reply[11], reply[12]
        assert more_follows == 0xFF and next_id == object_id + 1
        object_id = next_id
    # not an FC43 reply: left alone
    reply = await ask(modbus_raw, reader, writer, tid=9, pdu=bytes([0x11]))
    assert reply[7:9] == bytes([0x11, 7])
    writer.close()


async def test_wrong_tid_answers_with_another_transaction_id(start_plant: Any, modbus_raw: Any) -> None:
    await start_plant(device("127.0.26.11", "wrong_tid"))
    reply = await modbus_raw.exchange("127.0.26.11", PORT, READ_BASIC, tid=0x0100)
    assert struct.unpack(">H", reply[:2])[0] != 0x0100
    assert reply[2:] == struct.pack(">HHB", 0, 1 + len(HEALTHY_PDU), 1) + HEALTHY_PDU


async def test_conn_limit_refuses_beyond_limit(start_plant: Any, modbus_raw: Any) -> None:
    plant = await start_plant(device("127.0.26.12", {"mode": "conn_limit", "limit": 2}))
    first, second = await connect("127.0.26.12"), await connect("127.0.26.12")
    for reader, writer in (first, second):
        assert (await ask(modbus_raw, reader, writer))[7:] == HEALTHY_PDU
    third_reader, third_writer = await connect("127.0.26.12")
    with pytest.raises(ConnectionResetError):
        await ask(modbus_raw, third_reader, third_writer)
    # the two within the limit keep working
    assert (await ask(modbus_raw, *first, tid=2))[7:] == HEALTHY_PDU
    assert [c.close_kind for c in plant["dev-12"].recorder.connections] == [None, None, "server"]
    for _, writer in (first, second, (third_reader, third_writer)):
        writer.close()


async def test_conn_limit_drops_oldest(start_plant: Any, modbus_raw: Any) -> None:
    plant = await start_plant(device("127.0.26.13", {"mode": "conn_limit", "limit": 2, "policy": "drop_oldest"}))
    first, second = await connect("127.0.26.13"), await connect("127.0.26.13")
    for reader, writer in (first, second):
        await ask(modbus_raw, reader, writer)
    third = await connect("127.0.26.13")
    assert (await ask(modbus_raw, *third))[7:] == HEALTHY_PDU
    assert await asyncio.wait_for(first[0].read(), 1.0) == b""  # the oldest was closed by the device
    assert (await ask(modbus_raw, *second, tid=2))[7:] == HEALTHY_PDU
    assert [c.close_kind for c in plant["dev-13"].recorder.connections] == ["server", None, None]
    for _, writer in (first, second, third):
        writer.close()


async def test_recorder_tells_fin_from_rst(start_plant: Any, modbus_raw: Any, eventually: Any) -> None:
    plant = await start_plant(device("127.0.26.14", None))
    recorder = plant["dev-14"].recorder
    reader, writer = await connect("127.0.26.14")
    await ask(modbus_raw, reader, writer)
    writer.close()  # orderly close: FIN
    await eventually(lambda: recorder.connections[0].close_kind is not None)
    reader, writer = await connect("127.0.26.14")
    await ask(modbus_raw, reader, writer)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()  # linger 0: RST
    await eventually(lambda: len(recorder.connections) == 2 and recorder.connections[1].close_kind is not None)
    assert [c.close_kind for c in recorder.connections] == ["fin", "rst"]
    assert all(c.duration_s is not None and c.duration_s >= 0 for c in recorder.connections)
    assert recorder.max_concurrent == 1 and recorder.open_connections == 0
    # a FIN counts as a packet, an RST does not: 2 connects + 2 requests + 1 FIN
    assert recorder.packet_count() == 5


async def finish(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
    """Our FIN, then every byte the device still sends until its own FIN; how many there were."""
    writer.write_eof()
    drained = 0
    while chunk := await asyncio.wait_for(reader.read(65536), 1.0):
        drained += len(chunk)
    writer.close()
    return drained


async def released(recorder: Any, eventually: Any) -> None:
    await eventually(lambda: recorder.held_connections == 0)


async def test_stream_sends_the_reply_then_zeros_until_our_fin(
    start_plant: Any, modbus_raw: Any, eventually: Any
) -> None:
    plant = await start_plant(device("127.0.26.15", "stream"))
    reader, writer = await connect("127.0.26.15")
    assert (await ask(modbus_raw, reader, writer))[7:] == HEALTHY_PDU
    assert await asyncio.wait_for(reader.readexactly(8192), 1.0) == bytes(8192)
    await finish(reader, writer)  # returns: the device stopped and closed once it read our FIN
    recorder = plant["dev-15"].recorder
    await released(recorder, eventually)
    assert [c.close_kind for c in recorder.connections] == ["fin"] and recorder.resets() == []


async def test_huge_length_claims_and_sends_65535_bytes(start_plant: Any, eventually: Any) -> None:
    plant = await start_plant(device("127.0.26.16", "huge_length"))
    reader, writer = await connect("127.0.26.16")
    writer.write(struct.pack(">HHHB", 1, 0, 5, 1) + READ_BASIC)
    header = await asyncio.wait_for(reader.readexactly(7), 1.0)
    assert struct.unpack(">H", header[4:6])[0] == 0xFFFF
    assert (await asyncio.wait_for(reader.readexactly(0xFFFF - 1), 2.0)).startswith(HEALTHY_PDU)
    assert await finish(reader, writer) == 0  # the claimed bytes and nothing more
    recorder = plant["dev-16"].recorder
    await released(recorder, eventually)
    assert [c.close_kind for c in recorder.connections] == ["fin"] and recorder.resets() == []


async def test_trickle_sends_one_byte_every_quarter_second(start_plant: Any, modbus_raw: Any) -> None:
    await start_plant(device("127.0.26.17", "trickle"))
    reader, writer = await connect("127.0.26.17")
    writer.write(modbus_raw.frame(READ_BASIC, tid=3))
    first = await asyncio.wait_for(reader.readexactly(1), 1.0)
    began = time.monotonic()
    second = await asyncio.wait_for(reader.readexactly(1), 1.0)
    assert 0.2 <= time.monotonic() - began < 0.4
    assert first + second == struct.pack(">H", 3)  # the transaction id of the healthy reply, byte by byte
    await finish(reader, writer)


async def test_recorder_sees_a_reset_that_follows_the_fin(start_plant: Any, modbus_raw: Any, eventually: Any) -> None:
    sink = io.StringIO()
    plant = await start_plant(device("127.0.26.18", "stream"), record_to=sink)
    recorder = plant["dev-18"].recorder
    loop = asyncio.get_running_loop()
    with socket.socket() as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.26.18", PORT))
        await loop.sock_sendall(sock, modbus_raw.frame(READ_BASIC))
        await asyncio.sleep(0.3)  # the stream fills our receive window, unread: the device's FIN waits behind it
        sock.shutdown(socket.SHUT_WR)  # our FIN...
        await eventually(lambda: recorder.connections[0].close_kind is not None)
    # ...then a close with bytes unread: RST, while the device still holds the connection
    await released(recorder, eventually)
    assert [c.close_kind for c in recorder.connections] == ["fin"]
    assert recorder.connections[0].reset_after_fin and recorder.resets() == recorder.connections
    rebuilt = Recorder.from_events("dev-18", [json.loads(line) for line in sink.getvalue().splitlines()])
    assert [(c.close_kind, c.reset_after_fin) for c in rebuilt.connections] == [("fin", True)]


def test_every_fault_mode_has_a_test() -> None:
    """Each mode's name (underscores dropped) must appear in the name of a test of this module."""
    tests = " ".join(name.replace("_", "") for name in globals() if name.startswith("test_"))
    missing = [m.value for m in FaultMode if m is not FaultMode.NONE and m.value.replace("_", "") not in tests]
    assert missing == []


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("sleepy", "fault.mode: unknown mode 'sleepy'"),
        ({"mode": "slow", "latency": 1}, "fault.latency: unknown key"),
        ({"mode": "conn_limit", "policy": "lifo"}, "fault.policy: must be refuse or drop_oldest (got 'lifo')"),
        ({"mode": "conn_limit", "limit": 0}, "fault.limit: must be 1 or more (got 0)"),
        ({"mode": "slow", "latency_s": -1}, "fault.latency_s: must be a number >= 0 (got -1)"),
        ({"mode": "slow", "latency_s": "soon"}, "fault.latency_s: must be a number >= 0 (got 'soon')"),
    ],
)
def test_fault_spec_errors_name_the_key(spec: Any, message: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        Fault.from_spec(spec)
    assert str(excinfo.value).startswith(message)


def test_fault_spec_forms() -> None:
    assert Fault.from_spec(None) == Fault() == Fault.from_spec("none")
    assert Fault.from_spec({"mode": "slow", "latency_s": 0.5}) == Fault(FaultMode.SLOW, latency_s=0.5)
    assert Fault.from_spec({"mode": "conn_limit", "limit": 4, "policy": "drop_oldest"}).policy == "drop_oldest"
