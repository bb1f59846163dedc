"""Host-wide device leases: the lease file itself, a dead holder, and two real scans of one plant at the devices.

The receiver-side test runs two `otprobe scan` processes, each with its own inventory and audit log, on the same
simulated devices (in their own process), and judges at the devices: never two connections at once, never more
than the cap in any window, and the connection gap held across the hand-over from one scan to the other.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import plain_env, run_otprobe, write_profile
from plantgen import PORTS, busiest, group, plant, window_cap

from otprobe.leases import Handover, Lease, LeaseError, Leases
from simulators.process import PlantProcess


@pytest.fixture
def leases(tmp_path: Path) -> Leases:
    return Leases(tmp_path / "leases")


def test_a_held_lease_names_its_holder_and_passes_on_when_released(leases: Leases) -> None:
    first = leases.try_acquire("127.0.87.10")
    assert isinstance(first, Lease) and first.handover is None  # nobody scanned it before
    assert leases.try_acquire("127.0.87.10") == f"pid {os.getpid()}"
    assert isinstance(leases.try_acquire("127.0.87.11"), Lease)  # another device is free
    sent, connection = time.monotonic() - 0.5, time.monotonic() - 0.75
    first.release(last_sent=sent, last_connection=connection)
    second = leases.try_acquire("127.0.87.10")
    assert isinstance(second, Lease)
    assert second.handover == Handover(sent, connection)


def test_the_lease_directory_is_shared_by_every_user(leases: Leases) -> None:
    lease = leases.try_acquire("127.0.87.10")
    assert isinstance(lease, Lease)
    assert os.stat(leases.directory).st_mode & 0o7777 == 0o1777
    assert os.stat(leases.directory / "127.0.87.10").st_mode & 0o777 == 0o666


def test_a_killed_holder_frees_the_lease_and_the_next_scan_waits_as_if_a_packet_had_just_left(
    leases: Leases, tmp_path: Path
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from otprobe.leases import Leases;"
         f"lease = Leases(Path({str(leases.directory)!r})).try_acquire('127.0.87.12');"
         "print(type(lease).__name__, flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "Lease"
        assert leases.try_acquire("127.0.87.12") == f"pid {holder.pid}"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    before = time.monotonic()
    lease = leases.try_acquire("127.0.87.12")
    assert isinstance(lease, Lease) and lease.handover is not None
    # the dead scan left no record of its last packet: assume it went out just now
    assert lease.handover.last_sent >= before and lease.handover.last_connection >= before


@pytest.mark.parametrize(
    "content",
    [b"garbage", b'{"last_sent": 1e300, "last_connection": 1e300, "boot": "%s"}', b'{"last_sent": 5.0}', b"[]"],
)
def test_an_unreadable_or_hostile_lease_file_is_read_the_safe_way(leases: Leases, content: bytes) -> None:
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip().encode()
    leases.try_acquire("127.0.87.13").release(0.0, 0.0)  # type: ignore[union-attr]
    (leases.directory / "127.0.87.13").write_bytes(content.replace(b"%s", boot))
    now = time.monotonic()
    lease = leases.try_acquire("127.0.87.13")
    assert isinstance(lease, Lease) and lease.handover is not None
    # never earlier than now (a packet may just have left), never later than now (no endless wait)
    assert now <= lease.handover.last_sent <= time.monotonic()


def test_a_symlinked_lease_file_is_refused(leases: Leases, tmp_path: Path) -> None:
    leases.try_acquire("127.0.87.14")
    target = tmp_path / "elsewhere"
    target.write_text("")
    (leases.directory / "127.0.87.15").symlink_to(target)
    with pytest.raises(LeaseError):
        leases.try_acquire("127.0.87.15")


async def test_acquire_waits_for_the_holder_and_gives_up_when_the_scan_stops(leases: Leases) -> None:
    held = leases.try_acquire("127.0.87.16")
    assert isinstance(held, Lease)
    asyncio.get_running_loop().call_later(0.5, held.release, 1.0, 1.0)
    started = time.monotonic()
    lease = await leases.acquire("127.0.87.16", stopping=lambda: False)
    assert lease is not None and time.monotonic() - started >= 0.5
    assert leases.waited == [("127.0.87.16", f"pid {os.getpid()}")]
    stop_at = time.monotonic() + 0.3
    assert await leases.acquire("127.0.87.16", stopping=lambda: time.monotonic() > stop_at) is None


# -- two scans, one plant ---------------------------------------------------------------------------------------

PPS, GAP_S = 2.0, 1.0


async def test_two_scans_with_their_own_inventories_never_have_a_device_in_flight_twice(tmp_path: Path) -> None:
    devices = group(87, 6, device_class="plc", protocols={"modbus": {"unit_ids": [1, 2]}}, first_host=100)
    addresses = [d["address"] for d in devices]
    profile = write_profile(
        tmp_path / "two-scans.yaml", ["127.0.87.0/24"], assign=[{"cidr": "127.0.87.0/24", "class": "plc"}],
        classes={"plc": {"pps": PPS, "burst": 1, "connect_gap_s": GAP_S, "max_session_s": 30},
                 "unknown": {"pps": 0.5}},
        protocols={"modbus": {"port": PORTS["modbus"], "unit_ids": [1, 2]}},
        global_pps=50, retries=0,
    )
    env = plain_env(tmp_path, OTPROBE_LEASE_DIR=str(tmp_path / "leases"))
    with PlantProcess(plant("two-scans", devices)) as plants:
        runs = [
            run_otprobe("scan", *addresses, "--profile", str(profile), "--db", str(tmp_path / f"inv{n}.db"),
                        "--audit", str(tmp_path / f"audit{n}.jsonl"), "--format", "jsonl", env=env, timeout=120)
            for n in (1, 2)
        ]
        results = await asyncio.gather(*runs)
        recorders = plants.recorders_by_address()
    for result in results:
        assert result.code == 0, result.stderr
        rows = result.rows()
        assert sorted(row["ip"] for row in rows) == sorted(addresses)  # one Modbus row per device
        assert {row["status"] for row in rows} == {"identified"}
    for address in addresses:
        recorder = recorders[address]
        connections = sorted(recorder.connections, key=lambda c: c.opened_mono)
        assert len(connections) == 2, address  # one session from each scan: both really reached every device
        assert recorder.max_concurrent == 1, address
        for earlier, later in itertools.pairwise(connections):
            assert earlier.close_kind == "fin" and earlier.closed_mono is not None
            assert later.opened_mono - earlier.closed_mono >= GAP_S * 0.98, address  # the gap held across scans
        times = recorder.packet_times()
        for window in (1.0, 10.0):
            assert busiest(times, window) <= window_cap(PPS, 1, window), (address, window, times)
    assert "being scanned by another otprobe process" in results[0].stderr + results[1].stderr
