"""Shared fixtures: simulated plants started per test on the test's own loopback addresses, condition waits,
and raw Modbus/TCP exchanges for tests that must see the bytes."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import struct
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import AsyncExitStack, contextmanager
from typing import IO, Any

import pytest

from otprobe.leases import LEASE_DIR_ENV
from simulators.plant import Plant, PlantSource, running_plant
from simulators.recorder import Recorder

StartPlant = Callable[..., Awaitable[Plant]]


def _require_loopback(address: object) -> None:
    """Every test talks to 127.0.0.0/8 only: a connect or datagram to any other address fails the test at once."""
    if isinstance(address, tuple) and address and isinstance(address[0], str):
        try:
            loopback = ipaddress.ip_address(address[0]).is_loopback
        except ValueError:  # a hostname: tests use address literals only, and otprobe does no DNS
            loopback = False
        if not loopback:
            raise AssertionError(f"test traffic to {address[0]} refused: tests talk to 127.0.0.0/8 only")


def _guard(method: Callable[..., Any]) -> Callable[..., Any]:
    def guarded(self: socket.socket, *args: Any) -> Any:
        _require_loopback(args[-1])  # connect(address), connect_ex(address), sendto(data[, flags], address)
        return method(self, *args)

    return guarded


for _name in ("connect", "connect_ex", "sendto"):
    setattr(socket.socket, _name, _guard(getattr(socket.socket, _name)))

# Scans in tests (and the otprobe processes they start, which inherit this) take their host-wide device leases in a
# directory of the test run's own, so a test never waits for, or holds up, a real scan on this machine.
os.environ[LEASE_DIR_ENV] = tempfile.mkdtemp(prefix="otprobe-test-leases-")
# A command run without --db uses the default inventory: in tests that is one of the run's own, never the user's
# ~/.local/share/otprobe/inventory.db (a test run must not write into, or be confused by, a real inventory).
os.environ.pop("OTPROBE_DB", None)
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="otprobe-test-data-")


@pytest.fixture
async def start_plant() -> AsyncIterator[StartPlant]:
    """`await start_plant(dev1, dev2)` (device dicts) or `await start_plant(source=path_or_dict)`; stops them all."""
    async with AsyncExitStack() as stack:

        async def start(
            *devices: Mapping[str, Any], source: PlantSource | None = None, record_to: IO[str] | None = None
        ) -> Plant:
            plant = source if source is not None else {"plant": "test", "devices": list(devices)}
            return await stack.enter_async_context(running_plant(plant, record_to=record_to))

        yield start


@contextmanager
def plant_in_thread(source: PlantSource) -> Iterator[Plant]:
    """A plant served by its own event loop in a thread, for tests that drive blocking clients or subprocesses."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    started: list[Plant] = []
    failed: list[BaseException] = []
    stop = asyncio.Event()

    async def serve() -> None:
        try:
            async with running_plant(source) as plant:
                started.append(plant)
                ready.set()
                await stop.wait()
        except BaseException as exc:  # surfaced in the test's own thread below
            failed.append(exc)
            ready.set()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    if not ready.wait(10) or failed:
        raise RuntimeError("the plant did not start") from (failed[0] if failed else None)
    try:
        yield started[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        if not thread.is_alive():
            loop.close()


async def settled(recorder: Recorder) -> None:
    """Wait (bounded) until the device has seen every connection close: its server runs concurrently."""
    for _ in range(200):
        if recorder.open_connections == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("a connection is still open on the device")


@pytest.fixture
def eventually() -> Callable[..., Awaitable[None]]:
    """Wait (bounded) until a condition on simulator state holds: the server side runs concurrently."""

    async def wait(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout} s")
            await asyncio.sleep(0.01)

    return wait


class ModbusRaw:
    """Hand-built Modbus/TCP frames, independent of the simulator's and pymodbus' framing code."""

    @staticmethod
    def frame(pdu: bytes, unit: int = 1, tid: int = 1) -> bytes:
        return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu

    @staticmethod
    async def read(reader: asyncio.StreamReader, timeout: float = 1.0) -> bytes:
        header = await asyncio.wait_for(reader.readexactly(7), timeout)
        return header + await asyncio.wait_for(reader.readexactly(struct.unpack(">H", header[4:6])[0] - 1), timeout)

    async def exchange(self, host: str, port: int, pdu: bytes, unit: int = 1, tid: int = 1) -> bytes:
        """One request on a fresh connection; the whole reply frame (MBAP included)."""
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(self.frame(pdu, unit, tid))
            return await self.read(reader)
        finally:
            writer.close()


@pytest.fixture
def modbus_raw() -> ModbusRaw:
    return ModbusRaw()
