"""`scan --format json` and `--format jsonl` of real scans, against the JSON Schema that ships with the package.

The small plant's scans come from report_plant; the demo plant (every protocol, moved to 127.0.176-184.x) is
scanned once more here so that each probe's identity passes the schema."""

from __future__ import annotations

import asyncio
import json
from importlib.resources import files
from typing import Any

import pytest
import yaml
from cli_helpers import moved_demo, plain_env, run_otprobe
from jsonschema import Draft202012Validator, FormatChecker
from report_plant import (
    EXCLUDED,
    HOSTILE,
    HOSTILE_MODEL,
    REMOVED,
    SILENT,
    TARGETS,
    UPGRADED,
    Scanned,
    scanned_fixture,  # noqa: F401 (the session fixture `scanned`)
)

from otprobe.model import ASSET_TYPES, Status
from otprobe.probes import names
from otprobe.report.scan_json import schema
from simulators.plant import running_plant

SHIFT = 175  # the demo plant moved to 127.0.176-184.x
VALIDATOR = Draft202012Validator(schema(), format_checker=FormatChecker())


def valid(document: Any) -> None:
    errors = sorted(VALIDATOR.iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:10])


def test_the_schema_ships_as_package_data_and_is_a_valid_schema() -> None:
    shipped = files("otprobe.data").joinpath("scan.schema.json")
    assert json.loads(shipped.read_text(encoding="utf-8")) == schema()
    Draft202012Validator.check_schema(schema())


def test_the_schemas_closed_sets_are_the_models() -> None:
    """The schema names the asset types and statuses again (a schema stands alone): it must not drift."""
    defs = schema()["$defs"]
    assert defs["identity_fields"]["properties"]["asset_type"]["enum"] == [*ASSET_TYPES, None]
    assert defs["status"]["enum"] == [str(status) for status in Status]


def test_the_scan_document_validates_and_orders_devices_by_address(scanned: Scanned) -> None:
    document = scanned.second.json()
    valid(document)
    assert document["schema_version"] == 1 and document["outcome"] == "complete"
    assert document["profile"]["ref"] == str(scanned.workdir / "meters.yaml")
    assert document["profile"]["classes"]["unknown"]["pps"] == 5
    assert [device["ip"] for device in document["devices"]] == TARGETS  # 127.0.171.9 before .10
    devices = {device["ip"]: device for device in document["devices"]}
    for device in devices.values():
        assert [result["protocol"] for result in device["results"]] == ["modbus"]
    assert devices[UPGRADED]["identity"]["firmware"] == "v1.5"
    assert devices[UPGRADED]["results"][0]["identity"]["firmware"] == "v1.5"
    assert devices[HOSTILE]["identity"]["model"] == HOSTILE_MODEL  # exact, JSON escapes it
    assert devices[REMOVED]["status"] == "refused" and devices[REMOVED]["identity"] is None
    assert devices[SILENT]["status"] in ("timeout", "tripped")
    assert devices[EXCLUDED]["status"] == "excluded" and devices[EXCLUDED]["results"][0]["packets_sent"] == 0
    # every packet of the scan, retries included, as the devices received them, and the SYN the removed meter's
    # address refused (no device is there to record it)
    assert document["packets"] == sum(r.packets for r in scanned.received.values()) + 1


def test_the_schema_refuses_what_is_not_a_scan(scanned: Scanned) -> None:
    document = scanned.second.json()
    for broken in ({**document, "outcome": "done"}, {**document, "devices": [{"ip": "x"}]},
                   {k: v for k, v in document.items() if k != "schema_version"}, {**document, "extra": 1}):
        assert list(VALIDATOR.iter_errors(broken))


async def test_report_json_is_the_scan_document(scanned: Scanned) -> None:
    done = await scanned.otprobe("report", scanned.second_id, "--format", "json", "--audit", str(scanned.audit))
    assert done.code == 0, done.stderr
    assert done.json() == scanned.second.json()


def test_jsonl_is_one_line_per_device_and_protocol(scanned: Scanned) -> None:
    rows = [json.loads(line) for line in scanned.first.stdout.splitlines()]
    pairs = [(row["ip"], row["protocol"]) for row in rows]
    assert sorted(pairs) == sorted((address, "modbus") for address in TARGETS)  # each once, in completion order
    assert {row["status"] for row in rows if row["ip"] not in (SILENT, EXCLUDED)} == {"identified"}
    assert all(set(row) >= {"ip", "protocol", "port", "status", "firmware", "identity", "packets_sent"} for row in rows)


@pytest.fixture(scope="module")
def demo_document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    workdir = tmp_path_factory.mktemp("demo-json")
    plant, lab = moved_demo(SHIFT)
    profile = workdir / "lab-moved.yaml"
    profile.write_text(yaml.safe_dump(lab, sort_keys=False))
    targets = [device["address"] for device in plant["devices"]]

    async def go() -> Any:
        async with running_plant(plant):
            return await run_otprobe("scan", *targets, "--profile", str(profile), "--db", str(workdir / "i.db"),
                                     "--audit", str(workdir / "a.jsonl"), "--format", "json", "--quiet",
                                     env=plain_env(workdir), timeout=120)

    done = asyncio.run(go())
    assert done.code == 0, done.stderr
    return dict(done.json())


def test_every_protocols_identity_fits_the_schema(demo_document: dict[str, Any]) -> None:
    valid(demo_document)
    identified = {result["protocol"] for device in demo_document["devices"] for result in device["results"]
                  if result["status"] == "identified"}
    assert identified == set(names())
    addresses = [device["ip"] for device in demo_document["devices"]]
    assert addresses == sorted(addresses, key=lambda ip: tuple(map(int, ip.split("."))))

