"""Issue-level acceptance: a scan of the whole demo plant, checked against the plant file and the devices' records.

Expected identities are read from simulators/plants/demo.yaml with plain YAML (not through otprobe), and packet
counts from what each simulated device recorded, so this test can only pass if the probes really read what the
plant serves and really sent what they declared.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import yaml
from cli_helpers import DEMO, moved_demo, shifted
from conftest import settled

from otprobe.inventory import SqliteStore
from otprobe.model import Status
from otprobe.probes import names
from otprobe.profile import parse_profile
from otprobe.scan import ScanRun, prepare
from simulators.plant import running_plant

SHIFT = 130  # the demo plant moved to 127.0.131-139.x: no collision with a demo someone runs on its real addresses
PLANT_FILE = yaml.safe_load(DEMO.read_text())  # expected identities, read without otprobe or the simulators
MOVED_PLANT, MOVED_LAB = moved_demo(SHIFT)
PROBED = set(names())  # the lab profile runs every registered probe on the plant
DEVICES = {shifted(d["address"], SHIFT): d for d in PLANT_FILE["devices"]}
EXCLUDED = {shifted(d["address"], SHIFT) for d in PLANT_FILE["devices"] if d["class"] == "safety"}
SILENT = {shifted(d["address"], SHIFT) for d in PLANT_FILE["devices"] if d.get("fault") == "silent"}
FAULTY = {shifted(d["address"], SHIFT) for d in PLANT_FILE["devices"] if d.get("fault", "none") != "none"}


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    """Scan the running demo plant once; keep what the devices recorded before the plant stops."""
    import asyncio

    workdir = tmp_path_factory.mktemp("acceptance")

    async def go():
        async with running_plant(MOVED_PLANT) as plant:
            now = datetime.now(UTC)
            profile = parse_profile(yaml.safe_dump(MOVED_LAB), "lab-moved.yaml")
            prepared = prepare(profile, "lab-moved", list(DEVICES), now=now)
            store = SqliteStore(workdir / "inv.db")
            outcome = await ScanRun(prepared, store, workdir / "audit.jsonl", now=now).run()
            assets = store.assets()
            store.close()
            for device in plant:  # the devices read our last FINs concurrently: let them, before they stop
                await settled(device.recorder)
            recorders = {device.address: device.recorder for device in plant}
            return outcome, assets, recorders

    outcome, assets, recorders = asyncio.run(go())
    audit = [json.loads(line) for line in (workdir / "audit.jsonl").read_text().splitlines()]
    return outcome, assets, recorders, audit


def identified(outcome, ip, protocol):
    obs = [o for o in outcome.observations if o.target == ip and o.protocol == protocol]
    assert len(obs) == 1, obs
    assert obs[0].status is Status.IDENTIFIED, obs[0]
    return obs[0].identity


@pytest.mark.parametrize("ip", [ip for ip, d in DEVICES.items() if "s7" in d and ip not in EXCLUDED | SILENT])
def test_s7_identity_matches_plant_file(scanned, ip):
    expected = DEVICES[ip]["s7"]
    ident = identified(scanned[0], ip, "s7")
    assert ident.vendor == "Siemens"
    assert ident.product_code == expected["order_code"].strip()
    assert ident.firmware == expected["firmware"]
    if "F-2" in expected.get("module_type_name", ""):
        # fail-safe S7-300: the caution rule skips SZL 0x001C, so no serial; the model comes from the order code
        assert ident.serial is None
        assert ident.raw["skipped"][0]["operation"] == "read_component_id"
    else:
        assert ident.serial == expected.get("serial")
    assert ident.model == expected["module_type_name"]
    if "firmware_ext" in expected:
        assert ident.raw["firmware_ext"] == expected["firmware_ext"]


@pytest.mark.parametrize("ip", [ip for ip, d in DEVICES.items() if "enip" in d and ip not in EXCLUDED | SILENT])
def test_enip_identity_matches_plant_file(scanned, ip):
    expected = DEVICES[ip]["enip"]
    ident = identified(scanned[0], ip, "enip")
    assert ident.vendor_id == int(str(expected["vendor_id"]), 0)
    assert ident.device_type_id == int(str(expected["device_type"]), 0)
    assert ident.product_code == str(int(str(expected["product_code"]), 0))
    assert ident.firmware == str(expected["revision"])
    assert ident.serial == f"{int(str(expected['serial']), 0):08X}"
    assert ident.product_name == expected["product_name"].strip()


@pytest.mark.parametrize("ip", [ip for ip, d in DEVICES.items() if "modbus" in d and ip not in EXCLUDED | SILENT])
def test_modbus_identity_matches_plant_file(scanned, ip):
    expected = DEVICES[ip]["modbus"]
    ident = identified(scanned[0], ip, "modbus")
    if expected.get("fc43", True):
        assert ident.vendor == expected["vendor_name"].strip()
        assert ident.product_code == expected["product_code"].strip()
        assert ident.firmware == expected["revision"].strip()
    else:  # FC17 only: the server id text names the device
        assert expected["product_code"].strip() in (ident.model or "")


def test_two_protocol_device_is_one_asset_and_every_asset_has_firmware(scanned):
    _, assets, _, _ = scanned
    by_ip = {a.ip: a for a in assets}
    two = [ip for ip, d in DEVICES.items() if len(PROBED & set(d)) > 1]
    assert two, "the demo plant must have a device that speaks two protocols"
    for ip in two:
        assert len(by_ip[ip].protocols) == len(PROBED & set(DEVICES[ip]))
    unprobed = {ip for ip, d in DEVICES.items() if not PROBED & set(d)}
    answering = set(DEVICES) - EXCLUDED - SILENT - unprobed
    assert set(by_ip) == answering
    fc17_only = {ip for ip, d in DEVICES.items() if d.get("modbus", {}).get("fc43") is False}
    assert all(by_ip[ip].firmware for ip in answering - fc17_only)


def test_packets_at_each_device_equal_the_audited_operations(scanned):
    """The contract, for every probe path in the plant: what a device saw is exactly what the links announced."""
    _, _, recorders, audit = scanned
    for ip, device in DEVICES.items():
        served = PROBED & set(device)
        announced = sum(r["packets"] for r in audit
                        if r["type"] == "intent" and r["device"] == ip and r["protocol"] in served)
        recorder = recorders[ip]
        assert recorder.packet_count() == announced, (ip, recorder.operations())
        assert recorder.violations() == []
        assert [c for c in recorder.connections if c.close_kind == "rst"] == []
        assert recorder.sessions_registered == recorder.sessions_unregistered
        assert recorder.max_concurrent <= 1


def test_safety_rules_hold_at_the_devices(scanned):
    outcome, _, recorders, _ = scanned
    for ip in EXCLUDED:
        assert recorders[ip].packet_count() == 0
        assert {o.status for o in outcome.observations if o.target == ip} == {Status.EXCLUDED}
    fail_safe = [ip for ip, d in DEVICES.items() if "F-2" in d.get("s7", {}).get("module_type_name", "")]
    assert fail_safe
    for ip in fail_safe:  # SZL 0x001C stopped 315F/317F CPUs (python-snap7 #467): never sent to them
        assert "szl:0x0011" in recorders[ip].operations()
        assert "szl:0x001C" not in recorders[ip].operations()


def test_fault_devices_get_a_status_and_the_scan_goes_on(scanned):
    outcome = scanned[0]
    assert outcome.status == "complete"
    for ip in FAULTY:
        statuses = {o.status for o in outcome.observations if o.target == ip and o.protocol == "modbus"}
        if DEVICES[ip]["fault"] == "silent":
            assert statuses <= {Status.TIMEOUT, Status.TRIPPED} and statuses
        else:
            assert statuses == {Status.IDENTIFIED}
