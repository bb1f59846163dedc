"""Helpers for tests that drive `otprobe` as a user does: a subprocess with a plain, fixed environment, and
profiles derived from the shipped `lab` profile for plants on a test's own loopback addresses.

The CLI runs in a subprocess (not typer's CliRunner) wherever it scans: `scan` calls asyncio.run, and the
simulated plant keeps running in the test's own event loop meanwhile.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from otprobe.probes import names
from otprobe.profile import PROFILES_DIR

REPO = PROFILES_DIR.parent


def plain_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a user on a dumb terminal: no colour, fixed width, default paths under `home`."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"FORCE_COLOR", "PY_COLORS", "GITHUB_ACTIONS", "TERMINAL_WIDTH", "OTPROBE_DB"}}
    env.update({"NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200", "XDG_DATA_HOME": str(home / "xdg"),
                "HOME": str(home)})
    env.update(extra)
    return env


@dataclass
class Completed:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def rows(self) -> list[Any]:
        """stdout as JSON Lines (`scan --format jsonl`): one value per line."""
        return [json.loads(line) for line in self.stdout.splitlines()]


async def start_otprobe(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "otprobe", *args, cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


async def run_otprobe(*args: str, env: dict[str, str], timeout: float = 60) -> Completed:
    """`otprobe ARGS` to completion, without blocking the event loop that serves the simulated plant."""
    process = await start_otprobe(*args, env=env)
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Completed(process.returncode, out.decode(), err.decode())


def write_profile(path: Path, include: list[str], *, exclude: list[str] | None = None,
                  assign: list[dict[str, str]] | None = None, **overrides: Any) -> Path:
    """The shipped `lab` profile with its scope replaced (and any top-level key overridden), written to `path`. Given
    `protocols`, the profile runs exactly those: every other registered probe is disabled."""
    data = yaml.safe_load((PROFILES_DIR / "lab.yaml").read_text())
    data.update(name=path.stem, scope={"include": include, "exclude": exclude or []}, assign=assign or [])
    if "protocols" in overrides:
        overrides["protocols"] = {**{name: {"enabled": False} for name in names()}, **overrides["protocols"]}
    data.update(overrides)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def reference_generator() -> ModuleType:
    """docs/cli_reference.py (a script, not a package module): the command walk and docs/cli.md."""
    path = REPO / "docs" / "cli_reference.py"
    spec = importlib.util.spec_from_file_location("cli_reference", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DEMO = REPO / "simulators" / "plants" / "demo.yaml"


def shifted(address_or_cidr: str, shift: int) -> str:
    octets = address_or_cidr.split(".")
    octets[2] = str(int(octets[2]) + shift)
    return ".".join(octets)


def moved_demo(shift: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The demo plant and the `lab` profile moved `shift` third octets up (the same caps, class map and safety
    exclusion), so a test never collides with a demo plant someone is running on its real addresses."""
    from simulators.plant import relocate

    plant = relocate(DEMO, third_octet_shift=shift)
    lab = yaml.safe_load((PROFILES_DIR / "lab.yaml").read_text())
    include = sorted({shifted(a["cidr"], shift) for a in lab["assign"]}
                     | {d["address"].rsplit(".", 1)[0] + ".0/24" for d in plant["devices"]})
    profile = {**lab, "name": f"lab-moved-{shift}",
               "scope": {"include": include, "exclude": [shifted(c, shift) for c in lab["scope"]["exclude"]]},
               "assign": [{**a, "cidr": shifted(a["cidr"], shift)} for a in lab["assign"]]}
    return plant, profile
