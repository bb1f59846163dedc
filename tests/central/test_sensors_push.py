"""Three sensors, one central inventory: the bundled demo plant scanned under three site names into three SQLite
inventories (`otprobe scan`, real simulated devices), then pushed to PostgreSQL with `otprobe inventory push`.

The demo plant runs moved to 127.0.161-167.x (third octet + 160), this file's own addresses. The same plant at three
sites is the worst case for address keys: every address, and every serial, exists at all three.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import yaml
from cli_helpers import REPO, moved_demo, plain_env

from otprobe.inventory import SqliteStore
from otprobe.inventory.central import CentralStore
from otprobe.inventory.push import push
from simulators.process import PlantProcess

pytest_plugins = ("central_pg",)  # the PostgreSQL fixtures (a conftest.py here would shadow the suite's)

SHIFT = 160
SITES = ("north", "south", "east")


@dataclass
class Sensor:
    site: str
    db: Path
    audit: Path


def otprobe(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "otprobe", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def sensor_env(home: Path) -> dict[str, str]:
    # no configuration file and no site from the machine running the tests
    env = plain_env(home, OTPROBE_CONFIG=str(home / "no-config.yaml"))
    env.pop("OTPROBE_SITE", None)
    return env


@pytest.fixture(scope="module")
def sensors(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Sensor]]:
    """Three sensors' inventories of the demo plant; north scanned it twice (a history to push in order)."""
    home = tmp_path_factory.mktemp("sensors")
    plant, lab = moved_demo(SHIFT)
    profile = home / "lab-moved.yaml"
    profile.write_text(yaml.safe_dump(lab, sort_keys=False))
    targets = [d["address"] for d in plant["devices"]]
    env = {**sensor_env(home), "OTPROBE_LEASE_DIR": str(home / "leases")}
    found = [Sensor(site, home / site / "inventory.db", home / site / "audit.jsonl") for site in SITES]
    with PlantProcess(plant):
        for sensor in [found[0], *found]:
            done = otprobe("scan", *targets, "--profile", str(profile), "--db", str(sensor.db), "--audit",
                           str(sensor.audit), "--quiet", "--format", "json", env=env)
            assert done.returncode == 0, done.stderr
    yield found


def local_assets(sensor: Sensor) -> set[tuple]:
    store = SqliteStore(sensor.db)
    try:
        return {(a.ip, a.vendor, a.model, a.serial, a.firmware) for a in store.assets()}
    finally:
        store.close()


