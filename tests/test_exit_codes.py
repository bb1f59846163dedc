"""The README's exit-code table, row by row, through the real CLI; and `scan --resume` from another folder.

Commands that scan against a plant run as a subprocess (the plant serves from this test's event loop); the
others run in-process through typer's CliRunner. The plants live on this file's own addresses, 127.0.213.x.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from cli_helpers import Completed, plain_env, write_profile

from simulators.plant import running_plant

METERS = [{"name": f"meter-{i}", "address": f"127.0.213.{20 + i}", "class": "meter",
           "modbus": {"port": 5020, "vendor_name": "Schneider Electric", "product_code": "PM5560",
                      "revision": "v2.7"}} for i in range(3)]


async def otprobe_in(cwd: Path, *args: str, env: dict[str, str]) -> Completed:
    """`otprobe ARGS` run from `cwd`, as a user in another folder would, without blocking the plant's loop."""
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "otprobe", *args, cwd=cwd, env=env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return Completed(process.returncode, out.decode(), err.decode())


async def test_resume_from_another_folder_finds_a_profile_given_by_a_relative_path(tmp_path: Path) -> None:
    site, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    site.mkdir()
    elsewhere.mkdir()
    # one device a second: the 1 s deadline leaves devices for the resume
    write_profile(site / "slow.yaml", ["127.0.213.0/24"], global_pps=4, max_devices_in_flight=1,
                  classes={"unknown": {"pps": 4, "burst": 1, "class_pps": 4, "connect_gap_s": 0.2}})
    env = plain_env(tmp_path)
    stores = ["--db", str(tmp_path / "inv.db")]
    common = ["--protocol", "modbus", *stores, "--audit", str(tmp_path / "audit.jsonl"), "--format", "json", "--quiet"]

    async def scans() -> list[dict[str, object]]:
        return json.loads((await otprobe_in(elsewhere, "scans", "list", *stores, "--format", "json", env=env)).stdout)

    async with running_plant({"plant": "resume", "devices": METERS}) as plant:
        first = await otprobe_in(site, "scan", "127.0.213.20-22", "--profile", "slow.yaml", "--deadline", "1s",
                                 *common, env=env)
        assert first.code == 4, first.stderr
        [record] = await scans()
        assert record["not_covered"] and Path(str(record["profile"])) == (site / "slow.yaml").resolve()
        resumed = await otprobe_in(elsewhere, "scan", "--resume", *common, env=env)
        assert resumed.code == 0, resumed.stderr
        assert {o["ip"] for o in resumed.json()} == set(record["not_covered"])
        # every device was reached in the end: the resume ran with the stored profile, from the other folder
        assert all(device.recorder.packet_count() > 0 for device in plant)
    assert [scan["status"] for scan in await scans()] == ["incomplete", "complete"]
