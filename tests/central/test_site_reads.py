"""`--site` on the inventory's read commands (`inventory list/show/diff/export`, `scans list`): on a central inventory
(a SQLite file with the shared schema, and PostgreSQL) and on a sensor's inventory file alike, each reads the site
named or every site, and naming a site the inventory holds no scan of is a usage error that names the sites it
holds. Every export names each asset's site. Scans are written through the stores' API (no network).
"""

from __future__ import annotations

import csv
import io
import json
from contextlib import closing
from pathlib import Path

import pytest
from central_plant import later, run_scan
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from identities import INVENTORY_PLANT as PLANT
from typer.testing import CliRunner

from otprobe.cli import app
from otprobe.inventory import SqliteStore
from otprobe.inventory.central import CentralStore

pytest_plugins = ("central_pg",)  # the PostgreSQL fixtures (a conftest.py here would shadow the suite's)


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"NO_COLOR": "1", "COLUMNS": "250", "OTPROBE_DB": "",
                                                       "OTPROBE_SITE": "", **(env or {})})
    return result.exit_code, result.output


def ok(*args: str, env: dict[str, str] | None = None) -> str:
    code, output = cli(*args, env=env)
    assert code == 0, output
    return output


@pytest.fixture(autouse=True)
def no_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTPROBE_CONFIG", str(tmp_path / "none.yaml"))


@pytest.fixture
def two_sites(any_url: str) -> str:
    """Plant A scanned twice (the second time with a firmware update, a move and a device gone), plant B once with
    the same plant: the same targets, addresses and serials at both sites; B's scan is the last one."""
    with closing(CentralStore(any_url, site="plant-a")) as a, closing(CentralStore(any_url, site="plant-b")) as b:
        run_scan(a, "a1", PLANT, TARGETS)
        run_scan(a, "a2", later(PLANT), TARGETS)
        run_scan(b, "b1", PLANT, TARGETS)
    return any_url


TARGETS = sorted({*PLANT, *later(PLANT)})
# plant A's assets after its second scan: the drive at its new address, the device gone still an asset (missing)
A_ASSETS = ["127.0.1.10", "127.0.2.11", "127.0.3.99"]


def header(table: str) -> str:
    """The header line of a table (the one after the top border)."""
    lines = table.splitlines()
    return next(lines[n + 1] for n, line in enumerate(lines) if line.startswith("┏"))


def site_ips(listing: list[dict[str, object]]) -> list[tuple[object, object]]:
    return [(a["site"], a["ip"]) for a in listing]


def test_list_and_json_export_read_the_site_asked_for_or_every_site(two_sites: str) -> None:
    every = json.loads(ok("inventory", "list", "--db", two_sites, "--format", "json"))
    assert site_ips(every) == [("plant-a", ip) for ip in A_ASSETS] + [("plant-b", ip) for ip in sorted(PLANT)]
    for command in (("inventory", "list", "--format", "json"), ("inventory", "export", "--format", "json")):
        only_b = json.loads(ok(*command, "--db", two_sites, "--site", "plant-b"))
        assert site_ips(only_b) == [("plant-b", ip) for ip in sorted(PLANT)]
    table = ok("inventory", "list", "--db", two_sites, "--site", "plant-a")
    assert f"Inventory ({len(A_ASSETS)} assets)" in table and "127.0.3.99" in table
    assert " site " not in header(table) and "plant-a" not in table  # one site: no column for it
    # every site: the same address twice, each row saying whose it is
    table = ok("inventory", "list", "--db", two_sites)
    rows = [line for line in table.splitlines() if "127.0.1.10" in line]
    assert " site " in header(table)
    assert [("plant-a" in row, "plant-b" in row) for row in rows] == [(True, False), (False, True)]
    # a site the inventory holds no scan of (a typo, most likely) is said so, not shown as an empty site
    code, output = cli("inventory", "list", "--db", two_sites, "--site", "plant-c", "--format", "json")
    said = " ".join(output.split())
    assert code == 2 and "'plant-c'" in said and "(its sites: plant-a, plant-b)" in said, output


def test_csv_and_cyclonedx_exports_name_each_assets_site(two_sites: str, tmp_path: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(ok("inventory", "export", "--db", two_sites, "--format", "csv"))))
    assert sorted((r["site"], r["ip"]) for r in rows) == sorted(
        [("plant-a", ip) for ip in A_ASSETS] + [("plant-b", ip) for ip in PLANT])
    out = tmp_path / "b.cdx.json"
    ok("inventory", "export", "--db", two_sites, "--format", "cyclonedx", "--site", "plant-b", "-o", str(out))
    bom = out.read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(bom) is None
    components = json.loads(bom)["components"]
    properties = [{p["name"]: p["value"] for p in c["properties"]} for c in components]
    assert sorted((p["otprobe:site"], p["otprobe:ip"]) for p in properties) == [("plant-b", ip) for ip in sorted(PLANT)]


