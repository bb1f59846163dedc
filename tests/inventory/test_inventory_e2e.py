"""Acceptance of the inventory, end to end: real simulators, `otprobe scan` as a subprocess, and the
inventory read back through the CLI.

The demo plant runs moved to 127.0.101-109.x (its third octet + 100), this file's own addresses, so it never
meets another test's plant; the profile is `lab` with its scope, class map and safety exclusion moved alike.

"One asset per device", precisely: every simulated device that answers an identity query is exactly one
asset at its address (the Modbus/TCP + EtherNet/IP M580 once, with both protocols). Two devices give no
asset, by design: the safety controller is excluded by scope (zero packets, only an `excluded` record), and
the silent RTU accepts connections but never answers (timeouts, no identity). The PM710 meter answers only
FC17 (Report Server ID), which carries no firmware field, so its asset has a model but no firmware.
"""

from __future__ import annotations

import asyncio
import csv
import json
import signal
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from cli_helpers import REPO, moved_demo, plain_env, run_otprobe, shifted, start_otprobe, write_profile
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from typer.testing import CliRunner

from otprobe.cli import app
from simulators.plant import running_plant

DEMO = REPO / "simulators" / "plants" / "demo.yaml"
SHIFT = 100


def shift(cidr: str) -> str:
    return shifted(cidr, SHIFT)


def demo_plant() -> dict[str, Any]:
    return moved_demo(SHIFT)[0]


def device(plant: dict[str, Any], name: str) -> dict[str, Any]:
    return next(d for d in plant["devices"] if d["name"] == name)


def demo_profile(tmp_path: Path) -> Path:
    """`lab` for the moved plant: the same caps, class map and safety exclusion, 100 third octets up."""
    path = tmp_path / "demo-moved.yaml"
    path.write_text(yaml.safe_dump(moved_demo(SHIFT)[1], sort_keys=False))
    return path


PROBED = ("modbus", "s7", "enip", "bacnet", "snmp", "opcua")  # what the lab profile probes in the demo plant


def expected_firmware(spec: dict[str, Any]) -> str | None:
    """What the simulated device reports as firmware, by the most specific protocol it speaks."""
    if "s7" in spec:
        return spec["s7"]["firmware"]
    if "enip" in spec:
        return spec["enip"]["revision"]
    if "bacnet" in spec:
        return spec["bacnet"]["firmware_revision"]
    if "snmp" in spec:  # the chassis's firmware revision, else its modules'
        return next(e["firmware_rev"] for e in spec["snmp"]["entities"] if e.get("firmware_rev"))
    modbus = spec["modbus"]
    # the revision is an FC43 object; a device without FC43 answers FC17 only, which has no firmware
    return modbus["revision"].strip() if modbus.get("fc43", True) else None


