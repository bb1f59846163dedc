"""Every example a reader can copy from the README works as written.

Each fenced `sh` line that starts with `otprobe` is an example. Loopback examples run for real, in README order,
as `otprobe` subprocesses in a fresh home folder, against the bundled demo plant: the plant runs moved to
127.0.161-169.x (third octet + 160, this file's own addresses) and the `lab` profile is moved alike, so a demo someone
runs on the real addresses never meets this test; the examples' addresses and `--profile lab` are rewritten to
match. What the simulated devices recorded is checked afterwards. Examples for a real site (a block with any
target outside 127.0.0.0/8) are never scanned: each must parse, and its targets must plan with its flags.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cli_helpers import moved_demo, plain_env
from typer.testing import CliRunner

from otprobe.cli import app
from simulators.plant import running_plant

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SHIFT = 160
# Options `plan` shares with `scan`, with whether each takes a value; the others only matter once packets flow.
PLAN_OPTIONS = {"--profile": True, "-p": True, "--protocol": True, "--port": True, "--scope": True}
TARGET = re.compile(r"^\d{1,3}(\.\d{1,3}){3}(/\d{1,2}|-[\d.]+)?$")


@dataclass
class Example:
    args: list[str]
    redirect: str | None  # `> FILE`: stdout goes there

    @property
    def command(self) -> str:
        return " ".join(arg for arg in self.args if not arg.startswith("-"))[:40]

    def targets(self) -> list[str]:
        return [arg for arg in self.args if TARGET.match(arg)]


def blocks(text: str) -> list[list[Example]]:
    """The README's `sh` blocks, each as its `otprobe` lines (trailing `# comments` dropped)."""
    found = []
    for block in re.findall(r"```sh\n(.*?)\n```", text, re.DOTALL):
        examples = []
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] != ["otprobe"]:
                continue
            redirect = None
            if ">" in words:
                at = words.index(">")
                words, redirect = words[:at], words[at + 1]
            examples.append(Example(words[1:], redirect))
        found.append(examples)
    return found


def is_loopback(target: str) -> bool:
    first = re.split(r"[/-]", target)[0]
    return ipaddress.IPv4Address(first) in ipaddress.IPv4Network("127.0.0.0/8")


def loopback_and_site() -> tuple[list[Example], list[Example]]:
    loopback, site = [], []
    for examples in blocks(README.read_text(encoding="utf-8")):
        if all(is_loopback(t) for example in examples for t in example.targets()):
            loopback += examples
        else:
            site += examples
    return loopback, site


def moved(arg: str) -> str:
    """An example's argument on this file's addresses: 127.0.X.Y becomes 127.0.(X+160).Y."""
    return re.sub(r"\b127\.0\.(\d+)\.", lambda m: f"127.0.{int(m[1]) + SHIFT}.", arg)


def test_the_quick_start_is_make_demo_and_make_test() -> None:
    text = README.read_text(encoding="utf-8")
    quick = text[text.index("## Quick start"):]
    assert re.search(r"```sh\n(.*?)\n```", quick, re.DOTALL)[1] == "make demo\nmake test"  # type: ignore[index]


def test_the_readme_has_examples_of_both_kinds() -> None:
    loopback, site = loopback_and_site()
    assert {"scan", "plan", "inventory"} <= {e.args[0] for e in loopback}
    assert {"scan", "plan"} <= {e.args[0] for e in site}
    assert all(not is_loopback(t) for e in site for t in e.targets())


async def otprobe(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "otprobe", *args, cwd=cwd, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_every_loopback_example_runs_against_the_demo_plant(tmp_path: Path) -> None:
    loopback, _ = loopback_and_site()
    home = tmp_path / "home"
    home.mkdir()
    # the README's `~/.local/share/otprobe/...` is the default inventory folder: no XDG_DATA_HOME
    env = {k: v for k, v in plain_env(home, OTPROBE_LEASE_DIR=str(tmp_path / "leases")).items()
           if k != "XDG_DATA_HOME"}
    (tmp_path / "simulators").symlink_to(ROOT / "simulators")  # relative paths as in a checkout
    plant_spec, lab = moved_demo(SHIFT)
    lab_path = tmp_path / "lab-moved.yaml"
    lab_path.write_text(yaml.safe_dump(lab, sort_keys=False))

    async with running_plant(plant_spec) as plant:
        for example in loopback:
            args = [moved(arg).replace("~", str(home), 1) if arg.startswith("~") else moved(arg)
                    for arg in example.args]
            args = [str(lab_path) if (before, arg) in {("--profile", "lab"), ("-p", "lab")} else arg
                    for before, arg in zip(["", *args], args, strict=False)]
            if args[:2] == ["sim", "up"]:
                args[1] = "list"  # `up` runs until Ctrl-C; the plant it names is already up, moved
            code, out, err = await otprobe(args, tmp_path, env)
            # `inventory diff` answers 1 when something changed, as the README says
            allowed = {0, 1} if args[:2] == ["inventory", "diff"] else {0}
            assert code in allowed, f"otprobe {' '.join(example.args)} exited {code}:\n{err}{out}"
            if example.redirect:
                (tmp_path / example.redirect).write_text(out)

    by_ip = {device.address: device.recorder for device in plant}
    targeted = {ip for e in loopback if e.args[0] == "scan"
                for ip in by_ip if any(_covers(moved(t), ip) for t in e.targets())}
    assert targeted, "no loopback scan example"
    for ip, recorder in by_ip.items():
        if ip in targeted:
            assert recorder.packet_count() > 0, f"{ip}: a README scan names it, yet it received nothing"
        else:
            assert recorder.packet_count() == 0, f"{ip}: no README scan names it, yet it received packets"
    for name in {e.redirect for e in loopback if e.redirect}:
        assert (tmp_path / name).stat().st_size > 0
    scanned = json.loads((tmp_path / "scan.json").read_text())
    assert scanned["devices"] and {device["ip"] for device in scanned["devices"]} <= targeted
    assert "<svg" in (tmp_path / "scan.html").read_text()  # the example's --report
    assert (tmp_path / "plant.cdx.json").exists()


def _covers(target: str, ip: str) -> bool:
    if "/" in target:
        return ipaddress.IPv4Address(ip) in ipaddress.IPv4Network(target)
    if "-" in target:
        low, high = target.split("-")
        high = high if "." in high else f"{low.rsplit('.', 1)[0]}.{high}"
        return int(ipaddress.IPv4Address(low)) <= int(ipaddress.IPv4Address(ip)) <= int(ipaddress.IPv4Address(high))
    return target == ip


def plan_args(args: list[str]) -> list[str]:
    """A scan example as the `plan` of the same targets with the options the two share."""
    planned, rest = ["plan"], iter(args[1:])
    for arg in rest:
        if TARGET.match(arg):
            planned.append(arg)
        elif arg in PLAN_OPTIONS:
            planned += [arg, next(rest)]
    return planned


@pytest.mark.parametrize("example", loopback_and_site()[1], ids=lambda e: " ".join(e.args))
def test_site_examples_parse_and_plan_without_a_packet(example: Example) -> None:
    runner = CliRunner()
    env = {"NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb"}
    # click refuses an unknown command or option before the eager --help answers
    parsed = runner.invoke(app, [*example.args, "--help"], prog_name="otprobe", env=env)
    assert parsed.exit_code == 0, parsed.output
    if example.targets():  # plan does no network I/O; tests/conftest.py would fail any non-loopback connect
        planned = runner.invoke(app, plan_args(example.args), prog_name="otprobe", env=env)
        assert planned.exit_code == 0, f"otprobe {' '.join(plan_args(example.args))}: {planned.output}"
