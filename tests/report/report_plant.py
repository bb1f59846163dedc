"""Two real scans of a small simulated plant through the CLI, whose outputs and reports the report tests read.

The plant (127.0.171.x, this directory's own block) has three meters, one device whose identity strings are
hostile markup, one silent device (its breaker trips) and one excluded device. Between the scans one meter's
firmware changes and another disappears, so the second scan's report has changes to show. The second scan runs
with `--format json`, `--report` and a window override; what every device received during it is kept from the
simulators' own records.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Completed, plain_env, run_otprobe, write_profile
from conftest import settled

from otprobe.demo import max_in_window
from simulators.plant import running_plant

BLOCK = "127.0.171"
METERS = {  # address: (vendor, model, firmware)
    f"{BLOCK}.9": ("Schneider Electric", "PM5560", "v2.7"),
    f"{BLOCK}.10": ("Socomec", "DIRIS A40", "v1.4"),
    f"{BLOCK}.11": ("KBR", "multicomp F144-3", "2.00r016"),
}
UPGRADED, REMOVED = f"{BLOCK}.10", f"{BLOCK}.11"
HOSTILE = f"{BLOCK}.20"
HOSTILE_VENDOR = "<script>alert(1)</script>"
HOSTILE_MODEL = "[click](http://evil.example/x) ![p](http://evil.example/p.png) @admin | #1 :x:\x1b[2J"
HOSTILE_CODE = "PC\x1b[2J<img src=http://evil.example/i.png>"
SILENT, EXCLUDED = f"{BLOCK}.30", f"{BLOCK}.40"
TARGETS = [*METERS, HOSTILE, SILENT, EXCLUDED]  # in numeric order, which is not the text order (.9 after .40)
REASON = "firmware audit after the line 2 upgrade"


def _meter(address: str, vendor: str, model: str, firmware: str) -> dict[str, Any]:
    return {"name": f"meter-{address.rsplit('.', 1)[1]}", "address": address, "class": "meter",
            "modbus": {"port": 5020, "vendor_name": vendor, "product_code": model, "model_name": model,
                       "revision": firmware}}


def plant(second: bool) -> dict[str, Any]:
    meters = {**METERS, UPGRADED: (*METERS[UPGRADED][:2], "v1.5")} if second else METERS
    devices = [_meter(address, *identity) for address, identity in meters.items()
               if not (second and address == REMOVED)]
    devices += [
        {"name": "hostile", "address": HOSTILE, "class": "meter",
         "modbus": {"port": 5020, "vendor_name": HOSTILE_VENDOR, "product_code": HOSTILE_CODE,
                    "model_name": HOSTILE_MODEL, "revision": "V1<b>bold"}},
        {**_meter(SILENT, "ABB", "560CMU05", "1.0"), "fault": "silent"},
        _meter(EXCLUDED, "Pilz", "PNOZ m B1", "1.0"),
    ]
    return {"plant": "report", "devices": devices}


@dataclass
class Received:
    """What one simulated device recorded during the second scan."""

    packets: int
    connections: int
    busiest_1s: int


@dataclass
class Scanned:
    workdir: Path
    db: Path
    audit: Path
    env: dict[str, str]
    first: Completed  # --format jsonl
    second: Completed  # --format json --report report.html --ignore-window
    html: Path
    received: dict[str, Received]

    @property
    def second_id(self) -> str:
        return str(self.second.json()["scan_id"])

    async def otprobe(self, *args: str) -> Completed:
        return await run_otprobe(*args, "--db", str(self.db), env=self.env)


# imported by the test modules as `scanned_fixture` (the directory has no conftest.py of its own: a second module
# named conftest would shadow tests/conftest.py, which other test files import by that name)
@pytest.fixture(scope="session", name="scanned")
def scanned_fixture(tmp_path_factory: pytest.TempPathFactory) -> Scanned:
    workdir = tmp_path_factory.mktemp("report")
    profile = write_profile(workdir / "meters.yaml", [f"{BLOCK}.0/24"], exclude=[f"{EXCLUDED}/32"],
                            protocols={"modbus": {"port": 5020, "unit_ids": [1]}})
    db, audit, html = workdir / "inventory.db", workdir / "audit.jsonl", workdir / "report.html"
    env = plain_env(workdir)
    common = ["scan", *TARGETS, "--profile", str(profile), "--db", str(db), "--audit", str(audit)]

    async def go() -> tuple[Completed, Completed, dict[str, Received]]:
        async with running_plant(plant(second=False)) as running:
            first = await run_otprobe(*common, "--format", "jsonl", "--quiet", env=env)
            for device in running:
                await settled(device.recorder)
        async with running_plant(plant(second=True)) as running:
            second = await run_otprobe(*common, "--format", "json", "--report", str(html), "--ignore-window",
                                       "--reason", REASON, env=env)
            for device in running:
                await settled(device.recorder)
            received = {device.address: Received(device.recorder.packet_count(), len(device.recorder.connections),
                                                 max_in_window(device.recorder.packet_times()))
                        for device in running}
        return first, second, received

    first, second, received = asyncio.run(go())
    assert first.code == 0, first.stderr
    assert second.code == 0, second.stderr
    return Scanned(workdir, db, audit, env, first, second, html, received)
