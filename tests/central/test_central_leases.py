"""Device leases across sensors in the central database: a held device is waited for, a dead sensor's lease expires,
the hand-over keeps the device's spacing, and two sensors scanning one simulated plant into one central inventory
never have a device in flight twice, judged at the devices.

Two sensors are two `otprobe scan` processes with lease directories of their own (two hosts: the host-wide flock
lease cannot see the other), so only the central lease keeps them apart.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import plain_env, run_otprobe, write_profile
from plantgen import PORTS, busiest, group, plant, window_cap

from otprobe.inventory.central import CentralStore
from otprobe.inventory.central_leases import CentralLeases, _Taken
from otprobe.leases import Handover, Leases
from simulators.process import PlantProcess

pytest_plugins = ("central_pg",)  # the PostgreSQL fixtures (a conftest.py here would shadow the suite's)


class Clocks:
    """A wall clock and a monotonic clock the test moves together."""

    def __init__(self) -> None:
        self.wall, self.mono = 1_800_000_000.0, 500.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


def sensor(store: CentralStore, clocks: Clocks, tmp_path: Path, name: str) -> CentralLeases:
    return CentralLeases(store.engine, store.url, "plant-a", host=Leases(tmp_path / name), ttl_s=60,
                         wall=lambda: clocks.wall, clock=lambda: clocks.mono)


@pytest.fixture
def store(any_url: str) -> Iterator[CentralStore]:
    opened = CentralStore(any_url, site="plant-a")
    yield opened
    opened.close()


def test_a_held_device_names_its_sensor_and_its_pacing_passes_on_at_release(
    store: CentralStore, tmp_path: Path
) -> None:
    clocks = Clocks()
    first, second = sensor(store, clocks, tmp_path, "a"), sensor(store, clocks, tmp_path, "b")
    assert first.try_acquire("127.0.1.10") == _Taken(None)
    assert second.try_acquire("127.0.1.10") == f"sensor {first.holder}"
    assert isinstance(second.try_acquire("127.0.1.11"), _Taken)  # another device is free
    other_site = CentralLeases(store.engine, store.url, "plant-b", host=Leases(tmp_path / "c"),
                               wall=lambda: clocks.wall, clock=lambda: clocks.mono)
    assert isinstance(other_site.try_acquire("127.0.1.10"), _Taken)  # the same address at another site
    first.release("127.0.1.10", last_sent=clocks.mono - 0.5, last_connection=clocks.mono - 0.75)
    clocks.advance(0.25)
    taken = second.try_acquire("127.0.1.10")
    assert isinstance(taken, _Taken) and taken.handover is not None
    # the next sensor continues the spacing: the last packet left 0.75 s ago, the last connection 1 s ago
    assert taken.handover.last_sent == pytest.approx(clocks.mono - 0.75)
    assert taken.handover.last_connection == pytest.approx(clocks.mono - 1.0)


def test_a_dead_sensors_lease_expires_and_the_next_paces_as_if_a_packet_had_just_left(
    store: CentralStore, tmp_path: Path
) -> None:
    clocks = Clocks()
    dead, alive = sensor(store, clocks, tmp_path, "dead"), sensor(store, clocks, tmp_path, "alive")
    assert isinstance(dead.try_acquire("127.0.1.12"), _Taken)
    clocks.advance(30)
    assert dead.renew() == 1  # alive: renewing keeps it
    clocks.advance(59)
    assert isinstance(alive.try_acquire("127.0.1.12"), str)
    clocks.advance(2)  # no renewal for a whole lease time
    taken = alive.try_acquire("127.0.1.12")
    assert taken == _Taken(Handover(clocks.mono, clocks.mono))
    assert dead.renew() == 0  # it lost the device


async def test_acquire_waits_for_the_other_sensor_and_gives_up_when_the_scan_stops(
    store: CentralStore, tmp_path: Path
) -> None:
    holder = CentralLeases(store.engine, store.url, "plant-a", host=Leases(tmp_path / "a"))
    waiter = CentralLeases(store.engine, store.url, "plant-a", host=Leases(tmp_path / "b"))
    held = await holder.acquire("127.0.1.13", stopping=lambda: False)
    assert held is not None
    loop = asyncio.get_running_loop()
    loop.call_later(0.5, held.release, loop.time(), loop.time())
    started = loop.time()
    lease = await waiter.acquire("127.0.1.13", stopping=lambda: False)
    assert lease is not None and loop.time() - started >= 0.5
    assert waiter.waited == [("127.0.1.13", f"sensor {holder.holder}")]
    stop_at = loop.time() + 0.3
    assert await holder.acquire("127.0.1.13", stopping=lambda: loop.time() > stop_at) is None
    lease.release(loop.time(), loop.time())
    # the host-wide lease of a scan that stopped waiting is free again
    assert await holder.acquire("127.0.1.13", stopping=lambda: False) is not None


PPS, GAP_S = 2.0, 1.0


async def test_two_sensors_scanning_one_plant_into_one_central_inventory_never_have_a_device_in_flight_twice(
    tmp_path: Path, pg_url: str
) -> None:
    devices = group(87, 6, device_class="plc", protocols={"modbus": {"unit_ids": [1, 2]}}, first_host=160)
    addresses = [d["address"] for d in devices]
    profile = write_profile(
        tmp_path / "two-sensors.yaml", ["127.0.87.0/24"], assign=[{"cidr": "127.0.87.0/24", "class": "plc"}],
        classes={"plc": {"pps": PPS, "burst": 1, "connect_gap_s": GAP_S, "max_session_s": 30},
                 "unknown": {"pps": 0.5}},
        protocols={"modbus": {"port": PORTS["modbus"], "unit_ids": [1, 2]}},
        global_pps=50, retries=0,
    )
    with PlantProcess(plant("two-sensors", devices)) as plants:
        runs = [
            run_otprobe("scan", *addresses, "--profile", str(profile), "--db", pg_url, "--site", "plant-a",
                        "--audit", str(tmp_path / f"audit{n}.jsonl"), "--format", "jsonl",
                        env=plain_env(tmp_path, OTPROBE_LEASE_DIR=str(tmp_path / f"host{n}"),
                                      OTPROBE_CONFIG=str(tmp_path / "none.yaml")), timeout=120)
            for n in (1, 2)
        ]
        results = await asyncio.gather(*runs)
        recorders = plants.recorders_by_address()
    for result in results:
        assert result.code == 0, result.stderr
        assert {row["status"] for row in result.rows()} == {"identified"}
    for address in addresses:
        recorder = recorders[address]
        connections = sorted(recorder.connections, key=lambda c: c.opened_mono)
        assert len(connections) == 2, address  # one session from each sensor
        assert recorder.max_concurrent == 1, address
        for earlier, later in itertools.pairwise(connections):
            assert earlier.close_kind == "fin" and earlier.closed_mono is not None
            assert later.opened_mono - earlier.closed_mono >= GAP_S * 0.98, address  # the gap held across sensors
        times = recorder.packet_times()
        for window in (1.0, 10.0):
            assert busiest(times, window) <= window_cap(PPS, 1, window), (address, window, times)
    assert "being scanned by another otprobe sensor" in results[0].stderr + results[1].stderr
    central = CentralStore(pg_url, site="plant-a")
    try:
        assert len(central.scans()) == 2 and len(central.assets()) == len(addresses)
    finally:
        central.close()
