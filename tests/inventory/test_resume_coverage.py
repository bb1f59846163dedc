"""Crashes lose no coverage: coverage is per (device, protocol), and `scan --resume` runs each missing pair, only those.

The end-to-end test kills `otprobe scan` (SIGKILL, a process in its own right) at five moments drawn from a fixed
seed, resumes after each, and checks the end at both sides: every device saw requests of every protocol, the
inventory has a result for every pair and a sound database, the audit log verifies. The plant (80 devices speaking
Modbus, S7 and EtherNet/IP on 127.0.99.10-89) runs in this process, so what each run sent is read off the devices'
recorders between runs. Smaller tests pin the store's chain arithmetic and the scheduler's per-target jobs.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import signal
import sqlite3
from collections import Counter
from dataclasses import replace
from pathlib import Path

import plantgen
import vtime
from cli_helpers import plain_env, run_otprobe, start_otprobe, write_profile
from conftest import settled
from fakes import ScriptedProbe, Wire
from test_inventory import obs

from otprobe.inventory import SqliteStore
from otprobe.model import Observation, Status, Target
from otprobe.pacing import ClassLimits, Scheduler
from otprobe.profile import scan_config
from otprobe.scan import resume_targets
from simulators.plant import running_plant
from simulators.recorder import Recorder

SEED = 20260607  # the kill moments; a failure reproduces with the same seed
KILLS = 5
BLOCK = 99
PROTOCOLS = tuple(plantgen.PORTS)  # modbus, s7, enip: every probe, each device speaks all three
DEVICES = plantgen.group(BLOCK, 80, device_class="plc", protocols={name: {} for name in PROTOCOLS})
for _n, _device in enumerate(DEVICES):  # one serial per device, the same over S7 and CIP: 80 assets, not one
    _device["enip"]["serial"] = 0x60000000 + _n
    _device["s7"]["serial"] = f"{0x60000000 + _n:08X}"
ADDRESSES = plantgen.addresses(DEVICES)
PAIRS = {(ip, protocol) for ip in ADDRESSES for protocol in PROTOCOLS}

Pairs = set[tuple[str, str]]


def fast_profile(path: Path) -> Path:
    """Caps fast enough for the whole plant in seconds, slow enough that every kill lands mid-scan. Eight devices
    in flight finish protocols within a few dozen packets, so a kill splits the protocols of the devices it cuts.
    Eight addresses in discovery too: with all 80 first probes under way at once, no probe would end before a kill."""
    return write_profile(
        path, [plantgen.cidr(BLOCK)], assign=[{"cidr": plantgen.cidr(BLOCK), "class": "plc"}],
        classes={"plc": {"pps": 20, "burst": 1, "connect_gap_s": 0, "max_session_s": 5},
                 "unknown": {"pps": 1, "max_session_s": 60}},
        protocols={"modbus": {"port": plantgen.PORTS["modbus"], "unit_ids": [1]},
                   "s7": {"port": plantgen.PORTS["s7"], "rack_slots": [[0, 2]]},
                   "enip": {"port": plantgen.PORTS["enip"]}},
        global_pps=300, max_devices_in_flight=8, max_addresses_in_flight=8, retries=0,
        timeouts={"connect_s": 1, "response_s": 1},
    )


def requested(recorders: dict[str, Recorder]) -> Counter[tuple[str, str]]:
    """Requests each device received, by (device, protocol): what the scans did, seen at the receiver."""
    return Counter((ip, r.protocol) for ip, recorder in recorders.items() for r in list(recorder.requests))


def packets(recorders: dict[str, Recorder]) -> int:
    return sum(r.packet_count() for r in recorders.values())


def results(db: Path) -> Pairs:
    """(device, protocol) pairs with a result in the inventory, read with plain SQL rather than through otprobe."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT DISTINCT ip, protocol FROM observations WHERE status <> 'aborted'").fetchall()
    return set(rows)


async def kill_midway(args: list[str], env: dict[str, str], recorders: dict[str, Recorder], more: int) -> None:
    """Start `otprobe ARGS` and SIGKILL it once the devices have received `more` further packets."""
    target = packets(recorders) + more
    process = await start_otprobe(*args, env=env)
    try:
        for _ in range(3000):  # 30 s
            if packets(recorders) >= target or process.returncode is not None:
                break
            await asyncio.sleep(0.01)
        process.kill()
    finally:
        if await process.wait() != -signal.SIGKILL:
            _, err = await process.communicate()
            raise AssertionError(f"the scan ended (exit {process.returncode}) before it was killed: {err.decode()}")
    for recorder in recorders.values():  # the kernel closes its sockets: let the devices see it
        await settled(recorder)


