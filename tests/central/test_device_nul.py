"""A NUL in what a device says about itself (vendor, model, firmware, serial, a raw identity value, an error) does not
fit PostgreSQL's TEXT. Every store holds it as U+2400 (SYMBOL FOR NULL), the same on a sensor's SQLite file, on the
shared schema on SQLite and PostgreSQL, and after a push; the observation's identity keeps the exact string in
JSON's escape. Scans are written through the stores' API (no network).
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from typer.testing import CliRunner

from otprobe.cli import app
from otprobe.inventory import SqliteStore
from otprobe.inventory.central import CentralStore
from otprobe.inventory.push import push
from otprobe.model import Identity, Observation, Status

pytest_plugins = ("central_pg",)  # the PostgreSQL fixtures (a conftest.py here would shadow the suite's)

SAID = {"vendor": "Ac\x00me", "model": "CPU\x00 315", "firmware": "V3.2\x00.7", "serial": "\x00S C-1\x00",
        "product_code": "6ES7\x00315"}
RAW = {"plant_id": "line\x00 4", "slots": ["a\x00", "b"]}
ERROR = "reply ended in \x00\x00"
STORED = {k: v.replace("\x00", "\u2400") for k, v in SAID.items()}


def scan(store: SqliteStore | CentralStore, scan_id: str = "s1") -> None:
    store.begin_scan(scan_id, "lab", ["127.0.1.10", "127.0.1.11"], protocols=["s7"])
    store.add_observation(scan_id, Observation("127.0.1.10", "s7", 102, Status.IDENTIFIED,
                                               Identity(**SAID, raw=RAW), 0.01, 7, None, "plc"))
    store.add_observation(scan_id, Observation("127.0.1.11", "s7", 102, Status.PROTOCOL_ERROR, None, 0.01, 3, ERROR,
                                               "plc"))
    store.finish_scan(scan_id, "complete")


def cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), env={"NO_COLOR": "1", "OTPROBE_DB": "", "OTPROBE_SITE": ""})
    assert result.exit_code in (0, 1), result.output
    return result.output


@pytest.fixture(autouse=True)
def no_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTPROBE_CONFIG", str(tmp_path / "none.yaml"))


def test_nul_bytes_are_stored_alike_in_every_store_and_after_a_push(any_url: str, tmp_path: Path) -> None:
    sensor = tmp_path / "sensor.db"
    with closing(SqliteStore(sensor)) as local, closing(CentralStore(any_url, site="direct")) as central:
        scan(local)
        scan(central, "d1")
    with closing(CentralStore(any_url, site="pushed")) as central:
        assert push(sensor, central).sent == ["s1"]

    sites = {"default": str(sensor), "direct": any_url, "pushed": any_url}
    seen = {}
    for site, db in sites.items():
        (asset,) = json.loads(cli("inventory", "list", "--db", db, "--site", site, "--format", "json"))
        assert {k: asset[k] for k in SAID} == STORED
        assert asset["identity"]["raw"]["s7"] == {"plant_id": "line\u2400 4", "slots": ["a\u2400", "b"]}
        seen[site] = {k: v for k, v in asset.items() if k not in ("id", "site", "first_seen", "last_seen")}
        diff = json.loads(cli("inventory", "diff", "--db", db, "--site", site, "--format", "json"))
        assert [c["new"] for c in diff["changes"]] == [f"{STORED['model']} {STORED['serial']}"]
        bom = cli("inventory", "export", "--db", db, "--site", site, "--format", "cyclonedx")
        assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(bom) is None
        (component,) = json.loads(bom)["components"]
        assert {p["name"]: p["value"] for p in component["properties"]}["otprobe:s7:plant_id"] == "line\u2400 4"
    assert seen["default"] == seen["direct"] == seen["pushed"]

    # the observations read back alike; the identity column itself keeps the exact string, in JSON's escape
    with closing(SqliteStore(sensor)) as local, closing(CentralStore(any_url)) as central:
        for store, scan_id in ((local, "s1"), (central, "s1"), (central, "d1")):
            identified, failed = store.observations(scan_id)
            assert identified.identity is not None and identified.identity.model == STORED["model"]
            assert failed.error == ERROR.replace("\x00", "\u2400")
    stored = sqlite3.connect(sensor).execute("SELECT identity FROM observations WHERE identity IS NOT NULL")
    assert json.loads(stored.fetchone()[0])["model"] == SAID["model"]


def test_a_sensor_file_written_with_raw_nuls_still_pushes(any_url: str, tmp_path: Path) -> None:
    """An error column holding a raw NUL, as a sensor wrote it before NULs were replaced, is pushed as U+2400."""
    sensor = tmp_path / "sensor.db"
    with closing(SqliteStore(sensor)) as local:
        scan(local)
    with closing(sqlite3.connect(sensor)) as db:
        db.execute("UPDATE observations SET error = ? WHERE error IS NOT NULL", (ERROR,))
        db.commit()
    with closing(CentralStore(any_url, site="old-sensor")) as central:
        assert push(sensor, central).sent == ["s1"]
        assert [o.error for o in central.observations("s1") if o.error] == [ERROR.replace("\x00", "\u2400")]
        assert central.asset("127.0.1.10").vendor == STORED["vendor"]
