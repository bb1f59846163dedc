"""The CLI with a central inventory: the URL from --db, $OTPROBE_DB or the configuration file, a password that
never reaches the output, bad input as one clear line, and SQLAlchemy loaded only when a central inventory is used.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
from central_plant import run_scan
from identities import INVENTORY_PLANT as PLANT
from typer.testing import CliRunner

from otprobe.cli import app
from otprobe.inventory.central import CentralStore

pytest_plugins = ("central_pg",)  # the PostgreSQL fixtures (a conftest.py here would shadow the suite's)

SECRET = "s3cr3t-Pw"
UNREACHABLE = f"postgresql://sensor:{SECRET}@127.0.0.1:1/otprobe?connect_timeout=2"


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"NO_COLOR": "1", "COLUMNS": "200", "OTPROBE_DB": "",
                                                       "OTPROBE_SITE": "", **(env or {})})
    return result.exit_code, result.output


@pytest.fixture(autouse=True)
def no_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTPROBE_CONFIG", str(tmp_path / "none.yaml"))


@pytest.mark.parametrize("command", [
    ("inventory", "list", "--db", UNREACHABLE),
    ("inventory", "firmware", "--db", UNREACHABLE),
    ("scans", "list", "--db", UNREACHABLE),
    ("inventory", "push", "--to", UNREACHABLE),
])
def test_an_unreachable_database_is_one_line_without_the_password(command: tuple[str, ...], tmp_path: Path) -> None:
    extra = ("--db", str(tmp_path / "sensor.db")) if "push" in command else ()
    code, output = cli(*command, *extra)
    assert code == 5, output
    assert SECRET not in output
    assert "postgresql://sensor:***@127.0.0.1:1/otprobe" in output and "Traceback" not in output


def test_the_url_comes_from_the_environment_or_the_configuration_file(pg_url: str, tmp_path: Path) -> None:
    store = CentralStore(pg_url, site="plant-a")
    run_scan(store, "s1", PLANT)
    store.close()
    code, output = cli("inventory", "list", "--format", "json", env={"OTPROBE_DB": pg_url})
    assert code == 0, output
    assert {a["site"] for a in json.loads(output)} == {"plant-a"}
    config = tmp_path / "config.yaml"
    config.write_text(f"db: {pg_url}\n")
    code, output = cli("inventory", "firmware", "--format", "json", env={"OTPROBE_CONFIG": str(config)})
    assert code == 0, output
    assert sum(row["devices"] for row in json.loads(output)) == 3
    # $OTPROBE_SITE is the default site read, and one the database holds no scan of is said so
    code, output = cli("inventory", "list", "--format", "json", env={"OTPROBE_DB": pg_url, "OTPROBE_SITE": "other"})
    assert code == 2 and "'other'" in output and "plant-a" in output, output


@pytest.mark.parametrize("args", [
    ("inventory", "firmware", "--site", "no such site"),
    ("inventory", "push", "--to", "postgresql://127.0.0.1/x", "--site", "-bad"),
    ("inventory", "push", "--to", "mysql://127.0.0.1/x"),
])
def test_bad_input_is_a_usage_error(args: tuple[str, ...]) -> None:
    code, output = cli(*args)
    assert code == 2, output
    assert "Traceback" not in output


def test_a_push_from_a_missing_file_is_one_clear_line(pg_url: str, tmp_path: Path) -> None:
    code, output = cli("inventory", "push", "--to", pg_url, "--db", str(tmp_path / "none.db"))
    assert code == 5 and "no such inventory file" in output


def test_a_broken_audit_chain_is_refused_and_nothing_is_sent(pg_url: str, tmp_path: Path) -> None:
    from otprobe.inventory import SqliteStore

    local = SqliteStore(tmp_path / "inventory.db")
    run_scan(local, "s1", PLANT)
    local.close()
    (tmp_path / "audit.jsonl").write_text('{"seq": 0, "not": "a record"}\n')
    code, output = cli("inventory", "push", "--to", pg_url, "--db", str(tmp_path / "inventory.db"))
    assert code == 5 and "audit.jsonl:1" in output
    assert CentralStore(pg_url).scans() == []


CHILD = """
import json, sys
from otprobe.cli import app
try:
    app(sys.argv[2:], prog_name="otprobe")
except SystemExit:
    pass