async def test_five_kills_and_resumes_end_with_every_device_protocol_pair_covered(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    db, audit = tmp_path / "inv.db", tmp_path / "audit.jsonl"
    env = plain_env(tmp_path)
    common = ["--db", str(db), "--audit", str(audit), "--quiet", "--format", "jsonl"]
    first = ["scan", *ADDRESSES, "--profile", str(fast_profile(tmp_path / "fast.yaml")), *common]
    partial_devices = 0  # devices a kill left with some protocols done and others not: the case that lost coverage
    async with running_plant(plantgen.plant("resume-coverage", DEVICES)) as plant:
        recorders = {device.address: device.recorder for device in plant}
        for kill in range(KILLS):
            owed = PAIRS - results(db) if kill else PAIRS
            before = requested(recorders)
            # the whole plant takes 800 packets (10 a device): five kills of at most 140 each leave work for the end
            await kill_midway(first if kill == 0 else ["scan", "--resume", *common], env, recorders,
                              rng.randint(40, 140))
            sent = requested(recorders) - before
            assert set(sent) <= owed, f"run {kill} probed pairs that already had a result"
            done = results(db)
            assert done < PAIRS, f"kill {kill} came after the chain was covered"
            partial_devices += sum(0 < sum((ip, p) in done for p in PROTOCOLS) < len(PROTOCOLS) for ip in ADDRESSES)
        owed, before = PAIRS - results(db), requested(recorders)
        final = await run_otprobe("scan", "--resume", *common, env=env)
        assert final.code == 0, final.stderr
        sent = requested(recorders) - before
    assert partial_devices > 0, "no kill split a device's protocols: the test would not catch per-device coverage"
    # the last run probed exactly the pairs still owed (each of them, and nothing else) ...
    assert set(sent) == owed
    assert {(o["ip"], o["protocol"]) for o in final.rows()} == owed
    # ... so that every device saw every protocol, and the inventory has a result for every pair
    assert {pair for pair, n in requested(recorders).items() if n} == PAIRS
    assert results(db) == PAIRS

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    listed = await run_otprobe("scans", "list", "--db", str(db), "--format", "json", env=env)
    scans = listed.json()
    assert [s["status"] for s in scans] == ["interrupted"] * KILLS + ["complete"]
    assert [s["resumes"] for s in scans] == [None] + [s["id"] for s in scans[:-1]]
    assert all(s["not_covered"] for s in scans[:-1]) and scans[-1]["not_covered"] == []
    assets = (await run_otprobe("inventory", "list", "--db", str(db), "--format", "json", env=env)).json()
    assert {a["ip"] for a in assets} == set(ADDRESSES)
    # an asset's protocols are the chain's, not only those of the scan that saw the device last
    assert all(set(a["protocols"]) == set(PROTOCOLS) for a in assets)

    verified = await run_otprobe("audit", "verify", str(audit), env=env)
    assert verified.code == 0, verified.stdout + verified.stderr
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert {(r["device"], r["protocol"]) for r in records if r["type"] == "intent"} == PAIRS
    ends = [r for r in records if r.get("event") == "scan_end"]
    assert [(e["scan"], e["status"]) for e in ends] == [(scans[-1]["id"], "complete")]  # the killed ones never ended


# -- the store's arithmetic over a resume chain ------------------------------------------------------------------

DEV_A, DEV_B = "127.0.99.10", "127.0.99.11"


def record(store: SqliteStore, scan_id: str, *entries: tuple[str, str, Status]) -> None:
    for ip, protocol, status in entries:
        store.add_observation(scan_id, Observation(ip, protocol, 1, status, device_class="plc"))


def test_a_device_with_only_s7_done_still_owes_modbus_and_enip(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "inv.db")
    store.begin_scan("s1", "lab", [DEV_A, DEV_B], protocols=PROTOCOLS)
    record(store, "s1", (DEV_A, "s7", Status.IDENTIFIED), (DEV_B, "modbus", Status.TIMEOUT),
           (DEV_B, "s7", Status.ABORTED))  # a timeout is a result; an aborted job is not
    store.finish_scan("s1", "incomplete", list(store.missing("s1")))
    assert store.missing("s1") == {DEV_A: ["modbus", "enip"], DEV_B: ["s7", "enip"]}
    resumed = resume_targets(store)
    assert (resumed.scan_id, resumed.jobs) == ("s1", store.missing("s1"))

    # the resume covers part of what is owed: the chain, not the resumed scan alone, says what is left
    store.begin_scan("s2", "lab", [DEV_A, DEV_B], protocols=["modbus", "s7", "enip"], resumes="s1")
    record(store, "s2", (DEV_A, "modbus", Status.IDENTIFIED), (DEV_A, "enip", Status.REFUSED),
           (DEV_B, "s7", Status.TRIPPED))
    assert store.missing("s2") == {DEV_B: ["enip"]}
    assert store.missing("s1") == {DEV_A: ["modbus", "enip"], DEV_B: ["s7", "enip"]}  # up to s1 only
    store.finish_scan("s2", "incomplete", list(store.missing("s2")))
    assert store.scan("s2").not_covered == [DEV_B]
    assert resume_targets(store).jobs == {DEV_B: ["enip"]}

    store.begin_scan("s3", "lab", [DEV_B], protocols=["enip"], resumes="s2")
    record(store, "s3", (DEV_B, "enip", Status.IDENTIFIED))
    assert store.missing("s3") == {}
    store.close()


def test_a_killed_resume_is_closed_with_what_its_chain_still_owes(tmp_path: Path) -> None:
    path = tmp_path / "inv.db"
    store = SqliteStore(path)
    store.begin_scan("s1", "lab", [DEV_A], protocols=["modbus", "s7"])
    record(store, "s1", (DEV_A, "s7", Status.IDENTIFIED))
    store.finish_scan("s1", "incomplete", [DEV_A])
    store.begin_scan("s2", "lab", [DEV_A], protocols=["modbus"], resumes="s1")
    store.db.execute("UPDATE scans SET pid=? WHERE id='s2'", (2**22 + 12345,))  # a pid that does not exist
    store.close()
    reopened = SqliteStore(path)
    assert (reopened.scan("s2").status, reopened.scan("s2").not_covered) == ("interrupted", [DEV_A])
    assert resume_targets(reopened).jobs == {DEV_A: ["modbus"]}
    reopened.close()


def test_a_resumed_device_keeps_the_identity_its_killed_scan_read(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "inv.db")
    s7 = obs(DEV_A, "s7", vendor="Siemens", model="CPU 315-2 PN/DP", serial="S C-B1U393142011", firmware="V3.2.7")
    modbus = obs(DEV_A, "modbus", vendor="Siemens", product_code="6ES7 315-2EH14-0AB0")
    store.begin_scan("s1", "lab", [DEV_A], protocols=["s7", "modbus"])
    store.add_observation("s1", s7)
    store.finish_scan("s1", "interrupted", [DEV_A])
    store.begin_scan("s2", "lab", [DEV_A], protocols=["modbus"], resumes="s1")
    store.add_observation("s2", modbus)
    store.finish_scan("s2", "complete")
    [asset] = store.assets()
    assert set(asset.protocols) == {"s7", "modbus"}
    assert (asset.serial, asset.model, asset.product_code) == ("S C-B1U393142011", "CPU 315-2 PN/DP",
                                                                "6ES7 315-2EH14-0AB0")
    store.close()


def test_an_inventory_from_before_pairs_were_recorded_counts_the_protocols_it_observed(tmp_path: Path) -> None:
    """A schema-1 file (kept in data/): an incomplete scan of DEV_A and DEV_B that identified DEV_A over S7."""
    path = tmp_path / "inv.db"
    shutil.copyfile(Path(__file__).with_name("data") / "inventory-schema1.sqlite", path)
    store = SqliteStore(path)
    assert (store.scan("old").protocols, store.scan("old").resumes) == (["s7"], None)
    assert store.missing("old") == {DEV_B: ["s7"]}
    store.close()


# -- the scheduler runs the probes listed for each target --------------------------------------------------------


def test_the_scheduler_runs_only_each_targets_listed_probes() -> None:
    wire = Wire()
    first, second = ScriptedProbe(wire), ScriptedProbe(wire)
    devices = [Target("127.0.99.20", "plc"), Target("127.0.99.21", "plc"), Target("127.0.99.22", "plc")]
    defaults = scan_config()
    plc = ClassLimits(pps=10.0, burst=1, class_pps=None, connect_gap_s=0.0, max_session_s=10.0)
    config = replace(defaults, global_pps=50.0, classes={**defaults.classes, "plc": plc})
    jobs = {"127.0.99.20": [second], "127.0.99.21": []}  # .22 is not listed: it gets every probe

    async def go() -> Scheduler:
        scheduler = Scheduler(devices, [first, second], config, jobs=jobs)
        assert scheduler.jobs_total == 3
        result = await scheduler.run()
        assert result.complete and len(result.observations) == 3
        return scheduler

    vtime.run(go())
    assert first.attempts == {"127.0.99.22": 1}
    assert second.attempts == {"127.0.99.20": 1, "127.0.99.22": 1}
    assert {ip for _, ip, _ in wire.packets} == {"127.0.99.20", "127.0.99.22"}  # .21 owed nothing: no packet
