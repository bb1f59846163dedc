"""Third-party probes: another package adds a protocol through the `otprobe.probes` entry-point group, with no
change to otprobe, and the central allowlist still decides what it may send.

The example package is tests/plugin_example. It is made discoverable the way pip lays a package out: its module
beside a `<name>.dist-info` folder (METADATA, and entry_points.txt written from its pyproject.toml) in a folder on
the path of an otprobe subprocess, which finds it through importlib.metadata like any installed package. The
otprobe runs are real command-line runs; the simulated device they scan runs in this test's event loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml
from conftest import settled

from otprobe.probes import BUILTIN
from simulators.plant import running_plant

EXAMPLE = Path(__file__).resolve().parents[1] / "plugin_example"
ADDRESS, PORT = "127.0.161.10", 15061
# a probe identical to the example but for one more operation, a Modbus write: its package must be refused whole
WRITER = '''
from otprobe.contract import Operation
from otprobe_example_mbid import ExampleMbidProbe


class WriterProbe(ExampleMbidProbe):
    name = "example-writer"
    operations = (*ExampleMbidProbe.operations, Operation("write_register", "fc:0x06"))
'''


def install(site: Path, name: str, version: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """Lay out a package as pip would: its modules, and its dist-info with the entry points."""
    for filename, text in modules.items():
        (site / filename).write_text(text)
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = "".join(f"{key} = {value}\n" for key, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[otprobe.probes]\n{lines}")


def install_example(site: Path) -> None:
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    site.mkdir(exist_ok=True)
    shutil.copy(EXAMPLE / "otprobe_example_mbid.py", site)
    install(site, project["name"], project["version"], project["entry-points"]["otprobe.probes"], {})


async def otprobe(site: Path, *args: str) -> tuple[int, str, str]:
    """One `python -m otprobe` run with `site` on its path; awaited, so the simulated plant keeps serving."""
    env = {**os.environ, "PYTHONPATH": str(site), "NO_COLOR": "1", "COLUMNS": "200"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "otprobe", *args, env=env, cwd=site,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def profile(tmp_path: Path, section: dict[str, Any]) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump({
        "name": "site", "scope": {"include": ["127.0.161.0/24"]},
        "classes": {"unknown": {"pps": 20, "connect_gap_s": 0, "max_session_s": 10}},
        # every built-in probe off: the installed one alone speaks to the device
        "protocols": {**{name: {"enabled": False} for name in BUILTIN}, "example-mbid": section},
        "timeouts": {"connect_s": 2, "response_s": 2}, "retries": 0,
    }, sort_keys=False))
    return path


PLANT = {"plant": "plugin", "devices": [{
    "name": "meter", "address": ADDRESS, "class": "plc",
    "modbus": {"port": PORT, "unit_ids": [7], "conformity": 1, "vendor_name": "Acme", "product_code": "AC-7",
               "revision": "v2.1"},
}]}


async def test_an_installed_probe_scans_a_device_through_the_real_scan_path(tmp_path: Path) -> None:
    site = tmp_path / "site"
    install_example(site)
    path = profile(tmp_path, {"enabled": True, "port": PORT, "unit_id": 7})
    db = tmp_path / "inventory.db"
    async with running_plant(PLANT) as running:
        code, out, err = await otprobe(site, "scan", ADDRESS, "--profile", str(path), "--db", str(db),
                                       "--format", "jsonl", "--quiet")
        recorder = running["meter"].recorder
        await settled(recorder)
    assert (code, err) == (0, ""), err
    [observation] = map(json.loads, out.splitlines())
    assert (observation["protocol"], observation["port"], observation["status"]) == ("example-mbid", PORT,
                                                                                      "identified")
    assert observation["identity"]["vendor"] == "Acme" and observation["identity"]["firmware"] == "v2.1"
    # at the device: one connection, one FC43 basic-stream read to unit 7, closed with a FIN; nothing else
    assert recorder.operations() == ["fc:0x2B/mei:0x0E"]
    assert [r.detail.get("unit_id") for r in recorder.requests] == [7]
    assert [c.close_kind for c in recorder.connections] == ["fin"]
    assert recorder.packet_count() == observation["packets_sent"] == 3
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    intents = [(r["protocol"], r["operation"], r["code"]) for r in audit if r["type"] == "intent"]
    assert intents == [("example-mbid", "connect", "tcp:connect"), ("example-mbid", "read_basic", "fc:0x2B/mei:0x0E"),
                       ("example-mbid", "close", "tcp:close")]


async def test_an_installed_probe_is_named_in_help_plan_and_profile_checks(tmp_path: Path) -> None:
    site = tmp_path / "site"
    install_example(site)
    code, out, _ = await otprobe(site, "plan", "--help")
    # the list may wrap across lines of the help box: compare without blanks and box borders
    assert code == 0 and ",".join([*BUILTIN, "example-mbid"]) in re.sub(r"[\s│]", "", out)
    # disabled by its own model's default: a scan runs it only when a profile or --protocol asks
    path = profile(tmp_path, {"unit_id": 3})
    code, out, err = await otprobe(site, "plan", ADDRESS, "--profile", str(path), "--format", "json")
    assert (code, err) == (0, "") and json.loads(out)["protocols"] == []
    code, out, err = await otprobe(site, "plan", ADDRESS, "--profile", str(path), "--protocol", "example-mbid",
                                   "--format", "json")
    assert (code, err) == (0, "") and (json.loads(out)["protocols"], json.loads(out)["total_packets"]) == (
        ["example-mbid"], 3)
    # its profile section is validated by its own options model, with the file:line key errors of any other
    bad = profile(tmp_path, {"unit_idd": 3, "port": 0})
    code, _, err = await otprobe(site, "profiles", "check", str(bad))
    assert code == 2
    lines = bad.read_text().splitlines()
    key_line, port_line = lines.index("    unit_idd: 3") + 1, lines.index("    port: 0") + 1
    assert err.splitlines() == [
        f"otprobe: error: {bad}:{key_line} protocols.example-mbid.unit_idd: unknown key (allowed: enabled, "
        "intrusive, port, unit_id); did you mean 'unit_id'?",
        f"otprobe: error: {bad}:{port_line} protocols.example-mbid.port: must be greater than or equal to 1 (got 0)",
    ]


async def test_a_probe_declaring_a_code_off_the_allowlist_is_refused_at_load(tmp_path: Path) -> None:
    site = tmp_path / "site"
    install_example(site)
    install(site, "otprobe-example-writer", "0.2", {"example-writer": "otprobe_example_writer:WriterProbe"},
            {"otprobe_example_writer.py": WRITER})
    refusal = ("otprobe: error: probe 'example-writer' from otprobe-example-writer 0.2 declares modbus code fc:0x06, "
               "which is not on the read-only allowlist (otprobe/safety.py); the probe is refused\n")
    # whichever protocols are asked for: a profile is read with every registered probe, so nothing runs at all
    for args in (("plan", ADDRESS, "--profile", "lab"), ("scan", ADDRESS, "--profile", "lab", "--protocol", "s7",
                                                         "--db", str(tmp_path / "i.db")),
                 ("profiles", "check", str(profile(tmp_path, {})))):
        code, out, err = await otprobe(site, *args)
        assert (code, out, err) == (3, "", refusal), args
    code, out, _ = await otprobe(site, "scans", "list", "--db", str(tmp_path / "i.db"), "--format", "json")
    assert (code, out.strip()) == (0, "[]")  # refused before a scan began