class Inventory:
    """The CLI on one inventory file, in-process: read-only commands need no event loop of their own."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.db = tmp_path / "inventory.db"
        self.audit = tmp_path / "audit.jsonl"
        self.profile = demo_profile(tmp_path)
        self.env = plain_env(tmp_path)

    def cli(self, *args: str) -> Any:
        return CliRunner().invoke(app, [*args], env={"NO_COLOR": "1", "COLUMNS": "200"})

    def json(self, *args: str) -> Any:
        result = self.cli(*args, "--db", str(self.db), "--format", "json")
        assert result.exit_code in (0, 1), result.output
        return json.loads(result.stdout)

    def scan_args(self, targets: Sequence[str]) -> list[str]:
        return ["scan", *targets, "--profile", str(self.profile), "--db", str(self.db), "--audit", str(self.audit)]

    async def scan(self, plant: dict[str, Any], targets: Sequence[str]) -> list[dict[str, Any]]:
        """Run the plant, scan it with `otprobe scan --format jsonl --quiet`; the observations printed, one a line."""
        async with running_plant(plant):
            done = await run_otprobe(*self.scan_args(targets), "--format", "jsonl", "--quiet", env=self.env)
        assert done.code == 0, done.stderr
        assert done.stderr == ""  # --quiet: no summary, no progress
        return done.rows()


async def test_a_demo_plant_scan_gives_one_asset_per_answering_device_each_with_firmware(tmp_path: Path) -> None:
    inv = Inventory(tmp_path)
    plant = demo_plant()
    observations = await inv.scan(plant, [d["address"] for d in plant["devices"]])

    by_ip = {d["address"]: d for d in plant["devices"]}
    safety, silent = device(plant, "safety-guardlogix"), device(plant, "legacy-rtu")
    assets = inv.json("inventory", "list")
    assert sorted(a["ip"] for a in assets) == sorted(set(by_ip) - {safety["address"], silent["address"]})
    assert len(assets) == len(plant["devices"]) - 2 == 19
    for asset in assets:
        spec = by_ip[asset["ip"]]
        assert set(asset["protocols"]) == {p for p in PROBED if p in spec}, spec["name"]
        assert asset["firmware"] == expected_firmware(spec), spec["name"]
    no_firmware = [by_ip[a["ip"]]["name"] for a in assets if a["firmware"] is None]
    assert no_firmware == ["feeder-pm710"]
    pm710 = next(a for a in assets if a["ip"] == device(plant, "feeder-pm710")["address"])
    assert pm710["model"] == device(plant, "feeder-pm710")["modbus"]["server_data"]  # identified, via FC17

    # the two-protocol M580: one asset; S7 > EtherNet/IP > Modbus, and the disagreement is kept, not dropped
    m580 = next(a for a in assets if a["ip"] == device(plant, "utility-m580")["address"])
    assert m580["protocols"] == {"modbus": 5020, "enip": 44818}
    assert m580["product_code"] == "2058"
    assert m580["conflicts"]["product_code"]["modbus"] == "BME P58 1020"
    assert "firmware" not in m580["conflicts"]  # "v02.70" over Modbus and "2.70" over CIP are one version

    # the devices without an asset were scanned (or deliberately not) and say why
    statuses = {(o["ip"], o["status"]) for o in observations if o["ip"] in (safety["address"],
                                                                                     silent["address"])}
    assert {s for ip, s in statuses if ip == safety["address"]} == {"excluded"}
    assert "identified" not in {s for ip, s in statuses if ip == silent["address"]}

    # exports: CycloneDX 1.6 passes the strict schema validator; CSV is one row per asset
    bom_text = inv.cli("inventory", "export", "--format", "cyclonedx", "--db", str(inv.db)).stdout
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(bom_text) is None
    bom = json.loads(bom_text)
    assert bom["specVersion"] == "1.6"
    assert [c["type"] for c in bom["components"]] == ["device"] * len(assets)
    firmware = {c["bom-ref"].removeprefix("asset-"): [f["version"] for f in c.get("components", [])
                                                      if f["type"] == "firmware"] for c in bom["components"]}
    assert firmware == {a["id"]: [a["firmware"]] if a["firmware"] else [] for a in assets}
    # what the BACnet/IP, SNMP and OPC UA probes read of each device is carried, as the simulated devices said it
    props = {c["bom-ref"].removeprefix("asset-"): {p["name"]: p["value"] for p in c["properties"]}
             for c in bom["components"]}
    by_address = {a["ip"]: props[a["id"]] for a in assets}
    pxc, rs20 = device(plant, "hvac-pxc")["bacnet"], device(plant, "net-rs20")["snmp"]
    bms = by_address[device(plant, "hvac-pxc")["address"]]
    assert (bms["otprobe:bacnet:device_type.vendor_identifier"], bms["otprobe:bacnet:instance"],
            bms["otprobe:bacnet:object_name"]) == (str(pxc["vendor_id"]), str(pxc["device_instance"]),
                                                   pxc["object_name"])
    switch = by_address[device(plant, "net-rs20")["address"]]
    assert (switch["otprobe:snmp:snmp_device_type.sys_object_id"],
            switch["otprobe:snmp:snmp_device_type.enterprise"]) == (rs20["sys_object_id"], "248")
    opcua_spec = device(plant, "line3-cpu1515")
    server = by_address[opcua_spec["address"]]
    assert server["otprobe:opcua:application_uri"] == opcua_spec["opcua"]["application_uri"]
    assert server["otprobe:opcua:certificate.self_signed"] == "true"
    assert server["otprobe:opcua:certificate.not_after"] > server["otprobe:opcua:certificate.not_before"]
    out = tmp_path / "inventory.csv"
    assert inv.cli("inventory", "export", "--format", "csv", "-o", str(out), "--db", str(inv.db)).exit_code == 0
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["id"] for r in rows) == sorted(a["id"] for a in assets)
    assert {r["ip"]: r["firmware"] for r in rows} == {a["ip"]: a["firmware"] or "" for a in assets}


async def test_firmware_change_move_and_stop_give_exactly_those_three_changes_then_a_clean_diff(
        tmp_path: Path) -> None:
    inv = Inventory(tmp_path)
    upgraded, moving, stopping = "line1-cpu315", "pack-mvi56", "hmi-panelview"
    new_address = shift("127.0.3.99")
    before, after = demo_plant(), demo_plant()
    for plant in (before, after):
        # the silent RTU only costs timeouts here: it never becomes an asset, so it cannot change a diff
        plant["devices"].remove(device(plant, "legacy-rtu"))
    device(after, upgraded)["s7"]["firmware"] = "V3.2.9"
    device(after, moving)["address"] = new_address
    after["devices"].remove(device(after, stopping))
    targets = [d["address"] for d in before["devices"]] + [new_address]

    await inv.scan(before, targets)
    await inv.scan(after, targets)
    result = inv.cli("inventory", "diff", "--db", str(inv.db), "--format", "json")
    assert result.exit_code == 1, result.output
    changes = [(c["kind"], c["ip"], c["old"], c["new"]) for c in json.loads(result.stdout)["changes"]]
    old_ip = device(before, moving)["address"]
    serial = next(a for a in inv.json("inventory", "list") if a["ip"] == new_address)["serial"]
    gone = device(before, stopping)["enip"]
    assert sorted(changes) == [
        ("firmware_changed", device(before, upgraded)["address"], "V3.2.7", "V3.2.9"),
        ("missing", device(before, stopping)["address"], f"{gone['product_name']} {gone['serial']:08X}", None),
        ("moved", new_address, old_ip, new_address),
    ]
    # the moved device is the same asset, found by its serial, with its address history kept
    shown = inv.json("inventory", "show", serial)
    assert [h["ip"] for h in shown["history"]["addresses"]] == [old_ip, new_address]

    await inv.scan(after, targets)
    table = inv.cli("inventory", "diff", "--db", str(inv.db))
    assert table.exit_code == 0, table.output
    assert "no changes" in table.stdout
    assert inv.json("inventory", "diff")["changes"] == []


def _observations(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name='observations'").fetchone():
            return 0  # the file exists, its schema is still being written
        return int(conn.execute("SELECT count(*) FROM observations").fetchone()[0])


async def test_a_scan_killed_with_sigkill_leaves_a_sound_database_and_the_next_scan_resumes(tmp_path: Path) -> None:
    demo = demo_plant()
    plant = {"plant": "kill", "ports": demo["ports"],
             "devices": [{**device(demo, "mcc-m340"), "name": f"m340-{i}", "address": f"127.0.110.{10 + i}"}
                         for i in range(6)]}
    addresses = [d["address"] for d in plant["devices"]]
    env = plain_env(tmp_path)
    db, audit = tmp_path / "inventory.db", tmp_path / "audit.jsonl"
    slow = write_profile(tmp_path / "slow.yaml", ["127.0.110.0/24"], assign=[{"cidr": "127.0.110.0/24",
                                                                              "class": "plc"}],
                         global_pps=4, max_devices_in_flight=1,
                         classes={"plc": {"pps": 4, "burst": 1, "class_pps": 4, "connect_gap_s": 0.2},
                                  "unknown": {"pps": 4, "burst": 1}})
    fast = write_profile(tmp_path / "fast.yaml", ["127.0.110.0/24"])
    common = ["--protocol", "modbus", "--db", str(db), "--audit", str(audit), "--quiet"]

    async with running_plant(plant):
        process = await start_otprobe("scan", *addresses, "--profile", str(slow), *common, env=env)
        for _ in range(400):  # up to 20 s: one device a second at this pace
            if db.exists() and _observations(db) >= 2:
                break
            await asyncio.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        assert await process.wait() == -signal.SIGKILL
        killed_with = _observations(db)
        assert 2 <= killed_with < len(addresses), "the scan was not killed halfway"

        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert conn.execute("SELECT status FROM scans").fetchall() == [("running",)]
        runner = CliRunner()
        scans = json.loads(runner.invoke(app, ["scans", "list", "--db", str(db), "--format", "json"]).stdout)
        assert [s["status"] for s in scans] == ["interrupted"]  # a reader finds the writer's process gone
        # each audit record is one write(2) of a short line, which SIGKILL does not split: the chain verifies,
        # and the log shows the scan started and never ended (at most an intent without its outcome is lost)
        assert runner.invoke(app, ["audit", "verify", str(audit)]).exit_code == 0
        events = [r.get("event") for r in map(json.loads, audit.read_text().splitlines())]
        assert "scan_start" in events and "scan_end" not in events

        done = await run_otprobe("scan", "--resume", "--profile", str(fast), *common, "--format", "jsonl", env=env)
    assert done.code == 0, done.stderr
    scans = json.loads(runner.invoke(app, ["scans", "list", "--db", str(db), "--format", "json"]).stdout)
    assert [s["status"] for s in scans] == ["interrupted", "complete"]
    with sqlite3.connect(db) as conn:
        seen = {ip for (ip,) in conn.execute("SELECT ip FROM observations WHERE scan_id=?", (scans[0]["id"],))}
    assert sorted(scans[1]["targets"]) == sorted(set(addresses) - seen)
    verified = runner.invoke(app, ["audit", "verify", str(audit)])
    assert verified.exit_code == 0, verified.output
    assets = json.loads(runner.invoke(app, ["inventory", "list", "--db", str(db), "--format", "json"]).stdout)
    # the killed scan's observations are merged when it is found dead, the resumed scan covers the rest
    assert {a["ip"] for a in assets} == set(addresses)
    assert sorted(scans[0]["not_covered"]) == sorted(scans[1]["targets"])