def push_cli(sensor: Sensor, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return otprobe("inventory", "push", "--to", url, "--db", str(sensor.db), "--site", sensor.site, *extra,
                   env=sensor_env(sensor.db.parent))


def row_counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as c:
        return {table: c.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
                for table in ("scans", "observations", "assets", "asset_events", "asset_firmware", "audit_heads")}


def test_three_sensors_pushed_keep_each_sites_assets_and_a_repeated_push_sends_nothing(
    sensors: list[Sensor], pg_url: str
) -> None:
    for sensor in sensors:
        done = push_cli(sensor, pg_url, "--format", "json")
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        scans = 2 if sensor.site == "north" else 1
        assert len(report["sent"]) == report["heads"] == scans and report["already"] == 0
        assert report["audit"] == "verified"

    central = CentralStore(pg_url)
    try:
        every = central.assets()
        assert len(every) == sum(len(local_assets(s)) for s in sensors) == 3 * 19
        for sensor in sensors:
            site = CentralStore(pg_url, site=sensor.site)
            try:
                assert {(a.ip, a.vendor, a.model, a.serial, a.firmware) for a in site.assets()} == local_assets(sensor)
                assert [s.id for s in site.scans()] == [s.id for s in SqliteStore(sensor.db).scans()]
            finally:
                site.close()
        # one address, three sites: three assets, none retired or flagged for the others
        per_address = Counter(a.ip for a in every)
        assert set(per_address.values()) == {3}
        assert not any(a.retired or a.duplicate_serial for a in central.assets(include_retired=True))
        for sensor in sensors:  # the audit line that closed each scan is anchored centrally
            lines = sensor.audit.read_bytes().splitlines()
            for scan in SqliteStore(sensor.db).scans():
                head = central.audit_head(scan.id)
                assert head is not None
                record = json.loads(lines[head[0]])
                assert record["scan"] == scan.id and record["type"] == "event" and record["event"] == "scan_end"
    finally:
        central.close()

    before = row_counts(pg_url)
    again = push_cli(sensors[0], pg_url)
    assert again.returncode == 0, again.stderr
    assert "nothing to send" in again.stderr and "has all 2 finished scans" in again.stderr
    assert row_counts(pg_url) == before


def test_the_firmware_summary_is_the_sensors_inventories_counted(sensors: list[Sensor], pg_url: str) -> None:
    for sensor in sensors:
        assert push_cli(sensor, pg_url).returncode == 0
    env = sensor_env(sensors[0].db.parent)
    done = otprobe("inventory", "firmware", "--db", pg_url, "--format", "json", env=env)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    expected: Counter[tuple] = Counter()
    for sensor in sensors:
        for _ip, vendor, model, _serial, firmware in local_assets(sensor):
            expected[(vendor or "(unknown)", model or "(unknown)", firmware or "(unknown)", sensor.site)] += 1
    got = Counter({(r["vendor"], r["model"], r["firmware"], site): n for r in rows for site, n in r["sites"].items()})
    assert got == expected
    assert all(r["devices"] == sum(r["sites"].values()) for r in rows)
    s7 = next(r for r in rows if r["model"] == "CPU 315-2 PN/DP")
    assert (s7["firmware"], s7["devices"], s7["sites"]) == ("V3.2.7", 3, {"east": 1, "north": 1, "south": 1})

    table = otprobe("inventory", "firmware", "--db", pg_url, "--site", "south", env=env)
    assert table.returncode == 0, table.stderr
    assert "CPU 315-2 PN/DP" in table.stdout and "south 1" in table.stdout and "north" not in table.stdout


def test_a_push_killed_midway_leaves_whole_scans_and_the_next_push_sends_the_rest(
    sensors: list[Sensor], pg_url: str
) -> None:
    north = sensors[0]
    process = subprocess.Popen(
        [sys.executable, "-m", "otprobe", "inventory", "push", "--to", pg_url, "--db", str(north.db), "--site",
         "north"], cwd=REPO, env=sensor_env(north.db.parent), stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    first = process.stderr.readline()  # the first scan is committed: kill during the second
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert first.startswith("sent scan"), first
    local = SqliteStore(north.db)
    try:
        local_scans = [s.id for s in local.scans()]
        with psycopg.connect(pg_url) as c:
            central = [row[0] for row in c.execute("SELECT id FROM scans ORDER BY started_at")]
            assert central == local_scans[:len(central)] and len(central) >= 1  # a prefix, in order
            for scan_id in central:  # each scan that is there is whole
                n = c.execute("SELECT count(*) FROM observations WHERE scan_id=%s", (scan_id,)).fetchone()
                assert n is not None and n[0] == len(local.observations(scan_id))
            orphans = c.execute("SELECT count(*) FROM observations WHERE scan_id NOT IN (SELECT id FROM scans)")
            assert orphans.fetchone() == (0,)
        done = push_cli(north, pg_url, "--format", "json")
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["sent"] == local_scans[len(central):] and report["already"] == len(central)
    finally:
        local.close()
    reference = CentralStore(f"sqlite:///{north.db.parent / 'reference.db'}", site="north")
    resumed = CentralStore(pg_url, site="north")
    try:
        push(north.db, reference)

        def view(store: CentralStore) -> list[tuple]:
            return sorted((a.ip, a.serial, a.firmware, len(store.history(a.id)["events"])) for a in store.assets())

        assert view(resumed) == view(reference)
    finally:
        reference.close()
        resumed.close()


def test_a_scan_that_fails_while_it_is_received_leaves_nothing_of_it(
    sensors: list[Sensor], pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    north = sensors[0]
    store = CentralStore(pg_url, site="north")
    reconcile = CentralStore._reconcile
    calls = []

    def fail_on_the_second(self: CentralStore, *args: object) -> None:
        calls.append(args)
        reconcile(self, *args)  # type: ignore[arg-type]
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a Ctrl-C would, after the scan's rows went in, before the commit

    monkeypatch.setattr(CentralStore, "_reconcile", fail_on_the_second)
    try:
        with pytest.raises(KeyboardInterrupt):
            push(north.db, store)
        first = row_counts(pg_url)
        assert first["scans"] == 1 and first["audit_heads"] == 1
        monkeypatch.setattr(CentralStore, "_reconcile", reconcile)
        report = push(north.db, store)
        assert report.already == 1 and len(report.sent) == 1
        assert row_counts(pg_url)["scans"] == 2
    finally:
        store.close()


def test_two_sensors_pushing_at_once_do_not_conflict(sensors: list[Sensor], pg_url: str) -> None:
    processes = [subprocess.Popen(
        [sys.executable, "-m", "otprobe", "inventory", "push", "--to", pg_url, "--db", str(s.db), "--site", s.site,
         "--format", "json"], cwd=REPO, env=sensor_env(s.db.parent), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True) for s in sensors]
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        assert json.loads(out)["sent"]
    assert row_counts(pg_url)["scans"] == 4
    central = CentralStore(pg_url)
    try:
        assert len(central.assets()) == 3 * 19
    finally:
        central.close()