json.dump(sorted({m.partition(".")[0] for m in sys.modules}), open(sys.argv[1], "w"))
"""


@pytest.mark.parametrize("args", [("--help",), ("scan", "--help"), ("inventory", "list"), ("inventory", "firmware")])
def test_only_a_central_inventory_loads_sqlalchemy(args: tuple[str, ...], tmp_path: Path) -> None:
    report = tmp_path / "modules.json"
    env = {**os.environ, "OTPROBE_DB": str(tmp_path / "inventory.db"), "NO_COLOR": "1",
           "OTPROBE_CONFIG": str(tmp_path / "none.yaml")}
    done = subprocess.run([sys.executable, "-c", CHILD, str(report), *args], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(report.read_text()))
    assert loaded.isdisjoint({"sqlalchemy", "alembic", "psycopg"}), sorted(loaded & {"sqlalchemy", "alembic"})


def test_a_sqlite_url_opens_the_shared_schema_on_a_file_and_a_path_the_file_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'central.db'}"
    store = CentralStore(url, site="plant-a")
    run_scan(store, "s1", PLANT)
    store.close()
    code, output = cli("inventory", "list", "--db", url, "--format", "json")
    assert code == 0, output
    assert {(a["site"], a["ip"]) for a in json.loads(output)} == {("plant-a", ip) for ip in PLANT}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["central.db"]  # no file named after the URL
    # a path is the file store's, and a read command creates no inventory there
    code, output = cli("inventory", "list", "--db", str(tmp_path / "file.db"), "--format", "json")
    assert code == 5 and "no inventory there" in output and not (tmp_path / "file.db").exists(), output


@pytest.mark.parametrize(("option", "expected"), [((), "from-profile"), (("--site", "from-option"), "from-option")])
def test_a_scan_belongs_to_the_profiles_site_unless_site_is_given(
    tmp_path: Path, option: tuple[str, ...], expected: str
) -> None:
    from cli_helpers import write_profile

    # nothing listens at 127.0.250.1: the connection is refused at once, and the scan ends with no asset
    profile = write_profile(tmp_path / "zone.yaml", ["127.0.250.0/24"], protocols={"modbus": {"port": 15999}},
                            retries=0, site="from-profile")
    url = f"sqlite:///{tmp_path / 'central.db'}"
    env = {"OTPROBE_LEASE_DIR": str(tmp_path / "leases")}
    code, output = cli("scan", "127.0.250.1", "--profile", str(profile), "--db", url, "--audit",
                       str(tmp_path / "audit.jsonl"), "--quiet", *option, env=env)
    assert code == 0, output
    store = CentralStore(url)
    try:
        assert store.scan_sites() == {store.scans()[0].id: expected}
    finally:
        store.close()


def test_a_bad_site_in_the_environment_is_a_usage_error(tmp_path: Path) -> None:
    code, output = cli("inventory", "push", "--to", f"sqlite:///{tmp_path / 'c.db'}", "--db",
                       str(tmp_path / "sensor.db"), env={"OTPROBE_SITE": "not a site"})
    assert code == 2 and "$OTPROBE_SITE" in output and "Traceback" not in output


@pytest.mark.parametrize("setting", ["env-url", "config-url", "env-file"])
def test_audit_verify_without_a_path_reads_the_log_the_scan_wrote(setting: str, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The default log is the one `scan` writes: beside an inventory file, in the data folder for a central one
    (never a path made from the URL)."""
    from otprobe.audit import AuditLog
    from otprobe.inventory.database import audit_beside, database_setting

    data = tmp_path / "data"
    env = {"XDG_DATA_HOME": str(data)}
    url = "postgresql://reader@127.0.0.1:1/otprobe"  # nothing is opened: only the log is read
    if setting == "env-url":
        env["OTPROBE_DB"] = url
    elif setting == "config-url":
        config = tmp_path / "config.yaml"
        config.write_text(f"db: {url}\n")
        env["OTPROBE_CONFIG"] = str(config)
    else:
        env["OTPROBE_DB"] = str(tmp_path / "sensor" / "inventory.db")
    expected = data / "otprobe" / "audit.jsonl" if setting != "env-file" else tmp_path / "sensor" / "audit.jsonl"
    with AuditLog(expected, "s1", fsync=False) as log:
        log.event("note", n=1)
    code, output = cli("audit", "verify", env=env)
    assert code == 0, output
    assert f"{expected}: ok, 1 record" in " ".join(output.split())
    for key, value in env.items():  # the scan's own choice, under the same settings, is the same file
        monkeypatch.setenv(key, value)
    assert audit_beside(database_setting(None)) == expected


def test_a_push_without_db_reads_the_sensors_file_when_the_environment_names_a_central_url(
        pg_url: str, tmp_path: Path) -> None:
    from otprobe.inventory import SqliteStore

    data = tmp_path / "data"
    local = SqliteStore(data / "otprobe" / "inventory.db")
    run_scan(local, "s1", PLANT)
    local.close()
    code, output = cli("inventory", "push", "--to", pg_url, "--format", "json",
                       env={"OTPROBE_DB": pg_url, "XDG_DATA_HOME": str(data)})
    assert code == 0, output
    assert json.loads(output[output.index("{"):])["sent"] == ["s1"]  # after the progress lines (stderr)


def test_a_pushed_scan_goes_to_the_site_its_file_recorded_and_an_unnamed_one_to_the_pushs(
        pg_url: str, tmp_path: Path) -> None:
    from otprobe.inventory import SqliteStore
    from otprobe.inventory.push import push

    local = SqliteStore(tmp_path / "inventory.db", site="default")  # no site named: `default`
    run_scan(local, "s1", PLANT)
    local.write_site = "south"  # this one ran with --site south
    run_scan(local, "s2", PLANT)
    local.close()
    with closing(CentralStore(pg_url, site="north")) as central:
        report = push(tmp_path / "inventory.db", central)
        assert report.sent == ["s1", "s2"]
        assert central.scan_sites() == {"s1": "north", "s2": "south"}
        assert push(tmp_path / "inventory.db", central).sent == []  # and a repeated push sends nothing