def test_show_names_the_site_when_an_address_is_at_several(two_sites: str) -> None:
    code, output = cli("inventory", "show", "127.0.1.10", "--db", two_sites)
    assert code == 5 and "plant-a, plant-b" in output and "--site" in output, output
    for site, firmware in (("plant-a", "V3.2.8"), ("plant-b", "V3.2.7")):
        shown = json.loads(ok("inventory", "show", "127.0.1.10", "--db", two_sites, "--site", site, "--format",
                              "json"))
        assert (shown["site"], shown["firmware"]) == (site, firmware)
        assert [h["firmware"] for h in shown["history"]["firmware"]] == (
            ["V3.2.7", "V3.2.8"] if site == "plant-a" else ["V3.2.7"])
        table = ok("inventory", "show", "127.0.1.10", "--db", two_sites, "--site", site)
        assert any("site" in line and site in line for line in table.splitlines()), table


def test_diff_and_scans_list_keep_to_the_site(two_sites: str) -> None:
    scans = [s["id"] for s in json.loads(ok("scans", "list", "--db", two_sites, "--format", "json"))]
    assert scans == ["a1", "a2", "b1"]
    assert [s["id"] for s in json.loads(ok("scans", "list", "--db", two_sites, "--site", "plant-a", "--format",
                                           "json"))] == ["a1", "a2"]
    table = ok("scans", "list", "--db", two_sites)
    assert " site " in header(table) and [line.split("│")[2].strip() for line in table.splitlines()
                                          if line.startswith("│")] == ["plant-a", "plant-a", "plant-b"]
    assert " site " not in header(ok("scans", "list", "--db", two_sites, "--site", "plant-a"))
    # every site: the last scan is B's first; A's scans of the same addresses are another plant's, so nothing is
    # compared with them (each of A's devices would look replaced by B's at its address)
    code, output = cli("inventory", "diff", "--db", two_sites, "--format", "json")
    diff = json.loads(output)
    assert code == 1 and (diff["from"], diff["to"]) == (None, "b1"), output
    assert "same site" in diff["basis"] and {c["kind"] for c in diff["changes"]} == {"new"}
    code, output = cli("inventory", "diff", "--db", two_sites, "--site", "plant-a", "--format", "json")
    diff = json.loads(output)
    assert code == 1 and (diff["from"], diff["to"]) == ("a1", "a2"), output
    assert sorted((c["kind"], c["ip"]) for c in diff["changes"]) == [
        ("firmware_changed", "127.0.1.10"), ("missing", "127.0.2.11"), ("moved", "127.0.3.99")]
    # a scan of another site is not one of this site's
    code, output = cli("inventory", "diff", "--db", two_sites, "--site", "plant-a", "--to", "b1")
    assert code == 5 and "no scan 'b1'" in output, output


# -- a sensor's inventory file: its scans name their sites, and --site reads as on a central store ----------------

@pytest.fixture
def sensor_file(tmp_path: Path) -> Path:
    """Plant A scanned twice as site plant-a, then plant B once into the same file as site plant-b."""
    path = tmp_path / "sensor.db"
    with closing(SqliteStore(path, site="plant-a")) as store:
        run_scan(store, "s1", PLANT, TARGETS)
        run_scan(store, "s2", later(PLANT), TARGETS)
        store.write_site = "plant-b"
        run_scan(store, "s3", PLANT, TARGETS)
    return path


def test_a_sensor_file_reads_the_site_asked_for_and_says_which_it_holds_when_asked_for_another(
        sensor_file: Path) -> None:
    db = ("--db", str(sensor_file))
    every = json.loads(ok("inventory", "list", *db, "--format", "json"))
    assert site_ips(every) == [("plant-a", ip) for ip in A_ASSETS] + [("plant-b", ip) for ip in sorted(PLANT)]
    for how in (("--site", "plant-a"), ()):
        env = {} if how else {"OTPROBE_SITE": "plant-a"}  # the environment's site is the default filter
        listing = json.loads(ok("inventory", "list", *db, *how, "--format", "json", env=env))
        assert site_ips(listing) == [("plant-a", ip) for ip in A_ASSETS]
        rows = list(csv.DictReader(io.StringIO(ok("inventory", "export", *db, *how, "--format", "csv", env=env))))
        assert {r["site"] for r in rows} == {"plant-a"} and len(rows) == len(A_ASSETS)
        assert json.loads(ok("inventory", "show", "127.0.1.10", *db, *how, "--format", "json", env=env))["site"] \
            == "plant-a"
        scans = json.loads(ok("scans", "list", *db, *how, "--format", "json", env=env))
        assert [scan["id"] for scan in scans] == ["s1", "s2"]
    for command in (("inventory", "list"), ("inventory", "show", "127.0.1.10"), ("inventory", "diff"),
                    ("inventory", "export"), ("scans", "list"), ("inventory", "firmware")):
        code, output = cli(*command, *db, "--site", "plant-z")
        assert code == 2, output
        said = " ".join(output.split())  # the usage box folds the message over lines
        assert "'plant-z'" in said and "holds no scan of that site" in said and "plant-a, plant-b" in said, said
    code, output = cli("inventory", "diff", *db, "--site", "plant-a", "--format", "json")
    assert code == 1 and json.loads(output)["to"] == "s2", output
