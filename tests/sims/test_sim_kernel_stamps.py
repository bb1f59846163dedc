"""A simulated device stamps each packet with when it reached the host, not when its event loop got to it.

The device's event loop is held busy (as a starved process would be) while a client thread connects, then while it
sends a request, then while it sends its FIN; each recorded time must still be the time the client sent it,
within the kernel's jiffy resolution, although the device only looked a stall later. Address 127.0.132.10.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

import identities
import pytest

from simulators.udp_front import WallToMonotonic

ADDRESS, PORT = "127.0.132.10", 15032
STALL_S = 0.3
TOLERANCE_S = 0.02  # jiffies (1-4 ms) and thread hand-offs; far below the stall
REQUEST = struct.pack(">HHHB", 1, 0, 5, 1) + bytes([0x2B, 0x0E, 0x01, 0x00])


class Client(threading.Thread):
    """Connects, sends one request and reads its reply, then shuts down: each step when told, stamping its send."""

    def __init__(self) -> None:
        super().__init__()
        self.go = [threading.Event() for _ in range(3)]
        self.sent: list[float] = []

    def run(self) -> None:
        self.go[0].wait(5)
        client = socket.create_connection((ADDRESS, PORT))
        self.sent.append(time.monotonic())
        self.go[1].wait(5)
        client.sendall(REQUEST)
        self.sent.append(time.monotonic())
        client.settimeout(5)
        client.recv(4096)  # the reply (it comes after the device's stall)
        self.go[2].wait(5)
        client.shutdown(socket.SHUT_WR)
        self.sent.append(time.monotonic())
        while client.recv(4096):  # the device's own FIN
            pass
        client.close()


async def test_connect_request_and_fin_are_stamped_when_they_arrived_while_the_device_was_busy(
    start_plant, eventually
) -> None:
    plant = await start_plant({"name": "stamps", "address": ADDRESS, "class": "plc",
                               "modbus": {**identities.M340_OBJECTS, "port": PORT}})
    [device] = list(plant)
    recorder = device.recorder
    client = Client()
    client.start()
    recorded = [
        lambda: bool(recorder.connections),
        lambda: bool(recorder.requests),
        lambda: bool(recorder.connections) and recorder.connections[0].closed_mono is not None,
    ]
    stalls: list[float] = []
    for step, done in enumerate(recorded):
        client.go[step].set()
        time.sleep(STALL_S)  # blocks the device's event loop: the packet waits in the kernel meanwhile
        stalls.append(time.monotonic())
        await eventually(done, 5)
    client.join(5)
    connection = recorder.connections[0]
    stamped = [connection.opened_mono, recorder.requests[0].mono, connection.closed_mono]
    assert connection.close_kind == "fin" and len(client.sent) == 3
    for at_client, stall_end, at_device in zip(client.sent, stalls, stamped, strict=True):
        assert at_client < stall_end - 0.1  # it arrived well before the device could look
        assert at_device is not None
        assert abs(at_device - at_client) <= TOLERANCE_S, (client.sent, stamped)


async def test_a_datagram_is_stamped_when_it_arrived_while_the_device_was_busy(start_plant, eventually) -> None:
    from test_sim_bacnet import PXC, RP_VENDOR_NAME

    plant = await start_plant({"name": "stamps-udp", "address": "127.0.132.20", "class": "bms",
                               "bacnet": {**PXC, "port": 0}})
    [device] = list(plant)
    port = device.ports["bacnet"]
    sent: list[float] = []

    def send() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.bind(("127.0.132.21", 0))
            client.sendto(RP_VENDOR_NAME, ("127.0.132.20", port))
            sent.append(time.monotonic())

    thread = threading.Thread(target=send)
    thread.start()
    time.sleep(STALL_S)  # the device's loop cannot read the datagram meanwhile
    stalled_until = time.monotonic()
    thread.join(5)
    await eventually(lambda: bool(device.recorder.requests), 5)
    [at_client] = sent
    assert at_client < stalled_until - 0.1
    assert abs(device.recorder.requests[0].mono - at_client) <= TOLERANCE_S


class SteppedClocks:
    """A monotonic clock and a wall clock 1,000 s ahead of it, which a test can step."""

    def __init__(self) -> None:
        self.mono, self.offset = 100.0, 1_000.0

    def monotonic(self) -> float:
        return self.mono

    def wall(self) -> float:
        return self.mono + self.offset


def test_a_datagram_read_after_the_wall_clock_stepped_keeps_the_time_it_arrived() -> None:
    clocks = SteppedClocks()
    convert = WallToMonotonic(clocks.monotonic, clocks.wall).convert
    clocks.mono = 101.0  # one datagram arrives, stamped by the kernel with the wall clock of then
    first = clocks.wall()
    clocks.mono = 101.2  # a second one, queued behind it
    second = clocks.wall()
    clocks.offset += 6.0  # the wall clock is stepped 6 s ahead before the device reads either
    clocks.mono = 101.5
    assert convert(first) == pytest.approx(101.0)
    assert convert(second) == pytest.approx(101.2)
    clocks.mono = 102.0  # one arriving after the step is converted with the new offset
    assert convert(clocks.wall()) == pytest.approx(102.0)


def test_a_step_backwards_does_not_stamp_a_datagram_in_the_future_or_before_the_previous_one() -> None:
    clocks = SteppedClocks()
    convert = WallToMonotonic(clocks.monotonic, clocks.wall).convert
    clocks.mono = 101.0
    assert convert(clocks.wall()) == pytest.approx(101.0)
    clocks.mono = 101.3
    stamp = clocks.wall()
    clocks.offset -= 6.0
    clocks.mono = 101.4
    assert convert(stamp) == pytest.approx(101.3)
    clocks.mono = 101.6
    assert convert(clocks.wall()) == pytest.approx(101.6)


def test_a_stamp_no_offset_explains_is_taken_as_now_late_never_early() -> None:
    clocks = SteppedClocks()
    convert = WallToMonotonic(clocks.monotonic, clocks.wall).convert
    clocks.mono = 105.0
    assert convert(clocks.wall() - 50.0) == 105.0  # before the device existed
    assert convert(clocks.wall() + 50.0) == 105.0  # in the future
